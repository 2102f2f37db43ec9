"""One set of state-protocol assertions over every backend: memory, sqlite and redis.

Times are the caller's (Redis gets ``clock=`` so its scripts use them), so lease,
cooldown and window tests jump time instead of waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _state_kit import FAR, WALL, WAYS, engine_calls, race

from policyrouter.plan import BudgetPlan
from policyrouter.stages import budget as budget_rules
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.state import combined
from policyrouter.state.base import (
    Admit,
    Admitted,
    BudgetCharge,
    CacheEntry,
    Finish,
    LedgerRow,
    ReserveResult,
    StateBackend,
    missing_methods,
)
from policyrouter.state.redis import RedisState
from policyrouter.state.sqlite import SqliteState
from policyrouter.types import Result, Usage


def charge(amount: float, limit: float, key: str = "daily|2026-01-01|*", budget: str = "daily") -> BudgetCharge:
    return BudgetCharge(budget, key, amount, limit, FAR)


def test_reserve_denies_past_the_limit_and_settles_to_actual(state: StateBackend) -> None:
    first = state.budget_reserve((charge(1.0, 1.5),), WALL, 60)
    assert first.ok and first.reservation_id
    denied = state.budget_reserve((charge(1.0, 1.5),), WALL, 60)
    assert (denied.ok, denied.denied_budget, denied.used, denied.limit) == (False, "daily", 1.0, 1.5)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)
    state.budget_settle(first.reservation_id, 0.25, WALL)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    assert state.budget_reserve((charge(1.0, 1.5),), WALL, 60).ok  # 0.25 + 1.0 fits now


def test_settling_twice_counts_once_and_release_gives_back(state: StateBackend) -> None:
    r = state.budget_reserve((charge(1.0, 10.0),), WALL, 60)
    assert r.reservation_id
    state.budget_settle(r.reservation_id, 0.5, WALL)
    state.budget_settle(r.reservation_id, 0.5, WALL)
    state.budget_release(r.reservation_id)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.5, 0.0))
    r2 = state.budget_reserve((charge(2.0, 10.0),), WALL, 60)
    assert r2.reservation_id
    state.budget_release(r2.reservation_id)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.5, 0.0))


def test_every_charge_must_admit_and_a_denial_reserves_nothing(state: StateBackend) -> None:
    both = (charge(1.0, 10.0), charge(1.0, 0.5, key="tenant|2026-01|acme", budget="tenant"))
    res = state.budget_reserve(both, WALL, 60)
    assert (res.ok, res.denied_budget) == (False, "tenant")
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 0.0)


def test_a_denial_by_an_existing_counter_leaves_the_other_counters_as_they_were(state: StateBackend) -> None:
    both = (charge(1.0, 10.0), charge(1.0, 1.5, key="tenant|2026-01|acme", budget="tenant"))
    first = state.budget_reserve(both, WALL, 60)  # creates both counters
    assert first.ok and first.reservation_id
    state.budget_settle(first.reservation_id, 0.75, WALL)
    denied = state.budget_reserve(both, WALL, 60)  # daily fits, tenant (0.75 + 1.0 > 1.5) does not
    assert (denied.ok, denied.denied_budget, denied.used, denied.limit) == (False, "tenant", 0.75, 1.5)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.75, 0.0)
    assert state.budget_used("tenant|2026-01|acme", WALL) == (0.75, 0.0)
    again = state.budget_reserve(both[:1], WALL, 60)  # an admitted reservation after the refusal
    assert again.ok and again.reservation_id
    state.budget_release(again.reservation_id)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.75, 0.0)


def test_reservation_is_a_lease(state: StateBackend) -> None:
    one = (charge(1.0, 1.5),)
    assert state.budget_reserve(one, WALL, 10).ok
    assert not state.budget_reserve(one, WALL + 5, 10).ok
    assert state.budget_reserve(one, WALL + 11, 10).ok  # the first lease expired


def test_counters_by_prefix_and_soft_mark_once(state: StateBackend) -> None:
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme", "tenant|2026-01|zeta"):
        r = state.budget_reserve((charge(0.5, 10.0, key=key),), WALL, 60)
        assert r.reservation_id
        state.budget_settle(r.reservation_id, 0.5, WALL)
    rows = state.budget_counters("tenant|2026-01|")
    assert [(k, s, r) for k, s, r in rows] == [("tenant|2026-01|acme", 0.5, 0.0), ("tenant|2026-01|zeta", 0.5, 0.0)]
    assert state.budget_mark_soft("daily|2026-01-01|*") is True
    assert state.budget_mark_soft("daily|2026-01-01|*") is False


def test_breaker_trips_lets_one_probe_and_closes(state: StateBackend) -> None:
    s = BreakerSettings(failure_threshold=2, window_s=60, cooldown_s=30)
    assert state.breaker_admit("m", s, 100.0) == "closed"
    assert state.breaker_record("m", s, 100.0, False, "server_error", False).status == "closed"
    assert state.breaker_record("m", s, 101.0, False, "bad_request", False).status == "closed"  # not a trip kind
    assert state.breaker_record("m", s, 102.0, False, "timeout", False).status == "open"
    assert state.breaker_admit("m", s, 120.0) == "open"  # cooling down
    assert state.breaker_admit("m", s, 133.0) == "probe"
    assert state.breaker_admit("m", s, 133.5) == "open"  # one probe at a time
    assert state.breaker_record("m", s, 134.0, False, "server_error", True).status == "open"  # probe failed
    assert state.breaker_admit("m", s, 150.0) == "open"
    assert state.breaker_admit("m", s, 165.0) == "probe"
    assert state.breaker_record("m", s, 166.0, True, None, True).status == "closed"
    assert state.breaker_get("m").status == "closed"
    assert state.breaker_admit("m", s, 167.0) == "closed"


def test_breaker_failures_outside_the_window_do_not_add_up(state: StateBackend) -> None:
    s = BreakerSettings(failure_threshold=2, window_s=10, cooldown_s=30)
    state.breaker_record("m", s, 100.0, False, "server_error", False)
    assert state.breaker_record("m", s, 111.0, False, "server_error", False).status == "closed"
    assert state.breaker_record("m", s, 112.0, False, "server_error", False).status == "open"


def test_concurrency_slots(state: StateBackend) -> None:
    assert state.slot_acquire("m", 2) and state.slot_acquire("m", 2)
    assert not state.slot_acquire("m", 2)
    state.slot_release("m")
    assert state.slot_acquire("m", 2)


def test_rpm_sliding_window(state: StateBackend) -> None:
    assert [state.rate_acquire("m", 3, None, 10, 100.0 + i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert state.rate_acquire("m", 3, None, 10, 110.0) == pytest.approx(50.0)  # first grant leaves at 160
    assert state.rate_acquire("m", 3, None, 10, 160.0) == 0.0


def test_tpm_sliding_window(state: StateBackend) -> None:
    assert state.rate_acquire("m", None, 100, 60, 100.0) == 0.0
    assert state.rate_acquire("m", None, 100, 30, 105.0) == 0.0
    assert state.rate_acquire("m", None, 100, 50, 110.0) == pytest.approx(50.0)  # wait for the 60 to leave
    assert state.rate_acquire("m", None, 100, 50, 160.5) == 0.0


def test_cache_round_trip(state: StateBackend) -> None:
    result = Result(
        text="hi",
        model="m",
        provider="p",
        usage=Usage(3, 4, 2, 1),
        cost_usd=0.1,
        cache_hit=False,
        route="r",
        attempts=(),
        latency_s=0.1,
        task="t",
    )
    assert state.cache_get("k") is None
    state.cache_set("k", CacheEntry(result, WALL + 60, WALL + 120), 100)
    entry = state.cache_get("k")
    assert entry is not None
    assert (entry.value.text, entry.value.usage, entry.expires_at, entry.stale_until) == (
        "hi",
        Usage(3, 4, 2, 1),
        WALL + 60,
        WALL + 120,
    )


def test_a_stored_answer_keeps_every_usage_field() -> None:
    """The stored form spells the usage out field by field (no ``asdict`` on the hot path)."""
    import json
    from dataclasses import fields

    from policyrouter.state.codec import result_from_json, result_to_json

    result = Result("hi", "m", "p", Usage(3, 4, 2, 1), 0.1, False, "r", (), 0.1, "t")
    assert list(json.loads(result_to_json(result))["usage"]) == [f.name for f in fields(Usage)]
    assert result_from_json(result_to_json(result)).usage == Usage(3, 4, 2, 1)


def test_ledger_rows_since(state: StateBackend) -> None:
    for i in range(3):
        row = LedgerRow(WALL + i, f"req-{i}", "t", "r", "m", "acme", None, 10, 5, 0, 0.01 * (i + 1), "", "ok", 1)
        state.ledger_append(row)
    assert [r.request_id for r in state.ledger_rows()] == ["req-0", "req-1", "req-2"]
    assert [r.cost_usd for r in state.ledger_rows(WALL + 1)] == [0.02, 0.03]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_durable_ledger_records_a_request_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    state: StateBackend = (
        SqliteState(tmp_path / "s.sqlite")
        if backend == "sqlite"
        else RedisState(request.getfixturevalue("redis_url"), key_prefix=request.getfixturevalue("redis_prefix"))
    )
    row = LedgerRow(WALL, "req-1", "t", "r", "m", None, None, 10, 5, 0, 0.5, "", "ok", 1)
    state.ledger_append(row)
    state.ledger_append(row)
    assert [r.cost_usd for r in state.ledger_rows()] == [0.5]


def test_every_backend_has_the_whole_protocol(state: StateBackend) -> None:
    assert missing_methods(state) == []
    events: list[tuple[str, dict[str, object]]] = []
    state.attach_events(lambda event, payload: events.append((event, payload)))
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 0.0)
    assert events == []  # nothing went away


def test_recent_totals_follow_this_states_own_reservations_and_settles(state: StateBackend) -> None:
    """``budget_used_recent`` (the soft-limit check) answers the counter's totals after this
    state's own reservation and settle (Redis from the totals they returned, without a read)."""
    key = "daily|2026-01-01|*"
    res = state.budget_reserve((charge(1.0, 10.0),), WALL, 60)
    assert res.reservation_id
    assert state.budget_used_recent(key, WALL) == (0.0, 1.0)
    state.budget_settle(res.reservation_id, 0.25, WALL)
    assert state.budget_used_recent(key, WALL) == pytest.approx((0.25, 0.0))
    assert state.budget_used_recent(key, WALL) == pytest.approx(state.budget_used(key, WALL))


