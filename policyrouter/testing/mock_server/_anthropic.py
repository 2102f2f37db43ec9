"""The Anthropic messages protocol: JSON messages, named SSE events and error bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policyrouter.testing.mock_server._answer import Answer
from policyrouter.testing.mock_server._reasoning import signature
from policyrouter.testing.mock_server._types import Protocol
from policyrouter.testing.mock_server._wire import Wire, dumps, pieces, sse

__all__ = ["AnthropicWire", "message", "stream_payloads"]

_STOP = {"end": "end_turn", "tool": "tool_use", "refusal": "refusal", "length": "max_tokens"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _usage(answer: Answer, output: int) -> Any:
    if answer.wire_usage is not None:
        return answer.wire_usage
    usage = answer.usage
    reported: dict[str, Any] = {
        "input_tokens": usage.input,
        "output_tokens": output,
        "cache_read_input_tokens": usage.cached,
        "cache_creation_input_tokens": usage.cache_write,
    }
    if answer.thinking is not None:  # thinking tokens are part of output_tokens
        reported["output_tokens_details"] = {"thinking_tokens": min(usage.reasoning, output)}
    if usage.breakdown:
        hour = usage.cache_write_1h
        reported["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_write - hour,
            "ephemeral_1h_input_tokens": hour,
        }
    return reported


def message(number: int, model: str, answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.thinking is not None:
        content.append({"type": "thinking", "thinking": answer.thinking, "signature": signature(answer.thinking)})
    if answer.text is not None:
        content.append({"type": "text", "text": answer.text})
    content.extend(
        {
            "type": "tool_use",
            "id": f"toolu_mock_{number}_{i}",
            "name": call.name,
            "input": call.arguments,
        }
        for i, call in enumerate(answer.tool_calls)
    )
    return {
        "id": f"msg_mock_{number}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP[answer.stop],
        "stop_sequence": None,
        "usage": _usage(answer, answer.usage.output),
    }


def _event(payload: Mapping[str, Any]) -> bytes:
    """An SSE event named by its payload's ``type``."""
    return sse(dumps(payload), payload["type"])


def _block(index: int, block: Mapping[str, Any], deltas: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One content block's events: its start, its deltas and its stop."""
    events: list[dict[str, Any]] = [{"type": "content_block_start", "index": index, "content_block": block}]
    events.extend({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas)
    events.append({"type": "content_block_stop", "index": index})
    return events


def stream_payloads(number: int, model: str, answer: Answer) -> list[dict[str, Any]]:
    """The stream events of an answer, as JSON objects (each cloud frames them its own way)."""
    start = {**message(number, model, answer), "content": [], "stop_reason": None, "usage": _usage(answer, 1)}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    index = 0
    if answer.thinking is not None:
        thinking = [{"type": "thinking_delta", "thinking": piece} for piece in pieces(answer.thinking)]
        thinking.append({"type": "signature_delta", "signature": signature(answer.thinking)})
        events.extend(_block(0, {"type": "thinking", "thinking": "", "signature": ""}, thinking))
        index = 1
    if answer.text is not None:
        deltas = ({"type": "text_delta", "text": piece} for piece in pieces(answer.text))
        events.extend(_block(index, {"type": "text", "text": ""}, deltas))
        index += 1
    for i, call in enumerate(answer.tool_calls):
        tool_block = {"type": "tool_use", "id": f"toolu_mock_{number}_{i}", "name": call.name, "input": {}}
        events.extend(_block(index, tool_block, [{"type": "input_json_delta", "partial_json": call.arguments_json}]))
        index += 1
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _STOP[answer.stop], "stop_sequence": None},
        "usage": _usage(answer, answer.usage.output),
    }
    events.append(message_delta)
    events.append({"type": "message_stop"})
    return events


class AnthropicWire(Wire):
    """``POST /v1/messages``; usage is always reported."""

    protocol: Protocol = "anthropic"
    id_header = "request-id"

    def completion(self, number: int, model: str, answer: Answer, *, report_usage: bool) -> bytes:
        return dumps(message(number, model, answer))

    def events(
        self, number: int, model: str, answer: Answer, body: Mapping[str, Any], *, report_usage: bool
    ) -> list[bytes]:
        return [_event(payload) for payload in stream_payloads(number, model, answer)]

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        del code  # Anthropic has no code for these errors; the type says it all
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}

    def context_length_message(self, got: int, limit: int) -> str:
        return f"prompt is too long: {got} tokens > {limit} maximum"

    def malformed_event(self, data: bytes) -> bytes:
        # Anthropic's SDK skips SSE events without an event name, so name it.
        return sse(data, "message_start")
