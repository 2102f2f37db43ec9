"""The combined hot-path operations, composed from the per-stage calls of any backend.

A request's attempt touches state at two moments: before the call (breaker admission,
concurrency slot, rate window, budget reservation) and after it (slot release, budget
settle, breaker record); after the request, the cache store and the ledger row follow.
``attempt_admit`` / ``attempt_finish`` / ``record_result`` of the state protocol do each
moment in one operation. A remote backend (Redis) runs each as one server-side script,
so one round trip; memory and SQLite run the compositions here on a view of their own
stages (:class:`Stages`) inside one lock acquisition or one transaction. The compositions
make exactly the per-stage calls, in the same order: the reference the Redis scripts
follow, and the default for any other backend.

Three more folds serve a backend where each operation is a network round trip; the router
uses them when the backend has its own (``admit_cached``, ``finish_record``,
``budget_used_recent``: Redis), so a request that misses the cache costs two round trips.
Their compositions here are over the backend's combined operations:

* ``admit_cached``: the cache lookup and the first attempt's admission; a fresh entry
  admits nothing (no breaker probe, slot, rate-window entry or reservation).
* ``finish_record``: the last attempt's finish (a success) with the cache store and the
  ledger row.
* ``soft_used``: the counter's totals for the soft-limit check; a remote backend may answer
  from the totals its own last reservation or settle on that counter returned (see
  ``RedisState.budget_used_recent``), which lag the shared counter by at most that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from policyrouter.stages.circuit import Admission, BreakerRecord, BreakerSettings
from policyrouter.state.base import AdmitResult, BudgetCharge, BudgetRefused, CacheEntry, LedgerRow, ReserveResult

if TYPE_CHECKING:
    from policyrouter.stages.budget import ChargeSet
    from policyrouter.state.base import StateBackend

__all__ = [
    "AdmitArgs",
    "FinishArgs",
    "admit_cached",
    "attempt_admit",
    "attempt_finish",
    "budget_hold",
    "finish_record",
    "record_result",
    "run_admit_cached",
    "run_finish_record",
    "soft_used",
]

# The arguments of ``attempt_admit`` / ``attempt_finish`` after ``state``, in their order.
AdmitArgs = tuple[
    str,
    BreakerSettings | None,
    int | None,
    int | None,
    int | None,
    int,
    Sequence[BudgetCharge] | None,
    float,
    float,
    float,
]
FinishArgs = tuple[str, bool, str | None, float, BreakerSettings | None, float, float, bool, str | None, bool]


class Stages(Protocol):
    """The per-stage calls the compositions make: a state backend itself, or a backend's view
    of its own stages inside one lock or transaction (memory, SQLite), so a native combined
    operation is this composition run on that view, not a copy of it."""

    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission: ...
    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord: ...
    def slot_acquire(self, model: str, limit: int) -> bool: ...
    def slot_release(self, model: str) -> None: ...
    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float: ...
    def budget_reserve(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult: ...
    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float) -> None: ...
    def budget_release(self, reservation_id: str) -> None: ...


def budget_hold(state: Stages, charges: ChargeSet, amount: float, wall: float, lease_s: float) -> str:
    """``budget_reserve`` of ``amount`` on each counter of ``charges``: the reservation id, or
    :class:`BudgetRefused` when a charge does not fit (then nothing was reserved)."""
    res = state.budget_reserve(charges.charges(amount), wall, lease_s)
    if not res.ok or res.reservation_id is None:
        raise BudgetRefused(res.denied_budget or "", res.used, res.limit)
    return res.reservation_id


def attempt_admit(
    state: Stages,
    model: str,
    breaker: BreakerSettings | None,
    concurrency: int | None,
    rpm: int | None,
    tpm: int | None,
    tokens: int,
    charges: Sequence[BudgetCharge] | None,
    now: float,
    wall: float,
    lease_s: float,
) -> AdmitResult:
    """Breaker, slot, rate window, budget, in that order; stop at the first that says no.

    A stage given ``None`` is not run (rate runs when ``rpm`` or ``tpm`` is set). A slot
    taken before a budget reservation that fails with an exception is given back.
    """
    probe = False
    if breaker is not None:
        verdict = state.breaker_admit(model, breaker, now)
        if verdict == "open":
            return AdmitResult("open")
        probe = verdict == "probe"
    slot = False
    if concurrency is not None:
        slot = state.slot_acquire(model, concurrency)
        if not slot:
            return AdmitResult("slot", probe)
    if rpm is not None or tpm is not None:
        wait = state.rate_acquire(model, rpm, tpm, tokens, now)
        if wait > 0:
            return AdmitResult("rate", probe, slot, wait)
    if charges is None:
        return AdmitResult("ok", probe, slot)
    try:
        res = state.budget_reserve(charges, wall, lease_s)
    except BaseException:
        if slot:
            state.slot_release(model)
        raise
    return AdmitResult("ok" if res.ok else "budget", probe, slot, 0.0, res)


def attempt_finish(
    state: Stages,
    model: str,
    slot: bool,
    reservation_id: str | None,
    cost_usd: float,
    breaker: BreakerSettings | None,
    now: float,
    wall: float,
    ok: bool,
    kind: str | None,
    probe: bool,
) -> BreakerRecord | None:
    """Release the slot, settle the reservation, record the outcome on the breaker.

    A success settles its cost (even 0); a failure settles what it cost, or releases the
    reservation when it cost nothing. Returns the breaker's record (``None`` without one).
    """
    if slot:
        state.slot_release(model)
    if reservation_id is not None:
        if ok or cost_usd > 0:
            state.budget_settle(reservation_id, cost_usd, wall)
        else:
            state.budget_release(reservation_id)
    if breaker is None:
        return None
    return state.breaker_record(model, breaker, now, ok, kind, probe)


def record_result(state: StateBackend, cache: tuple[str, CacheEntry, int] | None, row: LedgerRow | None) -> None:
    """Store a result in the cache (``(key, entry, max_entries)``) and append its ledger row."""
    if cache is not None:
        state.cache_set(*cache)
    if row is not None:
        state.ledger_append(row)


def admit_cached(
    state: StateBackend, cache_key: str, wall: float, admit: AdmitArgs | None
) -> tuple[CacheEntry | None, AdmitResult | None]:
    """The cache lookup, then (on no entry fresh at ``wall``) ``attempt_admit(*admit)``.

    Returns ``(entry, None)`` on a fresh entry (nothing admitted), else ``(None, admission)``
    (``None`` without ``admit``). A stale entry is not returned: it serves only after the
    request fails (``stale_if_error``), from a lookup of its own.
    """
    entry = state.cache_get(cache_key)
    if entry is not None and entry.expires_at > wall:
        return entry, None
    return None, (state.attempt_admit(*admit) if admit is not None else None)


def finish_record(
    state: StateBackend, finish: FinishArgs | None, cache: tuple[str, CacheEntry, int] | None, row: LedgerRow | None
) -> None:
    """``attempt_finish(*finish)`` (a success: its breaker record is not needed), then ``record_result``."""
    if finish is not None:
        state.attempt_finish(*finish)
    if cache is not None or row is not None:
        state.record_result(cache, row)


def run_admit_cached(
    state: StateBackend, cache_key: str, wall: float, admit: AdmitArgs | None
) -> tuple[CacheEntry | None, AdmitResult | None]:
    """``admit_cached`` on the backend's own fold when it has one (one round trip), else the composition."""
    native = getattr(state, "admit_cached", None)
    if native is not None:
        out: tuple[CacheEntry | None, AdmitResult | None] = native(cache_key, wall, admit)
        return out
    return admit_cached(state, cache_key, wall, admit)


def run_finish_record(
    state: StateBackend, finish: FinishArgs | None, cache: tuple[str, CacheEntry, int] | None, row: LedgerRow | None
) -> None:
    """``finish_record`` on the backend's own fold when it has one (one round trip), else the composition."""
    native = getattr(state, "finish_record", None)
    if native is not None:
        native(finish, cache, row)
    else:
        finish_record(state, finish, cache, row)


def soft_used(state: StateBackend, key: str, wall: float) -> tuple[float, float]:
    """(spent, reserved) of a budget counter for the soft-limit check: ``budget_used_recent``
    when the backend has it (totals it saw last, refreshed by its own reservations and
    settles), else the exact ``budget_used``."""
    recent = getattr(state, "budget_used_recent", None)
    if recent is not None:
        out: tuple[float, float] = recent(key, wall)
        return out
    return state.budget_used(key, wall)
