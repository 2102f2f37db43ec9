"""The provider seam: one protocol every adapter implements, and the small shared parts.

A provider turns one normalized :class:`~policyrouter.types.ProviderRequest` into one
:class:`~policyrouter.types.ProviderResponse`, or raises one
:class:`~policyrouter.errors.ProviderError` whose ``kind`` is one of
:data:`~policyrouter.providers.classify.PROVIDER_ERROR_KINDS`. It makes exactly one
upstream call per ``complete``: SDK retries are off, the router's policy is the only
retry loop.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

from policyrouter.errors import ConfigurationError
from policyrouter.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:  # asyncio costs ~50 ms to import; only async calls need it
    import asyncio

__all__ = [
    "CALL_LIMITS",
    "CallLimits",
    "LoopLocal",
    "Provider",
    "ProviderKind",
    "ResponseTooLarge",
    "Shared",
    "StreamEvent",
    "aiohttp_client",
    "cause_text",
    "estimated_usage",
    "limited",
    "merge_extra",
    "missing_methods",
    "read_secret",
    "stream_timeout",
    "token_count",
    "transport_errors",
]

ProviderKind = Literal[
    "openai", "anthropic", "openai_compatible", "mock", "azure_openai", "anthropic_bedrock", "anthropic_vertex"
]

T = TypeVar("T")


class CallLimits(NamedTuple):
    """What one upstream call may take: until ``deadline`` (a ``time.monotonic()`` reading),
    and at most ``max_bytes`` of response body (``None``: no cap)."""

    deadline: float
    max_bytes: int | None


CALL_LIMITS: ContextVar[CallLimits | None] = ContextVar("policyrouter_call_limits", default=None)
"""The limits of the call being made; the transports under the SDK clients enforce them."""


class ResponseTooLarge(Exception):
    """A response body grew past its call's ``max_bytes`` (raised by the transport as it reads)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"response body over max_response_bytes ({max_bytes} bytes)")
        self.max_bytes = max_bytes


@contextmanager
def limited(request: ProviderRequest) -> Iterator[None]:
    """Make one call within ``request``'s limits: all of ``timeout_s`` from now (the engine has
    already bounded it by the request's deadline), and ``max_response_bytes``."""
    timeout = request.timeout_s
    deadline = time.monotonic() + timeout if timeout is not None else math.inf
    token = CALL_LIMITS.set(CallLimits(deadline, request.max_response_bytes))
    try:
        yield
    finally:
        CALL_LIMITS.reset(token)


class StreamEvent(NamedTuple):
    """One event of a streamed call, normalized.

    ``text`` is a text delta; ``tool_call`` a tool-call delta ``{"index", "id", "name",
    "arguments"}`` (``id`` and ``name`` on a call's first delta only, ``arguments`` a
    fragment of its JSON string). An event with neither is a heartbeat (a role chunk, a
    ping, a block start): the connection is alive but nothing was produced. The last
    event of a stream that ended well carries ``response``: the whole text, the tool
    calls, the finish reason and the provider's final usage, as ``complete`` returns them.
    ``thinking`` is a delta of the model's thinking (never answer text); the router drops it
    unless the task streams thinking. A named tuple: immutable and cheap to build, once per streamed event.
    """

    text: str | None = None
    tool_call: dict[str, Any] | None = None
    response: ProviderResponse | None = None
    thinking: str | None = None


@runtime_checkable
class Provider(Protocol):
    """One upstream endpoint. ``complete`` makes exactly one call; failures raise
    :class:`~policyrouter.errors.ProviderError` with a classified ``kind``.

    ``stream`` / ``astream`` make one streamed call and return a generator of
    :class:`StreamEvent`. Opening the call and every later read may raise
    ``ProviderError``; closing the generator early closes the HTTP response (the
    connection is not reused). ``read_timeout_s`` bounds the wait for the first byte
    and every gap between two reads (``None``: ``request.timeout_s``).
    """

    name: str
    kind: str

    def complete(self, request: ProviderRequest) -> ProviderResponse: ...

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse: ...

    def stream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> Generator[StreamEvent, None, None]: ...

    def astream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]: ...

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        """Build the sync client (import the SDK, read the key): the engine calls this with
        ``connect=False`` before each attempt's timer starts. With ``connect``, also open a pooled
        connection with a request that bills nothing; raises ``ProviderError`` when that fails."""
        ...

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        """:meth:`warm` for the running event loop's async client."""
        ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def missing_methods(provider: object) -> list[str]:
    """The methods of :class:`Provider` that ``provider`` lacks (the router refuses such a provider
    when it is built, rather than fail in the middle of a request)."""
    wanted = [n for n, v in vars(Provider).items() if not n.startswith("_") and callable(v)]
    return sorted(n for n in wanted if not callable(getattr(provider, n, None)))


class Shared(Generic[T]):
    """A value built on first use, once, thread-safely (double-checked locking).

    Adapters keep their SDK client here so every call reuses one connection pool.
    """

    __slots__ = ("_factory", "_lock", "_value")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = self._factory()
        return value

    def peek(self) -> T | None:
        """The value if it was built, else ``None``; never builds."""
        return self._value

    def take(self) -> T | None:
        """Remove and return the value (to close it); the next ``get`` builds anew."""
        with self._lock:
            value, self._value = self._value, None
        return value


