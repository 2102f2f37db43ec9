"""What the wire protocols share: the :class:`Wire` interface, JSON and SSE framing, error messages."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from policyrouter.testing.mock_server._answer import Answer
from policyrouter.testing.mock_server._types import Fault, Protocol

__all__ = ["CREATED", "Wire", "dumps", "error_payload", "models_list", "pieces", "sse"]

CREATED = 0
_CONTEXT_TOKENS = (250_000, 200_000)
_PIECES = re.compile(r"\s*\S+|\s+$")


class Wire(typing.Protocol):
    """One API's wire format: how an answer, its stream and an error look."""

    protocol: Protocol
    id_header: str

    def completion(self, number: int, model: str, answer: Answer, *, report_usage: bool) -> bytes:
        """The JSON body of request ``number``'s answer."""
        ...

    def events(
        self, number: int, model: str, answer: Answer, body: Mapping[str, Any], *, report_usage: bool
    ) -> list[bytes]:
        """The SSE events that stream request ``number``'s answer."""
        ...

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        """The error body for ``status``."""
        ...

    def context_length_message(self, got: int, limit: int) -> str:
        """The provider's "prompt too long" message."""
        ...

    def malformed_event(self, data: bytes) -> bytes:
        """An SSE event carrying ``data`` that the SDK reads as a stream's first event."""
        ...

    stream_content_type: str = "text/event-stream; charset=utf-8"

    def error_headers(self, status: int, fault: Fault | None) -> list[tuple[str, str]]:
        """Headers an error response carries besides the request id (Bedrock names its error type there)."""
        return []

    def error_event(self, status: int, payload: Mapping[str, Any]) -> bytes:
        """The stream event that carries ``payload``, this protocol's error body for ``status``."""
        return sse(dumps(payload), "error")


def dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sse(data: bytes, event: str | None = None) -> bytes:
    """One server-sent event, named when ``event`` is given."""
    name = b"" if event is None else b"event: " + event.encode() + b"\n"
    return name + b"data: " + data + b"\n\n"


def pieces(text: str) -> list[str]:
    """Split text into word-sized deltas that concatenate back to it."""
    return _PIECES.findall(text)


def _default_message(status: int) -> str:
    if status == 429:
        return "Rate limit exceeded (mock)."
    if status == 529:
        return "Overloaded (mock)."
    try:
        return f"{HTTPStatus(status).phrase} (mock)."
    except ValueError:
        return f"Error {status} (mock)."


def error_payload(wire: Wire, status: int, fault: Fault | None, request_id: str) -> dict[str, Any]:
    """The error body ``wire`` answers ``status`` with, its message taken from ``fault`` if set."""
    message = fault.message if fault is not None else None
    code = fault.error_type if fault is not None else None
    if fault is not None and fault.kind == "context_length":
        code = "context_length_exceeded"
        if message is None:
            message = wire.context_length_message(*_CONTEXT_TOKENS)
    elif fault is not None and fault.kind == "content_filter":
        code = "content_filter"
        if message is None:
            message = "The prompt was filtered by the content management policy (mock)."
    return wire.error(status, message or _default_message(status), code, request_id)


def models_list(names: Iterable[str]) -> dict[str, Any]:
    """The ``GET /v1/models`` body, in one shape both SDKs parse."""
    data = [
        {
            "id": name,
            "object": "model",
            "created": CREATED,
            "owned_by": "mock",
            "type": "model",
            "display_name": name,
            "created_at": "1970-01-01T00:00:00Z",
        }
        for name in names
    ]
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {"object": "list", "data": data, "has_more": False, "first_id": first, "last_id": last}