# ---------------------------------------------------------------- the engine's calls: admit and finish
# Each runs twice: as the backend's own call and as combined.py's composition over its per-stage calls.
def admit(model: str, now: float, **stages: Any) -> Admit:
    """An admission at ``now``; a ``now`` past ``WALL`` is also its wall time (one clock, as SQLite keeps)."""
    return Admit(model=model, now=now, wall=now if now >= WALL else WALL, lease_s=60, tokens=10, **stages)


@pytest.mark.parametrize("way", WAYS)
def test_admit_stops_at_the_first_stage_that_refuses(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    s = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    ch = (charge(1.0, 1.5),)
    ok = call.admit(admit("m", WALL + 100.0, breaker=s, concurrency=1, rpm=2, charges=ch))
    assert (ok.stage, ok.probe, ok.slot, ok.wait, ok.entry) == ("ok", False, True, 0.0, None)
    assert ok.reserve is not None and ok.reserve.ok and ok.reserve.reservation_id
    no_slot = call.admit(admit("m", WALL + 101.0, breaker=s, concurrency=1, rpm=2, charges=ch))
    assert (no_slot.stage, no_slot.slot, no_slot.reserve) == ("slot", False, None)
    denied = call.admit(
        admit("m", WALL + 102.0, breaker=s, concurrency=2, rpm=2, charges=ch)
    )  # slot and rate grant stand
    assert (denied.stage, denied.slot) == ("budget", True)
    assert denied.reserve is not None and (denied.reserve.ok, denied.reserve.denied_budget) == (False, "daily")
    assert (denied.reserve.used, denied.reserve.limit) == (1.0, 1.5)
    waits = call.admit(admit("m", WALL + 103.0, breaker=s, concurrency=3, rpm=2, charges=ch))  # 2 grants in the window
    assert (waits.stage, waits.slot, waits.reserve) == ("rate", True, None)
    assert waits.wait == pytest.approx(57.0)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)  # only the first attempt reserved
    assert call.admit(admit("m", WALL + 104.0)) == Admitted("ok")  # no stage asked: nothing runs, nothing is taken


