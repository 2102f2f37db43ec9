"""The combined hot-path operations, composed from the per-stage calls of any backend.

A request's attempt touches state at two moments: before the call (breaker admission,
concurrency slot, rate window, budget reservation) and after it (slot release, budget
settle, breaker record); after the request, the cache store and the ledger row follow.
``attempt_admit`` / ``attempt_finish`` / ``record_result`` of the state protocol do each
moment in one operation. A remote backend (Redis) runs each as one server-side script,
so one round trip; memory runs each under one lock acquisition and SQLite in one
transaction (a breaker-only admission or finish keeps its read-only path through the
compositions here). The compositions make exactly the per-stage calls, in the same
order: the reference the native versions follow, and the default for any other backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from policyrouter.stages.circuit import BreakerRecord, BreakerSettings
from policyrouter.state.base import AdmitResult, BudgetCharge, CacheEntry, LedgerRow

if TYPE_CHECKING:
    from policyrouter.state.base import StateBackend

__all__ = ["attempt_admit", "attempt_finish", "record_result"]


def attempt_admit(
    state: StateBackend,
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
    state: StateBackend,
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
