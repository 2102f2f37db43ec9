"""``MockProvider``: an in-process provider, deterministic, no network, no SDK.

Like httpx's ``MockTransport``, it takes a plain function: ``handler(request) ->
ProviderResponse`` (sync, or async for ``acomplete``), which may raise
:class:`~policyrouter.errors.ProviderError` to simulate any failure kind. Without a
handler it answers ``reply`` if given, else ``"[<model>] <first 12 words of the last
user message>"``, with usage from a cheap estimate: ceil(characters / 4) tokens per
non-empty message (at least 1), output likewise, capped at ``max_output_tokens`` (the
text is then cut and ``finish_reason`` is ``length``). Asked to call a tool
(``tool_choice`` ``required`` or a named function), it calls it (the first tool for
``required``) with arguments generated from the tool's JSON schema; asked for structured
output, it answers JSON generated from the schema
(:func:`~policyrouter.providers.schema_example.example_for`), so offline runs take the
same paths as real answers.

It is the offline provider of policies (``kind: mock``) and the baseline for measuring
the router's own overhead (``bench/overhead.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from policyrouter.providers.base import StreamEvent
from policyrouter.providers.schema_example import example_for
from policyrouter.tokens import content_text
from policyrouter.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from policyrouter.clock import Clock

__all__ = ["Handler", "MockProvider", "default_response", "forced_tool"]

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
    tool = forced_tool(request.tools, request.tool_choice)
    if reply is None and tool is not None:
        arguments = json.dumps(example_for(tool.get("parameters") or {"type": "object"}))
        call = {"id": f"call_mock_{number}", "name": str(tool.get("name")), "arguments": arguments}
        usage = Usage(input_tokens, min(_tokens(arguments), request.max_output_tokens))
        return ProviderResponse("", usage, "tool_calls", f"mock-{number}", request.model, (call,))
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


def forced_tool(tools: Sequence[Mapping[str, Any]], choice: Any) -> Mapping[str, Any] | None:
    """The function (``{"name", "parameters", ...}``) that ``tool_choice`` forces, if any:
    the named one, or the first for ``required``; OpenAI tool format."""
    functions = [t["function"] for t in tools if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)]
    if choice == "required":
        return functions[0] if functions else None
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        return next((f for f in functions if f.get("name") == name), None)
    return None


def _tokens(text: str) -> int:
    return -(-len(text) // 4) or 1 if text else 0


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
