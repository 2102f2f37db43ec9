"""The HTTP transports under the SDK clients: each call held to an absolute deadline and a size cap.

The SDKs spend a timeout per read, so an upstream that keeps a byte coming now and then
(trickled headers or body, endless deltas, keep-alive comments) would hold an attempt,
its budget reservation and its concurrency slot for as long as it likes. An adapter runs
each call inside :func:`~policyrouter.providers.base.limited`; the transport takes those
:class:`~policyrouter.providers.base.CallLimits` when the request starts and holds the
whole exchange, body included, to them:

* sync: a network backend caps every connect, read and write of the connection at the time
  left, so even header lines trickled one at a time stop at the deadline (a blocking read
  cannot be interrupted, so it is never allowed to wait past it);
* async: sending the request and every body read run under ``asyncio.wait_for`` with the
  time left (a wrapper around httpx2's own transport);
* both: the body counts its bytes as they arrive and stops past ``max_bytes``.

Past the deadline a read fails with ``httpx2.ReadTimeout`` (the SDK's timeout error); past
the size, with :class:`~policyrouter.providers.base.ResponseTooLarge`. Either way the
connection is closed, not returned to the pool. A call outside ``limited`` (``ping``) keeps
the SDK's per-read timeouts only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpcore2
import httpx2

from policyrouter.providers.base import CALL_LIMITS, CallLimits, ResponseTooLarge

__all__ = ["POOL_LIMITS", "AsyncDeadlineTransport", "DeadlineTransport", "async_client", "sync_client"]

T = TypeVar("T")

POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
"""The SDKs' own pool size (their ``DEFAULT_CONNECTION_LIMITS``)."""

_CORE_ERRORS = (
    httpcore2.TimeoutException,
    httpcore2.NetworkError,
    httpcore2.ProtocolError,
    httpcore2.ProxyError,
    httpcore2.UnsupportedProtocol,
)
# httpcore2's errors and the httpx2 class the SDKs catch for each, the most specific first
_AS_HTTPX: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
)
_GRACE_S = 0.05  # the whole-call bound waits this much more, so a connect or pool timeout says so first


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` capped at the time left before the current call's deadline."""
    limits = CALL_LIMITS.get()
    if limits is None:
        return timeout
    left = limits.deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


def _counted(limits: CallLimits | None, read: int, part: bytes) -> int:
    """Bytes read so far with ``part``; past ``max_bytes`` it is :class:`ResponseTooLarge`."""
    read += len(part)
    if limits is not None and limits.max_bytes is not None and read > limits.max_bytes:
        raise ResponseTooLarge(limits.max_bytes)
    return read


@contextmanager
def _as_httpx() -> Iterator[None]:
    """httpcore2's errors as the httpx2 class of the same name (what the SDKs catch)."""
    try:
        yield
    except _CORE_ERRORS as exc:
        mapped = next((theirs for ours, theirs in _AS_HTTPX if isinstance(exc, ours)), httpx2.TransportError)
        raise mapped(str(exc)) from exc


# ---------------------------------------------------------------------------- sync


class _Stream(httpcore2.NetworkStream):
    """A connection whose every read and write waits at most until the current call's deadline."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> _Stream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore2.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    """httpcore2's socket backend, its connections wrapped in :class:`_Stream`."""

    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> _Stream:
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(path, _left(timeout, httpcore2.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Body(httpx2.SyncByteStream):
    """A response body read under the limits its request started with."""

    def __init__(self, inner: Iterable[bytes], limits: CallLimits | None) -> None:
        self._inner = inner
        self._limits = limits

    def __iter__(self) -> Iterator[bytes]:
        parts, read = iter(self._inner), 0
        while True:
            token = CALL_LIMITS.set(self._limits)  # a stream's body is read after its call returned
            try:
                with _as_httpx():
                    part = next(parts, None)
            finally:
                CALL_LIMITS.reset(token)
            if part is None:
                return
            read = _counted(self._limits, read, part)
            yield part

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx2.BaseTransport):
    """One HTTP/1.1 connection pool (httpcore2, TLS from ``httpx2.create_ssl_context``) whose
    connections never wait past the current call's deadline."""

    def __init__(self, limits: httpx2.Limits = POOL_LIMITS) -> None:
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx():
            response = self._pool.handle_request(core)
        body = _Body(response.stream, CALL_LIMITS.get())  # type: ignore[arg-type]  # sync: an Iterable[bytes]
        return httpx2.Response(
            status_code=response.status, headers=response.headers, stream=body, extensions=response.extensions
        )

    def close(self) -> None:
        self._pool.close()


# ---------------------------------------------------------------------------- async


async def _within(limits: CallLimits, step: Awaitable[T], grace: float = 0.0) -> T:
    """``step``, given the time left before the deadline (plus ``grace``); past it,
    ``httpx2.ReadTimeout``: the request was sent, bytes kept coming too slowly.
    (``asyncio.timeout`` where there is one: ``wait_for`` runs each read as a task of its own.)"""
    left = max(0.0, limits.deadline + grace - time.monotonic())
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(left):
                return await step
        return await asyncio.wait_for(step, left)
    except (asyncio.TimeoutError, TimeoutError):
        raise httpx2.ReadTimeout("the attempt's deadline passed") from None


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limits: CallLimits) -> None:
        self._inner = inner
        self._limits = limits

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts, read = self._inner.__aiter__(), 0
        while True:
            try:
                part = await _within(self._limits, parts.__anext__())
            except StopAsyncIteration:
                return
            read = _counted(self._limits, read, part)
            yield part

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncDeadlineTransport(httpx2.AsyncBaseTransport):
    """Wraps an async transport: each request and every read of its body within the call's limits."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self._inner = inner if inner is not None else httpx2.AsyncHTTPTransport(limits=POOL_LIMITS)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        limits = CALL_LIMITS.get()
        if limits is None:
            return await self._inner.handle_async_request(request)
        # each pool wait, connect, write and read at most until the deadline: the pool then says
        # which ran out (a pool or connect timeout sent nothing, so bills nothing); the bound around
        # the whole call, a little later, catches headers that trickle in
        left = max(0.0, limits.deadline - time.monotonic())
        asked = request.extensions.get("timeout", {})
        capped = {
            k: left if asked.get(k) is None else min(asked[k], left) for k in ("connect", "read", "write", "pool")
        }
        request.extensions = {**request.extensions, "timeout": capped}
        response = await _within(limits, self._inner.handle_async_request(request), _GRACE_S)
        response.stream = _AsyncBody(response.stream, limits)  # type: ignore[arg-type]  # async: an AsyncByteStream
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# ---------------------------------------------------------------------------- clients


def sync_client(sdk: Any) -> Any | None:
    """The SDK's default sync HTTP client over :class:`DeadlineTransport`; ``None`` for an
    SDK that is not built on httpx2 (it keeps its own client and per-read timeouts only)."""
    if not issubclass(sdk.DefaultHttpxClient, httpx2.Client):
        return None
    return sdk.DefaultHttpxClient(transport=DeadlineTransport())


def async_client(sdk: Any) -> Any | None:
    """The SDK's default async HTTP client over :class:`AsyncDeadlineTransport` (or ``None``, as above)."""
    if not issubclass(sdk.DefaultAsyncHttpxClient, httpx2.AsyncClient):
        return None
    return sdk.DefaultAsyncHttpxClient(transport=AsyncDeadlineTransport())
