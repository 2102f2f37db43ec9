"""SQLite state: durable, and safe for several processes on one host.

WAL mode; every check-and-update runs in one ``BEGIN IMMEDIATE`` transaction, which
takes SQLite's write lock, so a reservation in one process sees every reservation
committed by the others. A committed transaction survives the process being killed
(``synchronous=NORMAL`` in WAL mode loses nothing on a process crash; only an OS crash
or power loss can drop the last transactions — set ``synchronous=FULL`` via
``SqliteState(path, synchronous="FULL")`` if that matters to you).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from policyrouter.errors import StateUnavailable
from policyrouter.stages import adaptive
from policyrouter.stages.budget import settled_amount
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
from policyrouter.stages.select import LATENCY_ALPHA, Load
from policyrouter.state import combined
from policyrouter.state._checkpoint import Checkpointer
from policyrouter.state.base import (
    LATE_SETTLE_S,
    Admit,
    Admitted,
    BudgetCharge,
    EventSink,
    Finish,
    Record,
    ReserveResult,
)
from policyrouter.state.codec import cacheable_json, result_from_json
from policyrouter.types import CacheEntry, FeedbackRow, LedgerRow, ProviderLimits

# A reservation, settle or release in few statements: one conditional UPDATE per counter
# checks and takes in one step.
_DUE = "SELECT 1 FROM reservations WHERE lease_until <= ? LIMIT 1"
_TAKE = "UPDATE counters SET reserved = reserved + ? WHERE key = ? AND spent + reserved + ? <= ?"
_HOLD = "INSERT INTO reservations (id, charges, lease_until) VALUES (?, ?, ?)"
_UNHOLD = "DELETE FROM reservations WHERE id = ?"
_SETTLE = "UPDATE counters SET reserved = MAX(0, reserved - ?), spent = spent + ? WHERE key = ?"
_RELEASE = "UPDATE counters SET reserved = MAX(0, reserved - ?) WHERE key = ?"
_HELD_MAX = 10_000  # this state's open reservations remembered for settling (else read back)
# How often (wall seconds) the fast reserve looks for expired leases of dead holders. Leases
# last a request's deadline plus a margin, and a reservation that does not fit reclaims them
# before it is refused (``_reserve``), so this delay never refuses anything.
DUE_CHECK_S = 1.0

# Reservation ids: a random per-process prefix and a counter (a fresh prefix in a forked child).
_rid_prefix = uuid.uuid4().hex[:16]
_rid_seq = itertools.count(1)


def _new_rid_prefix() -> None:
    global _rid_prefix
    _rid_prefix = uuid.uuid4().hex[:16]


os.register_at_fork(after_in_child=_new_rid_prefix)


def _charges_json(charges: Sequence[BudgetCharge]) -> str:
    """The reservation row's charges: ``[[key, amount], ...]``, a token counter's with ``"tokens"``
    third (what ``_expire`` and a settle by another process read back)."""
    return json.dumps(
        [[ch.key, float(ch.amount)] if ch.unit == "usd" else [ch.key, ch.amount, ch.unit] for ch in charges]
    )


def _charges_read(raw: str) -> list[tuple[str, float, str]]:
    """``(key, amount, unit)`` of each charge of a reservation row (``_charges_json``)."""
    return [(key, amount, unit[0] if unit else "usd") for key, amount, *unit in json.loads(raw)]


# A settle's actual amounts: (USD, tokens); ``None`` releases the reservation instead.
_Actual = tuple[float, int] | None


# counters and reservations are WITHOUT ROWID tables (one b-tree each, no separate key
# index), and reservations have no lease index: only the requests in flight hold one,
# so the expiry scan is short, and each reserve/settle commit writes fewer pages.
# (Files created by earlier versions keep their layout; the statements work on both.)
SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, spent REAL NOT NULL DEFAULT 0,
    reserved REAL NOT NULL DEFAULT 0, expires_at REAL NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, charges TEXT NOT NULL, lease_until REAL NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expired_reservations (id TEXT PRIMARY KEY, charges TEXT NOT NULL,
    lease_until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS soft_marks (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS breakers (model TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slots (model TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS latency (model TEXT PRIMARY KEY, avg REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_log (model TEXT NOT NULL, t REAL NOT NULL, tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS learned (model TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS adapt_log (model TEXT NOT NULL, t REAL NOT NULL, c0 INTEGER NOT NULL, c1 INTEGER NOT NULL,
    c2 INTEGER NOT NULL, c3 INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS adapt_log_model_t ON adapt_log (model, t);
CREATE INDEX IF NOT EXISTS rate_log_model_t ON rate_log (model, t);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL,
    stale_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (ts REAL NOT NULL, request_id TEXT NOT NULL PRIMARY KEY, task TEXT, route TEXT,
    model TEXT, tenant TEXT, user TEXT, input_tokens INTEGER, output_tokens INTEGER,
    cached_input_tokens INTEGER, cost_usd REAL, provider_request_ids TEXT, outcome TEXT,
    attempts INTEGER, metadata TEXT, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_cache_saved_usd REAL NOT NULL DEFAULT 0, cache_saved_usd REAL NOT NULL DEFAULT 0,
    experiment TEXT, variant TEXT, latency_s REAL NOT NULL DEFAULT 0, fallbacks INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
CREATE TABLE IF NOT EXISTS feedback (request_id TEXT NOT NULL PRIMARY KEY, ts REAL NOT NULL, score REAL, label TEXT);
"""

