"""``MockProvider``: an in-process provider, deterministic, no network, no SDK.

Like httpx's ``MockTransport``, it takes a plain function: ``handler(request) ->
ProviderResponse`` (sync, or async for ``acomplete``), which may raise
:class:`~policyrouter.errors.ProviderError` to simulate any failure kind. Without a
handler it answers ``reply`` if given, else ``"[<model>] <first 12 words of the last
user message>"``, with usage from a cheap estimate: ceil(characters / 4) tokens per
non-empty message (at least 1), output likewise, capped at ``max_output_tokens`` (the
text is then cut and ``finish_reason`` is ``length``).

It is the offline provider of policies (``kind: mock``) and the baseline for measuring
the router's own overhead (``bench/overhead.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from policyrouter.providers.base import StreamEvent
from policyrouter.tokens import content_text
from policyrouter.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from policyrouter.clock import Clock

__all__ = ["Handler", "MockProvider", "default_response", "example_for"]

Handler = Callable[[ProviderRequest], "ProviderResponse | Awaitable[ProviderResponse]"]
"""``(request) -> response``; may return an awaitable (used by ``acomplete``) or raise
:class:`~policyrouter.errors.ProviderError`."""

_WORDS = 12


class MockProvider:
    """An in-process provider answering through ``handler`` (or the default answer).

    ``latency_s > 0`` waits that long per call through ``sleep`` / ``asleep``, taken from
    ``clock`` (a :class:`~policyrouter.clock.Clock`) when given, else ``time.sleep`` /
    ``asyncio.sleep``. ``calls`` counts the calls made.
    """

    __slots__ = ("_asleep", "_handler", "_latency_s", "_reply", "_sleep", "calls", "kind", "name")

    def __init__(
        self,
        name: str = "mock",
        handler: Handler | None = None,
        *,
        latency_s: float = 0.0,
        reply: str | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], object] | None = None,
        asleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.name = name
        self.kind = "mock"
        self.calls = 0
        self._handler = handler
        self._latency_s = latency_s
        self._reply = reply
        self._sleep: Callable[[float], object] = sleep or (clock.sleep if clock is not None else time.sleep)
        self._asleep: Callable[[float], Awaitable[object]] = asleep or (
            clock.asleep if clock is not None else _asyncio_sleep
        )

    def __repr__(self) -> str:
        return f"MockProvider(name={self.name!r}, latency_s={self._latency_s!r}, reply={self._reply!r})"

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        if self._latency_s > 0:
            self._sleep(self._latency_s)
        handler = self._handler
        if handler is None:
            return default_response(request, self._reply, self.calls)
        result = handler(request)
        if isinstance(result, ProviderResponse):
            return result
        _discard(result)
        raise TypeError(f"MockProvider {self.name!r}: an async handler needs acomplete(), not complete()")

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        if self._latency_s > 0:
            await self._asleep(self._latency_s)
        handler = self._handler
        if handler is None:
            return default_response(request, self._reply, self.calls)
        result = handler(request)
        if isinstance(result, ProviderResponse):
            return result
        return await result

    def stream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> Generator[StreamEvent, None, None]:
        """``complete``, then its text in word-sized deltas and its tool calls whole."""
        response = self.complete(request)
        yield from _events(response)

    async def astream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        response = await self.acomplete(request)
        for event in _events(response):
            yield event

    def ping(self, timeout_s: float = 5.0) -> None:
        """In-process: always reachable."""
        return None

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        """In-process: nothing to build or connect."""
        return None

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        return None

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def default_response(request: ProviderRequest, reply: str | None = None, number: int = 0) -> ProviderResponse:
    """The mock's default answer to ``request`` (deterministic in its input): about a token per
    four characters, at least one per non-empty text."""
    input_tokens = _tokens(request.system or "")
    last_user = ""
    for message in request.messages:
        content = message.get("content")
        text = content_text(content)
        input_tokens += _tokens(text)
        if message.get("role") == "user":
            last_user = text
    if reply is None and request.output is not None:
        reply = json.dumps(example_for(request.output.schema))  # structured output: a valid instance
    if reply is None:
        reply = f"[{request.model}] " + " ".join(last_user.split(None, _WORDS)[:_WORDS])
    output_tokens = _tokens(reply)
    finish = "stop"
    if output_tokens > request.max_output_tokens:
        output_tokens = request.max_output_tokens
        reply = reply[: output_tokens * 4]
        finish = "length"
    return ProviderResponse(reply, Usage(input_tokens, output_tokens), finish, f"mock-{number}", request.model)


def _tokens(text: str) -> int:
    return -(-len(text) // 4) or 1 if text else 0


_STRING_CANDIDATES = ("mock", "MOC", "AAA", "aaa", "000", "0", "a", "A")
_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "email": "mock@example.com",
    "uri": "https://example.com",
}


def example_for(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A small deterministic instance of a JSON Schema (what the mock answers for a
    structured-output request): required properties only, minimums respected, the first
    enum value or ``anyOf`` branch, local ``$ref`` followed. Best effort, not a solver."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 20:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return example_for(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_for(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: example_for(props.get(name, {}), root, depth + 1) for name in schema.get("required", ())}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_for(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        low = low if isinstance(low, (int, float)) else 0
        value = max(0, low + (1 if "exclusiveMinimum" in schema else 0))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            for candidate in _STRING_CANDIDATES:
                if re.search(pattern, candidate):
                    return candidate
        return "mock" * max(1, -(-int(schema.get("minLength", 0)) // 4))
    return None


_PIECES = re.compile(r"\s*\S+|\s+$")


def _events(response: ProviderResponse) -> Generator[StreamEvent, None, None]:
    for piece in _PIECES.findall(response.text):
        yield StreamEvent(text=piece)
    for index, call in enumerate(response.tool_calls):
        yield StreamEvent(tool_call={"index": index, **call})
    yield StreamEvent(response=response)


def _discard(result: object) -> None:
    close = getattr(result, "close", None)  # a coroutine never awaited: close it quietly
    if callable(close):
        close()


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # ~50 ms to import; only paid by an async mock with latency

    await asyncio.sleep(seconds)
