"""``MockLLMServer``: start and stop the server, configure its models, read what it saw."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from policyrouter.testing.mock_server._answer import USAGE_KEYS, Reply, tool_call
from policyrouter.testing.mock_server._http import MockHTTPServer
from policyrouter.testing.mock_server._script import MockScript, load_script
from policyrouter.testing.mock_server._state import Limits, MockState
from policyrouter.testing.mock_server._types import Fault, RecordedRequest, key_id, script_entry

__all__ = ["MockLLMServer"]

_JOIN_TIMEOUT_S = 2.0


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
        self._port = port
        self._state = MockState(clock=clock, models=models, record_requests=record_requests, report_usage=report_usage)
        self._lock = threading.Lock()
        self._httpd: MockHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def report_usage(self) -> bool:
        """Whether OpenAI-protocol answers carry token usage; may change while serving."""
        return self._state.report_usage

    @report_usage.setter
    def report_usage(self, value: bool) -> None:
        self._state.report_usage = value

    # -- lifecycle

    def start(self) -> MockLLMServer:
        """Bind the socket and serve from a daemon thread; returns ``self``."""
        with self._lock:
            if self._httpd is not None or self._stopped:
                raise RuntimeError("MockLLMServer can only be started once")
            self._httpd = MockHTTPServer((self._host, self._port), self._state)
        self._thread = threading.Thread(target=self._httpd.serve, name=f"MockLLMServer:{self.port}", daemon=True)
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
            self._state.stopping.set()
        if httpd is None:
            return
        httpd.wake()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
        httpd.server_close()
        open_connections = self._state.connections()
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
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``openai.AzureOpenAI`` (the bare ``url``; the SDK adds
        ``/openai/deployments/<deployment>``). Scripts and replies are keyed by deployment."""
        return self.url

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the bare ``url``)."""
        return self.url

    @property
    def bedrock_base_url(self) -> str:
        """``base_url`` for ``anthropic.AnthropicBedrock`` (the bare ``url``: ``/model/{id}/invoke``)."""
        return self.url

    @property
    def vertex_base_url(self) -> str:
        """``base_url`` for ``anthropic.AnthropicVertex`` (``url + "/v1"``: ``/v1/projects/...:rawPredict``)."""
        return self.url + "/v1"

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
            usage: any of ``input``, ``output``, ``cached``, ``cache_write``, ``reasoning`` token
                counts; missing ones keep their estimates (0 for the cache counts; reasoning
                tokens are counted in ``output`` and reported only by a reasoning answer).
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
        self._state.set_reply(model, Reply(text=text, usage=usage, latency_s=latency_s, tool_calls=calls))

    def set_reasoning(self, model: str, reasons: bool = True) -> None:
        """Treat OpenAI model ``model`` as a reasoning model (or, with ``False``, as not one),
        whatever its id says: see :mod:`policyrouter.testing.mock_server._reasoning` for what
        a reasoning model refuses and reports. By default ids starting ``o1``, ``o3``, ``o4`` or
        ``gpt-5`` reason. Anthropic models think whenever a request enables ``thinking``."""
        self._state.set_reasoning(model, reasons)

    def script(self, model: str, entries: Iterable[int | str | Fault]) -> None:
        """Replace ``model``'s fault script; each request consumes the next entry.

        Entries: an ``int`` status (``429``), ``"ok"`` (a normal answer), a
        :data:`FaultKind` name (``"reset"``), or a :class:`Fault`.
        """
        self._state.set_script(model, [script_entry(entry) for entry in entries])

    def enforce_limits(
        self,
        model: str,
        rpm: int | None = None,
        concurrency: int | None = None,
        *,
        tpm: int | None = None,
        window_s: float = 60.0,
        report_headers: bool = False,
    ) -> None:
        """Answer 429 above ``rpm`` requests or ``tpm`` tokens (estimated prompt + ``max_tokens``)
        per sliding window of ``window_s`` seconds (a minute; shorter to scale time in tests),
        or above ``concurrency`` in flight.

        With ``report_headers``, every response to ``model`` (its 429s too) says what is left of
        ``rpm``/``tpm`` in the provider's own headers: ``x-ratelimit-*`` on the OpenAI protocol,
        ``anthropic-ratelimit-*`` on Anthropic's, resets when the window is empty again.

        Passing no limit removes the limits of ``model``.
        """
        for name, value in (("rpm", rpm), ("concurrency", concurrency), ("tpm", tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if rpm is None and concurrency is None and tpm is None:
            self._state.set_limits(model, None)
            return
        self._state.set_limits(model, Limits(rpm, concurrency, tpm, window_s, report_headers))

    def load_script(self, path: str | os.PathLike[str]) -> MockScript:
        """Configure models from a YAML mock script (replies, fault scripts and limits per
        model; the format ``policyrouter mock --script`` reads). Checked whole first: a bad
        file raises :class:`MockScriptError` listing every problem with ``file:line:col``
        and changes nothing."""
        script = load_script(path)
        for model, spec in script.models.items():
            if spec.reply is not None:
                self.set_reply(model, **spec.reply)
            if spec.script is not None:
                self._state.set_script(model, spec.script)
            if spec.limits is not None:
                lim = spec.limits
                self.enforce_limits(model, lim.get("rpm"), lim.get("concurrency"), tpm=lim.get("tpm"))
        return script

    def revoke_key(self, key: str) -> None:
        """Answer every later request carrying ``key`` (as ``Authorization: Bearer``,
        ``x-api-key`` or ``api-key``) with 401, before limits and scripts (it consumes no
        script entry). The server keeps only a digest of the key."""
        self._state.revoke_key(key_id(key))

    def reset(self) -> None:
        """Forget replies, scripts, limits, revoked keys, the request log and all counters.

        Request numbers restart at 1; connection ids keep increasing.
        """
        self._state.reset()

    # -- observations

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        return self._state.requests()

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The logged requests whose body named ``model``."""
        return self._state.requests_for(model)

    def requests_with_key(self, key: str) -> list[RecordedRequest]:
        """The logged requests that carried the API key ``key``."""
        return self._state.requests_with_key(key_id(key))

    @property
    def status_counts(self) -> Counter[int]:
        """How many responses were sent per HTTP status (resets send none)."""
        return self._state.status_counts()

    @property
    def count_429(self) -> int:
        """How many 429 responses were sent, scripted or from :meth:`enforce_limits`."""
        return self._state.status_count(429)

    @property
    def open_connections(self) -> int:
        """TCP connections currently open (the server closes its side when the client does)."""
        return len(self._state.connections())

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start (or the last :meth:`reset`)."""
        return self._state.connections_opened