class LoopLocal(Generic[T]):
    """Like :class:`Shared`, but one value per running event loop.

    An async HTTP client's connection pool belongs to the loop that opened it; reusing
    it from another loop (a second ``asyncio.run``) fails. Calls within one loop share
    one value; a call from a new loop builds a new one and the old one is dropped.
    """

    __slots__ = ("_factory", "_lock", "_slot")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._slot: tuple[asyncio.AbstractEventLoop, T] | None = None

    def get(self) -> T:
        import asyncio

        loop = asyncio.get_running_loop()
        slot = self._slot
        if slot is None or slot[0] is not loop:
            with self._lock:
                slot = self._slot
                if slot is None or slot[0] is not loop:
                    slot = self._slot = (loop, self._factory())
        return slot[1]

    def take(self) -> T | None:
        """Remove and return the value of the running loop, if any."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            slot = self._slot
            if slot is None:
                return None
            self._slot = None
        return slot[1] if slot[0] is loop else None


def read_secret(environ: Mapping[str, str], var: str, *, provider: str, what: str = "API key") -> str:
    """The value of ``environ[var]``; a missing or empty variable is a
    :class:`ConfigurationError` that names the variable (never any value)."""
    value = environ.get(var)
    if not value:
        raise ConfigurationError(f"provider {provider!r}: environment variable {var} (the {what}) is not set or empty")
    return value


def aiohttp_client(sdk: object, *, provider: str, package: str) -> object:
    """The SDK's aiohttp-backed async HTTP client (``DefaultAioHttpClient``).

    Both SDKs ship it (a vendored ``httpx_aiohttp`` over ``httpx2``); it needs ``aiohttp``
    installed. Missing, it is a :class:`ConfigurationError` naming the extra to install.
    """
    import importlib.util

    hint = (
        f"provider {provider!r}: async_transport 'aiohttp' needs aiohttp; "
        "install the extra: pip install 'policyrouter[aiohttp]'"
    )
    factory = getattr(sdk, "DefaultAioHttpClient", None)
    if factory is None:
        raise ConfigurationError(f"{hint} (this {package} version has no DefaultAioHttpClient)")
    if importlib.util.find_spec("aiohttp") is None:
        raise ConfigurationError(hint)
    try:
        client: object = factory()
    except RuntimeError as exc:  # the SDK's placeholder class when its aiohttp shim failed to import
        raise ConfigurationError(hint) from exc
    return client


def merge_extra(params: dict[str, Any], extra: Mapping[str, Any], accepted: frozenset[str]) -> None:
    """Merge ``extra`` into ``params``: keys ``create`` accepts as arguments, the rest
    into ``extra_body`` (sent verbatim in the JSON body)."""
    body: dict[str, Any] | None = None
    for key, value in extra.items():
        if key in accepted and key != "extra_body":
            params[key] = value
        else:
            if body is None:
                body = dict(params.get("extra_body") or {})
            if key == "extra_body":
                body.update(value)
            else:
                body[key] = value
    if body is not None:
        params["extra_body"] = body


def cause_text(exc: BaseException) -> str:
    """What went wrong under an SDK connection error: its `__cause__`, by class and text."""
    cause = exc.__cause__
    if cause is None:
        return str(exc)
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def stream_timeout(sdk: Any, total_s: float, read_timeout_s: float | None) -> Any:
    """The per-call ``timeout`` of a streamed call: ``total_s`` to connect, write and
    wait for a pooled connection, ``read_timeout_s`` (else ``total_s``) per read."""
    if read_timeout_s is None:
        return total_s
    return sdk.Timeout(total_s, read=read_timeout_s)


def connect_errors() -> tuple[type[BaseException], ...]:
    """The HTTP stack's errors of a request that never reached the server (no connection made)."""
    found: tuple[type[BaseException], ...] = ()
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None:
            found = (*found, module.ConnectError, module.ConnectTimeout, module.PoolTimeout)
    return found


def transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """``(timeouts, other transport errors)`` of the HTTP stack under the SDKs, which a
    stream's body reads may raise unwrapped: ``httpx2``'s (the SDKs' own), and legacy
    ``httpx``'s when it is loaded (an injected client, an older SDK)."""
    timeouts: tuple[type[BaseException], ...] = ()
    others: tuple[type[BaseException], ...] = ()
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None:
            timeouts = (*timeouts, module.TimeoutException)
            others = (*others, module.TransportError, module.StreamError)
    return timeouts, others


log = logging.getLogger("policyrouter")


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a dict body, or ``obj.name`` of an SDK model; ``None`` when absent."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _entry(body: object, name: str) -> Any:
    """``body[name]`` of a decoded JSON object; ``None`` for any other body (text, a list, none)."""
    return body.get(name) if isinstance(body, Mapping) else None


def token_count(value: Any) -> int | None:
    """A reported token count as the SDKs read one (an int, or a string or whole float holding
    one); ``None`` when it is absent or null; anything else is a ``TypeError`` (a malformed body).
    Its range is the engine's to check, against the model's window."""
    if type(value) is int or value is None:
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"token count {value!r}")


def estimated_usage(
    provider: str, request: ProviderRequest, text: str, tool_calls: Sequence[Mapping[str, Any]]
) -> Usage:
    """The usage of an answer whose server did not report both counts (none, ``{}``, nulls, only
    ``total_tokens``): estimated from the prompt and the answer, so it is never billed as free.
    Logged every time: a hostile or broken upstream must be visible."""
    from policyrouter.tokens import count_messages, count_text

    log.warning(
        "policyrouter: provider %r reported no token usage (or not both counts); cost is estimated from token counts",
        provider,
    )
    output = text + "".join(str(call.get("name", "")) + str(call.get("arguments", "")) for call in tool_calls)
    return Usage(count_messages(request.messages, request.system), count_text(output) if output else 0, estimated=True)
