"""The HTTP/1.1 server: routing, keep-alive, delays and faults, JSON and chunked SSE framing."""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from policyrouter.testing.mock_server import _bedrock, _hostile, _vertex
from policyrouter.testing.mock_server._answer import Answer, ToolCall, answer_for, tool_call, with_cache_use
from policyrouter.testing.mock_server._anthropic import AnthropicWire
from policyrouter.testing.mock_server._azure import AzureWire, azure_deployment, azure_refusal
from policyrouter.testing.mock_server._openai import OpenAIWire
from policyrouter.testing.mock_server._prompt_cache import TooManyBreakpoints, check_breakpoints
from policyrouter.testing.mock_server._reasoning import Problem, anthropic_problem, openai_problem, thought
from policyrouter.testing.mock_server._state import MockState, Plan
from policyrouter.testing.mock_server._types import HOSTILE_KINDS, Fault, family, key_id
from policyrouter.testing.mock_server._wire import Wire, dumps, error_payload, models_list

__all__ = ["MockHTTPServer"]

_REDACTED_HEADERS: frozenset[str] = frozenset({"authorization", "x-api-key", "api-key", "x-amz-security-token"})
_MALFORMED_BODY = b'{"id": "mock-malformed", "choices": [{"message": '
_WIRES: dict[str, Wire] = {"/v1/chat/completions": OpenAIWire(), "/v1/messages": AnthropicWire()}
_AZURE = AzureWire()
_CLOUDS = ((_bedrock.route, _bedrock.BedrockWire()), (_vertex.route, _vertex.VertexWire()))
"""Wires whose path names the model and whether it streams: ``route(path) -> (model, stream) | None``."""


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