@pytest.mark.parametrize("way", WAYS)
def test_finish_releases_settles_and_records(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    s = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    first = call.admit(admit("m", WALL + 100.0, breaker=s, concurrency=1, charges=(charge(1.0, 10.0),)))
    assert first.reserve is not None and first.reserve.reservation_id
    rid = first.reserve.reservation_id
    rec = call.finish(
        Finish("m", WALL + 101.0, WALL + 101.0, True, cost_usd=0.25, slot=True, reservation_id=rid, breaker=s)
    )
    assert rec is not None and rec.status == "closed"
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    second = call.admit(admit("m", WALL + 102.0, breaker=s, concurrency=1, charges=(charge(1.0, 10.0),)))
    assert second.stage == "ok" and second.slot  # the first slot was given back
    assert second.reserve is not None and second.reserve.reservation_id
    rid = second.reserve.reservation_id
    rec = call.finish(
        Finish("m", WALL + 103.0, WALL + 103.0, False, kind="timeout", slot=True, reservation_id=rid, breaker=s)
    )  # a failure that cost nothing releases its reservation
    assert rec is not None and rec.status == "open"
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    closed = call.admit(admit("m", WALL + 110.0, breaker=s, concurrency=1, charges=(charge(1.0, 10.0),)))
    assert (closed.stage, closed.slot, closed.reserve) == ("open", False, None)  # nothing taken
    assert state.slot_acquire("m", 1)  # the slot is free
    state.slot_release("m")
    probe = call.admit(admit("m", WALL + 134.0, breaker=s))
    assert (probe.stage, probe.probe, probe.slot) == ("ok", True, False)
    rec = call.finish(Finish("m", WALL + 135.0, WALL + 135.0, True, breaker=s, probe=True))
    assert rec is not None and rec.status == "closed"
    assert state.breaker_get("m").status == "closed"
    assert call.finish(Finish("m", WALL + 136.0, WALL + 136.0, True)) is None  # no breaker: no record


@pytest.mark.parametrize("way", WAYS)
def test_a_failure_that_cost_something_settles_it(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    adm = call.admit(admit("m", 100.0, charges=(charge(1.0, 10.0),)))
    assert adm.reserve is not None and adm.reserve.reservation_id
    call.finish(
        Finish("m", 101.0, WALL, False, cost_usd=0.125, kind="timeout", reservation_id=adm.reserve.reservation_id)
    )
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.125, 0.0))


