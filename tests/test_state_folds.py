"""The folds of ``state/combined.py`` over every backend: Redis runs its own (one script each),
memory and sqlite the compositions, and all of them answer alike.

* ``admit_cached``: a fresh cache entry admits nothing (no breaker probe, concurrency slot,
  rate-window entry or reservation); a stale or missing one admits as ``attempt_admit``.
* ``finish_record``: the last attempt's finish, the cache store and the ledger row together;
  a second settle of the same reservation counts nothing.
"""

from __future__ import annotations

import pytest
from _state_kit import FAR, WALL

from policyrouter.stages.circuit import BreakerSettings
from policyrouter.state import combined
from policyrouter.state.base import BudgetCharge, CacheEntry, LedgerRow, StateBackend
from policyrouter.types import Result, Usage

KEY = "daily|2026-01-01|*"
BREAKER = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)


def entry(expires_at: float, stale_until: float) -> CacheEntry:
    result = Result("cached", "m", "p", Usage(3, 4), 0.1, False, "r", (), 0.1, "t")
    return CacheEntry(result, expires_at, stale_until)


def admit_args(now: float) -> combined.AdmitArgs:
    """Every stage at its tightest: a half-open probe, 1 slot, 1 request a minute, a budget."""
    return ("m", BREAKER, 1, 1, None, 10, [BudgetCharge("daily", KEY, 1.0, 10.0, FAR)], now, WALL, 60.0)


def test_a_fresh_entry_admits_nothing(state: StateBackend) -> None:
    assert state.breaker_record("m", BREAKER, 100.0, False, "server_error", False).status == "open"
    state.cache_set("k", entry(WALL + 10, WALL + 100), 100)
    hit, adm = combined.run_admit_cached(state, "k", WALL, admit_args(200.0))  # past the cooldown
    assert hit is not None and hit.value.text == "cached" and adm is None
    # nothing was taken: the probe, the slot, the minute's one request and the budget are all still there
    assert state.budget_used(KEY, WALL) == (0.0, 0.0)
    after = state.attempt_admit(*admit_args(200.0))
    assert (after.stage, after.probe, after.slot) == ("ok", True, True)
    assert after.reserve is not None and after.reserve.ok


def test_a_stale_or_missing_entry_admits(state: StateBackend) -> None:
    state.cache_set("k", entry(WALL - 1, WALL + 100), 100)  # stale: kept for stale_if_error only
    hit, adm = combined.run_admit_cached(state, "k", WALL, admit_args(100.0))
    assert hit is None and adm is not None
    assert (adm.stage, adm.slot) == ("ok", True) and adm.reserve is not None and adm.reserve.ok
    assert state.budget_used(KEY, WALL) == (0.0, 1.0)
    stale = state.cache_get("k")
    assert stale is not None and stale.stale_until == WALL + 100  # still there for a failure
    hit, adm = combined.run_admit_cached(state, "nothing", WALL, admit_args(101.0))
    assert hit is None and adm is not None and adm.stage == "slot"  # admitted as attempt_admit would: no slot left
    assert combined.run_admit_cached(state, "nothing", WALL, None) == (None, None)  # a lookup alone


def test_finish_record_settles_stores_and_appends_once(state: StateBackend) -> None:
    adm = state.attempt_admit(*admit_args(100.0))
    assert adm.reserve is not None and adm.reserve.reservation_id
    finish = ("m", True, adm.reserve.reservation_id, 0.25, BREAKER, 101.0, WALL, True, None, False)
    row = LedgerRow(WALL, "req-1", "t", "r", "m", None, None, 10, 5, 0, 0.25, "", "ok", 1)
    combined.run_finish_record(state, finish, ("k", entry(WALL + 60, WALL + 120), 100), row)
    assert state.budget_used(KEY, WALL) == pytest.approx((0.25, 0.0))  # settled by the fold itself
    assert state.open_reservations() == 0
    assert [r.request_id for r in state.ledger_rows()] == ["req-1"]
    cached = state.cache_get("k")
    assert cached is not None and cached.value.text == "cached"
    assert state.slot_acquire("m", 1)  # the finish gave the slot back
    state.slot_release("m")
    combined.run_finish_record(state, finish, None, None)  # the same finish again: settles nothing
    assert state.budget_used(KEY, WALL) == pytest.approx((0.25, 0.0))
    assert [r.request_id for r in state.ledger_rows()] == ["req-1"]
    assert state.slot_acquire("m", 1) and not state.slot_acquire("m", 1)  # one slot, free before this
