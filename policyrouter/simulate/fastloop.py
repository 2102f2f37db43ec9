"""The simulation's copy of the retry loop: the same rules, none of the request machinery.

:func:`policyrouter.execute.run` serves real requests: it builds provider requests,
``Attempt`` and ``Result`` objects, events, reservations with leases, and hands each call
to a driver. A replay needs none of that: the answer is the record's token counts, the
call is a coin flip of the fault model, and only a few numbers per request reach the
report. :class:`FastLoop` walks the chain by the same rules, in the same order, drawing
from the same random generators (the fault model's per call, the retry jitter's per
backoff), so a replay through it matches one through ``execute.run`` exactly
(``tests/test_simulate_fast.py`` checks both paths against each other).

What it relies on, all true of a replay and nothing else:

- one request at a time: a concurrency slot is always free, and a budget reservation is
  settled or released before the next one is made, so a budget counter is the money
  spent (reserved is always zero between requests);
- no response content: no output schema, no stream, no guard, no cache;
- simulated providers that fail without usage (a failed call costs nothing).

Breakers keep the real rules (:mod:`policyrouter.stages.circuit`) and rate limits the
memory backend's sliding window, in :class:`SimState`, a ``MemoryState`` without the lock.
A change to ``execute.run``'s rules needs the same change here; the agreement test fails
until it is made.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from policyrouter.errors import AllModelsFailed, BadRequest, BudgetExceeded, CircuitOpen, RequestTimeout
from policyrouter.plan import Chain, ModelPlan, Price, TaskPlan
from policyrouter.stages.budget import counter_key, scope_value
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.stages.retry import decide
from policyrouter.state.memory import MemoryState

if TYPE_CHECKING:
    from policyrouter.simulate.engine import FaultModel, SimClock

__all__ = ["FastLoop", "SimState"]

log = logging.getLogger("policyrouter")

_TIMEOUT = RequestTimeout.kind
_ALL_FAILED = AllModelsFailed.kind
_BAD_REQUEST = BadRequest.kind
_BUDGET = BudgetExceeded.kind
_OPEN = CircuitOpen.kind


def _ignore(budget: str) -> None:
    return None


class _NoLock:
    """A lock for one thread: every MemoryState path (``with`` or acquire/release) runs unlocked."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None


class SimState(MemoryState):
    """Memory state for one single-threaded replay: no lock, no ledger."""

    def __init__(self) -> None:
        super().__init__(cache_max_entries=1)
        self._lock = _NoLock()  # type: ignore[assignment]

    def ledger_append(self, row: Any) -> None:
        return None

    # the hot three: MemoryState's own stage code, without taking the (absent) lock
    breaker_admit = MemoryState._breaker_admit
    breaker_record = MemoryState._breaker_record
    rate_acquire = MemoryState._rate_acquire


# (model, name, its provider's outages, breaker, (rpm, tpm, max wait, waits?) or None,
#  price, the worst-case price pairs of this model and the ones after it: ``Chain.price_rows``)
_Step = tuple[
    ModelPlan,
    str,
    tuple[tuple[float, float, str], ...],
    BreakerSettings | None,
    tuple[int | None, int | None, float, bool] | None,
    Price | None,
    tuple[tuple[float, float], ...],
]


