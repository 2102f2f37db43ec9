"""What a mock server remembers, under one lock: replies, scripts, limits, the request log, counters."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from policyrouter.testing.mock_server._answer import Reply, request_tokens
from policyrouter.testing.mock_server._limits import limit_headers
from policyrouter.testing.mock_server._prompt_cache import PromptCaches
from policyrouter.testing.mock_server._reasoning import openai_reasons
from policyrouter.testing.mock_server._types import Fault, Protocol, RecordedRequest

__all__ = ["Limits", "MockState", "Plan"]

_WINDOW_S = 60.0
_REVOKED = Fault(status=401, message="Incorrect API key provided: this key was revoked (mock).")


@dataclass(frozen=True)
class Limits:
    rpm: int | None
    concurrency: int | None
    tpm: int | None = None  # prompt (estimated) + max output tokens per window
    window_s: float = _WINDOW_S  # the sliding window of rpm and tpm ("per minute", scaled in tests)
    report_headers: bool = False  # each response reports what is left, as the provider spells it


class _Ticket:
    """An admitted request's in-flight slot; releasing it twice is harmless."""

    __slots__ = ("_done", "_model", "_owner")

    def __init__(self, owner: MockState, model: str) -> None:
        self._owner = owner
        self._model = model
        self._done = False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._owner._release(self._model)


@dataclass(frozen=True)
class Plan:
    """How the server answers one admitted request."""

    number: int
    fault: Fault | None
    reply: Reply | None
    status: int
    ticket: _Ticket | None
    limit_headers: tuple[tuple[str, str], ...] = ()  # rate-limit headers (``report_headers``)

    @property
    def request_id(self) -> str:
        return f"req_mock_{self.number}"

    def release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()


