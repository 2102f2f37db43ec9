"""Every way an attempt can end gives back what it held: the slot, the reservation and the
half-open probe (a probe that made no call decides nothing); a failed record keeps none of
them; the reload event sees the new plan; a malformed argument is an InvalidRequest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from policyrouter import InvalidRequest, PolicyRouterError, Router, StateUnavailable
from policyrouter.errors import ProviderError
from policyrouter.providers.mock import MockProvider
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderResponse, Usage

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  a:
    provider: p
    model: a-2025-01-01
    pricing: {input: 1.0, output: 2.0}
    circuit_breaker: cb
    limits: {concurrency: 1, on_limit: spill}
  b: {provider: p, model: b-2025-01-01, pricing: {input: 1.0, output: 2.0}}
tiers:
  t: [a, b]
retry_policies:
  default: {max_attempts: 2, backoff: {initial_s: 0.1, jitter: none}}
circuit_breakers:
  cb: {failure_threshold: 2, window_s: 60, cooldown_s: 10}
budgets:
  daily: {scope: global, window: day, limit_usd: MAXUSD}
tasks:
  s: {tier: t, max_output_tokens: 50}
  c: {tier: t, max_output_tokens: 50, temperature: 0, cache: {ttl_s: 60}}
"""


class Weird:
    """A tool-call argument the JSON encoder cannot write."""


def make(tmp_path: Path, handler: Any, state: Any, limit: float = 10.0, clock: FakeClock | None = None) -> Router:
    (tmp_path / "p.yaml").write_text(POLICY.replace("MAXUSD", str(limit)))
    return Router.from_path(
        tmp_path / "p.yaml", state=state, clock=clock or FakeClock(), providers={"p": MockProvider("p", handler)}
    )


class ADown:
    """An upstream where model ``a`` fails (a ``server_error``) until ``up()``; the others answer."""

    def __init__(self, text: str = "ok") -> None:
        self.down = True
        self.text = text

    def up(self) -> None:
        self.down = False

    def __call__(self, req: Any) -> ProviderResponse:
        if req.model.startswith("a") and self.down:
            raise ProviderError("server_error", "down")
        return ProviderResponse(text=self.text, usage=Usage(1, 1))


# ---------------------------------------------------------------- a record that fails


def test_sqlite_an_answer_the_cache_cannot_hold_is_served_and_finished(tmp_path: Path) -> None:
    """The answer cannot be stored (JSON cannot hold a custom provider's tool-call value): it
    is served uncached, and the attempt's slot and reservation are back."""

    def h(req: Any) -> ProviderResponse:
        return ProviderResponse(
            text="x", usage=Usage(1, 1), tool_calls=({"id": "1", "name": "f", "arguments": Weird()},)
        )

    state = SqliteState(tmp_path / "s.db")
    router = make(tmp_path, h, state)
    assert not router.complete("c", "hi").cache_hit
    assert not router.complete("c", "hi").cache_hit  # not cached
    assert state.slots_in_use("a") == 0
    assert state.open_reservations() == 0


def test_sqlite_a_record_that_fails_does_not_keep_the_half_open_probe(tmp_path: Path) -> None:
    """The ledger write fails after the probe answered: the attempt was finished in its own
    transaction first, so the probe's success is recorded and the model serves again."""
    upstream = ADown()

    class DiskFull(SqliteState):
        full = False

        def _ledger_in(self, c: Any, row: Any) -> None:
            if self.full:
                raise StateUnavailable("disk full")
            super()._ledger_in(c, row)

    clock = FakeClock()
    state = DiskFull(tmp_path / "s.db")
    router = make(tmp_path, upstream, state, clock=clock)
    router.complete("s", "x")  # a trips open, b answers
    clock.advance(20)
    upstream.up()
    state.full = True
    with pytest.raises(StateUnavailable):
        router.complete("c", "y")  # a is the probe; it answers, but the record fails
    state.full = False
    clock.advance(1000)
    assert router.complete("s", "z").model == "a"  # the probe's success was recorded: a serves again


# ---------------------------------------------------------------- reload