class FastLoop:
    """Runs one replayed request along its chain; see the module docstring."""

    def __init__(self, clock: SimClock, faults: FaultModel, fault_rng: random.Random, rng: random.Random) -> None:
        self.clock = clock
        self.state = SimState()
        self.rng = rng
        self.fault_rng = fault_rng
        self.rate = faults.rate
        self.outages: dict[str, tuple[tuple[float, float, str], ...]] = {}
        for o in faults.outages:
            self.outages[o.provider] = (*self.outages.get(o.provider, ()), (o.start, o.end, o.kind))
        self.spent: dict[str, float] = {}  # budget counter key -> money settled on it
        self.soft_marked: set[str] = set()
        # (model, cost, answered) of every call of the last request, in order
        self.calls: list[tuple[str, float, bool]] = []
        self.on_soft: Callable[[str], None] = _ignore
        self._steps: dict[int, tuple[Chain, list[_Step]]] = {}

    def steps(self, chain: Chain) -> list[_Step]:
        """The chain's models with what the loop reads of each, looked up once per replay."""
        hit = self._steps.get(id(chain))
        if hit is None or hit[0] is not chain:
            models = chain.models
            out: list[_Step] = []
            for i, m in enumerate(models):
                lim = m.limits
                rl = None
                if lim is not None and (lim.rpm is not None or lim.tpm is not None):
                    rl = (lim.rpm, lim.tpm, lim.max_wait_s, lim.on_limit == "wait")
                out.append((m, m.name, self.outages.get(m.provider, ()), m.breaker, rl, m.price, chain.price_rows[i]))
            hit = self._steps[id(chain)] = (chain, out)
        return hit[1]

    def degrade(
        self,
        tp: TaskPlan,
        tenant: str | None,
        user: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[Chain, str] | None:
        """The router's degrade rule; ``on_soft(budget)`` when a counter first passes its soft limit."""
        for b in tp.budgets:
            if b.soft_limit is None or b.scope == "model":
                continue
            key = counter_key(b, scope_value(b, tp.name, tenant, user, None, metadata), self.clock.t)[0]
            if self.spent.get(key, 0.0) >= b.soft_limit * b.limit_usd:
                if key not in self.soft_marked:
                    self.soft_marked.add(key)
                    self.on_soft(b.name)
                if b.degrade_to is not None:
                    return b.degrade_to, b.name
        return None

    def run(
        self,
        tp: TaskPlan,
        chain: Chain,
        n: int,
        max_out: int,
        out_tokens: int,
        cached: int,
        tenant: str | None,
        user: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[str | None, float, str | None, str | None]:
        """(answering model, cost, error kind, refusing budget); the calls land in ``calls``."""
        clock = self.clock
        state = self.state
        spent = self.spent
        calls = self.calls
        calls.clear()
        deadline = clock.t + tp.deadline_s
        total_calls = 0
        total_cost = 0.0
        min_window: int | None = None
        deadline_cut = False
        n_attempts = 0
        n_open = 0
        budgets = tp.budgets
        charge_sets = tp.charge_sets
        max_total = tp.max_total_attempts
        rate = self.rate
        for m, name, outs, breaker, rl, price, worst in self.steps(chain):
            if min_window is not None and (m.context_window is None or m.context_window <= min_window):
                n_attempts += 1
                continue
            deadline_cut = False
            n_on_model = 0
            while True:
                n_on_model += 1
                if max_total is not None and total_calls >= max_total:
                    return None, total_cost, _ALL_FAILED, None
                now = clock.t
                if now >= deadline:
                    return None, total_cost, _TIMEOUT, None
                probe = False
                if breaker is not None:
                    verdict = state.breaker_admit(name, breaker, now)
                    if verdict == "open":
                        n_attempts += 1
                        n_open += 1
                        break
                    probe = verdict == "probe"
                if rl is not None:
                    rpm, tpm, max_wait_s, waits = rl
                    waited = 0.0
                    max_wait = min(max_wait_s, max(0.0, deadline - now)) if waits else 0.0
                    granted = False
                    while True:
                        wait = state.rate_acquire(name, rpm, tpm, n + max_out, clock.t)
                        if wait <= 0:
                            granted = True
                            break
                        if waited + wait > max_wait:
                            break
                        clock.sleep(wait)
                        waited += wait
                    if not granted:
                        if probe:
                            state.breaker_record(name, breaker, clock.t, False, "rate_limited", True)  # type: ignore[arg-type]
                        n_attempts += 1
                        break
                keys: list[str] | None = None
                if budgets:
                    amount = 0.0  # attempt_worst_case: the dearest model left, input billed uncached
                    for a_in, a_out in worst:
                        w = n * a_in + max_out * a_out
                        if w > amount:
                            amount = w
                    keys = []
                    for budget, key, limit, _end in charge_sets.get(tenant, user, name, metadata, clock.t).specs:
                        if spent.get(key, 0.0) + amount > limit + 1e-12:
                            if probe:
                                state.breaker_record(name, breaker, clock.t, True, None, True)  # type: ignore[arg-type]
                            return None, total_cost, _BUDGET, budget
                        keys.append(key)
                # the call: an outage, a random fault, or the record's answer
                kind: str | None = None
                if outs:
                    t = clock.t
                    for start, end, okind in outs:
                        if start <= t < end:
                            kind = okind
                            break
                if kind is None and rate and self.fault_rng.random() < rate:
                    kind = "server_error"
                total_calls += 1
                if kind is None:
                    if price is not None:
                        cost = (
                            max(0, n - cached) * price.input + cached * price.cached_input + out_tokens * price.output
                        )
                    else:
                        cost = 0.0
                    if keys:
                        for key in keys:
                            spent[key] = spent.get(key, 0.0) + cost
                    if breaker is not None:
                        state.breaker_record(name, breaker, clock.t, True, None, probe)
                    total_cost += cost
                    calls.append((name, cost, True))
                    return name, total_cost, None, None
                tripped = False
                if breaker is not None:
                    rec = state.breaker_record(name, breaker, clock.t, False, kind, probe)
                    tripped = rec.status != "closed"
                n_attempts += 1
                if kind == _OPEN:
                    n_open += 1
                calls.append((name, 0.0, False))
                if kind == "auth":
                    log.error(
                        "policyrouter: provider %r rejected its credentials for model %r (task %r); falling back",
                        m.provider,
                        m.name,
                        tp.name,
                    )
                decision = decide(tp.retry, kind, n_on_model, None, self.rng)
                if decision.action == "fail":
                    return None, total_cost, _BAD_REQUEST, None
                if kind == "context_length":
                    window = m.context_window or 0
                    min_window = window if min_window is None else max(min_window, window)
                    break
                if decision.action == "fallback" or tripped:
                    break
                if decision.delay_s >= deadline - clock.t:
                    deadline_cut = True
                    break
                if decision.delay_s > 0:
                    clock.sleep(decision.delay_s)
        if deadline_cut or clock.t >= deadline:
            return None, total_cost, _TIMEOUT, None
        if n_attempts and n_open == n_attempts:
            return None, total_cost, _OPEN, None
        return None, total_cost, _ALL_FAILED, None