class MockState:
    """The configuration and observations of one server, shared by its handler threads.

    ``stopping`` is set once the server stops; handlers waiting on it give up.
    ``report_usage`` may change while requests are in flight.
    """

    def __init__(
        self, *, clock: Callable[[], float], models: Iterable[str], record_requests: bool, report_usage: bool
    ) -> None:
        self.report_usage = report_usage
        self.stopping = threading.Event()
        self._clock = clock
        self._base_models = tuple(models)
        self._record_requests = record_requests
        self._lock = threading.Lock()
        # configuration
        self._replies: dict[str, Reply] = {}
        self._scripts: dict[str, deque[Fault | None]] = {}
        self._limits: dict[str, Limits] = {}
        self._reasoning: dict[str, bool] = {}  # OpenAI models declared (non-)reasoning, over the id rule
        self._revoked: set[str] = set()  # key ids answered with 401
        # observations
        self._log: list[RecordedRequest] = []
        self._status_counts: Counter[int] = Counter()
        self._windows: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)  # (time, tokens)
        self._window_tokens: Counter[str] = Counter()  # the tokens in each window
        self._in_flight: Counter[str] = Counter()
        self._request_number = 0
        self._connections_opened = 0
        self._next_connection_id = 0
        self._open: dict[socket.socket, threading.Thread] = {}
        self.prompt_caches = PromptCaches(clock)  # the providers' prompt caches, on the same clock

    # -- configuration

    def set_reply(self, model: str, reply: Reply) -> None:
        with self._lock:
            self._replies[model] = reply

    def set_script(self, model: str, script: Iterable[Fault | None]) -> None:
        queue = deque(script)
        with self._lock:
            self._scripts[model] = queue

    def set_limits(self, model: str, limits: Limits | None) -> None:
        """Replace ``model``'s limits (``None`` removes them) and forget its rate window."""
        with self._lock:
            if limits is None:
                self._limits.pop(model, None)
            else:
                self._limits[model] = limits
            self._windows.pop(model, None)
            self._window_tokens.pop(model, None)

    def set_reasoning(self, model: str, reasons: bool) -> None:
        with self._lock:
            self._reasoning[model] = reasons

    def reasons(self, model: str) -> bool:
        """Whether OpenAI model ``model`` is treated as a reasoning model."""
        with self._lock:
            return openai_reasons(model, self._reasoning)

    def revoke_key(self, key_id: str) -> None:
        with self._lock:
            self._revoked.add(key_id)

    def revoked(self, key_id: str | None) -> bool:
        with self._lock:
            return key_id in self._revoked

    def reset(self) -> None:
        with self._lock:
            self._reasoning.clear()
            self._revoked.clear()
            self._replies.clear()
            self._scripts.clear()
            self._limits.clear()
            self._log.clear()
            self._status_counts.clear()
            self._windows.clear()
            self._window_tokens.clear()
            self._request_number = 0
            self._connections_opened = 0
        self.prompt_caches.clear()

    def model_names(self) -> list[str]:
        """The listed models, then every configured one, each once."""
        with self._lock:
            return list(dict.fromkeys([*self._base_models, *self._replies, *self._scripts, *self._limits]))

    # -- observations

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self._log if request.model == model]

    def requests_with_key(self, key_id: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self._log if request.key_id == key_id]

    def status_count(self, status: int) -> int:
        with self._lock:
            return self._status_counts[status]

    def status_counts(self) -> Counter[int]:
        with self._lock:
            return Counter(self._status_counts)

    def connections(self) -> list[tuple[socket.socket, threading.Thread]]:
        """The open connections and the threads handling them."""
        with self._lock:
            return list(self._open.items())

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._connections_opened

    # -- called by the handler threads

    def connection_opened(self, sock: socket.socket) -> int:
        """Track a new connection; returns its id."""
        with self._lock:
            self._connections_opened += 1
            self._next_connection_id += 1
            self._open[sock] = threading.current_thread()
            stopping = self.stopping.is_set()
            connection_id = self._next_connection_id
        if stopping:
            # Accepted while stop() ran; it may not have seen this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return connection_id

    def connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def record(
        self,
        protocol: Protocol,
        path: str,
        model: str | None,
        body: dict[str, Any],
        headers: dict[str, str],
        status: int,
        connection_id: int,
        key_id: str | None = None,
    ) -> None:
        """Log a request that is answered without admission (models list, 404, invalid body)."""
        if not self._record_requests:
            return
        request = RecordedRequest(protocol, path, model, body, headers, status, self._clock(), connection_id, key_id)
        with self._lock:
            self._log.append(request)

    def count(self, status: int) -> None:
        """Count one response sent with ``status``."""
        with self._lock:
            self._status_counts[status] += 1

    def admit(
        self,
        protocol: Protocol,
        path: str,
        model: str,
        body: dict[str, Any],
        headers: dict[str, str],
        connection_id: int,
        key_id: str | None = None,
    ) -> Plan:
        """Number and log a request for ``model``, and decide its fault: a revoked key's 401,
        a limit's 429, else its script's next entry."""
        now = self._clock()
        with self._lock:
            self._request_number += 1
            number = self._request_number
            fault: Fault | None = _REVOKED  # a revoked key is refused before any limit counts it
            limit_headers: tuple[tuple[str, str], ...] = ()
            if key_id not in self._revoked:
                fault, limit_headers = self._limit_fault(protocol, model, body, now)
            ticket: _Ticket | None = None
            if fault is None:
                queue = self._scripts.get(model)
                fault = queue.popleft() if queue else None
                self._in_flight[model] += 1
                ticket = _Ticket(self, model)
            status = fault.planned_status if fault is not None else 200
            if self._record_requests:
                request = RecordedRequest(protocol, path, model, body, headers, status, now, connection_id, key_id)
                self._log.append(request)
            reply = self._replies.get(model)
        return Plan(number, fault, reply, status, ticket, limit_headers)

    def _limit_fault(
        self, protocol: Protocol, model: str, body: dict[str, Any], now: float
    ) -> tuple[Fault | None, tuple[tuple[str, str], ...]]:
        """A 429 fault if ``model`` is over a limit, else admit it; and the rate-limit headers
        to report (``report_headers``). Lock held."""
        limits = self._limits.get(model)
        if limits is None:
            return None, ()
        if limits.concurrency is not None and self._in_flight[model] >= limits.concurrency:
            message = f"Too many concurrent requests for {model}: limit {limits.concurrency} (mock)."
            return Fault(status=429, message=message), ()
        if limits.rpm is None and limits.tpm is None:
            return None, ()
        window, span = self._windows[model], limits.window_s
        while window and window[0][0] <= now - span:
            self._window_tokens[model] -= window.popleft()[1]
        tokens = request_tokens(body) if limits.tpm is not None else 0
        used = self._window_tokens[model]
        fault = None
        if limits.rpm is not None and len(window) >= limits.rpm:
            wait = window[0][0] + span - now
            fault = Fault(
                status=429, message=f"Rate limit of {limits.rpm} requests per window exceeded for {model} (mock)."
            )
        elif limits.tpm is not None and used + tokens > limits.tpm:
            freed, wait = 0, span
            for t, n in window:
                freed += n
                if used + tokens - freed <= limits.tpm:
                    wait = t + span - now
                    break
            fault = Fault(
                status=429, message=f"Rate limit of {limits.tpm} tokens per window exceeded for {model} (mock)."
            )
        else:
            window.append((now, tokens))
            self._window_tokens[model] += tokens
            used += tokens
        if fault is not None:
            fault = replace(fault, retry_after_s=max(math.ceil(wait * 1000) / 1000, 0.001))
        if not limits.report_headers:
            return fault, ()
        full_in = window[-1][0] + span - now if window else 0.0  # when the window is empty again
        left = (
            None if limits.rpm is None else (limits.rpm, limits.rpm - len(window)),
            None if limits.tpm is None else (limits.tpm, max(0, limits.tpm - used)),
        )
        return fault, limit_headers(protocol, left, full_in)

    def _release(self, model: str) -> None:
        with self._lock:
            self._in_flight[model] -= 1