class _Unreservable:
    """An amount no backend can reserve: adding it up or sending it raises (as a reservation that
    fails midway would, e.g. its state going away)."""

    def _boom(self, *args: object) -> float:
        raise RuntimeError("the reservation failed")

    __float__ = __add__ = __radd__ = _boom


@pytest.mark.parametrize("way", WAYS)
def test_a_slot_is_given_back_when_the_reservation_raises(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    boom = BudgetCharge("daily", "daily|2026-01-01|*", _Unreservable(), 10.0, FAR)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="the reservation failed"):
        call.admit(admit("m", 100.0, concurrency=1, charges=(boom,)))
    assert state.slot_acquire("m", 1)  # the admission's slot went back (or was never taken)
    assert not state.slot_acquire("m", 1)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 0.0)


def test_the_composition_gives_the_slot_back_when_the_reservation_raises() -> None:
    """``combined.admit`` itself, over stages whose reservation raises after the slot was taken."""
    from policyrouter.state.memory import MemoryState

    class Failing(MemoryState):
        def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
            raise RuntimeError("the reservation failed")

    state = Failing()
    with pytest.raises(RuntimeError):
        combined.admit(state, admit("m", 100.0, concurrency=1, charges=(charge(1.0, 10.0),)))
    assert state.slots_in_use("m") == 0


