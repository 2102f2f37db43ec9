"""One set of state-protocol assertions over every backend: memory, sqlite and redis.

Times are the caller's (Redis gets ``clock=`` so its scripts use them), so lease,
cooldown and window tests jump time instead of waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _state_kit import FAR, WALL

from policyrouter.stages.budget import ChargeSet
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.state.base import BudgetCharge, BudgetRefused, CacheEntry, LedgerRow, StateBackend
from policyrouter.state.redis import RedisState
from policyrouter.state.sqlite import SqliteState
from policyrouter.types import Result, Usage


def charge(amount: float, limit: float, key: str = "daily|2026-01-01|*", budget: str = "daily") -> BudgetCharge:
    return BudgetCharge(budget, key, amount, limit, FAR)


def test_reserve_denies_past_the_limit_and_settles_to_actual(state: StateBackend) -> None:
    first = state.budget_reserve([charge(1.0, 1.5)], WALL, 60)
    assert first.ok and first.reservation_id
    denied = state.budget_reserve([charge(1.0, 1.5)], WALL, 60)
    assert (denied.ok, denied.denied_budget, denied.used, denied.limit) == (False, "daily", 1.0, 1.5)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)
    state.budget_settle(first.reservation_id, 0.25, WALL)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    assert state.budget_reserve([charge(1.0, 1.5)], WALL, 60).ok  # 0.25 + 1.0 fits now


def test_settling_twice_counts_once_and_release_gives_back(state: StateBackend) -> None:
    r = state.budget_reserve([charge(1.0, 10.0)], WALL, 60)
    assert r.reservation_id
    state.budget_settle(r.reservation_id, 0.5, WALL)
    state.budget_settle(r.reservation_id, 0.5, WALL)
    state.budget_release(r.reservation_id)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.5, 0.0))
    r2 = state.budget_reserve([charge(2.0, 10.0)], WALL, 60)
    assert r2.reservation_id
    state.budget_release(r2.reservation_id)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.5, 0.0))


def test_every_charge_must_admit_and_a_denial_reserves_nothing(state: StateBackend) -> None:
    both = [charge(1.0, 10.0), charge(1.0, 0.5, key="tenant|2026-01|acme", budget="tenant")]
    res = state.budget_reserve(both, WALL, 60)
    assert (res.ok, res.denied_budget) == (False, "tenant")
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 0.0)


def test_a_denial_by_an_existing_counter_leaves_the_other_counters_as_they_were(state: StateBackend) -> None:
    both = [charge(1.0, 10.0), charge(1.0, 1.5, key="tenant|2026-01|acme", budget="tenant")]
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
    one = [charge(1.0, 1.5)]
    assert state.budget_reserve(one, WALL, 10).ok
    assert not state.budget_reserve(one, WALL + 5, 10).ok
    assert state.budget_reserve(one, WALL + 11, 10).ok  # the first lease expired


def test_counters_by_prefix_and_soft_mark_once(state: StateBackend) -> None:
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme", "tenant|2026-01|zeta"):
        r = state.budget_reserve([charge(0.5, 10.0, key=key)], WALL, 60)
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

    from policyrouter.state.sqlite import _result_to_json

    result = Result("hi", "m", "p", Usage(3, 4, 2, 1), 0.1, False, "r", (), 0.1, "t")
    assert list(json.loads(_result_to_json(result))["usage"]) == [f.name for f in fields(Usage)]


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


def test_attempt_admit_stops_at_the_first_stage_that_refuses(state: StateBackend) -> None:
    s = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    ch = [charge(1.0, 1.5)]
    ok = state.attempt_admit("m", s, 1, 2, None, 10, ch, 100.0, WALL, 60)
    assert (ok.stage, ok.probe, ok.slot, ok.wait) == ("ok", False, True, 0.0)
    assert ok.reserve is not None and ok.reserve.ok and ok.reserve.reservation_id
    no_slot = state.attempt_admit("m", s, 1, 2, None, 10, ch, 101.0, WALL, 60)
    assert (no_slot.stage, no_slot.slot, no_slot.reserve) == ("slot", False, None)
    denied = state.attempt_admit("m", s, 2, 2, None, 10, ch, 102.0, WALL, 60)  # the slot and the rate grant stand
    assert (denied.stage, denied.slot) == ("budget", True)
    assert denied.reserve is not None and (denied.reserve.ok, denied.reserve.denied_budget) == (False, "daily")
    assert (denied.reserve.used, denied.reserve.limit) == (1.0, 1.5)
    waits = state.attempt_admit("m", s, 3, 2, None, 10, ch, 103.0, WALL, 60)  # 2 grants in the window already
    assert (waits.stage, waits.slot, waits.reserve) == ("rate", True, None)
    assert waits.wait == pytest.approx(57.0)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)  # only the first attempt reserved


def test_attempt_finish_releases_settles_and_records(state: StateBackend) -> None:
    s = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    first = state.attempt_admit("m", s, 1, None, None, 10, [charge(1.0, 10.0)], 100.0, WALL, 60)
    assert first.reserve is not None and first.reserve.reservation_id
    rec = state.attempt_finish("m", True, first.reserve.reservation_id, 0.25, s, 101.0, WALL, True, None, False)
    assert rec is not None and rec.status == "closed"
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    second = state.attempt_admit("m", s, 1, None, None, 10, [charge(1.0, 10.0)], 102.0, WALL, 60)
    assert second.stage == "ok" and second.slot  # the first slot was given back
    assert second.reserve is not None and second.reserve.reservation_id
    rec = state.attempt_finish("m", True, second.reserve.reservation_id, 0.0, s, 103.0, WALL, False, "timeout", False)
    assert rec is not None and rec.status == "open"  # a failure that cost nothing releases its reservation
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((0.25, 0.0))
    closed = state.attempt_admit("m", s, 1, None, None, 10, [charge(1.0, 10.0)], 110.0, WALL, 60)
    assert (closed.stage, closed.slot, closed.reserve) == ("open", False, None)  # nothing taken
    assert state.slot_acquire("m", 1)  # the slot is free
    state.slot_release("m")
    probe = state.attempt_admit("m", s, None, None, None, 10, None, 134.0, WALL, 60)
    assert (probe.stage, probe.probe, probe.slot) == ("ok", True, False)
    rec = state.attempt_finish("m", False, None, 0.0, s, 135.0, WALL, True, None, True)
    assert rec is not None and rec.status == "closed"
    assert state.attempt_finish("m", False, None, 0.0, None, 136.0, WALL, True, None, False) is None


# ---------------------------------------------------------------- budget_hold: the budgets-only reservation
def charge_set(limits: tuple[float, float] = (10.0, 1.5)) -> ChargeSet:
    """Two budgets (a global daily one and a tenant's monthly one), as ``ChargeSets.get`` builds them."""
    return ChargeSet(
        (("daily", "daily|2026-01-01|*", limits[0], FAR), ("tenant", "tenant|2026-01|acme", limits[1], FAR)),
        WALL,
        FAR,
    )


def test_hold_reserves_on_every_counter_and_settles_to_actual(state: StateBackend) -> None:
    cs = charge_set()
    rid = state.budget_hold(cs, 1.0, WALL, 60)
    assert rid and state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)
    assert state.budget_used("tenant|2026-01|acme", WALL) == (0.0, 1.0)
    state.budget_settle(rid, 0.25, WALL)
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme"):
        assert state.budget_used(key, WALL) == pytest.approx((0.25, 0.0))
    again = state.budget_hold(cs, 1.0, WALL, 60)  # 0.25 + 1.0 fits the tenant's 1.5
    state.budget_release(again)
    assert state.budget_used("tenant|2026-01|acme", WALL) == pytest.approx((0.25, 0.0))


