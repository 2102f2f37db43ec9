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
from typing import Any

from policyrouter.testing.mock_server._answer import USAGE_KEYS, Reply, answer_for, tool_call
from policyrouter.testing.mock_server._anthropic import AnthropicWire
from policyrouter.testing.mock_server._openai import OpenAIWire
from policyrouter.testing.mock_server._types import Fault, FaultKind, Protocol, RecordedRequest, script_entry
from policyrouter.testing.mock_server._wire import Wire, dumps, error_payload, models_list

__all__ = ["Fault", "FaultKind", "MockLLMServer", "Protocol", "RecordedRequest", "main"]

_WINDOW_S = 60.0
_REDACTED_HEADERS: frozenset[str] = frozenset({"authorization", "x-api-key"})
_JOIN_TIMEOUT_S = 2.0
_MALFORMED_BODY = b'{"id": "mock-malformed", "choices": [{"message": '
_WIRES: dict[str, Wire] = {"/v1/chat/completions": OpenAIWire(), "/v1/messages": AnthropicWire()}


@dataclass(frozen=True)
class _Limits:
    rpm: int | None
    concurrency: int | None


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
    reply: Reply | None
    status: int
    ticket: _Ticket | None

    @property
    def request_id(self) -> str:
        return f"req_mock_{self.number}"

    def release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()


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
        wire = _WIRES.get(path) if self.command == "POST" else None
        if wire is None and self.command == "GET" and path in ("/v1/models", "/models"):
            mock._record("models", path, None, {}, headers, 200, self.connection_id)
            self._send_json(
                200,
                dumps(mock._models_payload()),
                [("x-request-id", "req_mock_models"), ("request-id", "req_mock_models")],
            )
            return
        if wire is None:
            mock._record("unknown", path, None, {}, headers, 404, self.connection_id)
            message = f"Unknown endpoint {self.command} {path} (mock)."
            payload = {"type": "error", "error": {"type": "not_found_error", "message": message}}
            self._send_json(404, dumps(payload), [])
            return

        body = self._parse(raw)
        model = body.get("model") if body is not None else None
        if body is None or not isinstance(model, str) or not model:
            problem = "body is not a JSON object" if body is None else "'model' is required"
            mock._record(wire.protocol, path, None, body or {}, headers, 400, self.connection_id)
            fault = Fault(status=400, message=f"Invalid request: {problem} (mock).")
            request_id = "req_mock_invalid"
            error = dumps(error_payload(wire, 400, fault, request_id))
            self._send_json(400, error, [(wire.id_header, request_id)])
            return

        plan = mock._admit(wire.protocol, path, model, body, headers, self.connection_id)
        try:
            self._respond(wire, model, body, plan)
        finally:
            plan.release()

    def _respond(self, wire: Wire, model: str, body: dict[str, Any], plan: _Plan) -> None:
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

        headers = [(wire.id_header, plan.request_id), *_retry_headers(fault)]
        stream = body.get("stream") is True
        if plan.status >= 400:
            payload = dumps(error_payload(wire, plan.status, fault, plan.request_id))
            plan.release()
            self._send_json(plan.status, payload, headers)
            return
        if kind == "malformed":
            plan.release()
            if stream:
                self._send_stream(plan.status, headers, [wire.malformed_event(_MALFORMED_BODY)], None)
            else:
                self._send_json(plan.status, _MALFORMED_BODY, headers)
            return

        answer = answer_for(
            model, body, plan.reply, refusal=kind == "refusal", text_override=fault.text if fault is not None else None
        )
        cut = fault.after_chunks if fault is not None and kind == "interrupt_stream" else None
        if stream:
            events = wire.events(plan.number, model, answer, body, report_usage=mock.report_usage)
            plan.release()
            self._send_stream(200, headers, events, cut, pause)
            return
        payload = wire.completion(plan.number, model, answer, report_usage=mock.report_usage)
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
        self._replies: dict[str, Reply] = {}
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
        unknown = set(usage) - USAGE_KEYS
        if unknown:
            raise ValueError(f"unknown usage keys {sorted(unknown)}; expected some of {sorted(USAGE_KEYS)}")
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        calls = tuple(tool_call(spec) for spec in tool_calls or ())
        with self._lock:
            self._replies[model] = Reply(text=text, usage=usage, latency_s=latency_s, tool_calls=calls)

    def script(self, model: str, entries: Iterable[int | str | Fault]) -> None:
        """Replace ``model``'s fault script; each request consumes the next entry.

        Entries: an ``int`` status (``429``), ``"ok"`` (a normal answer), a
        :data:`FaultKind` name (``"reset"``), or a :class:`Fault`.
        """
        queue = deque(script_entry(entry) for entry in entries)
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
        return models_list(names)


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
