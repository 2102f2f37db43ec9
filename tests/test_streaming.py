"""Router.stream / Router.astream through the real openai and anthropic SDKs (SSE) to
MockLLMServer: fallback before the first chunk, StreamInterrupted after it, restart with
a reset chunk, first-token timeout, reservation held and released, usage and cost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _shapes_kit import PROVIDERS, UPSTREAM, make_router, other, reserved, spent

from policyrouter import (
    InvalidRequest,
    ProviderRequest,
    ProviderResponse,
    Router,
    StreamChunk,
    StreamInterrupted,
    Usage,
)
from policyrouter.providers.base import StreamEvent
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock

REPLY = "the quick brown fox jumps over the lazy dog"
USAGE = {"input": 1200, "output": 9, "cached": 1000, "cache_write": 100}


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def collect(router: Router, task: str, mode: str, **kw: object) -> list[StreamChunk]:
    if mode == "sync":
        return list(router.stream(task, "tell me", **kw))  # type: ignore[arg-type]

    async def run() -> list[StreamChunk]:
        return [c async for c in router.astream(task, "tell me", **kw)]  # type: ignore[arg-type]

    return asyncio.run(run())


def text_of(chunks: list[StreamChunk]) -> str:
    return "".join(c.text for c in chunks if c.type == "text")


def cut_after_two_words(first: str) -> Fault:
    """OpenAI: role chunk + 2 deltas; Anthropic: message_start, block start + 2 deltas."""
    return Fault(kind="interrupt_stream", after_chunks=3 if first == "gpt" else 4, text=REPLY)


def wait_until(predicate: object, timeout_s: float = 5.0) -> bool:
    """Wait (bounded) for the server thread to observe something; no timing is asserted."""
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if predicate():  # type: ignore[operator]
            return True
        done.wait(0.01)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_stream_text_usage_and_cost(server: MockLLMServer, tmp_path: Path, first: str, mode: str) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY, usage=USAGE)
    router = make_router(server, tmp_path)
    chunks = collect(router, f"chat_{first}", mode)
    assert [c.type for c in chunks].count("text") == len(REPLY.split())
    assert chunks[-1].type == "final" and [c.type for c in chunks[:-1]] == ["text"] * (len(chunks) - 1)
    result = chunks[-1].result
    assert result is not None
    assert text_of(chunks) == result.text == REPLY
    assert (result.model, result.finish_reason) == (first, "stop")
    # usage from the provider's final usage (OpenAI include_usage; Anthropic message_start + message_delta)
    u = result.usage
    if first == "gpt":  # OpenAI reports no cache writes
        assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens) == (1200, 9, 1000, 0)
        expected = (200 * 0.40 + 1000 * 0.10 + 9 * 1.60) / 1e6
    else:  # Anthropic's input excludes cache reads and writes; normalized to the whole prompt
        assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens) == (2300, 9, 1000, 100)
        expected = (1200 * 1.00 + 1000 * 0.10 + 100 * 1.25 + 9 * 5.00) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert spent(router) == pytest.approx(expected) and reserved(router) == 0
    body = server.requests_for(UPSTREAM[first])[0].body
    assert body["stream"] is True
    if first == "gpt":
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("first", PROVIDERS)
def test_streamed_and_non_streamed_are_priced_the_same(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY, usage=USAGE)
    router = make_router(server, tmp_path)
    whole = router.complete(f"chat_{first}", "tell me")
    streamed = list(router.stream(f"chat_{first}", "tell me"))[-1].result
    assert streamed is not None
    assert streamed.usage == whole.usage
    assert streamed.usage.cached_input_tokens == 1000  # cached tokens included on both paths
    assert streamed.cost_usd == pytest.approx(whole.cost_usd)
    assert spent(router) == pytest.approx(2 * whole.cost_usd)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
@pytest.mark.parametrize(
    "fault",
    [Fault(status=529), Fault(kind="reset"), Fault(kind="interrupt_stream", after_chunks=1)],
    ids=["529", "reset", "cut-before-first-token"],
)
def test_fallback_before_first_token(
    server: MockLLMServer, tmp_path: Path, first: str, mode: str, fault: Fault
) -> None:
    second = other(first)
    server.script(UPSTREAM[first], [fault])
    server.set_reply(UPSTREAM[second], text=REPLY)
    router = make_router(server, tmp_path)
    chunks = collect(router, f"chat_{first}", mode)
    # nothing from the failed model reached the caller, so falling back is invisible
    assert {c.type for c in chunks} == {"text", "final"}
    assert {c.model for c in chunks} == {second}
    result = chunks[-1].result
    assert result is not None and text_of(chunks) == result.text == REPLY
    assert [(a.model, a.outcome) for a in result.attempts] == [(first, "error"), (second, "ok")]
    assert reserved(router) == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_interruption_after_first_chunk_raises_with_partial_text(
    server: MockLLMServer, tmp_path: Path, first: str, mode: str
) -> None:
    server.script(UPSTREAM[first], [cut_after_two_words(first)])
    router = make_router(server, tmp_path)
    received: list[StreamChunk] = []

    async def consume_async() -> None:
        async for chunk in router.astream(f"chat_{first}", "tell me"):
            received.append(chunk)

    with pytest.raises(StreamInterrupted) as info:
        if mode == "sync":
            for chunk in router.stream(f"chat_{first}", "tell me"):
                received.append(chunk)
        else:
            asyncio.run(consume_async())
    err = info.value
    assert err.partial_text == text_of(received) == "the quick"
    assert err.kind == "stream_interrupted" and err.task == f"chat_{first}"
    assert [(a.model, a.outcome, a.error_kind) for a in err.attempts] == [(first, "error", "connection")]
    assert server.requests_for(UPSTREAM[other(first)]) == []  # no fallback after the first chunk
    assert reserved(router) == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_restart_sends_reset_then_the_next_model(server: MockLLMServer, tmp_path: Path, first: str, mode: str) -> None:
    second = other(first)
    server.script(UPSTREAM[first], [cut_after_two_words(first)])
    server.set_reply(UPSTREAM[second], text="a fresh answer")
    router = make_router(server, tmp_path)
    chunks = collect(router, f"restart_{first}", mode)
    types = [c.type for c in chunks]
    reset = types.index("reset")
    assert text_of(chunks[:reset]) == "the quick"
    assert (chunks[reset].model, chunks[reset].error_kind) == (first, "connection")
    assert text_of(chunks[reset:]) == "a fresh answer"
    result = chunks[-1].result
    assert result is not None and result.text == "a fresh answer" and result.model == second
    assert [(a.model, a.outcome) for a in result.attempts] == [(first, "error"), (second, "ok")]


def test_restart_with_no_model_left_raises_stream_interrupted(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(UPSTREAM["gpt"], [cut_after_two_words("gpt")])
    server.script(UPSTREAM["claude"], [cut_after_two_words("claude")])
    router = make_router(server, tmp_path)
    received: list[StreamChunk] = []
    with pytest.raises(StreamInterrupted) as info:
        received.extend(router.stream("restart_gpt", "tell me"))
    assert [c.type for c in received] == ["text", "text", "reset", "text", "text"]
    assert info.value.partial_text == text_of(received[3:]) == "the quick"
    assert [(a.model, a.error_kind) for a in info.value.attempts] == [("gpt", "connection"), ("claude", "connection")]
    assert reserved(router) == 0


@pytest.mark.parametrize("first", PROVIDERS)
def test_consumer_break_settles_reservation_and_closes_connection(
    server: MockLLMServer, tmp_path: Path, first: str
) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY * 20)
    router = make_router(server, tmp_path)
    stream = router.stream(f"chat_{first}", "tell me")
    first_chunk = next(stream)
    assert first_chunk.type == "text"
    assert reserved(router) > 0  # the reservation is held while the stream is open
    assert server.open_connections == 1
    for _ in stream:
        break  # the consumer goes away mid-stream
    stream.close()
    assert reserved(router) == 0 and spent(router) > 0  # billed on what it got (test_money.py)
    assert wait_until(lambda: server.open_connections == 0)  # the client dropped the connection
    # the next call needs a new connection: the half-read one was not returned to the pool
    list(router.stream(f"chat_{first}", "again"))
    assert server.connections_opened == 2


@pytest.mark.parametrize("first", PROVIDERS)
def test_async_consumer_break_settles_reservation_and_closes_connection(
    server: MockLLMServer, tmp_path: Path, first: str
) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY * 20)
    router = make_router(server, tmp_path)
    held: list[float] = []

    async def run() -> None:
        stream = router.astream(f"chat_{first}", "tell me")
        async for chunk in stream:
            assert chunk.type == "text"
            held.append(reserved(router))
            break
        await stream.aclose()

    asyncio.run(run())
    assert held[0] > 0
    assert reserved(router) == 0 and spent(router) > 0  # billed on what it got (test_money.py)
    assert wait_until(lambda: server.open_connections == 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_first_token_timeout_falls_back(server: MockLLMServer, tmp_path: Path, first: str, mode: str) -> None:
    second = other(first)
    server.script(UPSTREAM[first], [Fault(kind="stall", seconds=30)])
    server.set_reply(UPSTREAM[second], text=REPLY)
    router = make_router(server, tmp_path)
    chunks = collect(router, f"fast_{first}", mode)
    result = chunks[-1].result
    assert result is not None and result.model == second and text_of(chunks) == REPLY
    assert [(a.model, a.error_kind) for a in result.attempts] == [(first, "timeout"), (second, None)]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_idle_timeout_mid_stream_interrupts(server: MockLLMServer, tmp_path: Path, first: str, mode: str) -> None:
    events_before_pause = 3 if first == "gpt" else 4  # two words reach the caller, then silence
    server.script(
        UPSTREAM[first], [Fault(kind="stall", pause_after_chunks=events_before_pause, seconds=30, text=REPLY)]
    )
    router = make_router(server, tmp_path)
    received: list[StreamChunk] = []

    async def consume_async() -> None:
        async for chunk in router.astream(f"idle_{first}", "tell me"):
            received.append(chunk)

    with pytest.raises(StreamInterrupted) as info:
        if mode == "sync":
            received.extend(router.stream(f"idle_{first}", "tell me"))
        else:
            asyncio.run(consume_async())
    assert info.value.partial_text == text_of(received) == "the quick"
    assert [(a.model, a.error_kind) for a in info.value.attempts] == [(first, "timeout")]
    assert reserved(router) == 0


def test_stream_rejects_structured_output_and_checks_eagerly(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidRequest, match="structured outputs"):
        router.stream("extract_gpt", "x")
    with pytest.raises(InvalidRequest, match="unknown task"):
        router.stream("chat_gtp", "x")
    assert server.requests == []


def test_stream_serves_and_fills_the_cache(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    server.set_reply(UPSTREAM["gpt"], text=REPLY)
    first = list(router.stream("chat_cached", "same"))
    again = list(router.stream("chat_cached", "same"))
    assert text_of(first) == text_of(again) == REPLY
    final = again[-1].result
    assert final is not None and final.cache_hit and final.cost_usd == 0
    assert len(server.requests) == 1


SLOW_POLICY = """
version: 1
providers:
  slow: {kind: mock}
  backup: {kind: mock}
