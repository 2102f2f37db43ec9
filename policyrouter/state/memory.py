"""In-process state: the default backend. Thread- and asyncio-safe.

Every operation is short and non-blocking under one lock, so it is safe to call from
threads and from coroutines alike (no operation awaits while holding it).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from policyrouter.stages.circuit import CLOSED, Admission, BreakerRecord, BreakerSettings, admit, on_result
from policyrouter.stages.rate import WINDOW_S, tpm_wait
from policyrouter.state import combined
from policyrouter.state.base import (
    LATE_SETTLE_S,
    AdmitResult,
    BudgetCharge,
    BudgetRefused,
    CacheEntry,
    LedgerRow,
    ReserveResult,
)

if TYPE_CHECKING:
    from policyrouter.stages.budget import ChargeSet

SWEEP_INTERVAL_S = 60.0  # how often counters of ended budget windows are dropped
_EXPIRED_MAX = 10_000  # and how many of them are kept (the oldest go first)


@dataclass(slots=True)
class _Counter:
    spent: float = 0.0
    reserved: float = 0.0
    expires_at: float = 0.0


# an open reservation and when its lease runs out: from ``budget_hold``, the counters it holds, the
# amount on each and its ChargeSet (the keys); from ``budget_reserve``, its charges (the counters by
# key), None and None
_Reservation = tuple[tuple[Any, ...], float | None, float, "ChargeSet | None"]
_tuple_new = tuple.__new__  # builds a named tuple without its Python-level __new__
_RID_BATCH = 1024
_TOLERANCE = 1e-12  # a reservation that overshoots its limit by less is float rounding, and fits
_ADMIT_OK = AdmitResult("ok")


@dataclass(slots=True)
class _Window:
    times: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0


class _Held:
    """The stage calls of a :class:`MemoryState` whose lock the caller holds: what the
    ``combined`` compositions run on, so ``attempt_admit``/``attempt_finish`` take the lock once."""

    __slots__ = (
        "breaker_admit",
        "breaker_record",
        "budget_release",
        "budget_reserve",
        "budget_settle",
        "rate_acquire",
        "slot_acquire",
        "slot_release",
    )

    def __init__(self, m: MemoryState) -> None:
        self.breaker_admit = m._breaker_admit
        self.breaker_record = m._breaker_record
        self.slot_acquire = m._slot_acquire
        self.slot_release = m._slot_release
        self.rate_acquire = m._rate_acquire
        self.budget_reserve = m._budget_reserve
        self.budget_settle = m._budget_settle_held
        self.budget_release = m._budget_release


class MemoryState:
    """Default state backend: counters in this process only."""

    def __init__(self, *, cache_max_entries: int = 10_000, ledger_max_rows: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, BreakerRecord] = {}
        self._slots: dict[str, int] = {}
        self._windows: dict[str, _Window] = {}
        self._counters: dict[str, _Counter] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._expired: dict[str, _Reservation] = {}  # leases that ran out, until settled late or forgotten
        # the earliest lease_until of an open reservation, or the next sweep (a lower bound)
        self._next_expiry = float("inf")
        self._next_sweep = float("-inf")  # when counters of ended windows are next dropped (``_sweep``)
        self._soft_marked: set[str] = set()
        self._ids = itertools.count(1)
        self._rids: Iterator[str] = iter(())  # reservation ids, built a batch at a time (``_rid``)
        self._token = object()  # what a ChargeSet's binding to these counters is checked against
        self._cache: LRUCache[str, CacheEntry] = LRUCache(maxsize=cache_max_entries)
        self._ledger: deque[LedgerRow] = deque(maxlen=ledger_max_rows)
        self._held: combined.Stages = _Held(self)

    def __repr__(self) -> str:
        return "MemoryState()"

    # ------------------------------------------------------------------ breakers
    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        with self._lock:
            return self._breaker_admit(model, settings, now)

    def _breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        verdict, rec = admit(self._breakers.get(model, CLOSED), settings, now)
        if verdict == "probe":
            self._breakers[model] = rec
        return verdict

    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        with self._lock:
            return self._breaker_record(model, settings, now, ok, kind, probe)

    def _breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        old = self._breakers.get(model, CLOSED)
        rec = on_result(old, settings, now, ok, kind, probe)
        if rec is not old:
            self._breakers[model] = rec
        return rec

    def breaker_get(self, model: str) -> BreakerRecord:
        with self._lock:
            return self._breakers.get(model, CLOSED)

    # ------------------------------------------------------------------ limits
    def slot_acquire(self, model: str, limit: int) -> bool:
        with self._lock:
            return self._slot_acquire(model, limit)

    def _slot_acquire(self, model: str, limit: int) -> bool:
        n = self._slots.get(model, 0)
        if n >= limit:
            return False
        self._slots[model] = n + 1
        return True

    def slot_release(self, model: str) -> None:
        with self._lock:
            self._slot_release(model)

    def _slot_release(self, model: str) -> None:
        self._slots[model] = max(0, self._slots.get(model, 0) - 1)

    def slots_in_use(self, model: str) -> int:
        with self._lock:
            return self._slots.get(model, 0)

    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        """Sliding-window log: grant (0.0) and record, or return how long to wait.

        A sliding window matches how providers count, so a client that never exceeds
        it never sees their 429.
        """
        with self._lock:
            return self._rate_acquire(model, rpm, tpm, tokens, now)

    def _rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        w = self._windows.get(model)
        if w is None:
            w = self._windows[model] = _Window()
        horizon = now - WINDOW_S
        while w.times and w.times[0] <= horizon:
            w.times.popleft()
        while w.tokens and w.tokens[0][0] <= horizon:
            w.token_sum -= w.tokens.popleft()[1]
        wait = 0.0
        if rpm is not None and len(w.times) >= rpm:
            wait = max(wait, w.times[len(w.times) - rpm] + WINDOW_S - now)
        if tpm is not None:
            wait = max(wait, tpm_wait(w.tokens, w.token_sum, tokens, tpm, now))
        if wait > 0:
            return wait
        w.times.append(now)
        if tpm is not None:
            w.tokens.append((now, tokens))
            w.token_sum += tokens
        return 0.0

    # ------------------------------------------------------------------ budgets
    def _expire(self, wall: float) -> None:
        dead = [rid for rid, r in self._reservations.items() if r[2] <= wall]
        expired = self._expired
        for rid in dead:
            r = self._drop(rid)
            if r is not None:  # its amount went back; its spend still counts if it settles late, by key
                if r[3] is not None and r[1] is not None:
                    r = (tuple(r[3].charges(r[1])), None, r[2], None)
                expired[rid] = r
                if len(expired) > _EXPIRED_MAX:
                    del expired[next(iter(expired))]
        if wall >= self._next_sweep:
            self._sweep(wall)
        # the next lease to run out (or sweep due): until then, reserving needs no scan (O(1), not O(open))
        self._next_expiry = min((r[2] for r in self._reservations.values()), default=self._next_sweep)
        if self._next_sweep < self._next_expiry:
            self._next_expiry = self._next_sweep

    def _sweep(self, wall: float) -> None:
        """Drop the counters (and soft-limit marks) of budget windows that ended, once a minute:
        a new window is a new key, so a long-running process would otherwise keep one counter
        per window and scope value forever (per-user minute budgets: 1,440 a user a day).
        A counter still holding a reservation, or without a known window end, stays."""
        self._next_sweep = wall + SWEEP_INTERVAL_S
        expired = self._expired
        for rid in [rid for rid, r in expired.items() if r[2] <= wall - LATE_SETTLE_S]:
            del expired[rid]
        ended = [k for k, c in self._counters.items() if 0.0 < c.expires_at <= wall and c.reserved <= 0.0]
        if not ended:
            return
        # a counter an open reservation holds stays, even at a zero amount (a late settle goes by key)
        keys: set[str] = set()
        objects: set[int] = set()
        for r in self._reservations.values():
            if r[1] is None:
                keys.update(ch.key for ch in r[0])
            else:
                objects.update(map(id, r[0]))
        dropped = False
        for key in ended:
            if key in keys or id(self._counters[key]) in objects:
                continue
            del self._counters[key]
            self._soft_marked.discard(key)
            dropped = True
        if dropped:  # a ChargeSet bound to a dropped counter resolves its keys again
            self._token = object()

    def _drop(self, rid: str) -> _Reservation | None:
        """Give a reservation's amounts back to its counters (a release, or an expired lease);
        a release after the lease expired forgets it."""
        r = self._reservations.pop(rid, None)
        if r is None:
            self._expired.pop(rid, None)
        else:
            amount = r[1]
            for x in r[0]:
                if amount is None:  # a BudgetCharge: its counter by key, its own amount
                    c, a = self._counters.get(x.key), x.amount
                    if c is None:
                        continue
                else:
                    c, a = x, amount
                reserved = c.reserved - a
                c.reserved = reserved if reserved > _TOLERANCE else 0.0
        return r

    def _counter(self, key: str, expires_at: float) -> _Counter:
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = _Counter(0.0, 0.0, expires_at)
        return c

    def budget_reserve(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult:
        with self._lock:
            return self._budget_reserve(charges, wall, lease_s)

    def _budget_reserve(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult:
        counters = self._counters
        if wall >= self._next_expiry:
            self._expire(wall)
        for ch in charges:
            c = counters.get(ch.key)
            used = 0.0 if c is None else c.spent + c.reserved
            if used + ch.amount > ch.limit + _TOLERANCE:
                return _tuple_new(ReserveResult, (False, None, ch.budget, used, ch.limit))
        for ch in charges:
            c = counters.get(ch.key)
            if c is None:
                counters[ch.key] = _Counter(0.0, ch.amount, ch.expires_at)
            else:
                c.reserved += ch.amount
        rid = next(self._rids, None) or self._rid()
        lease_until = wall + lease_s
        self._reservations[rid] = (tuple(charges), None, lease_until, None)
        if lease_until < self._next_expiry:
            self._next_expiry = lease_until
        return _tuple_new(ReserveResult, (True, rid, None, 0.0, 0.0))

    def budget_hold(self, charges: ChargeSet, amount: float, wall: float, lease_s: float) -> str:
        """``budget_reserve`` of ``amount`` on every counter of ``charges``, without a ``BudgetCharge``
        or ``ReserveResult``: the counters are resolved once per ``ChargeSet`` (bound to it until a
        sweep drops a counter), and the reservation id comes back, or ``BudgetRefused``."""
        lock = self._lock
        lock.acquire()  # not ``with``: its __enter__/__exit__ calls cost more than the reservation itself
        try:
            if wall >= self._next_expiry:
                self._expire(wall)
            bound = charges.bound
            if bound is None or bound[0] is not self._token:
                bound = self._bind(charges)
            for c, limit in bound[1]:  # the limit plus the float tolerance
                used = c.spent + c.reserved
                if used + amount > limit:
                    raise self._refused(charges, c, used)
            counters = bound[2]
            for c in counters:
                c.reserved += amount
            rid = next(self._rids, None) or self._rid()
            lease_until = wall + lease_s
            self._reservations[rid] = (counters, amount, lease_until, charges)
            if lease_until < self._next_expiry:
                self._next_expiry = lease_until
            return rid
        finally:
            lock.release()

    def _rid(self) -> str:
        """The next reservation id, and the next batch of them: building 1,024 strings in one
        comprehension costs a fraction of an f-string per reservation."""
        start = next(self._ids)
        self._ids = itertools.count(start + _RID_BATCH)
        self._rids = iter([f"r{i}" for i in range(start + 1, start + _RID_BATCH)])
        return f"r{start}"

    def _bind(self, charges: ChargeSet) -> tuple[object, tuple[tuple[_Counter, float], ...], tuple[_Counter, ...]]:
        counters = tuple([self._counter(key, end) for _name, key, _limit, end in charges.specs])
        bound = (self._token, tuple(zip(counters, [s[2] + _TOLERANCE for s in charges.specs], strict=True)), counters)
        charges.bound = bound
        return bound

    def _refused(self, charges: ChargeSet, c: _Counter, used: float) -> BudgetRefused:
        """The refusal by counter ``c``: its budget's name and limit as the policy gives them."""
        for (bound, _), (name, _key, limit, _end) in zip(charges.bound[1], charges.specs, strict=True):
            if bound is c:  # the bound pairs follow the specs, one for one (``_bind``)
                return BudgetRefused(name, used, limit)
        raise AssertionError("the refusing counter is one of the set's")  # pragma: no cover

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, held: bool = False) -> None:
        """Drop the reservation and add ``actual_usd`` to each of its counters, in one pass.

        ``held``: the caller holds the lock (a combined operation). One body for both: a call
        more would cost a third of the settle, which follows every budgeted attempt.
        """
        lock = self._lock
        if not held:
            lock.acquire()  # not ``with``: its __enter__/__exit__ calls cost more than the settle itself
        try:
            r = self._reservations.pop(reservation_id, None)
            if r is None:
                self._settle_late(reservation_id, actual_usd)
                return
            amount = r[1]
            if amount is None:  # from budget_reserve: its charges, each counter by key
                counters = self._counters
                for ch in r[0]:
                    c = counters.get(ch.key)
                    if c is None:
                        c = counters[ch.key] = _Counter(0.0, 0.0, ch.expires_at)
                    else:
                        reserved = c.reserved - ch.amount
                        c.reserved = reserved if reserved > _TOLERANCE else 0.0
                    c.spent += actual_usd
                return
            for c in r[0]:
                reserved = c.reserved - amount
                c.reserved = reserved if reserved > _TOLERANCE else 0.0
                c.spent += actual_usd
        finally:
            if not held:
                lock.release()

    def _settle_late(self, reservation_id: str, actual_usd: float) -> None:
        """A settle after the lease expired: its amount went back then, its spend counts now, once
        (as on Redis). Unknown or already settled: nothing."""
        r = self._expired.pop(reservation_id, None)
        if r is not None:  # its charges, by key (``_expire``)
            for ch in r[0]:
                self._counter(ch.key, ch.expires_at).spent += actual_usd

    def budget_release(self, reservation_id: str) -> None:
        with self._lock:
            self._drop(reservation_id)

    def _budget_settle_held(self, reservation_id: str, actual_usd: float, wall: float) -> None:
        self.budget_settle(reservation_id, actual_usd, wall, True)

    def _budget_release(self, reservation_id: str) -> None:
        self._drop(reservation_id)

    def budget_used(self, key: str, wall: float) -> tuple[float, float]:
        with self._lock:
            if wall >= self._next_expiry:
                self._expire(wall)
            c = self._counters.get(key)
            return (c.spent, c.reserved) if c is not None else (0.0, 0.0)

    def budget_add_spent(self, key: str, amount: float) -> None:
        """Test/fixture helper: pretend ``amount`` was already spent on ``key``."""
        with self._lock:
            c = self._counters.get(key)
            if c is None:
                c = self._counters[key] = _Counter()
            c.spent += amount

    def budget_mark_soft(self, key: str) -> bool:
        with self._lock:
            if key in self._soft_marked:
                return False
            self._soft_marked.add(key)
            return True

    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]:
        with self._lock:
            return sorted((k, c.spent, c.reserved) for k, c in self._counters.items() if k.startswith(prefix))

    def open_reservations(self) -> int:
        with self._lock:
            return len(self._reservations)

    # ------------------------------------------------------------------ cache
    def cache_get(self, key: str) -> CacheEntry | None:
        with self._lock:
            return self._cache.get(key)

    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        with self._lock:
            self._cache[key] = entry

    # ------------------------------------------------------------------ ledger
    def ledger_append(self, row: LedgerRow) -> None:
        with self._lock:
            self._ledger.append(row)

    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]:
        with self._lock:
            if since_wall is None:
                return list(self._ledger)
            return [r for r in self._ledger if r.ts >= since_wall]

    # ------------------------------------------------------------------ combined: the stages under one lock
    def attempt_admit(
        self,
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
        """``combined.attempt_admit``'s stages and order, taking the lock once for all of them."""
        if breaker is None and concurrency is None and rpm is None and tpm is None:  # budgets only: the hot path
            if charges is None:
                return _ADMIT_OK
            # the lock taken without ``with`` (whose __enter__/__exit__ calls cost more than the
            # reservation itself): this runs before every budgeted attempt
            lock = self._lock
            lock.acquire()
            try:
                res = self._budget_reserve(charges, wall, lease_s)
            finally:
                lock.release()
            return _tuple_new(AdmitResult, ("ok" if res[0] else "budget", False, False, 0.0, res))
        with self._lock:
            return combined.attempt_admit(
                self._held, model, breaker, concurrency, rpm, tpm, tokens, charges, now, wall, lease_s
            )

    def attempt_finish(
        self,
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
        """``combined.attempt_finish``'s stages and order, taking the lock once for all of them."""
        if not slot and breaker is None:  # settle or release only: the hot path
            if reservation_id is not None:
                if ok or cost_usd > 0:
                    self.budget_settle(reservation_id, cost_usd, wall)
                else:
                    self.budget_release(reservation_id)
            return None
        with self._lock:
            return combined.attempt_finish(
                self._held, model, slot, reservation_id, cost_usd, breaker, now, wall, ok, kind, probe
            )

    def record_result(self, cache: tuple[str, CacheEntry, int] | None, row: LedgerRow | None) -> None:
        """Store a result in the cache and append its ledger row, under one lock."""
        with self._lock:
            if cache is not None:
                self._cache[cache[0]] = cache[1]
            if row is not None:
                self._ledger.append(row)

    def close(self) -> None:
        return None
