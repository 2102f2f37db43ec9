"""Cost and budgets: every dollar accounted for, limits hold under concurrency."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import threading
from pathlib import Path

import pytest

from policyrouter import BudgetExceeded, ProviderError, ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.compile import compile_policy
from policyrouter.policy.models import Policy
from policyrouter.providers.mock import MockProvider
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing.clock import FakeClock
from policyrouter.tokens import count_messages

PRICE_IN, PRICE_OUT = 2.0, 8.0  # USD per 1M
MAX_IN, MAX_OUT = 1000, 500
WORST = (MAX_IN * PRICE_IN + MAX_OUT * PRICE_OUT) / 1e6  # one worst-case request


def policy(limit_usd: float, *, extra_budgets: dict[str, object] | None = None, state: object = None) -> Policy:
    doc: dict[str, object] = {
        "version": 1,
        "providers": {"p": {"kind": "mock"}},
        "models": {
            "cheap": {"provider": "p", "model": "cheap-1", "pricing": {"input": 0.5, "output": 1.0}},
            "main": {
                "provider": "p",
                "model": "main-1",
                "pricing": {"input": PRICE_IN, "output": PRICE_OUT, "cached_input": 0.5},
            },
        },
        "tiers": {"t": ["main"], "cheap": ["cheap"]},
        "budgets": {"daily": {"scope": "global", "window": "day", "limit_usd": limit_usd}, **(extra_budgets or {})},
        "tasks": {"s": {"tier": "t", "max_input_tokens": MAX_IN, "max_output_tokens": MAX_OUT}},
    }
    if state is not None:
        doc["state"] = state
    return Policy.model_validate(doc)


def worst_case_handler(req: ProviderRequest) -> ProviderResponse:
    """Bills exactly the worst case: the budget is tight."""
    return ProviderResponse("ok", Usage(MAX_IN, MAX_OUT), request_id="w")


def router_for(pol: Policy, handler: object = worst_case_handler, **kw: object) -> Router:
    return Router(compile_policy(pol), {"p": MockProvider("p", handler)}, **kw)  # type: ignore[arg-type]


def long_input() -> str:
    # counted input must not exceed MAX_IN (reject policy) but reserve the full worst case
    return "x" * int((MAX_IN - 20) * 3.5)


def test_cost_from_usage_including_cached_tokens() -> None:
    def handler(req: ProviderRequest) -> ProviderResponse:
        return ProviderResponse("ok", Usage(input_tokens=1000, output_tokens=100, cached_input_tokens=400))

    r = router_for(policy(10.0), handler).complete("s", "hi")
    expected = (600 * PRICE_IN + 400 * 0.5 + 100 * PRICE_OUT) / 1e6
    assert r.cost_usd == pytest.approx(expected)


def test_failed_attempt_that_consumed_tokens_is_billed() -> None:
    calls = iter([ProviderError("content_filter", "refused", usage=Usage(200, 50)), None])

    def handler(req: ProviderRequest) -> ProviderResponse:
        err = next(calls)
        if err is not None:
            raise err
        return ProviderResponse("ok", Usage(100, 10))

    pol = policy(10.0)
    pol = pol.model_copy(update={"tiers": {"t": ["main", "main2"], "cheap": ["cheap"]}})
    doc = pol.model_dump()
    doc["models"]["main2"] = {**doc["models"]["main"], "model": "main-2"}
    r = router_for(Policy.model_validate(doc), handler).complete("s", "hi")
    first = (200 * PRICE_IN + 50 * PRICE_OUT) / 1e6
    second = (100 * PRICE_IN + 10 * PRICE_OUT) / 1e6
    assert [a.cost_usd for a in r.attempts] == [pytest.approx(first), pytest.approx(second)]
    assert r.cost_usd == pytest.approx(first + second)


def test_hard_limit_refuses_before_sending() -> None:
    sent: list[str] = []

    def handler(req: ProviderRequest) -> ProviderResponse:
        sent.append(req.model)
        return worst_case_handler(req)

    router = router_for(policy(WORST * 2.5), handler)
    router.complete("s", long_input())
    router.complete("s", long_input())
    with pytest.raises(BudgetExceeded) as info:
        router.complete("s", long_input())
    assert len(sent) == 2  # the third request sent nothing
    assert info.value.budget == "daily" and info.value.kind == "budget_exceeded"


def _check_ledger(state: object, limit: float, ok: int) -> None:
    rows = state.ledger_rows()  # type: ignore[attr-defined]
    spent = sum(r.cost_usd for r in rows)
    assert spent <= limit + 1e-9
    assert len([r for r in rows if r.outcome == "ok"]) == ok
    assert state.open_reservations() == 0  # type: ignore[attr-defined]


def test_budget_holds_under_200_threads() -> None:
    limit = WORST * 20
    router = router_for(policy(limit))
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def worker(i: int) -> None:
        if i < 50:
            barrier.wait()
        try:
            router.complete("s", long_input())
            outcome = "ok"
        except BudgetExceeded:
            outcome = "denied"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 20 and results.count("denied") == 180
    _check_ledger(router.state, limit, 20)


def test_budget_holds_under_200_asyncio_tasks() -> None:
    limit = WORST * 20

    async def slow(req: ProviderRequest) -> ProviderResponse:
        await asyncio.sleep(0.001)  # interleave: reservations overlap
        return worst_case_handler(req)

    router = router_for(policy(limit), slow)

    async def one() -> str:
        try:
            await router.acomplete("s", long_input())
            return "ok"
        except BudgetExceeded:
            return "denied"

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one() for _ in range(200))))

    results = asyncio.run(main())
    assert results.count("ok") == 20
    _check_ledger(router.state, limit, 20)


def _process_worker(db: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    pol = policy(WORST * 20, state={"backend": "sqlite", "path": db})
    router = Router(compile_policy(pol), {"p": MockProvider("p", worst_case_handler)}, SqliteState(db))
    ok = 0
    for _ in range(n):
        try:
            router.complete("s", long_input())
            ok += 1
        except BudgetExceeded:
            pass
    out.put(ok)


def test_budget_holds_across_4_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    SqliteState(db).close()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(db, 50, q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    oks = [q.get(timeout=5) for _ in procs]
    assert sum(oks) == 20
    _check_ledger(SqliteState(db), WORST * 20, 20)


def test_every_budget_must_admit() -> None:
    extra = {"tenant": {"scope": "tenant", "window": "month", "limit_usd": WORST * 1.5}}
    router = router_for(policy(WORST * 100, extra_budgets=extra))
    router.complete("s", long_input(), tenant="acme")
    with pytest.raises(BudgetExceeded) as info:
        router.complete("s", long_input(), tenant="acme")
    assert info.value.budget == "tenant"
    router.complete("s", long_input(), tenant="globex")  # other tenant, own counter


def test_budget_window_is_calendar_aligned() -> None:
    clock = FakeClock(wall_start=1_767_225_600.0 + 86_400 - 10)  # 10 s before midnight UTC
    router = router_for(policy(WORST * 1.5), clock=clock)
    router.complete("s", long_input())
    with pytest.raises(BudgetExceeded):
        router.complete("s", long_input())
    clock.advance(11)  # next day: a new window
    router.complete("s", long_input())


def test_soft_limit_degrades_and_emits_once() -> None:
    budgets = {
        "daily": {
            "scope": "global",
            "window": "day",
            "limit_usd": WORST * 10,
            "soft_limit": 0.5,
            "on_soft_limit": {"degrade_to": "cheap"},
        }
    }
    doc = policy(1.0).model_dump()
    doc["budgets"] = budgets
    router = router_for(Policy.model_validate(doc))
    events: list[dict[str, object]] = []
    router.on("budget_soft_limit", events.append)
    models = [router.complete("s", long_input()).model for _ in range(8)]
    assert models[:5] == ["main"] * 5
    assert set(models[5:]) == {"cheap"}
    assert len(events) == 1 and events[0]["budget"] == "daily"
    assert router.complete("s", long_input()).route.endswith("degraded:daily")


def test_reservation_released_on_failure_and_cancellation() -> None:
    def fail(req: ProviderRequest) -> ProviderResponse:
        raise ProviderError("server_error", "boom", status_code=500)

    state = MemoryState()
    router = router_for(policy(1.0), fail, state=state, clock=FakeClock())
    with pytest.raises(Exception):  # noqa: B017 - AllModelsFailed
        router.complete("s", "hi")
    assert state.open_reservations() == 0

    started = asyncio.Event()

    async def hang(req: ProviderRequest) -> ProviderResponse:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    router2 = router_for(policy(1.0), hang, state=state)

    async def main() -> None:
        task = asyncio.ensure_future(router2.acomplete("s", "hi"))
        await started.wait()
        assert state.open_reservations() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert state.open_reservations() == 0


def test_reservation_is_a_lease() -> None:
    from policyrouter.state.base import BudgetCharge

    for state in (MemoryState(), SqliteState(":memory:")):
        charge = [BudgetCharge("daily", "k", 1.0, 1.5, 0.0)]
        assert state.budget_reserve(charge, wall=100.0, lease_s=10.0).ok
        assert not state.budget_reserve(charge, wall=105.0, lease_s=10.0).ok
        assert state.budget_reserve(charge, wall=111.0, lease_s=10.0).ok  # the first lease expired


@pytest.mark.parametrize("breakers", [True, False], ids=["breakers", "budgets-only"])
def test_chaos_1000_requests(breakers: bool) -> None:
    """30% faults, random usage: typed errors only, attempts bounded, ledger == results. Without
    breakers an attempt's only state stage is its budget (``budget_hold``, then its settle)."""
    rng = random.Random(42)
    kinds = ["rate_limited", "server_error", "overloaded", "timeout", "connection", "bad_request", "content_filter"]

    def chaos(req: ProviderRequest) -> ProviderResponse:
        if rng.random() < 0.3:
            kind = rng.choice(kinds)
            usage = Usage(rng.randint(1, 500), rng.randint(0, 100)) if kind == "content_filter" else None
            raise ProviderError(kind, "chaos", status_code=500, retry_after_s=rng.choice([None, 0.5]), usage=usage)
        return ProviderResponse("ok", Usage(rng.randint(1, MAX_IN), rng.randint(1, MAX_OUT)))

    doc = policy(WORST * 400).model_dump()
    doc["tiers"]["t"] = ["main", "cheap"]
    doc["retry_policies"] = {"default": {"max_attempts": 3}}
    if breakers:
        doc["circuit_breakers"] = {"default": {"failure_threshold": 20, "cooldown_s": 5}}
    pol = Policy.model_validate(doc)
    state = MemoryState()
    clock = FakeClock()
    router = router_for(pol, chaos, state=state, clock=clock, rng=random.Random(1))
    assert all((m.breaker is not None) == breakers for m in router.plan.tasks["s"].default.chain.models)
    worst_calls = router.plan.tasks["s"].worst_case.calls
    total_cost = 0.0
    outcomes: dict[str, int] = {}
    for i in range(1000):
        try:
            r = router.complete("s", f"q{i}")
            total_cost += r.cost_usd
            calls = [a for a in r.attempts if a.outcome != "skipped"]
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except (BudgetExceeded, Exception) as e:
            from policyrouter.errors import RouterError

            assert isinstance(e, RouterError), f"untyped {type(e).__name__}: {e}"
            total_cost += sum(a.cost_usd for a in e.attempts)
            calls = [a for a in e.attempts if a.outcome != "skipped"]
            outcomes[e.kind] = outcomes.get(e.kind, 0) + 1
        assert len(calls) <= worst_calls
        clock.advance(0.5)
    ledger = sum(r.cost_usd for r in state.ledger_rows())
    assert math.isclose(ledger, total_cost, rel_tol=1e-9, abs_tol=1e-12)
    counted = sum(spent for _, spent, _ in state.budget_counters("daily|"))  # what the budget itself holds
    assert math.isclose(counted, ledger, rel_tol=1e-9, abs_tol=1e-12)
    assert state.open_reservations() == 0
    assert outcomes["ok"] > 500