def test_the_reload_event_sees_the_new_plan(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(POLICY.replace("MAXUSD", "10"))
    router = Router.from_path(f, clock=FakeClock(), providers={"p": MockProvider("p")})
    seen: list[tuple[str, str]] = []
    router.on("reload", lambda e: seen.append((e["fingerprint"], router.plan.fingerprint)))
    f.write_text(POLICY.replace("MAXUSD", "20"))
    assert router.reload().changed
    [(announced, current)] = seen
    assert announced == current  # the hook sees the plan it announces


# ---------------------------------------------------------------- the half-open probe


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_cancelled_probe_is_recorded(tmp_path: Path, backend: str) -> None:
    clock = FakeClock()
    mode = {"fail": True}

    async def h(req: Any) -> ProviderResponse:
        if req.model.startswith("a"):
            if mode["fail"]:
                raise ProviderError("server_error", "down")
            await asyncio.sleep(10)
        return ProviderResponse(text="ok", usage=Usage(1, 1))

    state = MemoryState() if backend == "memory" else SqliteState(tmp_path / "s.db")
    router = make(tmp_path, h, state, clock=clock)

    async def main() -> None:
        await router.acomplete("s", "x")  # a trips
        clock.advance(20)
        mode["fail"] = False
        task = asyncio.ensure_future(router.acomplete("s", "x"))  # a's half-open probe
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    clock.advance(10_000)
    rec = state.breaker_get("a")
    assert not (rec.status == "half_open" and rec.probe_in_flight)  # the next request may probe


def test_a_stream_closed_during_its_probe_records_it(tmp_path: Path) -> None:
    clock, upstream = FakeClock(), ADown("one two three four")
    state = MemoryState()
    router = make(tmp_path, upstream, state, clock=clock)
    router.complete("s", "x")
    clock.advance(20)
    upstream.up()
    stream = router.stream("s", "x")
    next(stream)  # a's probe is streaming
    stream.close()
    clock.advance(10_000)
    assert router.complete("s", "later").model == "a"  # the closed stream gave its probe back


def test_a_budget_refusal_does_not_close_an_open_breaker(tmp_path: Path) -> None:
    clock = FakeClock()
    state = MemoryState()
    router = make(tmp_path, ADown(), state, limit=0.01, clock=clock)
    router.complete("s", "x")
    assert state.breaker_get("a").status == "open"
    clock.advance(20)
    state.budget_add_spent("daily|2026-01-01|*", 0.00999)
    with pytest.raises(PolicyRouterError):
        router.complete("s", "x")  # a's probe is refused by the budget: a was never called
    rec = state.breaker_get("a")
    assert rec.status == "half_open" and not rec.probe_in_flight  # not closed by a call never made


def test_a_spilled_probe_is_given_back_uncounted(tmp_path: Path) -> None:
    """The probe's model has no free concurrency slot (on_limit: spill): no call, so the
    breaker neither closes nor opens again; the next request probes."""
    clock, upstream = FakeClock(), ADown()
    state = MemoryState()
    router = make(tmp_path, upstream, state, clock=clock)
    router.complete("s", "x")
    clock.advance(20)
    upstream.up()
    assert state.slot_acquire("a", 1)  # someone else holds a's only slot
    assert router.complete("s", "x").model == "b"  # a's probe spilled
    rec = state.breaker_get("a")
    assert rec.status == "half_open" and not rec.probe_in_flight
    state.slot_release("a")
    assert router.complete("s", "x").model == "a"


# ---------------------------------------------------------------- malformed arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"extra": [1]},
        {"metadata": ["tier"]},
        {"temperature": "hot"},
        {"temperature": 3.5},
        {"max_output_tokens": -5},
        {"max_output_tokens": True},
        {"tenant": 42},
        {"cache": "yes"},
    ],
)
def test_a_malformed_argument_is_an_invalid_request(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    calls: list[Any] = []

    def h(req: Any) -> ProviderResponse:
        calls.append(req)
        return ProviderResponse(text="ok", usage=Usage(1, 1))

    state = MemoryState()
    router = make(tmp_path, h, state)
    with pytest.raises(InvalidRequest):
        router.complete("s", "x", **kwargs)
    assert calls == [] and state.open_reservations() == 0