# ---------------------------------------------------------------- an attempt's reservation, on every budget
DAILY = BudgetPlan("daily", "global", None, "day", "UTC", 10.0, None, None)
TENANT = BudgetPlan("tenant", "tenant", None, "month", "UTC", 1.5, None, None)


def pair(amount: float, at: float = WALL, limits: tuple[float, float] = (10.0, 1.5)) -> tuple[BudgetCharge, ...]:
    """A global daily budget and a tenant's monthly one, charged as the engine charges an attempt."""
    from dataclasses import replace

    plans = (replace(DAILY, limit_usd=limits[0]), replace(TENANT, limit_usd=limits[1]))
    out = budget_rules.charges(plans, "t", "acme", None, "m", None, amount, at)
    assert [ch.key for ch in out] == ["daily|2026-01-01|*", "tenant|2026-01|acme"]
    return out


@pytest.mark.parametrize("way", WAYS)
def test_an_admission_reserves_on_every_counter_and_settles_to_actual(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    adm = call.admit(admit("m", 100.0, charges=pair(1.0)))  # budgets only
    assert (adm.stage, adm.slot, adm.probe) == ("ok", False, False)
    assert adm.reserve is not None and adm.reserve.reservation_id
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)
    assert state.budget_used("tenant|2026-01|acme", WALL) == (0.0, 1.0)
    call.finish(Finish("m", 101.0, WALL, True, cost_usd=0.25, reservation_id=adm.reserve.reservation_id))
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme"):
        assert state.budget_used(key, WALL) == pytest.approx((0.25, 0.0))
    again = call.admit(admit("m", 102.0, charges=pair(1.0)))  # 0.25 + 1.0 fits the tenant's 1.5
    assert again.stage == "ok" and again.reserve is not None and again.reserve.reservation_id
    call.finish(Finish("m", 103.0, WALL, False, kind="timeout", reservation_id=again.reserve.reservation_id))
    assert state.budget_used("tenant|2026-01|acme", WALL) == pytest.approx((0.25, 0.0))  # released


@pytest.mark.parametrize("way", WAYS)
def test_a_refused_admission_names_the_budget_and_reserves_nothing(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    first = call.admit(admit("m", 100.0, charges=pair(1.0)))
    assert first.reserve is not None and first.reserve.reservation_id
    refused = call.admit(admit("m", 101.0, charges=pair(1.0)))  # daily fits, the tenant's (1.0 + 1.0 > 1.5) does not
    assert refused.stage == "budget" and refused.reserve is not None
    assert (refused.reserve.ok, refused.reserve.reservation_id) == (False, None)
    assert (refused.reserve.denied_budget, refused.reserve.used, refused.reserve.limit) == ("tenant", 1.0, 1.5)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)  # not reserved by the refusal
    call.finish(Finish("m", 102.0, WALL, True, cost_usd=1.0, reservation_id=first.reserve.reservation_id))
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((1.0, 0.0))