def test_a_refused_hold_names_the_budget_and_reserves_nothing(state: StateBackend) -> None:
    cs = charge_set()
    first = state.budget_hold(cs, 1.0, WALL, 60)
    with pytest.raises(BudgetRefused) as refused:
        state.budget_hold(cs, 1.0, WALL, 60)  # the daily budget fits, the tenant's (1.0 + 1.0 > 1.5) does not
    assert (refused.value.budget, refused.value.used, refused.value.limit) == ("tenant", 1.0, 1.5)
    assert state.budget_used("daily|2026-01-01|*", WALL) == (0.0, 1.0)  # not reserved by the refusal
    state.budget_settle(first, 1.0, WALL)
    assert state.budget_used("daily|2026-01-01|*", WALL) == pytest.approx((1.0, 0.0))


def test_a_hold_agrees_with_reserve_on_the_same_counters(state: StateBackend) -> None:
    """Both paths charge the same counters, so each sees what the other reserved."""
    cs = charge_set(limits=(10.0, 2.0))
    held = state.budget_hold(cs, 1.5, WALL, 60)
    res = state.budget_reserve(cs.charges(1.0), WALL, 60)
    assert (res.ok, res.denied_budget, res.used) == (False, "tenant", 1.5)
    state.budget_release(held)
    res = state.budget_reserve(cs.charges(1.0), WALL, 60)
    assert res.ok and res.reservation_id
    with pytest.raises(BudgetRefused):
        state.budget_hold(cs, 1.5, WALL, 60)
    state.budget_settle(res.reservation_id, 0.5, WALL)
    assert state.budget_used("tenant|2026-01|acme", WALL) == pytest.approx((0.5, 0.0))


