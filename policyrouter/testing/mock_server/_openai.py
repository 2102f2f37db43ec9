"""The OpenAI chat completions protocol: JSON completions, ``data:`` SSE chunks and error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policyrouter.testing.mock_server._answer import Answer
from policyrouter.testing.mock_server._types import Protocol
from policyrouter.testing.mock_server._wire import CREATED, Wire, dumps, pieces, sse

__all__ = ["OpenAIWire"]

_FINISH = {"end": "stop", "tool": "tool_calls", "refusal": "content_filter", "length": "length"}


def _usage(answer: Answer) -> Any:
    if answer.wire_usage is not None:
        return answer.wire_usage
    usage = answer.usage
    reported: dict[str, Any] = {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
    }
    if answer.reasons:  # reasoning tokens are part of completion_tokens
        reported["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    return reported


def _completion(number: int, model: str, answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_mock_{number}_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for i, call in enumerate(answer.tool_calls)
        ]
    return {
        "id": f"chatcmpl-mock-{number}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": []
        if answer.no_choices
        else [{"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[answer.stop]}],
        "usage": _usage(answer),
    }


def _chunks(number: int, model: str, answer: Answer, *, include_usage: bool) -> list[bytes]:
    base: dict[str, Any] = {
        "id": f"chatcmpl-mock-{number}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(dumps({**base, "choices": [choice]}))

    first_content = "" if answer.text is not None or not answer.tool_calls else None
    events = [chunk({"role": "assistant", "content": first_content})]
    events.extend(chunk({"content": piece}) for piece in pieces(answer.text or ""))
    for i, call in enumerate(answer.tool_calls):
        start = {"index": i, "id": f"call_mock_{number}_{i}", "type": "function"}
        events.append(chunk({"tool_calls": [{**start, "function": {"name": call.name, "arguments": ""}}]}))
        events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": call.arguments_json}}]}))
    events.append(chunk({}, _FINISH[answer.stop]))
    if include_usage:
        events.append(sse(dumps({**base, "choices": [], "usage": _usage(answer)})))
    events.append(sse(b"[DONE]"))
    return events


class OpenAIWire(Wire):
    """``POST /v1/chat/completions``; ``report_usage=False`` drops usage like some gateways do."""

    protocol: Protocol = "openai"
    id_header = "x-request-id"

    def completion(self, number: int, model: str, answer: Answer, *, report_usage: bool) -> bytes:
        completion = _completion(number, model, answer)
        if not report_usage:
            del completion["usage"]
        return dumps(completion)

    def events(
        self, number: int, model: str, answer: Answer, body: Mapping[str, Any], *, report_usage: bool
    ) -> list[bytes]:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return _chunks(number, model, answer, include_usage=include_usage and report_usage)

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        del request_id  # OpenAI carries it only in the x-request-id header
        if status == 429:
            kind, default_code = "requests", "rate_limit_exceeded"
        elif status == 401:
            kind, default_code = "invalid_request_error", "invalid_api_key"
        elif status == 404:
            kind, default_code = "invalid_request_error", "model_not_found"
        elif status >= 500:
            kind, default_code = "server_error", None
        else:
            kind, default_code = "invalid_request_error", None
        return {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}

    def context_length_message(self, got: int, limit: int) -> str:
        return (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {got} tokens. Please reduce the length of the messages."
        )

    def malformed_event(self, data: bytes) -> bytes:
        return sse(data)