def test_an_admission_and_a_reservation_charge_the_same_counters(state: StateBackend) -> None:
    """The engine reserves in the admission, or (an attempt that waited for its limits) with
    ``budget_reserve``: each sees what the other reserved."""
    adm = state.admit(admit("m", 100.0, charges=pair(1.5, limits=(10.0, 2.0))))
    assert adm.reserve is not None and adm.reserve.reservation_id
    res = state.budget_reserve(pair(1.0, limits=(10.0, 2.0)), WALL, 60)
    assert (res.ok, res.denied_budget, res.used) == (False, "tenant", 1.5)
    state.budget_release(adm.reserve.reservation_id)
    res = state.budget_reserve(pair(1.0, limits=(10.0, 2.0)), WALL, 60)
    assert res.ok and res.reservation_id
    refused = state.admit(admit("m", 101.0, charges=pair(1.5, limits=(10.0, 2.0))))
    assert refused.stage == "budget" and refused.reserve is not None and refused.reserve.used == 1.0
    state.finish(Finish("m", 102.0, WALL, True, cost_usd=0.5, reservation_id=res.reservation_id))
    assert state.budget_used("tenant|2026-01|acme", WALL) == pytest.approx((0.5, 0.0))


@pytest.mark.parametrize("way", WAYS)
def test_an_admitted_reservation_is_a_lease(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)

    def reserve(wall: float) -> Admitted:
        return call.admit(Admit("m", 100.0, wall, 10, charges=pair(1.0, wall)))

    assert reserve(WALL).stage == "ok"
    assert reserve(WALL + 5).stage == "budget"
    last = reserve(WALL + 11)  # the first lease expired
    assert last.stage == "ok" and last.reserve is not None and last.reserve.reservation_id
    call.finish(Finish("m", 101.0, WALL + 11, True, cost_usd=1.0, reservation_id=last.reserve.reservation_id))
    assert state.budget_used("tenant|2026-01|acme", WALL + 11) == pytest.approx((1.0, 0.0))


@pytest.mark.parametrize("way", ["admit", "reserve"])
def test_a_refusal_reports_the_limit_the_policy_gives(state: StateBackend, way: str) -> None:
    one = (charge(60.0, 64.0),)
    assert state.budget_reserve(one, WALL, 60).ok
    more = (charge(5.0, 64.0),)
    if way == "admit":
        res = state.admit(admit("m", 100.0, charges=more)).reserve
    else:
        res = state.budget_reserve(more, WALL, 60)
    assert res is not None and (res.ok, res.denied_budget, res.used, res.limit) == (False, "daily", 60.0, 64.0)


@pytest.mark.parametrize("way", ["admit", "reserve"])
def test_a_settle_after_the_lease_expired_counts_its_spend_once(state: StateBackend, way: str) -> None:
    """The lease ran out (its amount went back), then the call's settle arrived: the money was
    spent, so it counts, once; a second settle counts nothing (every backend, as Redis does).
    ``admit``: reserved by the admission and settled by ``finish``; ``reserve``: the budget calls."""

    def reserve(at: float) -> str:
        if way == "admit":
            res = state.admit(Admit("m", 100.0, at, 10, charges=pair(1.0, at))).reserve
        else:
            res = state.budget_reserve(pair(1.0, at), at, 10)
        assert res is not None and res.ok and res.reservation_id
        return res.reservation_id

    def settle(rid: str, usd: float, at: float) -> None:
        if way == "admit":
            state.finish(Finish("m", 101.0, at, True, cost_usd=usd, reservation_id=rid))
        else:
            state.budget_settle(rid, usd, at)

    late = reserve(WALL)
    second = reserve(WALL + 11)  # fits only once the first lease is reclaimed (1.0 + 1.0 > 1.5)
    assert state.budget_used("tenant|2026-01|acme", WALL + 11) == (0.0, 1.0)
    settle(late, 0.25, WALL + 12)
    settle(late, 0.25, WALL + 12)  # counted once
    assert state.budget_used("tenant|2026-01|acme", WALL + 12) == pytest.approx((0.25, 1.0))
    settle(second, 0.5, WALL + 12)
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme"):
        assert state.budget_used(key, WALL + 12) == pytest.approx((0.75, 0.0))


