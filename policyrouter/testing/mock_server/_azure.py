"""The Azure OpenAI protocol: OpenAI's chat completions under ``/openai/deployments/{deployment}``,
with Azure's content-filter annotations and error bodies.

What differs from OpenAI, as the real service answers (see ``tests/recorded/azure_*``):

* the path names the deployment, the ``api-version`` query parameter is required, and the
  key comes in an ``api-key`` header (or an Entra ID token as ``Authorization: Bearer``);
* an answer carries ``prompt_filter_results`` and, per choice, ``content_filter_results``;
  a stream opens with a chunk of ``choices: []`` holding ``prompt_filter_results``;
* the request id is in ``apim-request-id``;
* errors are ``{"error": {"code": "<status or name>", "message": ...}}``; a prompt the
  content filter refuses is a 400 with ``code: content_filter`` and the verdicts in
  ``innererror.content_filter_result``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from policyrouter.testing.mock_server._answer import Answer
from policyrouter.testing.mock_server._openai import OpenAIWire
from policyrouter.testing.mock_server._types import Protocol
from policyrouter.testing.mock_server._wire import Wire, dumps, sse

__all__ = ["AZURE_FILTER_MESSAGE", "AzureWire", "azure_deployment", "azure_refusal"]

_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_SAFE = {"filtered": False, "severity": "safe"}
_VERDICTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_FILTERED = {**_VERDICTS, "violence": {"filtered": True, "severity": "high"}}
_PROMPT_VERDICTS = {**_VERDICTS, "jailbreak": {"filtered": False, "detected": False}}
AZURE_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. (mock)"
)


def azure_deployment(path: str) -> str | None:
    """The deployment a chat completions path names, or ``None`` for any other path."""
    found = _PATH.match(path)
    return unquote(found.group(1)) if found else None


def azure_refusal(query: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """``(status, message)`` Azure refuses a request with before reading it: no ``api-version``,
    no credential; ``None`` when it passes."""
    if not parse_qs(query).get("api-version"):
        return 404, "Resource not found (mock: the api-version query parameter is missing)."
    if "api-key" not in headers and not headers.get("authorization", "").lower().startswith("bearer "):
        return 401, "Access denied due to missing subscription key (mock: no api-key or Authorization header)."
    return None


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": _PROMPT_VERDICTS}]


def _annotated(chunk: dict[str, Any], verdicts: Mapping[str, Any]) -> dict[str, Any]:
    for choice in chunk.get("choices") or ():
        choice["content_filter_results"] = verdicts
    return chunk


class AzureWire(Wire):
    """``POST /openai/deployments/{deployment}/chat/completions?api-version=...``."""

    protocol: Protocol = "azure"
    id_header = "apim-request-id"

    def __init__(self) -> None:
        self._openai = OpenAIWire()

    def completion(self, number: int, model: str, answer: Answer, *, report_usage: bool) -> bytes:
        body = json.loads(self._openai.completion(number, model, answer, report_usage=report_usage))
        body["prompt_filter_results"] = _prompt_filter_results()
        return dumps(_annotated(body, _FILTERED if answer.stop == "refusal" else _VERDICTS))

    def events(
        self, number: int, model: str, answer: Answer, body: Mapping[str, Any], *, report_usage: bool
    ) -> list[bytes]:
        verdicts = _FILTERED if answer.stop == "refusal" else _VERDICTS
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        first["prompt_filter_results"] = _prompt_filter_results()
        events = [sse(dumps(first))]
        for event in self._openai.events(number, model, answer, body, report_usage=report_usage):
            data = event.removeprefix(b"data: ").rstrip(b"\n")
            events.append(event if data == b"[DONE]" else sse(dumps(_annotated(json.loads(data), verdicts))))
        return events

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        if code == "content_filter":
            return {
                "error": {
                    "message": message,
                    "type": None,
                    "param": "prompt",
                    "code": code,
                    "status": status,
                    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": _FILTERED},
                }
            }
        if code is not None:  # context_length_exceeded: as OpenAI words it
            return self._openai.error(status, message, code, request_id)
        return {"error": {"code": str(status), "message": message}}

    def context_length_message(self, got: int, limit: int) -> str:
        return self._openai.context_length_message(got, limit)

    def malformed_event(self, data: bytes) -> bytes:
        return sse(data)