# Ledger columns added since the first layout: a file created before them gets them (default 0).
_LEDGER_ADDED = (
    ("cache_write_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("prompt_cache_saved_usd", "REAL NOT NULL DEFAULT 0"),
    ("cache_saved_usd", "REAL NOT NULL DEFAULT 0"),
    ("experiment", "TEXT"),
    ("variant", "TEXT"),
    ("latency_s", "REAL NOT NULL DEFAULT 0"),
    ("fallbacks", "INTEGER NOT NULL DEFAULT 0"),
)


def _add_ledger_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    for name, decl in _LEDGER_ADDED:
        if name not in have:
            conn.execute(f"ALTER TABLE ledger ADD COLUMN {name} {decl}")


_SLOT_RELEASE = "UPDATE slots SET n = MAX(0, n - 1) WHERE model = ?"
# a model's decaying average latency (``stages/select.ewma``), updated in one statement
_LATENCY_PUT = (
    "INSERT INTO latency (model, avg) VALUES (?1, ?2) "
    f"ON CONFLICT(model) DO UPDATE SET avg = avg + {LATENCY_ALPHA!r} * (excluded.avg - avg)"
)
_LEARNED_PUT = "INSERT OR REPLACE INTO learned (model, value) VALUES (?, ?)"


def _used(c: sqlite3.Connection, model: str) -> adaptive.Costs:
    """An adaptive model's usage in its window: the sums of its log."""
    row = c.execute("SELECT SUM(c0), SUM(c1), SUM(c2), SUM(c3) FROM adapt_log WHERE model = ?", (model,)).fetchone()
    a, b, i, o = (int(v or 0) for v in row)
    return a, b, i, o


def _log_rows(c: sqlite3.Connection, model: str) -> Iterator[tuple[float, adaptive.Costs]]:
    """The log's entries, oldest first (read only when a held attempt's wait is worked out)."""
    for t, a, b, i, o in c.execute("SELECT t, c0, c1, c2, c3 FROM adapt_log WHERE model = ? ORDER BY t", (model,)):
        yield t, (a, b, i, o)


class _InTx:
    """The stage calls of a :class:`SqliteState` inside one open transaction: what the
    ``combined`` compositions run on, so each engine call is one transaction."""

    __slots__ = ("_c", "_s")

    def __init__(self, s: SqliteState, c: sqlite3.Connection) -> None:
        self._s, self._c = s, c

    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        return self._s._breaker_admit(self._c, model, settings, now)

    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        return self._s._breaker_record(self._c, model, settings, now, ok, kind, probe)

    def slot_acquire(self, model: str, limit: int) -> bool:
        return self._s._slot_acquire(self._c, model, limit)

    def slot_release(self, model: str) -> None:
        self._c.execute(_SLOT_RELEASE, (model,))

    def latency_put(self, model: str, latency_s: float) -> None:
        self._c.execute(_LATENCY_PUT, (model, latency_s))

    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        return self._s._rate_acquire(self._c, model, rpm, tpm, tokens, now)

    def learned_take(
        self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        return self._s._learned_take(self._c, model, cost, reserve, wall, waited)

    def learned_put(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> None:
        self._s._learned_put(self._c, model, reading, admitted_at, own, wall)

    def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
        return self._s._reserve(self._c, charges, wall, lease_s)

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None:
        self._s._finish_in(self._c, reservation_id, (actual_usd, actual_tokens))

    def budget_release(self, reservation_id: str) -> None:
        self._s._finish_in(self._c, reservation_id, None)

    def cache_get(self, key: str) -> CacheEntry | None:
        return self._s._cache_get_in(self._c, key)

    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        self._s._cache_set_in(self._c, key, entry, max_entries)

    def ledger_append(self, row: LedgerRow) -> None:
        self._s._ledger_in(self._c, row)


class SqliteState:
    """State in one SQLite file shared by every process of this host.

    Breakers and the rate log keep wall-clock times (the ``wall`` of ``Admit``/``Finish``; the
    per-stage calls' time argument is wall time here), so they mean the same after a reboot.
    ``probe_lease_s``: how long a half-open probe of a process that died blocks the next probe.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 10.0,
        probe_lease_s: float = PROBE_LEASE_S,
    ) -> None:
        self.path = str(path)
        self._probe_lease_s = probe_lease_s
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            wal = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            self._conn.execute(f"PRAGMA synchronous={'FULL' if synchronous.upper() == 'FULL' else 'NORMAL'}")
            self._conn.executescript(SCHEMA)
            _add_ledger_columns(self._conn)
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite state at {self.path!r} cannot be opened: {exc}") from exc
        # WAL checkpoints (and their fsyncs) mostly on a thread of their own: see state/_checkpoint.py
        self._checkpointer = Checkpointer(os.path.abspath(self.path), busy_timeout_s=busy_timeout_s) if wal else None
        if self._checkpointer is not None:  # a state dropped without close() still ends its thread
            weakref.finalize(self, self._checkpointer.stop)
        self._due_check_at = float("-inf")  # the next wall time the fast reserve looks for expired leases
        self._lock = threading.Lock()
        self._sets = 0
        self._held: dict[str, tuple[BudgetCharge, ...]] = {}  # reservation id -> its charges

    def __repr__(self) -> str:
        return f"SqliteState({self.path!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            c = self._conn
            self._begin(c)
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                self._commit(c)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StateUnavailable(f"sqlite state {self.path!r}: {exc}") from exc

    # ------------------------------------------------------------------ breakers
    @staticmethod
    def _rec(row: Any) -> BreakerRecord:
        if row is None:
            return CLOSED
        d = json.loads(row[0])
        return BreakerRecord(
            d["status"], tuple(d["failures"]), d["opened_at"], d["probe_in_flight"], d.get("probe_at", 0.0)
        )

    def _put_rec(self, c: sqlite3.Connection, model: str, rec: BreakerRecord) -> None:
        raw = json.dumps(
            {
                "status": rec.status,
                "failures": list(rec.failures),
                "opened_at": rec.opened_at,
                "probe_in_flight": rec.probe_in_flight,
                "probe_at": rec.probe_at,
            }
        )
        c.execute("INSERT OR REPLACE INTO breakers (model, record) VALUES (?, ?)", (model, raw))

    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        rows = self._read("SELECT record FROM breakers WHERE model = ?", (model,))
        if not rows or self._rec(rows[0]).status == "closed":
            return "closed"  # fast path: no write lock while closed
        with self._tx() as c:
            return self._breaker_admit(c, model, settings, now)

    def _breaker_admit(self, c: sqlite3.Connection, model: str, settings: BreakerSettings, now: float) -> Admission:
        rec = self._rec(c.execute("SELECT record FROM breakers WHERE model = ?", (model,)).fetchone())
        verdict, new = admit(rec, settings, now, self._probe_lease_s)
        if verdict == "probe":
            self._put_rec(c, model, new)
        return verdict

    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        if ok and not probe:
            rows = self._read("SELECT record FROM breakers WHERE model = ?", (model,))
            if not rows:
                return CLOSED
        with self._tx() as c:
            return self._breaker_record(c, model, settings, now, ok, kind, probe)

    def _breaker_record(
        self,
        c: sqlite3.Connection,
        model: str,
        settings: BreakerSettings,
        now: float,
        ok: bool,
        kind: str | None,
        probe: bool,
    ) -> BreakerRecord:
        row = c.execute("SELECT record FROM breakers WHERE model = ?", (model,)).fetchone()
        if row is None and ok and not probe:
            return CLOSED
        rec = self._rec(row)
        new = on_result(rec, settings, now, ok, kind, probe)
        if new != rec:
            self._put_rec(c, model, new)
        return new

    def breaker_get(self, model: str) -> BreakerRecord:
        rows = self._read("SELECT record FROM breakers WHERE model = ?", (model,))
        return self._rec(rows[0]) if rows else CLOSED

    # ------------------------------------------------------------------ limits
    def slot_acquire(self, model: str, limit: int) -> bool:
        with self._tx() as c:
            return self._slot_acquire(c, model, limit)

    @staticmethod
    def _slot_acquire(c: sqlite3.Connection, model: str, limit: int) -> bool:
        row = c.execute("SELECT n FROM slots WHERE model = ?", (model,)).fetchone()
        n = row[0] if row else 0
        if n >= limit:
            return False
        c.execute("INSERT OR REPLACE INTO slots (model, n) VALUES (?, ?)", (model, n + 1))
        return True

    def slot_release(self, model: str) -> None:
        with self._tx() as c:
            c.execute(_SLOT_RELEASE, (model,))

    def slots_in_use(self, model: str) -> int:
        rows = self._read("SELECT n FROM slots WHERE model = ?", (model,))
        return int(rows[0][0]) if rows else 0

    def latency_put(self, model: str, latency_s: float) -> None:
        with self._tx() as c:
            c.execute(_LATENCY_PUT, (model, latency_s))

    def loads(self, models: tuple[str, ...]) -> tuple[Load, ...]:
        marks = ", ".join("?" * len(models))
        slots = dict(self._read(f"SELECT model, n FROM slots WHERE model IN ({marks})", models))
        avgs = dict(self._read(f"SELECT model, avg FROM latency WHERE model IN ({marks})", models))
        return tuple(Load(int(slots.get(m, 0)), avgs.get(m)) for m in models)

    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        with self._tx() as c:
            return self._rate_acquire(c, model, rpm, tpm, tokens, now)

    @staticmethod
    def _rate_acquire(
        c: sqlite3.Connection, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float
    ) -> float:
        # a grant more than a window ahead (the wall clock stepped back) has run out too
        c.execute("DELETE FROM rate_log WHERE model = ? AND (t <= ? OR t > ?)", (model, now - WINDOW_S, now + WINDOW_S))
        rows = c.execute("SELECT t, tokens FROM rate_log WHERE model = ? ORDER BY t", (model,)).fetchall()
        wait = 0.0
        if rpm is not None and len(rows) >= rpm:
            wait = max(wait, rows[len(rows) - rpm][0] + WINDOW_S - now)
        if tpm is not None:
            wait = max(wait, tpm_wait(rows, sum(r[1] for r in rows), tokens, tpm, now))
        if wait > 0:
            return float(wait)
        c.execute("INSERT INTO rate_log (model, t, tokens) VALUES (?, ?, ?)", (model, now, tokens))
        return 0.0

    # ------------------------------------------------------------------ budgets
    # ------------------------------------------------------------------ limits learned from the provider
    def learned_take(
        self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        with self._tx() as c:
            return self._learned_take(c, model, cost, reserve, wall, waited)

    def _learned_take(
        self, c: sqlite3.Connection, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        learned = self._learned_in(c, model)
        span = learned.span if learned is not None else adaptive.DEFAULT_WINDOW_S
        c.execute("DELETE FROM adapt_log WHERE model = ? AND t <= ?", (model, wall - span))
        used = _used(c, model)
        wait = adaptive.hold(learned, used, _log_rows(c, model), cost, reserve, wall, waited)
        if wait > 0 and learned is not None:
            c.execute(_LEARNED_PUT, (model, json.dumps(dataclasses.astuple(adaptive.promise(learned, wall, wait)))))
            return wait, used
        c.execute("INSERT INTO adapt_log (model, t, c0, c1, c2, c3) VALUES (?, ?, ?, ?, ?, ?)", (model, wall, *cost))
        a, b, i, o = (u + k for u, k in zip(used, cost, strict=True))
        return 0.0, (a, b, i, o)

    def learned_put(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> None:
        with self._tx() as c:
            self._learned_put(c, model, reading, admitted_at, own, wall)

    def _learned_put(
        self,
        c: sqlite3.Connection,
        model: str,
        reading: ProviderLimits,
        admitted_at: float,
        own: adaptive.Costs,
        wall: float,
    ) -> None:
        learned = adaptive.learn(self._learned_in(c, model), reading, admitted_at, own, wall)
        c.execute(_LEARNED_PUT, (model, json.dumps(dataclasses.astuple(learned))))

    @staticmethod
    def _learned_in(c: sqlite3.Connection, model: str) -> adaptive.Learned | None:
        row = c.execute("SELECT value FROM learned WHERE model = ?", (model,)).fetchone()
        if row is None:
            return None
        window, limit, others, until, at, queued = json.loads(row[0])
        return adaptive.Learned(float(window), tuple(limit), tuple(others), tuple(until), tuple(at), float(queued))

    def learned_get(self, model: str, wall: float) -> ProviderLimits | None:
        with self._tx() as c:
            learned = self._learned_in(c, model)
            if learned is None:
                return None
            c.execute("DELETE FROM adapt_log WHERE model = ? AND t <= ?", (model, wall - learned.span))
            return adaptive.estimate(learned, _used(c, model), wall)

    def _expire(self, c: sqlite3.Connection, wall: float) -> None:
        """Give the amounts of expired leases back; keep their charges for a late settle (``_late``)."""
        dead = c.execute(
            "DELETE FROM reservations WHERE lease_until <= ? RETURNING id, charges, lease_until", (wall,)
        ).fetchall()
        if not dead:
            return
        for _rid, charges, _until in dead:
            c.executemany(_RELEASE, [(amount, key) for key, amount, _unit in _charges_read(charges)])
        c.executemany("INSERT OR REPLACE INTO expired_reservations (id, charges, lease_until) VALUES (?, ?, ?)", dead)
        c.execute("DELETE FROM expired_reservations WHERE lease_until <= ?", (wall - LATE_SETTLE_S,))

    def _late(self, c: sqlite3.Connection, rid: str, actual: _Actual) -> None:
        """A settle (or release) after the lease expired: its amount went back then, its spend counts
        now, once (as on Redis and memory). Unknown or already finished: nothing."""
        row = c.execute("DELETE FROM expired_reservations WHERE id = ? RETURNING charges", (rid,)).fetchone()
        if row is not None and actual is not None:
            amounts = [(key, settled_amount(unit, *actual)) for key, _amount, unit in _charges_read(row[0])]
            c.executemany(
                "INSERT INTO counters (key, spent) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET spent = spent + ?",
                [(key, a, a) for key, a in amounts],
            )

    def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
        return self._reserve_fast(charges, wall, lease_s)

    def _begin(self, c: sqlite3.Connection) -> None:
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite state {self.path!r}: {exc}") from exc

    def _commit(self, c: sqlite3.Connection) -> None:
        c.execute("COMMIT")
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _reserve_fast(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult:
        """``_reserve`` in one ``BEGIN IMMEDIATE`` transaction, the way that costs least when the
        counters exist and the reservation fits: one conditional UPDATE per counter takes the
        amount only if spent + reserved + amount stays within the limit. If any counter did not
        take it (a refusal, or a counter this window has not created yet), the transaction rolls
        back and ``_reserve`` decides in a new one, after reclaiming expired leases: the same
        decisions as ``_reserve`` alone."""
        held = tuple(charges)
        if not held:
            with self._tx() as c:
                return self._reserve(c, held, wall, lease_s)
        takes = [(ch.amount, ch.key, ch.amount, ch.limit + 1e-12) for ch in held]
        raw = _charges_json(held)
        rid = f"{_rid_prefix}{next(_rid_seq)}"
        c = self._conn
        lock = self._lock
        lock.acquire()
        try:
            self._begin(c)
            try:
                if wall >= self._due_check_at:  # at most once a second; a refusal always reclaims first
                    self._due_check_at = wall + DUE_CHECK_S
                    if c.execute(_DUE, (wall,)).fetchone() is not None:
                        self._expire(c, wall)
                if c.executemany(_TAKE, takes).rowcount == len(held):
                    c.execute(_HOLD, (rid, raw, wall + lease_s))
                    self._commit(c)
                    self._remember(rid, held)
                    return ReserveResult(True, rid)
                c.execute("ROLLBACK")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        finally:
            lock.release()
        with self._tx() as c:
            return self._reserve(c, held, wall, lease_s)

    def _finish_fast(self, reservation_id: str, actual: _Actual) -> None:
        """Settle ``actual`` on a reservation (``None``: release it) in one ``BEGIN IMMEDIATE`` transaction."""
        with self._tx() as c:
            self._finish_in(c, reservation_id, actual)

    def _reserve(
        self, c: sqlite3.Connection, charges: Sequence[BudgetCharge], wall: float, lease_s: float
    ) -> ReserveResult:
        self._expire(c, wall)
        marks = ", ".join("?" * len(charges))
        have = dict(
            c.execute(f"SELECT key, spent + reserved FROM counters WHERE key IN ({marks})", [ch.key for ch in charges])
        )
        for ch in charges:
            used = float(have.get(ch.key, 0.0))
            if used + ch.amount > ch.limit + 1e-12:
                return ReserveResult(False, None, ch.budget, used, ch.limit, ch.unit)
        c.executemany(
            "INSERT INTO counters (key, spent, reserved, expires_at) VALUES (?, 0, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET reserved = reserved + excluded.reserved",
            [(ch.key, ch.amount, ch.expires_at) for ch in charges],
        )
        rid = f"{_rid_prefix}{next(_rid_seq)}"
        c.execute(_HOLD, (rid, _charges_json(charges), wall + lease_s))
        self._remember(rid, tuple(charges))
        return ReserveResult(True, rid)

    def _remember(self, rid: str, held: tuple[BudgetCharge, ...]) -> None:
        if len(self._held) >= _HELD_MAX:
            self._held.clear()  # settling then reads the charges back from the row
        self._held[rid] = held

    def _finish_in(self, c: sqlite3.Connection, rid: str, actual: _Actual) -> None:
        """Settle ``actual`` on reservation ``rid`` (``None``: release it), inside a transaction:
        one DELETE and one UPDATE per counter. Its charges are the ones this state kept when it
        made the reservation, else read back from the row (another process made it); a
        reservation whose lease expired meanwhile settles late (``_late``)."""
        held = self._held.pop(rid, None)
        if held is not None:
            found = c.execute(_UNHOLD, (rid,)).rowcount == 1
            charges: list[tuple[str, float, str]] = [(ch.key, ch.amount, ch.unit) for ch in held]
        else:
            row = c.execute("DELETE FROM reservations WHERE id = ? RETURNING charges", (rid,)).fetchone()
            found = row is not None
            charges = _charges_read(row[0]) if row is not None else []
        if not found:
            self._late(c, rid, actual)
        elif actual is None:
            c.executemany(_RELEASE, [(amount, key) for key, amount, _unit in charges])
        else:
            c.executemany(_SETTLE, [(amount, settled_amount(unit, *actual), key) for key, amount, unit in charges])

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None:
        self._finish_fast(reservation_id, (actual_usd, actual_tokens))

    def budget_release(self, reservation_id: str) -> None:
        self._finish_fast(reservation_id, None)

    def budget_used(self, key: str, wall: float) -> tuple[float, float]:
        rows = self._read("SELECT spent, reserved FROM counters WHERE key = ?", (key,))
        return (float(rows[0][0]), float(rows[0][1])) if rows else (0.0, 0.0)

    budget_used_recent = budget_used  # one read on this host: always current

    def budget_add_spent(self, key: str, amount: float) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO counters (key, spent) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET spent = spent + ?",
                (key, amount, amount),
            )

    def budget_mark_soft(self, key: str) -> bool:
        with self._tx() as c:
            cur = c.execute("INSERT OR IGNORE INTO soft_marks (key) VALUES (?)", (key,))
            return cur.rowcount == 1

    def open_reservations(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM reservations")[0][0])

    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]:
        rows = self._read(
            "SELECT key, spent, reserved FROM counters WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return [(k, float(s), float(r)) for k, s, r in rows]

    # ------------------------------------------------------------------ cache
    def cache_get(self, key: str) -> CacheEntry | None:
        with self._lock:
            return self._cache_get_in(self._conn, key)

    def _cache_get_in(self, c: sqlite3.Connection, key: str) -> CacheEntry | None:
        try:
            row = c.execute("SELECT value, expires_at, stale_until FROM cache WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite state {self.path!r}: {exc}") from exc
        return None if row is None else CacheEntry(result_from_json(row[0]), row[1], row[2])

    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        with self._tx() as c:
            self._cache_set_in(c, key, entry, max_entries)

    def _cache_set_in(self, c: sqlite3.Connection, key: str, entry: CacheEntry, max_entries: int) -> None:
        body = cacheable_json(entry.value)
        if body is None:
            return
        c.execute(
            "INSERT OR REPLACE INTO cache (key, value, expires_at, stale_until) VALUES (?, ?, ?, ?)",
            (key, body, entry.expires_at, entry.stale_until),
        )
        self._sets += 1
        if self._sets % 100 == 0:  # bound the size without a scan per write
            c.execute(
                "DELETE FROM cache WHERE key NOT IN (SELECT key FROM cache ORDER BY stale_until DESC LIMIT ?)",
                (max_entries,),
            )

    # ------------------------------------------------------------------ ledger
    def ledger_append(self, row: LedgerRow) -> None:
        with self._tx() as c:
            self._ledger_in(c, row)

    def _ledger_in(self, c: sqlite3.Connection, row: LedgerRow) -> None:
        c.execute(
            "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.ts,
                row.request_id,
                row.task,
                row.route,
                row.model,
                row.tenant,
                row.user,
                row.input_tokens,
                row.output_tokens,
                row.cached_input_tokens,
                row.cost_usd,
                row.provider_request_ids,
                row.outcome,
                row.attempts,
                row.metadata,
                row.cache_write_tokens,
                row.prompt_cache_saved_usd,
                row.cache_saved_usd,
                row.experiment,
                row.variant,
                row.latency_s,
                row.fallbacks,
            ),
        )

    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]:
        rows = self._read(
            "SELECT * FROM ledger WHERE ts >= ? ORDER BY ts", (since_wall if since_wall is not None else 0.0,)
        )
        return [LedgerRow(*r) for r in rows]

    def feedback_put(self, row: FeedbackRow) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)", (row.request_id, row.ts, row.score, row.label)
            )

    def feedback_rows(self) -> list[FeedbackRow]:
        rows = self._read("SELECT ts, request_id, score, label FROM feedback ORDER BY ts", ())
        return [FeedbackRow(*r) for r in rows]

    # ------------------------------------------------------------------ the engine's calls: one transaction each
    def admit(self, a: Admit) -> Admitted:
        """The cache read, then ``combined.admit``'s stages in one ``BEGIN IMMEDIATE`` transaction
        (a closed breaker and a budgets-only admission keep their cheaper paths). An exception
        rolls back everything taken, the slot included."""
        if a.cache_key is not None:
            entry = self.cache_get(a.cache_key)
            if entry is not None and entry.expires_at > a.wall:
                return Admitted("cached", entry=entry)
        a = replace(a, now=a.wall)  # breakers and the rate log keep wall times here
        breaker = a.breaker
        if breaker is not None and self._breaker_closed(a.model):
            breaker = None  # closed: admitted without a write (as ``breaker_admit``'s fast path)
        if a.concurrency is None and a.rpm is None and a.tpm is None and a.adaptive is None and breaker is None:
            if a.charges is None:
                return Admitted("ok")
            res = self._reserve_fast(a.charges, a.wall, a.lease_s)
            return Admitted("ok" if res.ok else "budget", reserve=res)
        with self._tx() as c:
            return combined.admit(_InTx(self, c), replace(a, breaker=breaker, cache_key=None))

    def _breaker_closed(self, model: str) -> bool:
        rows = self._read("SELECT record FROM breakers WHERE model = ?", (model,))
        return not rows or self._rec(rows[0]).status == "closed"

    def finish(self, f: Finish) -> BreakerRecord | None:
        """``combined.finish``'s stages in one ``BEGIN IMMEDIATE`` transaction."""
        f = replace(f, now=f.wall)  # breakers keep wall times here
        if (
            not f.slot and f.limits is None and f.latency_s is None and (f.reservation_id is None or f.breaker is None)
        ):  # one stage at most: its own transaction
            return combined.finish(self, f)
        with self._tx() as c:
            return combined.finish(_InTx(self, c), f)

    def record(self, r: Record) -> None:
        """The last finish in its own transaction (what the attempt held is given back whatever
        happens next), then the cache store and the ledger row in one."""
        if r.finish is not None:
            self.finish(r.finish)
        if r.cache is not None or r.row is not None:
            with self._tx() as c:
                combined.record(_InTx(self, c), Record(None, r.cache, r.row))

    def attach_events(self, sink: EventSink) -> None:
        return None  # a local file: its errors raise StateUnavailable where they happen

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self._conn.close()