@pytest.mark.parametrize("way", ["finish", "release"])
def test_a_release_after_the_lease_expired_counts_nothing(state: StateBackend, way: str) -> None:
    first = state.budget_reserve(pair(1.0), WALL, 10)
    second = state.budget_reserve(pair(1.0, WALL + 11), WALL + 11, 10)  # reclaims the first lease
    assert first.reservation_id and second.reservation_id
    if way == "finish":  # a failure that cost nothing releases its reservation
        state.finish(Finish("m", 100.0, WALL + 12, False, kind="timeout", reservation_id=first.reservation_id))
    else:
        state.budget_release(first.reservation_id)
    state.budget_settle(first.reservation_id, 0.5, WALL + 12)  # released: a settle after it counts nothing
    state.budget_settle(second.reservation_id, 0.5, WALL + 12)
    assert state.budget_used("tenant|2026-01|acme", WALL + 12) == pytest.approx((0.5, 0.0))


# ---------------------------------------------------------------- token budgets
# A token counter is a counter like a USD one, under its own key; a reservation may hold both,
# and each settles to the attempt's actual in its own unit.
TOKENS_KEY = "daily#tokens|2026-01-01|*"
BOTH = BudgetPlan("daily", "global", None, "day", "UTC", 10.0, None, None, limit_tokens=2_000)


def tokens(amount: int, limit: int, key: str = TOKENS_KEY) -> BudgetCharge:
    return BudgetCharge("daily", key, float(amount), float(limit), FAR, "tokens")


def test_a_token_charge_reserves_refuses_in_tokens_and_settles_to_the_tokens_used(state: StateBackend) -> None:
    first = state.budget_reserve((tokens(1_500, 2_000),), WALL, 60)
    assert first.ok and first.reservation_id
    denied = state.budget_reserve((tokens(1_000, 2_000),), WALL, 60)
    assert (denied.ok, denied.denied_budget, denied.unit) == (False, "daily", "tokens")
    assert (denied.used, denied.limit) == (1_500.0, 2_000.0)
    state.budget_settle(first.reservation_id, 0.75, WALL, 700)  # the USD cost goes to USD counters only
    assert state.budget_used(TOKENS_KEY, WALL) == (700.0, 0.0)
    assert state.budget_reserve((tokens(1_300, 2_000),), WALL, 60).ok  # 700 + 1,300 fits exactly


@pytest.mark.parametrize("way", WAYS)
def test_one_reservation_on_a_usd_and_a_token_counter_settles_each_in_its_unit(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    held = budget_rules.charges((BOTH,), "t", None, None, "m", None, 1.0, WALL, 1_200)
    assert [(ch.key, ch.amount, ch.unit) for ch in held] == [
        ("daily|2026-01-01|*", 1.0, "usd"),
        (TOKENS_KEY, 1_200.0, "tokens"),
    ]
    adm = call.admit(admit("m", 100.0, charges=held))
    assert adm.reserve is not None and adm.reserve.reservation_id
    assert state.budget_used(TOKENS_KEY, WALL) == (0.0, 1_200.0)
    refused = call.admit(admit("m", 101.0, charges=held))  # USD fits (2.0 <= 10), tokens (2,400 > 2,000) do not
    assert refused.stage == "budget" and refused.reserve is not None
    assert (refused.reserve.unit, refused.reserve.used, refused.reserve.limit) == ("tokens", 1_200.0, 2_000.0)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)  # the refusal reserved nothing
    call.finish(Finish("m", 102.0, WALL, True, cost_usd=0.25, tokens=900, reservation_id=adm.reserve.reservation_id))
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    assert state.budget_used(TOKENS_KEY, WALL) == (900.0, 0.0)