def _settle_then_die(db: str) -> None:
    import os
    import signal

    pol = policy(10.0, state={"backend": "sqlite", "path": db})
    router = Router(compile_policy(pol), {"p": MockProvider("p", worst_case_handler)}, SqliteState(db))
    router.complete("s", "hello")
    os.kill(os.getpid(), signal.SIGKILL)


def test_sigkill_after_settled_request_loses_no_ledger_row(tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_settle_then_die, args=(db,))
    p.start()
    p.join(60)
    assert p.exitcode == -9
    rows = SqliteState(db).ledger_rows()
    assert len(rows) == 1 and rows[0].cost_usd == pytest.approx(WORST)


def test_counted_input_is_what_gets_reserved() -> None:
    text = long_input()
    n = count_messages([{"role": "user", "content": text}])
    assert n <= MAX_IN


def test_memory_state_drops_the_counters_of_ended_windows() -> None:
    """A long-running process keeps counters for the windows that are open, not one per window
    it ever saw; a counter still holding a reservation, or with no known window end, stays."""
    from policyrouter.state.base import BudgetCharge
    from policyrouter.state.memory import SWEEP_INTERVAL_S

    state = MemoryState()
    t0 = 1_800_000_000.0
    state.budget_add_spent("fixture|2027-01", 1.0)  # no window end known: never dropped
    old = state.budget_reserve([BudgetCharge("per-minute", "per-minute|m0|u1", 0.1, 1.0, t0 + 60)], t0, 30)
    state.budget_settle(old.reservation_id or "", 0.05, t0 + 1)
    held = state.budget_reserve([BudgetCharge("per-minute", "per-minute|m0|u2", 0.1, 1.0, t0 + 60)], t0 + 2, 600)
    assert held.ok and state.budget_mark_soft("per-minute|m0|u1")

    later = t0 + 60 + SWEEP_INTERVAL_S + 1  # both windows ended, past the next sweep
    new = state.budget_reserve([BudgetCharge("per-minute", "per-minute|m2|u1", 0.1, 1.0, later + 60)], later, 30)
    assert new.ok
    keys = [k for k, _, _ in state.budget_counters("")]
    assert keys == ["fixture|2027-01", "per-minute|m0|u2", "per-minute|m2|u1"]  # m0|u1 ended and was settled
    assert state.budget_mark_soft("per-minute|m0|u1")  # its soft-limit mark went with it
    state.budget_settle(held.reservation_id or "", 0.1, later)
    state.budget_reserve([BudgetCharge("per-minute", "per-minute|m3|u1", 0.1, 1.0, later + 200)], later + 61, 30)
    # the next sweep: m0|u2 was settled and m2|u1's window ended (its 30 s lease ran out with it)
    assert [k for k, _, _ in state.budget_counters("")] == ["fixture|2027-01", "per-minute|m3|u1"]
