"""In-process state: the default backend. Thread- and asyncio-safe.

Every operation is short and non-blocking under one lock, so it is safe to call from
threads and from coroutines alike (no operation awaits while holding it).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field

from cachetools import LRUCache

from policyrouter.stages import adaptive
from policyrouter.stages.budget import BudgetCharge, settled_amount
from policyrouter.stages.circuit import (
    CLOSED,
    PROBE_LEASE_S,
    Admission,
    BreakerRecord,
    BreakerSettings,
    admit,
    on_result,
)
from policyrouter.stages.rate import WINDOW_S, tpm_wait
from policyrouter.stages.select import Load, ewma
from policyrouter.state import combined
from policyrouter.state.base import (
    LATE_SETTLE_S,
    Admit,
    Admitted,
    EventSink,
    Finish,
    Record,
    ReserveResult,
    Stages,
)
from policyrouter.types import CacheEntry, FeedbackRow, LedgerRow, ProviderLimits

SWEEP_INTERVAL_S = 60.0  # how often counters of ended budget windows are dropped
_EXPIRED_MAX = 10_000  # and how many expired leases are kept for a late settle (the oldest go first)
_TOLERANCE = 1e-12  # a reservation that overshoots its limit by less is float rounding, and fits


@dataclass(slots=True)
class _Counter:
    spent: float = 0.0
    reserved: float = 0.0
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Reservation:
    charges: tuple[BudgetCharge, ...]
    lease_until: float


@dataclass(slots=True)
class _Window:
    times: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0


@dataclass(slots=True)
class _AdaptLog:
    """The attempts an adaptive model admitted in its window, oldest first, and their cost sums."""

    entries: deque[tuple[float, adaptive.Costs]] = field(default_factory=deque)
    sums: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def drop_before(self, horizon: float) -> None:
        while self.entries and self.entries[0][0] <= horizon:
            _, c = self.entries.popleft()
            for d in range(4):
                self.sums[d] -= c[d]

    def add(self, wall: float, cost: adaptive.Costs) -> None:
        self.entries.append((wall, cost))
        for d in range(4):
            self.sums[d] += cost[d]

    def used(self) -> adaptive.Costs:
        a, b, c, d = self.sums
        return a, b, c, d


class _Held:
    """The stage calls of a :class:`MemoryState` whose lock the caller holds: what the
    ``combined`` compositions run on, so each engine call takes the lock once."""

    __slots__ = (
        "breaker_admit",
        "breaker_record",
        "budget_release",
        "budget_reserve",
        "budget_settle",
        "cache_get",
        "cache_set",
        "latency_put",
        "learned_put",
        "learned_take",
        "ledger_append",
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
        self.learned_take = m._learned_take
        self.learned_put = m._learned_put
        self.latency_put = m._latency_put
        self.budget_reserve = m._budget_reserve
        self.budget_settle = m._budget_settle
        self.budget_release = m._budget_release
        self.cache_get = m._cache.get
        self.cache_set = m._cache_set
        self.ledger_append = m._ledger.append


class MemoryState:
    """Default state backend: counters in this process only.

    ``probe_lease_s``: how long a half-open probe whose holder never reports (a hung thread)
    blocks the next probe."""

    def __init__(
        self, *, cache_max_entries: int = 10_000, ledger_max_rows: int = 100_000, probe_lease_s: float = PROBE_LEASE_S
    ) -> None:
        self._probe_lease_s = probe_lease_s
        self._lock = threading.Lock()
        self._breakers: dict[str, BreakerRecord] = {}
        self._slots: dict[str, int] = {}
        self._latency: dict[str, float] = {}
        self._windows: dict[str, _Window] = {}
        self._learned: dict[str, adaptive.Learned] = {}
        self._adapt_logs: dict[str, _AdaptLog] = {}
        self._counters: dict[str, _Counter] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._expired: dict[str, _Reservation] = {}  # leases that ran out, until settled late or forgotten
        # the earliest lease_until of an open reservation, or the next sweep (a lower bound)
        self._next_expiry = float("inf")
        self._next_sweep = float("-inf")  # when counters of ended windows are next dropped (``_sweep``)
        self._soft_marked: set[str] = set()
        self._ids = itertools.count(1)
        self._cache: LRUCache[str, CacheEntry] = LRUCache(maxsize=cache_max_entries)
        self._ledger: deque[LedgerRow] = deque(maxlen=ledger_max_rows)
        self._feedback: dict[str, FeedbackRow] = {}  # bounded like the ledger
        self._feedback_max = ledger_max_rows
        self._held: Stages = _Held(self)

    def __repr__(self) -> str:
        return "MemoryState()"

    # ------------------------------------------------------------------ breakers
    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        with self._lock:
            return self._breaker_admit(model, settings, now)

    def _breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        verdict, rec = admit(self._breakers.get(model, CLOSED), settings, now, self._probe_lease_s)
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

    def latency_put(self, model: str, latency_s: float) -> None:
        with self._lock:
            self._latency_put(model, latency_s)

    def _latency_put(self, model: str, latency_s: float) -> None:
        self._latency[model] = ewma(self._latency.get(model), latency_s)

    def loads(self, models: tuple[str, ...]) -> tuple[Load, ...]:
        with self._lock:
            return tuple(Load(self._slots.get(m, 0), self._latency.get(m)) for m in models)

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

    # ------------------------------------------------------------------ limits learned from the provider
    def learned_take(
        self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        with self._lock:
            return self._learned_take(model, cost, reserve, wall, waited)

    def _learned_take(
        self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        learned = self._learned.get(model)
        log = self._adapt_logs.get(model)
        if log is None:
            log = self._adapt_logs[model] = _AdaptLog()
        log.drop_before(wall - (learned.span if learned is not None else adaptive.DEFAULT_WINDOW_S))
        used = log.used()
        wait = adaptive.hold(learned, used, log.entries, cost, reserve, wall, waited)
        if wait > 0 and learned is not None:
            self._learned[model] = adaptive.promise(learned, wall, wait)
            return wait, used
        log.add(wall, cost)
        return 0.0, log.used()

    def learned_put(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> None:
        with self._lock:
            self._learned_put(model, reading, admitted_at, own, wall)

    def _learned_put(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> None:
        self._learned[model] = adaptive.learn(self._learned.get(model), reading, admitted_at, own, wall)

    def learned_get(self, model: str, wall: float) -> ProviderLimits | None:
        with self._lock:
            learned = self._learned.get(model)
            log = self._adapt_logs.get(model)
            if log is not None and learned is not None:
                log.drop_before(wall - learned.span)
            return adaptive.estimate(learned, log.used() if log is not None else (0, 0, 0, 0), wall)

    # ------------------------------------------------------------------ budgets
    def _expire(self, wall: float) -> None:
        """Give back the amounts of reservations whose lease ran out (kept a day: a late settle
        still counts its spend once), and sweep ended windows when due."""
        dead = [rid for rid, r in self._reservations.items() if r.lease_until <= wall]
        expired = self._expired
        for rid in dead:
            r = self._drop(rid)
            if r is not None:
                expired[rid] = r
                if len(expired) > _EXPIRED_MAX:
                    del expired[next(iter(expired))]
        if wall >= self._next_sweep:
            self._sweep(wall)
        # until the next lease runs out (or sweep is due), reserving needs no scan
        self._next_expiry = min((r.lease_until for r in self._reservations.values()), default=self._next_sweep)
        self._next_expiry = min(self._next_expiry, self._next_sweep)

    def _sweep(self, wall: float) -> None:
        """Drop the counters (and soft-limit marks) of budget windows that ended, once a minute:
        a new window is a new key, so a long-running process would otherwise keep one counter
        per window and scope value forever. A counter an open reservation holds stays."""
        self._next_sweep = wall + SWEEP_INTERVAL_S
        expired = self._expired
        for rid in [rid for rid, r in expired.items() if r.lease_until <= wall - LATE_SETTLE_S]:
            del expired[rid]
        held = {ch.key for r in self._reservations.values() for ch in r.charges}
        for key in [k for k, c in self._counters.items() if 0.0 < c.expires_at <= wall and c.reserved <= 0.0]:
            if key not in held:
                del self._counters[key]
                self._soft_marked.discard(key)

    def _drop(self, rid: str) -> _Reservation | None:
        """Give a reservation's amounts back to its counters (a release, or an expired lease);
        a release after the lease expired forgets it."""
        r = self._reservations.pop(rid, None)
        if r is None:
            self._expired.pop(rid, None)
            return None
        for ch in r.charges:
            c = self._counters.get(ch.key)
            if c is not None:
                reserved = c.reserved - ch.amount
                c.reserved = reserved if reserved > _TOLERANCE else 0.0
        return r

    def _counter(self, key: str, expires_at: float) -> _Counter:
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = _Counter(0.0, 0.0, expires_at)
        return c

    def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
        with self._lock:
            return self._budget_reserve(charges, wall, lease_s)

    def _budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
        if wall >= self._next_expiry:
            self._expire(wall)
        for ch in charges:
            c = self._counters.get(ch.key)
            used = 0.0 if c is None else c.spent + c.reserved
            if used + ch.amount > ch.limit + _TOLERANCE:
                return ReserveResult(False, None, ch.budget, used, ch.limit, ch.unit)
        for ch in charges:
            self._counter(ch.key, ch.expires_at).reserved += ch.amount
        rid = f"r{next(self._ids)}"
        lease_until = wall + lease_s
        self._reservations[rid] = _Reservation(tuple(charges), lease_until)
        self._next_expiry = min(self._next_expiry, lease_until)
        return ReserveResult(True, rid)

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None:
        with self._lock:
            self._budget_settle(reservation_id, actual_usd, wall, actual_tokens)

    def _budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None:
        """Drop the reservation and add the actual USD (tokens) to each of its USD (token) counters.
        A settle after the lease expired counts its spend once (its amount went back then);
        unknown: nothing."""
        r = self._reservations.pop(reservation_id, None)
        if r is None:
            r = self._expired.pop(reservation_id, None)
            if r is not None:
                for ch in r.charges:
                    self._counter(ch.key, ch.expires_at).spent += settled_amount(ch.unit, actual_usd, actual_tokens)
            return
        for ch in r.charges:
            c = self._counter(ch.key, ch.expires_at)
            reserved = c.reserved - ch.amount
            c.reserved = reserved if reserved > _TOLERANCE else 0.0
            c.spent += settled_amount(ch.unit, actual_usd, actual_tokens)

    def budget_release(self, reservation_id: str) -> None:
        with self._lock:
            self._drop(reservation_id)

    def _budget_release(self, reservation_id: str) -> None:
        self._drop(reservation_id)

    def budget_used(self, key: str, wall: float) -> tuple[float, float]:
        with self._lock:
            if wall >= self._next_expiry:
                self._expire(wall)
            c = self._counters.get(key)
            return (c.spent, c.reserved) if c is not None else (0.0, 0.0)

    budget_used_recent = budget_used  # in-process totals are always current

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
            self._cache_set(key, entry, max_entries)

    def _cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        self._cache[key] = entry  # bounded by the state's own cache_max_entries

    # ------------------------------------------------------------------ ledger
    def ledger_append(self, row: LedgerRow) -> None:
        with self._lock:
            self._ledger.append(row)

    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]:
        with self._lock:
            if since_wall is None:
                return list(self._ledger)
            return [r for r in self._ledger if r.ts >= since_wall]

    def feedback_put(self, row: FeedbackRow) -> None:
        with self._lock:
            self._feedback.pop(row.request_id, None)  # the last one given counts, in time order
            self._feedback[row.request_id] = row
            while len(self._feedback) > self._feedback_max:
                del self._feedback[next(iter(self._feedback))]

    def feedback_rows(self) -> list[FeedbackRow]:
        with self._lock:
            return list(self._feedback.values())

    # ------------------------------------------------------------------ the engine's calls: one lock each
    def admit(self, a: Admit) -> Admitted:
        with self._lock:
            return combined.admit(self._held, a)

    def finish(self, f: Finish) -> BreakerRecord | None:
        with self._lock:
            return combined.finish(self._held, f)

    def record(self, r: Record) -> None:
        with self._lock:
            combined.record(self._held, r)

    def attach_events(self, sink: EventSink) -> None:
        return None  # nothing here can go away

    def close(self) -> None:
        return None