@pytest.mark.parametrize("way", WAYS)
def test_a_failure_that_used_tokens_at_no_cost_settles_them(state: StateBackend, way: str) -> None:
    """A free model's failed attempt that billed tokens: the tokens count, though the cost is 0."""
    call = engine_calls(state, way)
    adm = call.admit(admit("m", 100.0, charges=(tokens(1_000, 2_000),)))
    assert adm.reserve is not None and adm.reserve.reservation_id
    call.finish(Finish("m", 101.0, WALL, False, tokens=300, kind="timeout", reservation_id=adm.reserve.reservation_id))
    assert state.budget_used(TOKENS_KEY, WALL) == (300.0, 0.0)
    other = call.admit(admit("m", 102.0, charges=(tokens(1_000, 2_000),)))
    assert other.reserve is not None and other.reserve.reservation_id
    call.finish(Finish("m", 103.0, WALL, False, kind="connection", reservation_id=other.reserve.reservation_id))
    assert state.budget_used(TOKENS_KEY, WALL) == (300.0, 0.0)  # nothing used: released


@pytest.mark.parametrize("way", ["admit", "reserve"])
def test_a_token_settle_after_the_lease_expired_counts_once(state: StateBackend, way: str) -> None:
    def reserve(at: float) -> str:
        held = (tokens(1_500, 2_000),)
        res = state.admit(Admit("m", 100.0, at, 10, charges=held)).reserve if way == "admit" else None
        res = res or state.budget_reserve(held, at, 10)
        assert res.ok and res.reservation_id
        return res.reservation_id

    late = reserve(WALL)
    second = reserve(WALL + 11)  # fits only once the first lease is reclaimed
    for _ in range(2):  # counted once
        if way == "admit":
            state.finish(Finish("m", 101.0, WALL + 12, True, tokens=400, reservation_id=late))
        else:
            state.budget_settle(late, 0.0, WALL + 12, 400)
    assert state.budget_used(TOKENS_KEY, WALL + 12) == (400.0, 1_500.0)
    state.budget_settle(second, 0.0, WALL + 12, 1_000)
    assert state.budget_used(TOKENS_KEY, WALL + 12) == (1_400.0, 0.0)


def test_token_counters_are_listed_apart_from_usd_ones(state: StateBackend) -> None:
    for held in ((charge(0.5, 10.0),), (tokens(100, 2_000),), (tokens(50, 2_000, "daily#tokens|2026-01-01|u1"),)):
        r = state.budget_reserve(held, WALL, 60)
        assert r.reservation_id
        state.budget_settle(r.reservation_id, 0.5, WALL, 100)
    assert state.budget_counters("daily|2026-01-01|") == [("daily|2026-01-01|*", 0.5, 0.0)]
    assert state.budget_counters("daily#tokens|2026-01-01|") == [
        (TOKENS_KEY, 100.0, 0.0),
        ("daily#tokens|2026-01-01|u1", 100.0, 0.0),
    ]


@pytest.mark.parametrize("per_try", [100, 150])
def test_threads_racing_a_token_budget_never_overshoot_beyond_the_in_flight_excess(
    state: StateBackend, per_try: int
) -> None:
    """16 threads race 100-token reservations against 1,000 tokens. Settling what was reserved,
    exactly 10 are granted and 1,000 spent; settling 150 (an upstream that counts more than was
    reserved), spent passes the limit by at most 50 per attempt in flight (16 threads)."""
    granted = race(state, (tokens(100, 1_000),), threads=16, tries=5, tokens=per_try)
    spent, reserved = state.budget_used(TOKENS_KEY, WALL)
    assert reserved == 0.0 and spent == granted * per_try
    if per_try == 100:
        assert granted == 10
    else:
        assert 1_000 - 100 < spent <= 1_000 + 16 * 50
