"""What the two SDK-backed adapters share: exception translation, the streamed-call
loop, reachability checks and closing the pooled clients.

:class:`SdkAdapter` is a base class for :class:`~policyrouter.providers.openai_adapter.OpenAIProvider`
and :class:`~policyrouter.providers.anthropic_adapter.AnthropicProvider`; each supplies
the SDK endpoint it calls (``_endpoint``) and how its SDK spells an error's code and
message (``_status_details``). Everything else about a call is the same for both SDKs,
including which API key it uses: every call goes through :meth:`SdkAdapter._call` (or
``_acall``), which takes a key from the provider's :class:`~policyrouter.providers.keys.KeyRing`
and, when the provider refuses that key (401/403), sets it aside and makes the call again
with the next one, so the engine never learns about keys.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from policyrouter.errors import ProviderError
from policyrouter.providers.base import (
    ResponseTooLarge,
    StreamEvent,
    _entry,
    cause_text,
    connect_errors,
    limited,
    transport_errors,
)
from policyrouter.providers.classify import failure_error, request_id_from, status_error, stream_error_status
from policyrouter.providers.keys import KeyRing
from policyrouter.types import ProviderRequest, ProviderResponse, Usage

__all__ = ["SdkAdapter", "StreamAccumulator", "limited_client"]

T = TypeVar("T")


@contextmanager
def _answered() -> Iterator[None]:
    """A warming request's error is ignored when the server answered: the connection is open."""
    try:
        yield
    except ProviderError as exc:
        if exc.status_code is None or exc.kind == "auth":
            raise


def limited_client(sdk: Any, *, sync: bool) -> Any | None:
    """The SDK's default HTTP client over the transport that enforces each call's limits (see
    :mod:`policyrouter.providers.transport`); ``None`` for an SDK still on legacy ``httpx``."""
    if "httpx2" not in sys.modules:
        return None
    from policyrouter.providers import transport

    return transport.sync_client(sdk) if sync else transport.async_client(sdk)


class StreamAccumulator(Protocol):
    """Turns one SDK's stream chunks into :class:`StreamEvent` and builds the final response."""

    request_id: str | None

    def feed(self, chunk: Any) -> Iterator[StreamEvent]: ...

    def response(self) -> ProviderResponse: ...


