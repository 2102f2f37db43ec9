"""The Google Vertex AI protocol for Anthropic models, as ``AnthropicVertex`` speaks it.

* ``POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict``
  (and ``:streamRawPredict``): the Messages body without ``model`` (it is in the path) and
  with ``anthropic_version``; the answer is the Anthropic Messages JSON, or its SSE stream
  (the body keeps ``stream: true``).
* Errors of Google's front end (authentication, permission, unknown model, quota) are
  Google-style bodies, ``{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}``;
  the model's own errors (overloaded, invalid request, ...) pass through in Anthropic's shape.

Checked against the anthropic SDK's ``lib/vertex/_client.py`` (paths, ``anthropic_version``)
and its ``tests/lib/test_vertex.py``.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from policyrouter.testing.mock_server._anthropic import AnthropicWire
from policyrouter.testing.mock_server._types import Protocol

__all__ = ["VertexWire", "route"]

_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
    r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)$"
)
_GOOGLE_STATUS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
"""Statuses Google's front end answers itself, with the gRPC status it names them by."""


def route(path: str) -> tuple[str, bool] | None:
    """``(model id, streamed)`` of a Vertex raw-predict path; ``None`` for any other path."""
    match = _PATH.match(path)
    if match is None:
        return None
    return urllib.parse.unquote(match["model"]), match["method"] == "streamRawPredict"


class VertexWire(AnthropicWire):
    """``rawPredict`` / ``streamRawPredict``: Anthropic bodies and streams, Google's front-end errors."""

    protocol: Protocol = "vertex"

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        google = code if code is not None and code.isupper() else _GOOGLE_STATUS.get(status)
        if google is None:
            return super().error(status, message, code, request_id)
        return {"error": {"code": status, "message": message, "status": google}}
