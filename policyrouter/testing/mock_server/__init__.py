"""A local HTTP server that speaks the OpenAI and Anthropic wire protocols.

``MockLLMServer`` is a real HTTP/1.1 server on ``127.0.0.1`` (stdlib only, one
daemon thread per connection, keep-alive). Point the *real* SDKs at it, so a test
exercises the same parsing, error mapping, streaming and connection pooling as
production::

    import anthropic
    import openai

    from policyrouter.testing import Fault, MockLLMServer

    with MockLLMServer() as server:
        server.set_reply("gpt-4o", text="hello", usage={"input": 12, "output": 1})
        server.script("gpt-4o", [429, Fault(status=529, retry_after_s=1.5), "ok"])

        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError:
            pass  # first scripted entry
        ...
        claude = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0)
        claude.messages.create(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}])

        assert server.status_counts[429] == 1
        assert server.requests_for("gpt-4o")[0].headers["authorization"] == "***"

With pytest, the ``mock_llm_server`` fixture (registered by the ``policyrouter``
plugin) yields a started server and stops it afterwards.

Endpoints
    ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
    ``GET /v1/models`` (one list shape both SDKs parse). Anything else is a 404 JSON error.

Replies
    Unless configured with :meth:`MockLLMServer.set_reply`, model ``m`` answers
    ``"mock answer from m to a N-word prompt"`` where ``N`` is the word count of the
    last user message. Input tokens are ``characters of all message contents (and
    the system prompt) // 4 + 1``; output tokens are the words of the reply text.
    ``usage["input"]`` is reported verbatim as OpenAI ``prompt_tokens`` and as
    Anthropic ``input_tokens``; ``cached`` as ``cached_tokens`` /
    ``cache_read_input_tokens``; ``cache_write`` as ``cache_creation_input_tokens``.
    Every response carries ``req_mock_<n>`` in ``x-request-id`` (OpenAI) or
    ``request-id`` (Anthropic); bodies use ids ``chatcmpl-mock-<n>`` / ``msg_mock_<n>``.

Faults
    :meth:`MockLLMServer.script` queues entries per model; each request for that model
    consumes one, and an exhausted script answers normally. An ``int`` is an HTTP error
    status with a protocol-correct body, ``"ok"`` a normal answer, a kind name such as
    ``"reset"`` is ``Fault(kind="reset")``, and :class:`Fault` gives full control.

Rate limits
    :meth:`MockLLMServer.enforce_limits` rejects with 429 any request over a requests
    per minute budget (a sliding 60 s window on the injected clock, counting admitted
    requests) or over a number of concurrent in-flight requests. Limits are checked
    before scripts, and a rejected request consumes no script entry.

Run it standalone with ``python -m policyrouter.testing.mock_server --port 8080``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal, get_args

__all__ = ["Fault", "FaultKind", "MockLLMServer", "Protocol", "RecordedRequest", "main"]

FaultKind = Literal["reset", "malformed", "stall", "context_length", "interrupt_stream", "refusal"]
"""Non-status faults; see :class:`Fault`."""

Protocol = Literal["openai", "anthropic", "models", "unknown"]
"""Which endpoint a recorded request hit (``unknown`` for a 404 path)."""

_FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_USAGE_KEYS: frozenset[str] = frozenset({"input", "output", "cached", "cache_write"})
_WINDOW_S = 60.0
_REDACTED_HEADERS: frozenset[str] = frozenset({"authorization", "x-api-key"})
_CONTEXT_TOKENS = (250_000, 200_000)
_CREATED = 0
_JOIN_TIMEOUT_S = 2.0
_PIECES = re.compile(r"\s*\S+|\s+$")
_MALFORMED_BODY = b'{"id": "mock-malformed", "choices": [{"message": '


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one request.

    Fields:
        status: HTTP status to answer with. ``None`` or 200 means a normal answer;
            400-599 means an error body in the protocol's shape.
        kind: a non-status fault, or ``None``:

            * ``"reset"``: close the socket (RST) without any response.
            * ``"malformed"``: a body that is not valid JSON (status defaults to 200).
            * ``"stall"``: wait ``seconds`` before answering; ``stop()`` cuts the wait short.
              With ``pause_after_chunks=N`` a streamed answer stalls after its first
              ``N`` SSE events instead (a stream that goes idle mid-answer).
            * ``"context_length"``: the provider's "prompt too long" 400.
            * ``"interrupt_stream"``: send ``after_chunks`` SSE events, then close the
              connection mid-body (a non-streaming request gets half its body).
            * ``"refusal"``: OpenAI ``finish_reason="content_filter"`` / Anthropic
              ``stop_reason="refusal"``.
        retry_after_s: value of the ``retry-after`` header (seconds).
        retry_after_ms: value of the ``retry-after-ms`` header (milliseconds).
        seconds: how long a ``"stall"`` waits.
        latency_s: extra delay before answering, whatever the outcome.
        after_chunks: SSE events sent before an ``"interrupt_stream"`` cut.
        message: error message overriding the default one.
        text: the reply text of this one answer (a normal answer, or one cut by
            ``interrupt_stream``), overriding :meth:`MockLLMServer.set_reply`'s text:
            script a sequence of answers, e.g. invalid JSON then valid JSON.
    """

    status: int | None = None
    kind: FaultKind | None = None
    retry_after_s: float | None = None
    retry_after_ms: int | None = None
    seconds: float = 60.0
    latency_s: float = 0.0
    after_chunks: int = 1
    message: str | None = None
    text: str | None = None
    pause_after_chunks: int | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(_FAULT_KINDS)}")
        if self.status is not None and self.status != 200 and not 400 <= self.status <= 599:
            raise ValueError(f"fault status must be 200 or 400-599, got {self.status}")
        if self.kind in ("reset", "interrupt_stream", "refusal") and self.status not in (None, 200):
            raise ValueError(f"fault kind {self.kind!r} cannot carry status {self.status}")
        if self.kind == "context_length" and self.status is not None and self.status < 400:
            raise ValueError("a context_length fault needs an error status")
        for name in ("retry_after_s", "retry_after_ms", "seconds", "latency_s", "after_chunks", "pause_after_chunks"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @property
    def planned_status(self) -> int:
        """The status this fault answers with; 0 means no HTTP response at all."""
        if self.kind == "reset":
            return 0
        if self.kind == "context_length":
            return self.status or 400
        return self.status or 200


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    ``headers`` has lower-case names, with ``authorization`` and ``x-api-key`` values
    replaced by ``"***"``. ``status`` is the status the server decided on when the
    request arrived (0 for a ``reset`` fault). ``received_at`` is a reading of the
    server's clock; ``connection_id`` identifies the TCP connection it arrived on.
    """

    protocol: Protocol
    path: str
    model: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    received_at: float
    connection_id: int


@dataclass(frozen=True)
class _ToolCall:
    name: str
    arguments: Mapping[str, Any]
    arguments_json: str


@dataclass(frozen=True)
class _Reply:
    text: str | None
    usage: Mapping[str, int]
    latency_s: float
    tool_calls: tuple[_ToolCall, ...]


@dataclass(frozen=True)
class _Limits:
    rpm: int | None
    concurrency: int | None


@dataclass(frozen=True)
class _Usage:
    input: int
    output: int
    cached: int
    cache_write: int


@dataclass(frozen=True)
class _Answer:
    text: str | None
    tool_calls: tuple[_ToolCall, ...]
    stop: Literal["end", "tool", "refusal"]
    usage: _Usage


class _Ticket:
    """An admitted request's in-flight slot; releasing it twice is harmless."""

    __slots__ = ("_done", "_model", "_owner")

    def __init__(self, owner: MockLLMServer, model: str) -> None:
        self._owner = owner
        self._model = model
        self._done = False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._owner._release(self._model)


@dataclass(frozen=True)
class _Plan:
    number: int
    fault: Fault | None
    reply: _Reply | None
    status: int
    ticket: _Ticket | None

    @property
    def request_id(self) -> str:
        return f"req_mock_{self.number}"

    def release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()


# --------------------------------------------------------------------------- request -> answer


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif "content" in block:
                    parts.append(_content_text(block["content"]))
        return " ".join(parts)
    return ""


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _estimate_input_tokens(body: Mapping[str, Any]) -> int:
    chars = len(_content_text(body.get("system")))
    chars += sum(len(_content_text(m.get("content"))) for m in _messages(body))
    return chars // 4 + 1


def _default_text(model: str, body: Mapping[str, Any]) -> str:
    words = 0
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            words = len(_content_text(message.get("content")).split())
            break
    return f"mock answer from {model} to a {words}-word prompt"


def _forced_tool(body: Mapping[str, Any]) -> str | None:
    """The tool an Anthropic request forces (``tool_choice: {type: tool, name}``)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    return None


def _answer(
    model: str, body: Mapping[str, Any], reply: _Reply | None, *, refusal: bool, text_override: str | None = None
) -> _Answer:
    usage = reply.usage if reply is not None else {}
    tool_calls = reply.tool_calls if reply is not None and not refusal else ()
    text: str | None
    if refusal:
        text = None
    elif text_override is not None:
        text = text_override
    elif reply is not None and reply.text is not None:
        text = reply.text
    elif tool_calls:
        text = None
    else:
        text = _default_text(model, body)
    forced = _forced_tool(body)
    if forced is not None and text is not None and not tool_calls:
        # forced tool use (structured output): a JSON object reply becomes that tool's input
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            tool_calls = (_ToolCall(name=forced, arguments=value, arguments_json=json.dumps(value)),)
            text = None
    output = len(text.split()) if text else 0
    output += sum(len(call.arguments_json) // 4 + 1 for call in tool_calls)
    stop: Literal["end", "tool", "refusal"] = "refusal" if refusal else ("tool" if tool_calls else "end")
    return _Answer(
        text=text,
        tool_calls=tool_calls,
        stop=stop,
        usage=_Usage(
            input=usage.get("input", _estimate_input_tokens(body)),
            output=usage.get("output", output),
            cached=usage.get("cached", 0),
            cache_write=usage.get("cache_write", 0),
        ),
    )


def _pieces(text: str) -> list[str]:
    """Split text into word-sized deltas that concatenate back to it."""
    return _PIECES.findall(text)


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- OpenAI wire format

_OPENAI_FINISH = {"end": "stop", "tool": "tool_calls", "refusal": "content_filter"}


def _openai_usage(usage: _Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
    }


def _openai_completion(plan: _Plan, model: str, answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_mock_{plan.number}_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for i, call in enumerate(answer.tool_calls)
        ]
    return {
        "id": f"chatcmpl-mock-{plan.number}",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _OPENAI_FINISH[answer.stop]}],
        "usage": _openai_usage(answer.usage),
    }


def _openai_chunks(plan: _Plan, model: str, answer: _Answer, *, include_usage: bool) -> list[bytes]:
    base: dict[str, Any] = {
        "id": f"chatcmpl-mock-{plan.number}",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    first_content = "" if answer.text is not None or not answer.tool_calls else None
    events = [chunk({"role": "assistant", "content": first_content})]
    events.extend(chunk({"content": piece}) for piece in _pieces(answer.text or ""))
    for i, call in enumerate(answer.tool_calls):
        start = {"index": i, "id": f"call_mock_{plan.number}_{i}", "type": "function"}
        events.append(chunk({"tool_calls": [{**start, "function": {"name": call.name, "arguments": ""}}]}))
        events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": call.arguments_json}}]}))
    events.append(chunk({}, _OPENAI_FINISH[answer.stop]))
    if include_usage:
        usage_chunk = {**base, "choices": [], "usage": _openai_usage(answer.usage)}
        events.append(b"data: " + _dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _openai_error(status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- Anthropic wire format

_ANTHROPIC_STOP = {"end": "end_turn", "tool": "tool_use", "refusal": "refusal"}
_ANTHROPIC_ERROR_TYPES = {
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


def _anthropic_usage(usage: _Usage, output: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input,
        "output_tokens": output,
        "cache_read_input_tokens": usage.cached,
        "cache_creation_input_tokens": usage.cache_write,
    }


def _anthropic_message(plan: _Plan, model: str, answer: _Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text is not None:
        content.append({"type": "text", "text": answer.text})
    content.extend(
        {
            "type": "tool_use",
            "id": f"toolu_mock_{plan.number}_{i}",
            "name": call.name,
            "input": call.arguments,
        }
        for i, call in enumerate(answer.tool_calls)
    )
    return {
        "id": f"msg_mock_{plan.number}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP[answer.stop],
        "stop_sequence": None,
        "usage": _anthropic_usage(answer.usage, answer.usage.output),
    }


def _sse(event: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(payload) + b"\n\n"


def _anthropic_events(plan: _Plan, model: str, answer: _Answer) -> list[bytes]:
    start = {
        **_anthropic_message(plan, model, answer),
        "content": [],
        "stop_reason": None,
        "usage": _anthropic_usage(answer.usage, 1),
    }
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    index = 0
    if answer.text is not None:
        block = {"type": "text", "text": ""}
        events.append(_sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
        for piece in _pieces(answer.text):
            delta = {"type": "text_delta", "text": piece}
            events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for i, call in enumerate(answer.tool_calls):
        tool_block = {
            "type": "tool_use",
            "id": f"toolu_mock_{plan.number}_{i}",
            "name": call.name,
            "input": {},
        }
        delta = {"type": "input_json_delta", "partial_json": call.arguments_json}
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": tool_block},
            )
        )
        events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _ANTHROPIC_STOP[answer.stop], "stop_sequence": None},
        "usage": _anthropic_usage(answer.usage, answer.usage.output),
    }
    events.append(_sse("message_delta", message_delta))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def _anthropic_error(status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
    del code  # Anthropic has no code for these errors; the type says it all
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


# --------------------------------------------------------------------------- errors, shared


def _default_message(status: int) -> str:
    if status == 429:
        return "Rate limit exceeded (mock)."
    if status == 529:
        return "Overloaded (mock)."
    try:
        return f"{HTTPStatus(status).phrase} (mock)."
    except ValueError:
        return f"Error {status} (mock)."


def _error_payload(protocol: Protocol, status: int, fault: Fault | None, request_id: str) -> dict[str, Any]:
    message = fault.message if fault is not None else None
    code: str | None = None
    if fault is not None and fault.kind == "context_length":
        got, limit = _CONTEXT_TOKENS
        code = "context_length_exceeded"
        if message is None and protocol == "anthropic":
            message = f"prompt is too long: {got} tokens > {limit} maximum"
        elif message is None:
            message = (
                f"This model's maximum context length is {limit} tokens. However, your messages "
                f"resulted in {got} tokens. Please reduce the length of the messages."
            )
    message = message or _default_message(status)
    build = _anthropic_error if protocol == "anthropic" else _openai_error
    return build(status, message, code, request_id)


def _reason(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _retry_headers(fault: Fault | None) -> list[tuple[str, str]]:
    if fault is None:
        return []
    headers: list[tuple[str, str]] = []
    if fault.retry_after_s is not None:
        headers.append(("retry-after", f"{fault.retry_after_s:g}"))
    if fault.retry_after_ms is not None:
        headers.append(("retry-after-ms", str(fault.retry_after_ms)))
    return headers


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # 1,000 concurrent clients must not see refused connections

    def __init__(self, address: tuple[str, int], mock: MockLLMServer) -> None:
        self.mock = mock
        self.to_reset: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self._wake_reader, self._wake_writer = socket.socketpair()

    def serve(self, stopping: threading.Event) -> None:
        """Accept connections until ``stopping`` is set and :meth:`wake` is called.

        Unlike ``serve_forever`` this does not poll, so stopping takes no poll interval.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not stopping.is_set():
                        self._accept()

    def _accept(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            self.process_request(request, client_address)  # starts the handler thread
        except (OSError, RuntimeError):
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def wake(self) -> None:
        """Interrupt :meth:`serve` so it notices that it should stop."""
        self._wake_writer.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup we do not need.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def shutdown_request(self, request: Any) -> None:
        if request in self.to_reset:
            # No FIN first: close with SO_LINGER 0 so the peer sees a reset.
            self.to_reset.discard(request)
            self.close_request(request)
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (timeouts, interrupted streams) is expected here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    connection_id: int

    # -- connection lifecycle

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.mock._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.mock._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- request handling

    def _dispatch(self) -> None:
        mock = self.server.mock
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        headers = {
            name.lower(): ("***" if name.lower() in _REDACTED_HEADERS else value)
            for name, value in self.headers.items()
        }
        protocol: Protocol
        if self.command == "POST" and path == "/v1/chat/completions":
            protocol = "openai"
        elif self.command == "POST" and path == "/v1/messages":
            protocol = "anthropic"
        elif self.command == "GET" and path in ("/v1/models", "/models"):
            mock._record("models", path, None, {}, headers, 200, self.connection_id)
            self._send_json(
                200,
                _dumps(mock._models_payload()),
                [("x-request-id", "req_mock_models"), ("request-id", "req_mock_models")],
            )
            return
        else:
            mock._record("unknown", path, None, {}, headers, 404, self.connection_id)
            message = f"Unknown endpoint {self.command} {path} (mock)."
            payload = {"type": "error", "error": {"type": "not_found_error", "message": message}}
            self._send_json(404, _dumps(payload), [])
            return

        body = self._parse(raw)
        model = body.get("model") if body is not None else None
        if body is None or not isinstance(model, str) or not model:
            problem = "body is not a JSON object" if body is None else "'model' is required"
            mock._record(protocol, path, None, body or {}, headers, 400, self.connection_id)
            fault = Fault(status=400, message=f"Invalid request: {problem} (mock).")
            request_id = "req_mock_invalid"
            id_header = "request-id" if protocol == "anthropic" else "x-request-id"
            error = _dumps(_error_payload(protocol, 400, fault, request_id))
            self._send_json(400, error, [(id_header, request_id)])
            return

        plan = mock._admit(protocol, path, model, body, headers, self.connection_id)
        try:
            self._respond(protocol, model, body, plan)
        finally:
            plan.release()

    def _respond(self, protocol: Protocol, model: str, body: dict[str, Any], plan: _Plan) -> None:
        mock = self.server.mock
        fault = plan.fault
        kind = fault.kind if fault is not None else None
        delay = (plan.reply.latency_s if plan.reply is not None else 0.0) + (
            fault.latency_s if fault is not None else 0.0
        )
        pause: tuple[int, float] | None = None
        if kind == "stall" and fault is not None:
            if fault.pause_after_chunks is not None and body.get("stream") is True:
                pause = (fault.pause_after_chunks, fault.seconds)
            else:
                delay += fault.seconds
        if delay > 0 and mock._stopping.wait(delay):
            self.close_connection = True
            return
        if kind == "reset":
            self._reset()
            return

        id_header = "request-id" if protocol == "anthropic" else "x-request-id"
        headers = [(id_header, plan.request_id), *_retry_headers(fault)]
        stream = body.get("stream") is True
        if plan.status >= 400:
            payload = _dumps(_error_payload(protocol, plan.status, fault, plan.request_id))
            plan.release()
            self._send_json(plan.status, payload, headers)
            return
        if kind == "malformed":
            plan.release()
            if stream:
                # Anthropic's SDK skips SSE events without an event name, so name it.
                event = b"event: message_start\n" if protocol == "anthropic" else b""
                self._send_stream(plan.status, headers, [event + b"data: " + _MALFORMED_BODY + b"\n\n"], None)
            else:
                self._send_json(plan.status, _MALFORMED_BODY, headers)
            return

        answer = _answer(
            model, body, plan.reply, refusal=kind == "refusal", text_override=fault.text if fault is not None else None
        )
        cut = fault.after_chunks if fault is not None and kind == "interrupt_stream" else None
        if stream:
            if protocol == "anthropic":
                events = _anthropic_events(plan, model, answer)
            else:
                options = body.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                events = _openai_chunks(plan, model, answer, include_usage=include_usage and mock.report_usage)
            plan.release()
            self._send_stream(200, headers, events, cut, pause)
            return
        if protocol == "anthropic":
            payload = _dumps(_anthropic_message(plan, model, answer))
        else:
            completion = _openai_completion(plan, model, answer)
            if not mock.report_usage:
                del completion["usage"]
            payload = _dumps(completion)
        plan.release()
        if cut is not None:
            self._send_truncated(headers, payload)
        else:
            self._send_json(200, payload, headers)

    # -- low-level I/O

    def _read_body(self) -> bytes:
        length = self.headers.get("content-length")
        if length is not None:
            return self.rfile.read(int(length))
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _head(self, status: int, headers: Iterable[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_json(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
        self.server.mock._count(status)
        head = self._head(
            status,
            [("content-type", "application/json"), ("content-length", str(len(payload))), *headers],
        )
        self.wfile.write(head + payload)

    def _send_truncated(self, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.server.mock._count(200)
        self.close_connection = True
        head = self._head(
            200,
            [("content-type", "application/json"), ("content-length", str(len(payload))), *headers],
        )
        self.wfile.write(head + payload[: len(payload) // 2])

    def _send_stream(
        self,
        status: int,
        headers: list[tuple[str, str]],
        events: list[bytes],
        cut_after: int | None,
        pause: tuple[int, float] | None = None,
    ) -> None:
        self.server.mock._count(status)
        head = self._head(
            status,
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
                *headers,
            ],
        )
        if cut_after is not None:
            events = events[:cut_after]
            self.close_connection = True
        out = head
        for i, event in enumerate(events):
            if pause is not None and i == pause[0]:
                self.wfile.flush()
                if self.server.mock._stopping.wait(pause[1]):
                    self.close_connection = True
                    return
            self.wfile.write(out + b"%x\r\n%s\r\n" % (len(event), event))
            out = b""
        if cut_after is None:
            self.wfile.write(out + b"0\r\n\r\n")
        elif out:
            self.wfile.write(out)

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.to_reset.add(self.connection)


# --------------------------------------------------------------------------- public server


class MockLLMServer:
    """A scripted OpenAI + Anthropic compatible HTTP server on a background thread.

    Args:
        host: interface to bind; keep the default ``127.0.0.1`` in tests.
        port: port to bind; 0 picks a free one (see :attr:`url`).
        clock: monotonic time source for the rate-limit window and ``received_at``.
        models: model ids that ``GET /v1/models`` lists besides configured ones.
        record_requests: keep the request log; benchmarks sending many requests can
            pass ``False`` (counters and ``connections_opened`` are still kept).
        report_usage: send token usage in OpenAI-protocol answers (``False`` behaves like
            gateways that omit ``usage`` and ignore ``stream_options.include_usage``).

    All state is guarded by one lock, so tests may configure and inspect the server
    while requests are in flight. A stopped server cannot be started again.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        models: Iterable[str] = (),
        record_requests: bool = True,
        report_usage: bool = True,
    ) -> None:
        self._host = host
        self._record_requests = record_requests
        self.report_usage = report_usage
        self._port = port
        self._clock = clock
        self._base_models = tuple(models)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        # configuration
        self._replies: dict[str, _Reply] = {}
        self._scripts: dict[str, deque[Fault | None]] = {}
        self._limits: dict[str, _Limits] = {}
        # observations
        self._log: list[RecordedRequest] = []
        self._status_counts: Counter[int] = Counter()
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._in_flight: Counter[str] = Counter()
        self._request_number = 0
        self._connections_opened = 0
        self._next_connection_id = 0
        self._open: dict[socket.socket, threading.Thread] = {}

    # -- lifecycle

    def start(self) -> MockLLMServer:
        """Bind the socket and serve from a daemon thread; returns ``self``."""
        with self._lock:
            if self._httpd is not None or self._stopped:
                raise RuntimeError("MockLLMServer can only be started once")
            self._httpd = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve,
            args=(self._stopping,),
            name=f"MockLLMServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and wake stalled handlers.

        Idempotent; returns once the accept loop and the handler threads are gone
        (waiting at most a couple of seconds for handlers).
        """
        with self._lock:
            httpd, self._httpd = self._httpd, None
            self._stopped = True
            self._stopping.set()
        if httpd is None:
            return
        httpd.wake()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
        httpd.server_close()
        with self._lock:
            open_connections = list(self._open.items())
        for sock, _ in open_connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for _, thread in open_connections:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> MockLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("MockLLMServer is not running; call start() or use it as a context manager")
        return httpd.server_port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` (``url + "/v1"``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the bare ``url``)."""
        return self.url

    # -- configuration

    def set_reply(
        self,
        model: str,
        text: str | None = None,
        usage: Mapping[str, int] | None = None,
        latency_s: float = 0.0,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Configure how ``model`` answers when no fault applies.

        Args:
            text: reply text; ``None`` keeps the default text (or no text when
                ``tool_calls`` are given).
            usage: any of ``input``, ``output``, ``cached``, ``cache_write`` token
                counts; missing ones keep their estimates (0 for the cache counts).
            latency_s: delay before every answer of this model.
            tool_calls: ``[{"name": ..., "arguments": {...}}]``, answered as OpenAI
                ``message.tool_calls`` / Anthropic ``tool_use`` blocks.
        """
        usage = dict(usage or {})
        unknown = set(usage) - _USAGE_KEYS
        if unknown:
            raise ValueError(f"unknown usage keys {sorted(unknown)}; expected some of {sorted(_USAGE_KEYS)}")
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        calls = tuple(_tool_call(spec) for spec in tool_calls or ())
        with self._lock:
            self._replies[model] = _Reply(text=text, usage=usage, latency_s=latency_s, tool_calls=calls)

    def script(self, model: str, entries: Iterable[int | str | Fault]) -> None:
        """Replace ``model``'s fault script; each request consumes the next entry.

        Entries: an ``int`` status (``429``), ``"ok"`` (a normal answer), a
        :data:`FaultKind` name (``"reset"``), or a :class:`Fault`.
        """
        queue = deque(_script_entry(entry) for entry in entries)
        with self._lock:
            self._scripts[model] = queue

    def enforce_limits(self, model: str, rpm: int | None = None, concurrency: int | None = None) -> None:
        """Answer 429 above ``rpm`` requests per sliding minute or ``concurrency`` in flight.

        Passing neither removes the limits of ``model``.
        """
        for name, value in (("rpm", rpm), ("concurrency", concurrency)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        with self._lock:
            if rpm is None and concurrency is None:
                self._limits.pop(model, None)
            else:
                self._limits[model] = _Limits(rpm=rpm, concurrency=concurrency)
            self._windows.pop(model, None)

    def reset(self) -> None:
        """Forget replies, scripts, limits, the request log and all counters.

        Request numbers restart at 1; connection ids keep increasing.
        """
        with self._lock:
            self._replies.clear()
            self._scripts.clear()
            self._limits.clear()
            self._log.clear()
            self._status_counts.clear()
            self._windows.clear()
            self._request_number = 0
            self._connections_opened = 0

    # -- observations

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The logged requests whose body named ``model``."""
        with self._lock:
            return [request for request in self._log if request.model == model]

    @property
    def status_counts(self) -> Counter[int]:
        """How many responses were sent per HTTP status (resets send none)."""
        with self._lock:
            return Counter(self._status_counts)

    @property
    def count_429(self) -> int:
        """How many 429 responses were sent, scripted or from :meth:`enforce_limits`."""
        with self._lock:
            return self._status_counts[429]

    @property
    def open_connections(self) -> int:
        """TCP connections currently open (the server closes its side when the client does)."""
        with self._lock:
            return len(self._open)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start (or the last :meth:`reset`)."""
        with self._lock:
            return self._connections_opened

    # -- called by the handler threads

    def _connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections_opened += 1
            self._next_connection_id += 1
            self._open[sock] = threading.current_thread()
            stopping = self._stopping.is_set()
            connection_id = self._next_connection_id
        if stopping:
            # Accepted while stop() ran; it may not have seen this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return connection_id

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def _record(
        self,
        protocol: Protocol,
        path: str,
        model: str | None,
        body: dict[str, Any],
        headers: dict[str, str],
        status: int,
        connection_id: int,
    ) -> None:
        if not self._record_requests:
            return
        request = RecordedRequest(protocol, path, model, body, headers, status, self._clock(), connection_id)
        with self._lock:
            self._log.append(request)

    def _count(self, status: int) -> None:
        with self._lock:
            self._status_counts[status] += 1

    def _admit(
        self,
        protocol: Protocol,
        path: str,
        model: str,
        body: dict[str, Any],
        headers: dict[str, str],
        connection_id: int,
    ) -> _Plan:
        now = self._clock()
        with self._lock:
            self._request_number += 1
            number = self._request_number
            fault = self._limit_fault(model, now)
            ticket: _Ticket | None = None
            if fault is None:
                queue = self._scripts.get(model)
                fault = queue.popleft() if queue else None
                self._in_flight[model] += 1
                ticket = _Ticket(self, model)
            status = fault.planned_status if fault is not None else 200
            if self._record_requests:
                request = RecordedRequest(protocol, path, model, body, headers, status, now, connection_id)
                self._log.append(request)
            reply = self._replies.get(model)
        return _Plan(number=number, fault=fault, reply=reply, status=status, ticket=ticket)

    def _limit_fault(self, model: str, now: float) -> Fault | None:
        """Return a 429 fault if ``model`` is over a limit, else admit it. Lock held."""
        limits = self._limits.get(model)
        if limits is None:
            return None
        if limits.concurrency is not None and self._in_flight[model] >= limits.concurrency:
            message = f"Too many concurrent requests for {model}: limit {limits.concurrency} (mock)."
            return Fault(status=429, message=message)
        if limits.rpm is not None:
            window = self._windows[model]
            while window and window[0] <= now - _WINDOW_S:
                window.popleft()
            if len(window) >= limits.rpm:
                wait = math.ceil((window[0] + _WINDOW_S - now) * 1000) / 1000
                message = f"Rate limit of {limits.rpm} requests per minute exceeded for {model} (mock)."
                return Fault(status=429, message=message, retry_after_s=max(wait, 0.001))
            window.append(now)
        return None

    def _release(self, model: str) -> None:
        with self._lock:
            self._in_flight[model] -= 1

    def _models_payload(self) -> dict[str, Any]:
        with self._lock:
            names = dict.fromkeys([*self._base_models, *self._replies, *self._scripts, *self._limits])
        data = [
            {
                "id": name,
                "object": "model",
                "created": _CREATED,
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


def _tool_call(spec: Mapping[str, Any]) -> _ToolCall:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a 'name', got {spec!r}")
    arguments = spec.get("arguments", {})
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    if not isinstance(arguments, Mapping):
        raise ValueError(f"tool call {name!r}: 'arguments' must be a mapping or a JSON object string")
    return _ToolCall(name=name, arguments=dict(arguments), arguments_json=json.dumps(dict(arguments)))


def _script_entry(entry: int | str | Fault) -> Fault | None:
    if isinstance(entry, Fault):
        return entry
    if isinstance(entry, bool):
        raise TypeError(f"invalid script entry {entry!r}")
    if isinstance(entry, int):
        return Fault(status=entry)
    if entry == "ok":
        return None
    if entry in _FAULT_KINDS:
        return Fault(kind=entry)  # type: ignore[arg-type]  # checked against FaultKind just above
    raise ValueError(f"invalid script entry {entry!r}; use an int status, 'ok', a fault kind or a Fault")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted: ``python -m policyrouter.testing.mock_server --port 8080``."""
    parser = argparse.ArgumentParser(
        prog="python -m policyrouter.testing.mock_server",
        description="Serve mock OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) endpoints.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = MockLLMServer(host=args.host, port=args.port)
    server.start()
    print(
        f"MockLLMServer on {server.url}: OpenAI base_url={server.openai_base_url}, "
        f"Anthropic base_url={server.anthropic_base_url}. Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