class SdkAdapter:
    """Base of the SDK adapters. Subclasses set ``name``, ``_sdk`` (the imported SDK
    module, once loaded) and ``_keys`` (their keys, each building its own sync and async
    client) in ``__init__``."""

    __slots__ = ()

    name: str
    _sdk: Any
    _keys: KeyRing[Any, Any]

    # ------------------------------------------------------------------ hooks

    def _endpoint(self, client: Any) -> Any:
        """The SDK method one call goes to (``client.chat.completions.create``, ...)."""
        raise NotImplementedError

    def _status_details(self, exc: Any) -> tuple[str | None, str]:
        """``(error code, message)`` of the SDK's ``APIStatusError``."""
        raise NotImplementedError

    def _usage_of(self, raw: Mapping[str, Any]) -> Usage | None:
        """A body's ``usage`` object in this protocol's spelling; ``None`` without both counts."""
        raise NotImplementedError

    def _platform_type(self, exc: Any) -> str | None:
        """A cloud's own name for the error (``classify.PLATFORM_ERROR_KINDS``); ``None`` for the vendors' APIs."""
        return None

    def _reach(self, client: Any, timeout_s: float) -> Any:
        """A request that spends no tokens (``GET /v1/models``; awaitable for an async client)."""
        return client.models.list(timeout=timeout_s)

    def _error_usage(self, exc: Any) -> Usage | None:
        """The usage an error body reports (a 5xx after generation was billed), if it gives both counts."""
        unreadable: tuple[type[BaseException], ...] = (ValueError, TypeError, AttributeError, *transport_errors()[1])
        try:
            body = exc.response.json()
            raw = body.get("usage") if isinstance(body, dict) else None
            return self._usage_of(raw) if isinstance(raw, dict) else None
        except unreadable:
            return None  # an unreadable error body reports nothing

    # ------------------------------------------------------------------ shared

    @contextmanager
    def _translating(self) -> Iterator[None]:
        """Translate the SDK's exceptions into :class:`ProviderError` (``raise ... from``).

        Every upstream text becomes a message through ``classify.redact``, with this
        adapter's keys: every branch passes ``secrets``, whatever the path (call, stream, ping).
        """
        sdk = self._sdk
        secrets = self._keys.secrets()
        try:
            yield
        except ResponseTooLarge as exc:
            raise failure_error(self.name, "response_too_large", str(exc), status=200) from exc
        except sdk.APITimeoutError as exc:
            sent = not isinstance(exc.__cause__, connect_errors())  # a connect timeout sent nothing
            raise failure_error(self.name, "timeout", "request timed out", secrets=secrets, may_be_billed=sent) from exc
        except sdk.APIConnectionError as exc:
            raise self._connection_failure(exc, secrets) from exc
        except sdk.APIStatusError as exc:
            raise self._status_failure(exc, secrets) from exc
        except sdk.APIResponseValidationError as exc:
            raise failure_error(self.name, "malformed", exc.message, status=exc.status_code, secrets=secrets) from exc
        except sdk.APIError as exc:
            raise self._stream_event_failure(exc, secrets) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise failure_error(
                self.name, "malformed", f"undecodable response body ({type(exc).__name__})", status=200
            ) from exc
        except transport_errors()[0] as exc:
            raise failure_error(self.name, "timeout", "stream read timed out", secrets=secrets) from exc
        except transport_errors()[1] as exc:
            raise self._body_read_failure(exc, secrets) from exc

    def _connection_failure(self, exc: Any, secrets: tuple[str, ...]) -> ProviderError:
        """The SDK's ``APIConnectionError``: a too-large body the transport raised, or a lost connection."""
        if isinstance(exc.__cause__, ResponseTooLarge):  # the anthropic SDK wraps what the transport raises
            return failure_error(self.name, "response_too_large", str(exc.__cause__), status=200)
        sent = not isinstance(exc.__cause__, connect_errors())  # lost after sending: maybe billed
        return failure_error(self.name, "connection", cause_text(exc), secrets=secrets, may_be_billed=sent)

    def _status_failure(self, exc: Any, secrets: tuple[str, ...]) -> ProviderError:
        """The SDK's ``APIStatusError``, classified by its status (a 200 stream's error event: its body's)."""
        code, message = self._status_details(exc)
        status = exc.status_code
        if status < 400:  # an error event inside a 200 stream: its body carries the status
            status = stream_error_status(exc.body) or status
        return status_error(
            self.name,
            status,
            headers=exc.response.headers,
            code=code,
            message=message,
            request_id=exc.request_id,
            secrets=secrets,
            usage=self._error_usage(exc),
            platform_type=self._platform_type(exc),
        )

    def _stream_event_failure(self, exc: Any, secrets: tuple[str, ...]) -> ProviderError:
        """A bare ``APIError`` (an error event inside a stream), classified by the status it carries."""
        status = stream_error_status(exc.body)
        if status is None:
            return failure_error(
                self.name, "malformed", f"error event in stream: {exc.message}", status=200, secrets=secrets
            )
        code = _entry(exc.body, "code")
        return status_error(
            self.name,
            status,
            headers=None,
            code=code if isinstance(code, str) else None,
            message=f"error event in stream: {exc.message}",
            secrets=secrets,
            platform_type=self._platform_type(exc),
        )

    def _body_read_failure(self, exc: BaseException, secrets: tuple[str, ...]) -> ProviderError:
        """A transport error while reading a stream's body: the request was sent."""
        detail = f"{type(exc).__name__}: {exc}"
        sent = not isinstance(exc, connect_errors())
        return failure_error(self.name, "connection", detail, secrets=secrets, may_be_billed=sent)

    def _call(self, call: Callable[[Any], T]) -> T:
        """``call(client)`` on the sync client of one of the provider's keys, its SDK errors
        translated. A key the provider refuses (401/403) is set aside and the call is made
        again with the next key; the last key's refusal is raised."""
        while True:
            key = self._keys.pick()
            client = key.sync.get()
            try:
                with self._translating():
                    return call(client)
            except ProviderError as exc:
                if not self._keys.refused(key, exc):
                    raise

    async def _acall(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """:meth:`_call` on the running event loop's async clients."""
        while True:
            key = self._keys.pick()
            client = key.async_.get()
            try:
                with self._translating():
                    return await call(client)
            except ProviderError as exc:
                if not self._keys.refused(key, exc):
                    raise

    def _ready(self) -> None:
        """Read the keys and build the sync client of each key in use (each once)."""
        for key in self._keys.live():
            key.sync.get()

    def _ready_async(self) -> None:
        """:meth:`_ready` for the running event loop's async clients."""
        for key in self._keys.live():
            key.async_.get()

    def _events(
        self, request: ProviderRequest, params: dict[str, Any], acc: StreamAccumulator
    ) -> Generator[StreamEvent, None, None]:
        """One streamed call: its events, then one carrying the whole response. Closing
        the generator early closes the HTTP response."""
        with limited(request):  # the transport keeps these limits for the whole body
            sdk_stream = self._call(lambda client: self._endpoint(client)(**params))
        with self._translating():
            acc.request_id = request_id_from(sdk_stream.response.headers)
            try:
                for chunk in sdk_stream:
                    yield from acc.feed(chunk)
            finally:
                sdk_stream.close()
        yield StreamEvent(response=replace(acc.response(), headers=sdk_stream.response.headers))

    async def _aevents(
        self, request: ProviderRequest, params: dict[str, Any], acc: StreamAccumulator
    ) -> AsyncGenerator[StreamEvent, None]:
        with limited(request):
            sdk_stream = await self._acall(lambda client: self._endpoint(client)(**params))
        with self._translating():
            acc.request_id = request_id_from(sdk_stream.response.headers)
            try:
                async for chunk in sdk_stream:
                    for event in acc.feed(chunk):
                        yield event
            finally:
                await sdk_stream.close()
        yield StreamEvent(response=replace(acc.response(), headers=sdk_stream.response.headers))

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        """Build the sync client of each key in use; with ``connect``, open a pooled connection by
        ``GET /v1/models`` (bills nothing). Any HTTP answer but an ``auth`` refusal leaves a warm
        connection (a gateway without the endpoint answers 404); no answer is a ``ProviderError``."""
        if not connect:
            self._ready()
            return
        with _answered():
            self.ping(timeout_s)

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        """:meth:`warm` for the running event loop's async clients (their pools are that loop's)."""
        self._ready_async()
        if connect:
            with _answered():
                await self._acall(lambda client: self._reach(client, timeout_s))

    def ping(self, timeout_s: float = 5.0) -> None:
        """Reach the provider without spending tokens (``GET /v1/models``).

        Returns when it answered; raises :class:`ProviderError` (``auth``, ``connection``, ...) otherwise.
        A key refused here is set aside like on any call.
        """
        self._call(lambda client: self._reach(client, timeout_s))

    def close(self) -> None:
        """Close the sync clients' connections. A later call opens new clients."""
        for key in self._keys.read():
            client = key.sync.take()
            if client is not None:
                client.close()

    async def aclose(self) -> None:
        """Close the current event loop's async clients and the sync clients."""
        for key in self._keys.read():
            client = key.async_.take()
            if client is not None:
                await client.close()
        self.close()