class MockHTTPServer(ThreadingHTTPServer):
    """Serves a :class:`MockState` from one daemon thread per connection."""

    daemon_threads = True
    request_queue_size = 2048  # 1,000 concurrent clients must not see refused connections

    def __init__(self, address: tuple[str, int], state: MockState) -> None:
        self.state = state
        self.to_reset: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._wake_reader, self._wake_writer = socket.socketpair()  # before binding: a failed bind closes them
        super().__init__(address, _Handler)

    def serve(self) -> None:
        """Accept connections until the state is stopping and :meth:`wake` is called.

        Unlike ``serve_forever`` this does not poll, so stopping takes no poll interval.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            stopping = self.state.stopping
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


def _tool_calls(fault: Fault | None) -> tuple[ToolCall, ...] | None:
    if fault is None or fault.tool_calls is None:
        return None
    return tuple(tool_call(spec) for spec in fault.tool_calls)


def _cloud_route(path: str) -> tuple[Wire, str, bool] | None:
    """``(wire, model, stream)`` of a path that names its model (Bedrock, Vertex); ``None`` otherwise."""
    for route, wire in _CLOUDS:
        found = route(path)
        if found is not None:
            return wire, found[0], found[1]
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: MockHTTPServer
    connection_id: int

    # -- connection lifecycle

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.state.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.state.connection_closed(self.connection)

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
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        headers = self._logged_headers()
        key = self._key_id()
        deployment = azure_deployment(path) if self.command == "POST" else None
        if deployment is not None and self._refused_by_azure(path, headers, key):
            return
        wire, routed = self._wire_for(path, deployment)
        if wire is None:
            self._answer_without_wire(path, headers, key)
            return
        body = self._parse(raw)
        model = deployment or (routed[1] if routed is not None else body.get("model") if body is not None else None)
        if body is None or not isinstance(model, str) or not model:
            self._send_invalid(wire, path, body, headers, key)
            return
        if self._send_refusal(wire, path, model, body, headers, key):
            return
        plan = self.server.state.admit(wire.protocol, path, model, body, headers, self.connection_id, key)
        if routed is not None:  # the path says whether it streams (Bedrock drops `stream` from the body)
            body = {**body, "stream": routed[2]}
        try:
            self._respond(wire, model, body, plan)
        finally:
            plan.release()

    def _logged_headers(self) -> dict[str, str]:
        """The request's headers as recorded: lower-case names, credentials masked."""
        return {
            name.lower(): ("***" if name.lower() in _REDACTED_HEADERS else value)
            for name, value in self.headers.items()
        }

    def _wire_for(self, path: str, deployment: str | None) -> tuple[Wire | None, tuple[Wire, str, bool] | None]:
        """The wire a POST speaks (Azure, OpenAI/Anthropic by path, or a cloud route) and the cloud route if any."""
        if self.command != "POST":
            return None, None
        if deployment is not None:
            return _AZURE, None
        wire = _WIRES.get(path)
        if wire is not None:
            return wire, None
        routed = _cloud_route(path)
        return (routed[0], routed) if routed is not None else (None, None)

    def _answer_without_wire(self, path: str, headers: dict[str, str], key: str | None) -> None:
        """A request no wire serves: the models list (401 for a revoked key), else a 404."""
        state = self.server.state
        if self.command == "GET" and path in ("/v1/models", "/models", "/openai/models"):
            if state.revoked(key):
                state.record("models", path, None, {}, headers, 401, self.connection_id, key)
                payload = {"type": "error", "error": {"type": "authentication_error", "message": "Revoked key (mock)."}}
                self._send_json(401, dumps(payload), [])
                return
            state.record("models", path, None, {}, headers, 200, self.connection_id, key)
            self._send_json(
                200,
                dumps(models_list(state.model_names())),
                [("x-request-id", "req_mock_models"), ("request-id", "req_mock_models")],
            )
            return
        state.record("unknown", path, None, {}, headers, 404, self.connection_id, key)
        message = f"Unknown endpoint {self.command} {path} (mock)."
        payload = {"type": "error", "error": {"type": "not_found_error", "message": message}}
        self._send_json(404, dumps(payload), [])

    def _send_invalid(
        self, wire: Wire, path: str, body: dict[str, Any] | None, headers: dict[str, str], key: str | None
    ) -> None:
        """A 400 for a body that is not a JSON object or names no model."""
        problem = "body is not a JSON object" if body is None else "'model' is required"
        self.server.state.record(wire.protocol, path, None, body or {}, headers, 400, self.connection_id, key)
        fault = Fault(status=400, message=f"Invalid request: {problem} (mock).")
        request_id = "req_mock_invalid"
        error = dumps(error_payload(wire, 400, fault, request_id))
        self._send_json(400, error, [(wire.id_header, request_id)])

    def _send_refusal(
        self, wire: Wire, path: str, model: str, body: dict[str, Any], headers: dict[str, str], key: str | None
    ) -> bool:
        """Answer 400 to what the real API refuses before anything else; ``True`` if it did."""
        refused = self._refused(wire.protocol, model, body)
        if refused is None:
            return False
        self.server.state.record(wire.protocol, path, model, body, headers, 400, self.connection_id, key)
        refusal = wire.error(400, refused.message, refused.code, "req_mock_refused")
        if family(wire.protocol) == "openai":
            refusal["error"]["param"] = refused.param
        self._send_json(400, dumps(refusal), [(wire.id_header, "req_mock_refused")])
        return True

    def _refused_by_azure(self, path: str, headers: dict[str, str], key: str | None) -> bool:
        """Answer what Azure answers a request without ``api-version`` or a credential."""
        raw = {name.lower(): value for name, value in self.headers.items()}  # ``headers`` hides their values
        refusal = azure_refusal(self.path.partition("?")[2], raw)
        if refusal is None:
            return False
        status, message = refusal
        self.server.state.record("azure", path, None, {}, headers, status, self.connection_id, key)
        self._send_json(status, dumps(_AZURE.error(status, message, None, "")), [])
        return True

    def _refused(self, protocol: str, model: str, body: dict[str, Any]) -> Problem | None:
        if family(protocol) == "openai":  # Azure serves OpenAI's models and refuses alike
            return openai_problem(body, self.server.state.reasons(model))
        return anthropic_problem(body) if family(protocol) == "anthropic" else None

    def _key_id(self) -> str | None:
        """:func:`key_id` of the request's API key: ``Authorization: Bearer``, ``x-api-key`` or ``api-key``."""
        auth = self.headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
        key = key or self.headers.get("x-api-key") or self.headers.get("api-key")
        return key_id(key) if key else None

    def _respond(self, wire: Wire, model: str, body: dict[str, Any], plan: Plan) -> None:
        stopped, pause = self._wait_before(body, plan)
        if stopped:
            return
        if plan.fault is not None and plan.fault.kind == "reset":
            self._reset()
            return
        headers = [(wire.id_header, plan.request_id), *_retry_headers(plan.fault), *plan.limit_headers]
        if family(wire.protocol) == "anthropic" and self._too_many_breakpoints(wire, body, plan, headers):
            return
        if not self._misbehave(wire, model, body, plan, headers):
            self._answer(wire, model, body, plan, headers, pause)

    def _too_many_breakpoints(
        self, wire: Wire, body: dict[str, Any], plan: Plan, headers: list[tuple[str, str]]
    ) -> bool:
        """Refuse, as the API does, a request with more than four ``cache_control`` marks."""
        try:
            check_breakpoints(body)
        except TooManyBreakpoints as exc:
            plan.release()
            error = error_payload(wire, 400, Fault(status=400, message=str(exc)), plan.request_id)
            self._send_json(400, dumps(error), headers)
            return True
        return False

    def _cached(self, wire: Wire, model: str, body: dict[str, Any], plan: Plan, answer: Answer) -> Answer:
        """The answer with the prompt cache's reads and writes (see :mod:`._prompt_cache`)."""
        caches = self.server.state.prompt_caches
        if family(wire.protocol) == "anthropic":
            return with_cache_use(answer, plan.reply, caches.anthropic(model, body), anthropic=True)
        return with_cache_use(answer, plan.reply, caches.openai(model, body), anthropic=False)

    def _wait_before(self, body: dict[str, Any], plan: Plan) -> tuple[bool, tuple[int, float] | None]:
        """Wait what the reply and the fault ask before answering: whether the server stopped
        meanwhile, and ``(after_chunks, seconds)`` of a stall to make in the middle of the stream."""
        fault = plan.fault
        delay = (plan.reply.latency_s if plan.reply is not None else 0.0) + (fault.latency_s if fault else 0.0)
        pause: tuple[int, float] | None = None
        if fault is not None and fault.kind == "stall":
            if fault.pause_after_chunks is not None and body.get("stream") is True:
                pause = (fault.pause_after_chunks, fault.seconds)
            else:
                delay += fault.seconds
        if delay > 0 and self.server.state.stopping.wait(delay):
            self.close_connection = True
            return True, None
        return False, pause

    def _misbehave(
        self, wire: Wire, model: str, body: dict[str, Any], plan: Plan, headers: list[tuple[str, str]]
    ) -> bool:
        """An error status or a fault that replaces the answer; ``False`` when there is none."""
        fault = plan.fault
        kind = fault.kind if fault is not None else None
        stream = body.get("stream") is True
        if kind == "replay" and fault is not None and fault.raw_body is not None:
            plan.release()
            self.server.state.count(plan.status)
            framing = [("content-type", fault.content_type), ("content-length", str(len(fault.raw_body)))]
            self.wfile.write(self._head(plan.status, [*framing, *headers]) + fault.raw_body)
        elif plan.status >= 400:
            error = error_payload(wire, plan.status, fault, plan.request_id)
            if fault is not None and fault.usage is not None:  # an upstream that bills its error
                error["usage"] = fault.usage
            plan.release()
            self._send_json(plan.status, dumps(error), [*headers, *wire.error_headers(plan.status, fault)])
        elif kind in HOSTILE_KINDS and fault is not None:
            plan.release()
            self._hostile(wire, model, body, plan, fault, headers)
        elif kind == "stream_error" and fault is not None:
            error = error_payload(wire, 500, fault, plan.request_id)
            plan.release()
            if stream:
                answer = answer_for(model, body, plan.reply, refusal=False)
                events = wire.events(plan.number, model, answer, body, report_usage=self.server.state.report_usage)
                events = [*events[: fault.after_chunks], wire.error_event(500, error)]
                self._send_stream(200, headers, events, None, content_type=wire.stream_content_type)
            else:
                self._send_json(500, dumps(error), [*headers, *wire.error_headers(500, fault)])
        elif kind == "malformed":
            plan.release()
            if stream:
                events = [wire.malformed_event(_MALFORMED_BODY)]
                self._send_stream(plan.status, headers, events, None, content_type=wire.stream_content_type)
            else:
                self._send_json(plan.status, _MALFORMED_BODY, headers)
        else:
            return False
        return True

    def _answer(
        self,
        wire: Wire,
        model: str,
        body: dict[str, Any],
        plan: Plan,
        headers: list[tuple[str, str]],
        pause: tuple[int, float] | None,
    ) -> None:
        """The answer, whole or streamed; a fault may shape it (refusal, text, usage, a cut)."""
        fault = plan.fault
        kind = fault.kind if fault is not None else None
        reasons = family(wire.protocol) == "openai" and self.server.state.reasons(model)
        spent = thought(wire.protocol, model, body, reasons, plan.reply.usage if plan.reply is not None else {})
        answer = answer_for(
            model,
            body,
            plan.reply,
            refusal=kind == "refusal",
            text_override=fault.text if fault is not None else None,
            tool_calls_override=_tool_calls(fault),
            wire_usage=fault.usage if fault is not None else None,
            no_choices=kind == "no_choices",
            max_tokens=kind == "max_tokens",
            reasoning=spent.tokens,
            thinking=spent.text,
            reasons=reasons,
        )
        answer = self._cached(wire, model, body, plan, answer)
        cut = fault.after_chunks if fault is not None and kind == "interrupt_stream" else None
        report_usage = self.server.state.report_usage
        if body.get("stream") is True:
            events = wire.events(plan.number, model, answer, body, report_usage=report_usage)
            plan.release()
            self._send_stream(200, headers, events, cut, pause, content_type=wire.stream_content_type)
            return
        payload = wire.completion(plan.number, model, answer, report_usage=report_usage)
        plan.release()
        self._send_json(200, payload, headers, cut=cut is not None)

    def _hostile(
        self, wire: Wire, model: str, body: dict[str, Any], plan: Plan, fault: Fault, headers: list[tuple[str, str]]
    ) -> None:
        """An answer that keeps bytes coming (see :mod:`._hostile`); the connection closes after it."""
        self.close_connection = True
        self.server.state.count(200)
        write, pace, kind = self.wfile.write, fault.pace_s, fault.kind
        give_up = time.monotonic() + fault.seconds

        def wait(seconds: float) -> bool:  # True: stop writing (the server stops, or gives up)
            return self.server.state.stopping.wait(seconds) or time.monotonic() >= give_up

        stream = body.get("stream") is True
        if kind == "trickle_headers":
            write(b"HTTP/1.1 200 OK\r\n")
            while not wait(pace):
                write(b"x-pad: a\r\n")
            return
        if kind == "huge_body":
            size, pieces = _hostile.huge_body(fault, stream=stream)
            write(self._hostile_head(headers, stream, size))
            for piece in pieces:
                write(_hostile.chunk(piece) if stream else piece)
            write(b"0\r\n\r\n" if stream else b"")
            return
        tick = None if kind == "trickle_body" else "tick"  # an endless stream repeats its "tick" delta
        answer = answer_for(model, body, plan.reply, refusal=False, text_override=tick)
        if kind == "trickle_body":
            events = wire.events(plan.number, model, answer, body, report_usage=self.server.state.report_usage)
            data = b"".join(events) if stream else wire.completion(plan.number, model, answer, report_usage=True)
            write(self._hostile_head(headers, stream, len(data)))
            _hostile.trickle(write, wait, data, pace, chunked=stream)
        elif kind == "endless_stream" and stream:
            write(self._hostile_head(headers, stream, None))
            events = wire.events(plan.number, model, answer, body, report_usage=self.server.state.report_usage)
            _hostile.repeat_delta(write, wait, events, pace)
        else:  # keepalive_stream, or an endless non-streamed body: comments or JSON whitespace
            write(self._hostile_head(headers, True, None, json=not stream))
            _hostile.keepalive(write, wait, b": keep-alive\n\n" if stream else b" ", pace)

    def _hostile_head(
        self, headers: list[tuple[str, str]], stream: bool, length: int | None, *, json: bool = False
    ) -> bytes:
        content_type = "text/event-stream; charset=utf-8" if stream and not json else "application/json"
        framing = ("content-length", str(length)) if not stream else ("transfer-encoding", "chunked")
        return self._head(200, [("content-type", content_type), framing, *headers])

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

    def _send_json(self, status: int, payload: bytes, headers: list[tuple[str, str]], *, cut: bool = False) -> None:
        """Send a JSON body; ``cut`` sends only its first half, then closes the connection."""
        self.server.state.count(status)
        if cut:
            self.close_connection = True
        head = self._head(
            status,
            [("content-type", "application/json"), ("content-length", str(len(payload))), *headers],
        )
        self.wfile.write(head + (payload[: len(payload) // 2] if cut else payload))

    def _send_stream(
        self,
        status: int,
        headers: list[tuple[str, str]],
        events: list[bytes],
        cut_after: int | None,
        pause: tuple[int, float] | None = None,
        *,
        content_type: str,
    ) -> None:
        self.server.state.count(status)
        head = self._head(
            status,
            [
                ("content-type", content_type),
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
                if self.server.state.stopping.wait(pause[1]):
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