def test_a_held_lease_runs_out(state: StateBackend) -> None:
    cs = charge_set(limits=(10.0, 1.5))
    state.budget_hold(cs, 1.0, WALL, 10)
    with pytest.raises(BudgetRefused):
        state.budget_hold(cs, 1.0, WALL + 5, 10)
    rid = state.budget_hold(cs, 1.0, WALL + 11, 10)  # the first lease expired
    state.budget_settle(rid, 1.0, WALL + 11)
    assert state.budget_used("tenant|2026-01|acme", WALL + 11) == pytest.approx((1.0, 0.0))


def test_a_refusal_reports_the_limit_the_policy_gives(state: StateBackend) -> None:
    cs = ChargeSet((("daily", "daily|2026-01-01|*", 64.0, FAR),), WALL, FAR)
    state.budget_hold(cs, 60.0, WALL, 60)
    with pytest.raises(BudgetRefused) as refused:
        state.budget_hold(cs, 5.0, WALL, 60)
    assert (refused.value.budget, refused.value.used, refused.value.limit) == ("daily", 60.0, 64.0)


@pytest.mark.parametrize("way", ["hold", "reserve"])
def test_a_settle_after_the_lease_expired_counts_its_spend_once(state: StateBackend, way: str) -> None:
    """The lease ran out (its amount went back), then the call's settle arrived: the money was
    spent, so it counts, once; a second settle counts nothing (every backend, as Redis does)."""
    cs = charge_set(limits=(10.0, 1.5))

    def reserve(at: float) -> str:
        if way == "hold":
            return state.budget_hold(cs, 1.0, at, 10)
        res = state.budget_reserve(cs.charges(1.0), at, 10)
        assert res.ok and res.reservation_id
        return res.reservation_id

    late = reserve(WALL)
    second = reserve(WALL + 11)  # fits only once the first lease is reclaimed (1.0 + 1.0 > 1.5)
    assert state.budget_used("tenant|2026-01|acme", WALL + 11) == (0.0, 1.0)
    state.budget_settle(late, 0.25, WALL + 12)
    state.budget_settle(late, 0.25, WALL + 12)  # counted once
    assert state.budget_used("tenant|2026-01|acme", WALL + 12) == pytest.approx((0.25, 1.0))
    state.budget_settle(second, 0.5, WALL + 12)
    for key in ("daily|2026-01-01|*", "tenant|2026-01|acme"):
        assert state.budget_used(key, WALL + 12) == pytest.approx((0.75, 0.0))


def test_a_release_after_the_lease_expired_counts_nothing(state: StateBackend) -> None:
    cs = charge_set(limits=(10.0, 1.5))
    first = state.budget_hold(cs, 1.0, WALL, 10)
    second = state.budget_hold(cs, 1.0, WALL + 11, 10)  # reclaims the first lease
    state.budget_release(first)
    state.budget_settle(first, 0.5, WALL + 12)  # released: a settle after it counts nothing
    state.budget_settle(second, 0.5, WALL + 12)
    assert state.budget_used("tenant|2026-01|acme", WALL + 12) == pytest.approx((0.5, 0.0))
