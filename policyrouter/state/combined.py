"""The reference compositions of the state protocol's three calls, over per-stage calls.

``admit``, ``finish`` and ``record`` each run several stages (breaker, slot, rate window,
budget; cache, ledger). Memory and SQLite run these compositions on a view of their own
stages (:class:`Stages`) inside one lock acquisition or one transaction; Redis runs the
same stages, in the same order, as one server-side script (one round trip each).
"""

from __future__ import annotations

from policyrouter.stages import adaptive
from policyrouter.stages.circuit import BreakerRecord
from policyrouter.state.base import Admit, Admitted, Finish, Record, Stages

__all__ = ["Stages", "admit", "finish", "record"]


def admit(state: Stages, a: Admit) -> Admitted:
    """Cache (first attempt), breaker, slot, rate window, learned limits, budget, in that order; stop at the first
    that says no. A slot taken before a budget reservation that raises is given back."""
    if a.cache_key is not None:
        entry = state.cache_get(a.cache_key)
        if entry is not None and entry.expires_at > a.wall:
            return Admitted("cached", entry=entry)
    probe = False
    if a.breaker is not None:
        verdict = state.breaker_admit(a.model, a.breaker, a.now)
        if verdict == "open":
            return Admitted("open")
        probe = verdict == "probe"
    slot = False
    if a.concurrency is not None:
        slot = state.slot_acquire(a.model, a.concurrency)
        if not slot:
            return Admitted("slot", probe)
    if a.rpm is not None or a.tpm is not None:
        wait = state.rate_acquire(a.model, a.rpm, a.tpm, a.tokens, a.now)
        if wait > 0:
            return Admitted("rate", probe, slot, wait)
    own = None
    if a.adaptive is not None:
        cost = adaptive.costs(a.tokens - a.output_tokens, a.output_tokens)
        wait, own = state.learned_take(a.model, cost, a.adaptive, a.wall, a.waited)
        if wait > 0:
            return Admitted("learned", probe, slot, wait)
    if a.charges is None:
        return Admitted("ok", probe, slot, own=own)
    try:
        res = state.budget_reserve(a.charges, a.wall, a.lease_s)
    except BaseException:
        if slot:
            state.slot_release(a.model)
        raise
    return Admitted("ok" if res.ok else "budget", probe, slot, 0.0, res, own=own)


def finish(state: Stages, f: Finish) -> BreakerRecord | None:
    """Release the slot, settle (or release) the reservation, learn the provider's limits, record
    the outcome on the breaker. Returns the breaker's record (``None`` without a breaker)."""
    if f.limits is not None and f.own is not None:
        state.learned_put(f.model, f.limits, f.admitted_at, f.own, f.wall)
    if f.slot:
        state.slot_release(f.model)
    if f.latency_s is not None:
        state.latency_put(f.model, f.latency_s)
    if f.reservation_id is not None:
        if f.ok or f.cost_usd > 0 or f.tokens > 0:
            state.budget_settle(f.reservation_id, f.cost_usd, f.wall, f.tokens)
        else:
            state.budget_release(f.reservation_id)
    if f.breaker is None:
        return None
    return state.breaker_record(f.model, f.breaker, f.now, f.ok, f.kind, f.probe)


def record(state: Stages, r: Record) -> None:
    """The last attempt's finish, the cache store and the ledger row."""
    if r.finish is not None:
        finish(state, r.finish)
    if r.cache is not None:
        state.cache_set(r.cache.key, r.cache.entry, r.cache.max_entries)
    if r.row is not None:
        state.ledger_append(r.row)