models:
  a: {provider: slow, model: a-2025-01-01}
  b: {provider: backup, model: b-2025-01-01}
tiers:
  t: [a, b]
retry_policies:
  default: {max_attempts: 1}
tasks:
  chat:
    tier: t
    stream: {first_token_timeout_s: 1, idle_timeout_s: 1}
"""


class ScriptedStream:
    """An in-process provider whose stream moves a FakeClock between events: timeouts
    checked as events arrive, with no real waiting. ``script`` items: a text delta,
    ``None`` (a heartbeat) or a float (seconds that pass)."""

    kind = "mock"

    def __init__(self, name: str, clock: FakeClock, script: list[str | float | None]) -> None:
        self.name = name
        self.clock = clock
        self.script = script

    def _events(self) -> Iterator[StreamEvent]:
        texts = []
        for item in self.script:
            if isinstance(item, float):
                self.clock.advance(item)
            elif item is None:
                yield StreamEvent()
            else:
                texts.append(item)
                yield StreamEvent(text=item)
        yield StreamEvent(response=ProviderResponse("".join(texts), Usage(1, len(texts))))

    def stream(self, request: ProviderRequest, *, read_timeout_s: float | None = None) -> Iterator[StreamEvent]:
        return self._events()

    async def astream(self, request: ProviderRequest, *, read_timeout_s: float | None = None) -> Any:
        for event in self._events():
            yield event

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        raise NotImplementedError

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        raise NotImplementedError

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None: ...

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def slow_router(tmp_path: Path, clock: FakeClock, script: list[str | float | None]) -> Router:
    (tmp_path / "p.yaml").write_text(SLOW_POLICY)
    backup = ScriptedStream("backup", clock, ["fine"])
    slow = ScriptedStream("slow", clock, script)
    return Router.from_path(tmp_path / "p.yaml", clock=clock, providers={"slow": slow, "backup": backup})  # type: ignore[dict-item]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_heartbeats_do_not_extend_the_first_token_timeout(tmp_path: Path, mode: str) -> None:
    clock = FakeClock()
    router = slow_router(tmp_path, clock, [None, 0.6, None, 0.6, "late"])
    chunks = collect(router, "chat", mode)
    assert text_of(chunks) == "fine"
    result = chunks[-1].result
    assert result is not None and [(a.model, a.error_kind) for a in result.attempts] == [("a", "timeout"), ("b", None)]
    assert "first-token" in (result.attempts[0].message or "")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_idle_gap_between_deltas_interrupts(tmp_path: Path, mode: str) -> None:
    clock = FakeClock()
    router = slow_router(tmp_path, clock, ["one", 0.9, " two", 0.6, None, 0.6, " three"])  # a ping does not reset it
    with pytest.raises(StreamInterrupted) as info:
        collect(router, "chat", mode)
    assert info.value.partial_text == "one two"
    assert [(a.model, a.error_kind) for a in info.value.attempts] == [("a", "timeout")]
    assert "idle" in (info.value.attempts[0].message or "")


def test_deltas_within_the_limits_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    router = slow_router(tmp_path, clock, [0.9, "one", 0.9, " two", 0.9, " three"])
    chunks = list(router.stream("chat", "x"))
    assert text_of(chunks) == "one two three" and chunks[-1].result is not None
