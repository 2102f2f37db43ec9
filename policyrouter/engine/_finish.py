"""Finish: how a request ends, in one place.

An answer, a cache hit, a stale answer after a failure, or a failure: each writes its ledger
row (and the answer its cache entry) in one state call, emits its event, and puts guarded
values back into the text the caller gets.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from policyrouter.clock import Clock
from policyrouter.engine._events import EventBus
from policyrouter.engine._request import Request
from policyrouter.errors import AllModelsFailed, RouterError
from policyrouter.stages.cache import answer_from_cache
from policyrouter.stages.guard import audit_metadata, restore
from policyrouter.state.base import CacheEntry, CacheStore, Finish, LedgerRow, Record, StateBackend
from policyrouter.types import Attempt, Result

__all__ = ["Finisher"]


class Finisher:
    """Ends requests: ledger, cache store, stale-if-error, events."""

    def __init__(self, state: StateBackend, clock: Clock, events: EventBus) -> None:
        self.state = state
        self.clock = clock
        self.events = events

    def succeeded(self, req: Request, result: Result, pending: Finish | None) -> Result:
        """An answer from a model: its last finish, cache entry and ledger row in one state call."""
        if req.variant is not None:
            result = replace(result, experiment=req.experiment, variant=req.variant)
        store = None
        cache = req.task.cache
        if req.cache_key is not None and cache is not None:
            wall = self.clock.wall()
            kept = replace(result, thinking_blocks=()) if result.thinking_blocks else result  # thinking is never cached
            entry = CacheEntry(kept, wall + cache.ttl_s, wall + cache.ttl_s + cache.stale_if_error_s)
            store = CacheStore(req.cache_key, entry, cache.max_entries)
        row = self._row(req, result.model, result.cost_usd, result.attempts, "ok", result)
        if pending is not None or store is not None or row is not None:
            self.state.record(Record(pending, store, row))
        self.events.emit_result(result, req)
        # thinking blocks stay verbatim (their signature covers them): placeholders are not restored there
        return result if req.guard is None else replace(result, text=restore(req.guard, result.text))

    def cached(self, req: Request, entry: CacheEntry) -> Result:
        """A cache hit: nothing billed; its row counts it in spend reports (and audits a guarded request)."""
        hit = self._from_cache(req, entry, stale=False)
        row = self._row(req, hit.model, 0.0, (), "cache_hit", None, cache_saved=entry.value.cost_usd)
        if row is not None:
            self.state.record(Record(row=row))
        self.events.emit_result(hit, req)
        return hit

    def failed(self, req: Request, exc: RouterError) -> Result:
        """A request that failed: its row (what the attempts cost), then a stale answer when the
        task allows one after every model failed; else ``exc`` is raised."""
        cost = sum(a.cost_usd for a in exc.attempts)
        model = exc.attempts[-1].model if exc.attempts else ""
        row = self._row(req, model, cost, exc.attempts, exc.kind, None)
        if row is not None and (cost > 0 or req.guard is not None or req.variant is not None):
            self.state.record(Record(row=row))
        if req.cache_key is not None and isinstance(exc, AllModelsFailed) and req.task.cache is not None:
            entry = self.state.cache_get(req.cache_key)
            if entry is not None and entry.stale_until > self.clock.wall():
                # the trace and the bill keep the failed attempts that led to the stale answer
                stale = replace(self._from_cache(req, entry, stale=True), attempts=tuple(exc.attempts), cost_usd=cost)
                self.events.emit_result(stale, req)
                return stale
        self.events.emit_failure(exc, req, self.clock.now() - req.started)
        raise exc

    def _from_cache(self, req: Request, entry: CacheEntry, *, stale: bool) -> Result:
        cached: Result = entry.value
        text, latency_s = restore(req.guard, cached.text), self.clock.now() - req.started
        hit = answer_from_cache(cached, text, req.route, latency_s, req.task.name, req.request_id, stale)
        return hit if req.variant is None else replace(hit, experiment=req.experiment, variant=req.variant)

    def _row(
        self,
        req: Request,
        model: str,
        cost: float,
        attempts: Sequence[Attempt],
        outcome: str,
        result: Result | None,
        cache_saved: float = 0.0,
    ) -> LedgerRow | None:
        """The ledger row: kept for budgeted tasks, spend (a cache hit: what it saved) and guarded
        requests (their audit), and every request in an experiment (its report reads them).
        Two savings, never mixed: ``cache_saved_usd`` is what a hit of our
        response cache did not spend; ``prompt_cache_saved_usd`` what the provider's prompt cache
        saved on the attempts made (reads at the cached price, less the premium of writes)."""
        prompt_saved = _prompt_cache_saved(req, attempts)
        if not (
            req.task.budgets
            or cost != 0
            or cache_saved != 0
            or prompt_saved != 0
            or req.guard is not None
            or req.variant is not None
        ):
            return None
        u = result.usage if result is not None else None
        return LedgerRow(
            ts=self.clock.wall(),
            request_id=req.request_id,
            task=req.task.name,
            route=req.route,
            model=model,
            tenant=req.tenant,
            user=req.user,
            input_tokens=u.input_tokens if u else 0,
            output_tokens=u.output_tokens if u else 0,
            cached_input_tokens=u.cached_input_tokens if u else 0,
            cost_usd=cost,
            provider_request_ids=",".join(a.request_id for a in attempts if a.request_id),
            outcome=outcome,
            attempts=len(attempts),
            metadata=audit_metadata(req.guard),
            cache_write_tokens=u.cache_write_tokens if u else 0,
            prompt_cache_saved_usd=prompt_saved,
            cache_saved_usd=cache_saved,
            experiment=req.experiment,
            variant=req.variant,
            latency_s=self.clock.now() - req.started,
            fallbacks=sum(1 for a, b in itertools.pairwise(attempts) if a.model != b.model),
        )


def _prompt_cache_saved(req: Request, attempts: Sequence[Attempt]) -> float:
    """The provider prompt cache's saving on the attempts of a request, at each model's prices."""
    prices = {m.name: m.price for m in req.chain.models}
    saved = 0.0
    for a in attempts:
        price = prices.get(a.model)
        if a.usage is not None and price is not None and (a.usage.cached_input_tokens or a.usage.cache_write_tokens):
            saved += price.prompt_cache_saving(a.usage)
    return saved
