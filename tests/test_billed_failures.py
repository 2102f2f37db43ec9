"""A call the upstream received is billed even when the answer never reaches the caller: a
200 cut mid-body, a stream reset before any delta, and a caller that went away mid-call
(``asyncio.wait_for`` around ``acomplete`` or ``astream``). Each is charged per the task's
``on_unknown_usage`` and leaves its ledger row; nothing stays reserved."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_money import PROMPT, REPLY, UPSTREAM, counters, router_for

from policyrouter import RouterError
from policyrouter.testing import Fault, MockLLMServer


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_a_200_cut_mid_body_is_billed_per_on_unknown_usage(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    """The upstream generated the whole answer and sent half the body: it billed; the client could not use it."""
    server.set_reply(UPSTREAM[first], text=REPLY)
    server.script(UPSTREAM[first], [Fault(kind="interrupt_stream")])
    router = router_for(server, tmp_path)
    with pytest.raises(RouterError) as info:
        router.complete(f"chat_{first}", PROMPT)
    (a,) = info.value.attempts
    assert a.error_kind == "connection" and a.billed_as == "estimate"
    assert counters(router) == (pytest.approx(a.cost_usd), 0.0) and a.cost_usd > 0


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_a_stream_reset_before_any_delta_is_billed(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    server.script(UPSTREAM[first], [Fault(kind="interrupt_stream", after_chunks=1)])
    router = router_for(server, tmp_path)
    with pytest.raises(RouterError) as info:
        list(router.stream(f"chat_{first}", PROMPT))
    a = info.value.attempts[0]
    assert a.billed_as == "estimate" and a.cost_usd > 0


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_acomplete_cancelled_mid_call_is_billed(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    """The caller's own timeout around acomplete: the upstream received the call and billed it."""
    server.set_reply(UPSTREAM[first], text=REPLY)
    router = router_for(server, tmp_path)
    router.complete(f"chat_{first}", "warm up")
    base = counters(router)[0]
    server.script(UPSTREAM[first], [Fault(latency_s=3)])

    async def run() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.acomplete(f"chat_{first}", PROMPT), 1.0)

    asyncio.run(run())
    spent, reserved = counters(router)
    rows = router.state.ledger_rows()
    assert reserved == 0
    assert [r.outcome for r in rows] == ["ok", "abandoned"]
    assert spent > base and spent == pytest.approx(sum(r.cost_usd for r in rows))


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_astream_cancelled_mid_stream_is_billed(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    router = router_for(server, tmp_path)
    router.complete(f"chat_{first}", "warm up")
    server.script(UPSTREAM[first], [Fault(kind="stall", pause_after_chunks=6, seconds=8)])
    got: list[str] = []

    async def consume() -> None:
        async for chunk in router.astream(f"chat_{first}", "tell me a story"):
            got.append(chunk.text)

    async def run() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 2.0)

    asyncio.run(run())
    spent, reserved = counters(router)
    rows = router.state.ledger_rows()
    assert got and reserved == 0
    assert [r.outcome for r in rows] == ["ok", "abandoned"]
    assert spent > rows[0].cost_usd
