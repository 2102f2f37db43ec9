"""The folds of the engine's calls over every backend: Redis runs each call as one script, memory
and sqlite run ``state/combined.py``'s compositions in one lock or transaction, and all of them
answer as the compositions do over the backend's per-stage calls.

* ``admit`` with a ``cache_key``: a fresh cache entry answers and admits nothing (no breaker
  probe, concurrency slot, rate-window entry or reservation); a stale or missing one admits as
  ``admit`` without a key does.
* ``record``: the last attempt's finish, the cache store and the ledger row together (on Redis
  sent without waiting, answered before the next operation); a second settle of the same
  reservation counts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _state_kit import BACKENDS, FAR, WALL, WAYS, engine_calls, open_state

from policyrouter.stages.circuit import BreakerSettings
from policyrouter.state.base import (
    Admit,
    Admitted,
    BudgetCharge,
    CacheEntry,
    CacheStore,
    Finish,
    LedgerRow,
    Record,
    StateBackend,
)
from policyrouter.types import Result, Usage

KEY = "daily|2026-01-01|*"
BREAKER = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)


def entry(expires_at: float, stale_until: float) -> CacheEntry:
    result = Result("cached", "m", "p", Usage(3, 4), 0.1, False, "r", (), 0.1, "t")
    return CacheEntry(result, expires_at, stale_until)


def tight(now: float, cache_key: str | None = None, wall: float = WALL) -> Admit:
    """Every stage at its tightest: a half-open probe, 1 slot, 1 request a minute, a budget."""
    charges = (BudgetCharge("daily", KEY, 1.0, 10.0, FAR),)
    return Admit("m", now, wall, 60.0, 10, BREAKER, 1, 1, None, charges, cache_key)


def at(t: float) -> float:
    """A time ``t - 100`` seconds after ``WALL``: a scenario where ``now`` and ``wall`` are one clock
    (each backend keeps its breaker and rate times on one of them; SQLite on the wall)."""
    return WALL + t - 100


@pytest.mark.parametrize("way", WAYS)
def test_a_fresh_entry_admits_nothing(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    assert state.breaker_record("m", BREAKER, 100.0, False, "server_error", False).status == "open"
    state.cache_set("k", entry(WALL + 10, WALL + 100), 100)
    hit = call.admit(tight(200.0, cache_key="k"))  # past the cooldown
    assert (hit.stage, hit.probe, hit.slot, hit.wait, hit.reserve) == ("cached", False, False, 0.0, None)
    assert hit.entry is not None and hit.entry.value.text == "cached"
    assert (hit.entry.expires_at, hit.entry.stale_until) == (WALL + 10, WALL + 100)
    # nothing was taken: the probe, the slot, the minute's one request and the budget are all still there
    assert state.budget_used(KEY, WALL) == (0.0, 0.0)
    after = call.admit(tight(200.0))
    assert (after.stage, after.probe, after.slot) == ("ok", True, True)
    assert after.reserve is not None and after.reserve.ok


@pytest.mark.parametrize("way", WAYS)
def test_a_stale_or_missing_entry_admits(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    state.cache_set("k", entry(WALL - 1, WALL + 100), 100)  # stale: kept for stale_if_error only
    adm = call.admit(tight(100.0, cache_key="k"))
    assert (adm.stage, adm.slot, adm.entry) == ("ok", True, None)
    assert adm.reserve is not None and adm.reserve.ok
    assert state.budget_used(KEY, WALL) == (0.0, 1.0)
    stale = state.cache_get("k")
    assert stale is not None and stale.stale_until == WALL + 100  # still there for a failure
    adm = call.admit(tight(101.0, cache_key="nothing"))
    assert (adm.stage, adm.entry) == ("slot", None)  # admitted as without a key: no slot left
    lookup = Admit("m", 102.0, WALL, 60.0, cache_key="nothing")  # a lookup alone: no stage to run
    assert call.admit(lookup) == Admitted("ok")
    state.cache_set("fresh", entry(WALL + 10, WALL + 100), 100)
    found = call.admit(Admit("m", 102.0, WALL, 60.0, cache_key="fresh"))
    assert found.stage == "cached" and found.entry is not None and found.entry.value.text == "cached"


@pytest.mark.parametrize("way", WAYS)
def test_record_settles_stores_and_appends_once(state: StateBackend, way: str) -> None:
    call = engine_calls(state, way)
    adm = call.admit(tight(100.0))
    assert adm.reserve is not None and adm.reserve.reservation_id
    rid = adm.reserve.reservation_id
    finish = Finish("m", 101.0, WALL, True, cost_usd=0.25, slot=True, reservation_id=rid, breaker=BREAKER)
    row = LedgerRow(WALL, "req-1", "t", "r", "m", None, None, 10, 5, 0, 0.25, "", "ok", 1)
    call.record(Record(finish, CacheStore("k", entry(WALL + 60, WALL + 120), 100), row))
    assert state.budget_used(KEY, WALL) == pytest.approx((0.25, 0.0))  # settled by the fold itself
    assert state.open_reservations() == 0  # type: ignore[attr-defined]
    assert [r.request_id for r in state.ledger_rows()] == ["req-1"]
    cached = state.cache_get("k")
    assert cached is not None and cached.value.text == "cached"
    assert state.slot_acquire("m", 1)  # the finish gave the slot back
    state.slot_release("m")
    call.record(Record(finish))  # the same finish again: settles nothing
    assert state.budget_used(KEY, WALL) == pytest.approx((0.25, 0.0))
    assert [r.request_id for r in state.ledger_rows()] == ["req-1"]
    assert state.slot_acquire("m", 1) and not state.slot_acquire("m", 1)  # one slot, free before this
    call.record(Record())  # nothing to record


# ---------------------------------------------------------------- the backend's own calls = the compositions
@pytest.fixture(params=BACKENDS)
def twins(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[StateBackend, StateBackend]]:
    """Two fresh backends of one kind: one answers with its own calls, the other with the compositions."""
    pair = (open_state(request.param, tmp_path, request, "a"), open_state(request.param, tmp_path, request, "b"))
    yield pair
    for s in pair:
        s.close()


def _same(out: Any) -> Any:
    """An answer with its reservation id (random per backend and call) reduced to whether there is one."""
    if isinstance(out, Admitted) and out.reserve is not None:
        return replace(out, reserve=out.reserve._replace(reservation_id=out.reserve.reservation_id and "<id>"))
    return out


def test_the_backends_calls_answer_as_the_compositions_do(twins: tuple[StateBackend, StateBackend]) -> None:
    """The same requests through a backend's own ``admit`` / ``finish`` / ``record`` and through
    ``combined``'s over its per-stage calls: the same answers, then the same state."""
    runs = []
    for state, way in zip(twins, WAYS, strict=True):
        call = engine_calls(state, way)
        out: list[Any] = []
        state.cache_set("old", entry(WALL - 1, WALL + 100), 100)
        first = call.admit(tight(at(100.0), "old", at(100.0)))  # stale: admitted, every stage taken
        second = call.admit(tight(at(101.0), wall=at(101.0)))  # no slot left
        out += [first, second, call.admit(Admit("m", at(101.0), at(101.0), 60.0, cache_key="none"))]
        assert first.reserve is not None and first.reserve.reservation_id
        rid = first.reserve.reservation_id
        wide = Admit(
            "m", at(102.0), at(102.0), 60.0, 10, None, 2, 2, 100, (BudgetCharge("daily", KEY, 9.5, 10.0, FAR),)
        )
        out.append(call.admit(wide))  # the second slot and rate grant, then the budget refuses
        out.append(
            call.finish(Finish("m", at(103.0), at(103.0), False, kind="server_error", slot=True, breaker=BREAKER))
        )
        out.append(call.admit(tight(at(104.0), wall=at(104.0))))  # the breaker is open
        done = Finish("m", at(105.0), at(105.0), True, cost_usd=0.25, slot=True, reservation_id=rid)
        row = LedgerRow(WALL, "req-1", "t", "r", "m", None, None, 10, 5, 0, 0.25, "", "ok", 1)
        call.record(Record(done, CacheStore("k", entry(WALL + 60, WALL + 120), 100), row))
        out.append(call.admit(tight(at(106.0), "k", at(106.0))))  # cached: nothing admitted
        out.append(
            call.admit(tight(at(140.0), wall=at(140.0)))
        )  # past the cooldown: the probe, a slot, the budget; the rate waits
        out.append(call.admit(Admit("m", at(141.0), at(141.0), 60.0, 10, BREAKER, rpm=5, tpm=40)))  # the probe is out
        out += [state.budget_used(KEY, WALL), state.breaker_get("m").status, state.ledger_rows()]
        out += [state.budget_counters("daily|"), state.slot_acquire("m", 1), state.slot_acquire("m", 2)]
        runs.append([_same(x) for x in out])
    native, composed = runs
    assert native == composed
    # and the scenario went where it was meant to (so the comparison covers every stage's answer)
    assert [x.stage for x in native[:4]] == ["ok", "slot", "ok", "budget"]
    assert native[4].status == "open" and native[5].stage == "open"
    assert [native[6].stage, native[7].stage, native[8].stage] == ["cached", "rate", "open"]
    assert (native[7].probe, native[7].slot, native[7].wait) == (True, True, pytest.approx(22.0))
    assert native[9] == pytest.approx((0.25, 0.0)) and native[12:] == [
        [("daily|2026-01-01|*", 0.25, 0.0)],
        False,
        True,
    ]
