"""Redis state: budgets, limits, breakers, cache and ledger shared by processes and hosts.

Every check-and-update is one Lua script (``state/_redis_lua.py``), so it is atomic on the
server and costs one round trip. The engine's three calls (``admit``, ``finish``, ``record``;
``state/combined.py`` has their compositions) each run their stages in one script, so a
request that misses the cache costs two round trips: the cache lookup with the first
attempt's admission before the call, the finish with the cache store and the ledger row
after it. The soft-limit check
costs none in the steady state (see :meth:`RedisState.budget_used_recent`). Every key starts
with the hash tag ``{prefix}``, so all of them live on one Redis Cluster slot and a
script may touch any of them.

Keys (``P`` = ``key_prefix``)::

    {P}:bc:<budget>|<window>|<scope>   hash spent/reserved; expires `retain_s` after its window
    {P}:bidx                            zset of counter names (for `policyrouter spend`)
    {P}:rsv:<id>, {P}:leases            reservations ("<state>\\n<charges json>") and their lease ends
    {P}:soft:<counter>                  soft-limit event already sent for this window
    {P}:br:<model>                      breaker record
    {P}:slots:<model>                   leased concurrency slots
    {P}:latency:<model>                 decaying average latency (lowest_latency tiers)
    {P}:rate:<model>, {P}:rtok:<model>  sliding-window request log and its token sum
    {P}:ce:<key>                        "<expires_at> <stale_until>\\n<json>", expiring with the entry
    {P}:ledger, {P}:ledger:rows         ledger rows by time, by request id
    {P}:feedback, {P}:feedback:rows     feedback rows by time, by request id (the last one given)

(Reservations and cache entries had other names, ``res`` and ``cache``, in the layout
before this one, so a deployment that upgrades never reads one layout as the other: old
cache entries go unread until they expire, and a reservation in flight at the upgrade
keeps its amount reserved until its counter's window ends.)

Time: by default the server's clock (``TIME`` inside the scripts) decides leases, breaker
cooldowns and rate windows, so hosts need not agree on theirs. Pass ``clock=`` (a
``FakeClock`` in tests) to use the times the router passes instead.

When Redis cannot be reached, ``on_unavailable="fail_closed"`` raises
:class:`~policyrouter.errors.StateUnavailable`; ``"fail_open"`` serves from a local
:class:`~policyrouter.state.memory.MemoryState` (limits hold per process only), logs a
warning and emits a ``state_unavailable`` event, and goes back to Redis once it answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policyrouter.clock import Clock
from policyrouter.errors import ConfigurationError, StateUnavailable
from policyrouter.stages import adaptive
from policyrouter.stages.circuit import CLOSED, PROBE_LEASE_S, Admission, BreakerRecord, BreakerSettings
from policyrouter.stages.rate import WINDOW_S
from policyrouter.stages.select import LATENCY_ALPHA, Load
from policyrouter.state import _redis_lua as lua
from policyrouter.state import combined
from policyrouter.state.base import (
    LATE_SETTLE_S,
    Admit,
    Admitted,
    BudgetCharge,
    Finish,
    Record,
    ReserveResult,
)
from policyrouter.state.codec import cacheable_json, result_from_json
from policyrouter.state.memory import MemoryState
from policyrouter.types import LIMIT_DIMENSIONS, CacheEntry, FeedbackRow, LedgerRow, ProviderLimits

_LEARNED_TTL_S = 3600  # a model's learned limits are forgotten this long after its last response or attempt

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisState", "redact_url"]

log = logging.getLogger("policyrouter")


def _random_id() -> str:
    """128 random bits as 32 hex digits, unique across processes and hosts: a reservation id,
    slot token or rate-window entry."""
    return os.urandom(16).hex()


OnUnavailable = Literal["fail_closed", "fail_open"]
EventSink = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")
Stage = tuple[str, list[str], list[Any]]  # a script of _redis_lua.STAGES: name, keys, args
Later = Callable[[Any, BaseException | None], None]  # what to do with a reply read later (or its error)

FREE_CONNECTIONS = 4  # connections a RedisState keeps for its scripts; more callers at once use the pool
_LEDGER_FIELDS = tuple(f.name for f in fields(LedgerRow))  # its values are plain: no asdict deep copy
LOCAL_PREFIX = "local:"


def redact_url(url: str) -> str:
    """The URL without its password (safe for logs, errors and reprs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Take our own ``key_prefix`` query parameter out of a redis URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "key_prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "key_prefix"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), prefix


def _bytes(raw: bytes | str) -> bytes:
    """A script's string answer (``str`` from a client made with ``decode_responses=True``)."""
    return raw.encode() if isinstance(raw, str) else raw


def _pack(args: Sequence[Any]) -> bytes:
    """One command in the Redis protocol (RESP), the way redis-py sends it (numbers as ``repr``)."""
    enc = [a.encode() if type(a) is str else a if type(a) is bytes else repr(a).encode() for a in args]
    return b"*%d\r\n" % len(enc) + b"".join([b"$%d\r\n%b\r\n" % (len(b), b) for b in enc])


def _connect(mod: Any, url: str | None, key_prefix: str, client: Any, socket_timeout_s: float) -> tuple[Any, str, str]:
    """The client (the one given, or one for ``url``), the key prefix (a ``?key_prefix=`` in the
    URL wins) and where it points, for messages (no password)."""
    if url is not None:
        url, from_url = _split_prefix(url)
        key_prefix = from_url or key_prefix
    if not key_prefix or any(c in key_prefix for c in "{}"):
        raise ConfigurationError(f"redis key_prefix {key_prefix!r} must be non-empty and contain no braces")
    where = redact_url(url) if url is not None else "<client>"
    if client is not None:
        return client, key_prefix, where
    if url is None:
        raise ConfigurationError("RedisState needs a url or a client")
    try:
        return (
            mod.Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s),
            key_prefix,
            where,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid redis URL {where}: {exc}") from None


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ConfigurationError(
            "the redis state backend needs the `redis` extra: pip install 'policyrouter[redis]'"
        ) from exc
    return redis


class RedisState:
    """State in one Redis (or Valkey, or a Redis Cluster slot) shared by every process.

    ``RedisState(url, key_prefix="policyrouter", on_unavailable="fail_closed")``. ``url``
    is a redis-py URL (``redis://``, ``rediss://``, ``unix://``); a ``key_prefix`` query
    parameter in it overrides the argument. ``client=`` takes a ready redis-py client
    instead (e.g. ``redis.cluster.RedisCluster``).

    ``retain_s``: budget counters (and soft-limit marks) live this long after their window
    ends (for ``policyrouter spend``). ``ledger_retain_s``: ledger rows are trimmed when
    older than this. ``slot_lease_s`` / ``probe_lease_s``: how long a concurrency slot or
    a half-open probe of a dead process blocks others. ``retry_interval_s``: while failing
    open, how often Redis is tried again. ``soft_refresh_s``: how old the counter totals this
    process saw last may be before a soft-limit check reads them again (see
    :meth:`budget_used_recent`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        key_prefix: str = "policyrouter",
        on_unavailable: OnUnavailable = "fail_closed",
        client: redis_lib.Redis | None = None,
        clock: Clock | None = None,
        socket_timeout_s: float = 1.0,
        retain_s: float = 35 * 86400.0,
        ledger_retain_s: float = 400 * 86400.0,
        slot_lease_s: float = 600.0,
        probe_lease_s: float = PROBE_LEASE_S,
        retry_interval_s: float = 1.0,
        soft_refresh_s: float = 1.0,
    ) -> None:
        mod = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (mod.ConnectionError, mod.TimeoutError)
        self._redis_error: type[BaseException] = mod.RedisError
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ConfigurationError(f"on_unavailable must be fail_closed or fail_open, not {on_unavailable!r}")
        client, key_prefix, self._where = _connect(mod, url, key_prefix, client, socket_timeout_s)
        self._r: Any = client
        self.key_prefix = key_prefix
        self.on_unavailable: OnUnavailable = on_unavailable
        self._p = "{" + key_prefix + "}"
        self._clock = clock
        self._retain_s = retain_s
        self._ledger_retain_s = ledger_retain_s
        self._tomb_ttl = LATE_SETTLE_S
        self._slot_lease_s = slot_lease_s
        self._probe_lease_s = probe_lease_s
        self._retry_interval_s = retry_interval_s
        self._soft_refresh_s = soft_refresh_s
        self._seen: dict[str, tuple[float, float, float]] = {}  # counter -> (spent, reserved, when seen)
        self._soft_marked: set[str] = set()  # counters whose soft-limit mark is known to be set
        self._lock = threading.Lock()
        self._slot_tokens: dict[str, list[str]] = {}
        self._local: MemoryState | None = None
        self._down_since: float | None = None
        self._last_try = 0.0
        self._sinks: list[EventSink] = []
        self._pending_lock = threading.Lock()
        self._pending: list[tuple[Any, str, Sequence[str], Sequence[Any], Later]] = []
        self._loaded: set[str] = set()  # scripts this state has run on the server (``_eval``)
        self._noscript: type[BaseException] = mod.exceptions.NoScriptError
        self._connection_error: type[BaseException] = mod.ConnectionError
        self._free: list[Any] = []  # pool connections kept out of the pool for the scripts (_eval)
        self._pid = os.getpid()
        self._direct = isinstance(client, mod.Redis) and isinstance(client.connection_pool, mod.ConnectionPool)
        self._scripts = {
            name: self._r.register_script(getattr(lua, name))
            for name in (
                *("RESERVE", "FINISH", "USED", "OPEN", "ADMIT", "RECORD", "SLOT", "RATE", "LEDGER", "STAGES"),
                *("ADAPT", "LEARN", "EWMA"),
            )
        }

    def __repr__(self) -> str:
        return f"RedisState({self._where!r}, key_prefix={self.key_prefix!r}, on_unavailable={self.on_unavailable!r})"

    # ------------------------------------------------------------------ availability
    def attach_events(self, sink: EventSink) -> None:
        """Receive ``state_unavailable`` / ``state_restored`` events (the router attaches its bus)."""
        self._sinks.append(sink)

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and a fail_open backend serves from local memory."""
        return self._down_since is not None

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink(event, payload)

    def _local_state(self) -> MemoryState:
        with self._lock:
            if self._local is None:
                self._local = MemoryState()
            return self._local

    def _call(self, op: str, remote: Callable[[], T], local: Callable[[MemoryState], T], *, force: bool = False) -> T:
        """Run ``remote``; on a connection failure fail closed or fall back to ``local``.

        While degraded, Redis is tried again at most every ``retry_interval_s`` (always
        with ``force``: finishing a reservation Redis holds is worth a try).
        """
        if not force and self._down_since is not None and time.monotonic() - self._last_try < self._retry_interval_s:
            return local(self._local_state())
        try:
            self._drain()  # what this state sent before is answered before it asks anything else
            out = remote()
        except self._errors as exc:
            return self._unavailable(op, exc, local)
        except self._redis_error as exc:
            raise StateUnavailable(f"redis state at {self._where}: {op} failed: {exc}") from exc
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            log.warning("policyrouter: redis state at %s is back after %.1fs", self._where, down)
            self._emit("state_restored", {"backend": "redis", "where": self._where, "down_s": round(down, 3)})
        return out

    def _unavailable(self, op: str, exc: BaseException, local: Callable[[MemoryState], T]) -> T:
        message = f"redis state at {self._where} is unavailable ({op}): {exc}"
        if self.on_unavailable == "fail_closed":
            raise StateUnavailable(message + "; the policy says fail_closed") from exc
        now = time.monotonic()
        first = self._down_since is None
        self._last_try = now
        if first:
            self._down_since = now
            log.warning("policyrouter: %s; fail_open: using local in-process limits until it answers", message)
            self._emit(
                "state_unavailable",
                {"backend": "redis", "where": self._where, "op": op, "error": type(exc).__name__, "fail_open": True},
            )
        return local(self._local_state())

    # ------------------------------------------------------------------ helpers
    def _t(self, value: float) -> float:
        """The time to send a script: the caller's with a clock injected, else the server's."""
        return value if self._clock is not None else -1.0

    def _wall(self) -> float:
        return self._clock.wall() if self._clock is not None else time.time()

    def _k(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    def ping(self) -> bool:
        """True when Redis answers (never raises)."""
        try:
            return bool(self._r.ping())
        except self._redis_error:
            return False

    # ------------------------------------------------------------------ stages (keys and args of each script)
    def _script(self, stage: Stage) -> Any:
        """Run one stage's own script."""
        name, keys, args = stage
        return self._eval(name.upper(), keys, args)

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any], later: Later | None = None) -> Any:
        """EVALSHA one of our scripts (loading it when the server does not know it).

        On a plain ``redis.Redis`` client the command is packed here and sent on a connection
        this state keeps out of the client's pool (a few, for its busiest callers): redis-py's
        command path (argument encoding, pool checkout and its health check, command hooks)
        is skipped. A connection that fails is dropped and the command tried once more on a
        fresh one, as redis-py's default retry does. Other clients (Redis
        Cluster) take redis-py's ``Script`` path.

        With ``later``, the command is sent and its reply left unread: ``later(reply, None)``
        (or ``later(None, error)``) runs when this state's next operation, on any thread,
        reads it first (``_drain``), or at ``close()``. Redis runs the command when it
        arrives; only the wait for its answer moves off the caller's path.
        """
        script = self._scripts[name]
        if not self._direct:
            out = script(keys=keys, args=args)
            if later is not None:
                later(out, None)
            return out
        conn = self._checkout()
        held = False
        try:
            for attempt in (0, 1):
                try:
                    if later is not None and name in self._loaded:
                        conn.send_packed_command([_pack(("EVALSHA", script.sha, len(keys), *keys, *args))])
                        with self._pending_lock:
                            self._pending.append((conn, name, keys, args, later))
                        held = True
                        return None
                    out = self._send_and_read(conn, script, keys, args)
                except self._connection_error as exc:  # not a timeout: a slow script may have run
                    conn.disconnect()  # the next send connects again
                    if not attempt:
                        continue
                    return self._failed(exc, later)
                except self._redis_error as exc:
                    return self._failed(exc, later)
                # the server knows this script now, so it may be sent without waiting from here on:
                # a first send left unread would fail NOSCRIPT unseen and only apply when drained
                self._loaded.add(name)
                if later is not None:
                    later(out, None)
                    return None
                return out
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if not held:
                self._checkin(conn)

    def _checkout(self) -> Any:
        """A connection of this state's own (or a new one from the client's pool)."""
        if self._pid != os.getpid():  # a forked child: its parent's sockets are not its own
            self._pid, self._free = os.getpid(), []
        try:
            return self._free.pop()
        except IndexError:
            return self._r.connection_pool.get_connection()

    def _send_and_read(self, conn: Any, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA and its reply; a server that lost its scripts (a restart) gets this one loaded again."""
        conn.send_packed_command([_pack(("EVALSHA", script.sha, len(keys), *keys, *args))])
        try:
            return conn.read_response()
        except self._noscript:
            self._loaded.clear()  # every one of them: the next of each is waited for
            script.sha = self._r.script_load(script.script)
            conn.send_packed_command([_pack(("EVALSHA", script.sha, len(keys), *keys, *args))])
            return conn.read_response()

    @staticmethod
    def _failed(exc: BaseException, later: Later | None) -> None:
        """A command that failed: raised, or (sent without waiting) reported as its reply would be."""
        if later is None:
            raise exc
        later(None, exc)  # as if its reply had been read later: the caller does not wait for it
        return None

    def _checkin(self, conn: Any) -> None:
        if len(self._free) < FREE_CONNECTIONS:
            self._free.append(conn)
        else:
            self._r.connection_pool.release(conn)

    def _drain(self) -> None:
        """Read the replies of scripts sent without waiting (``_eval(later=...)``), in order."""
        if not self._pending:
            return
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for conn, name, keys, args, later in pending:
            try:
                try:
                    raw = conn.read_response()
                except self._noscript:  # the server lost its scripts (a restart): load and send again
                    self._loaded.clear()  # every one of them: the next of each is waited for
                    raw = self._eval(name, keys, args)
            except self._redis_error as exc:
                later(None, exc)
            else:
                later(raw, None)
            finally:
                self._checkin(conn)

    def _run(self, stages: Sequence[Stage], later: Later | None = None) -> list[Any]:
        """Run stages in one script (one round trip); it stops after the first that refuses."""
        items: list[Any] = []
        spec = ["J"]
        for name, k, a in stages:
            items += k
            items += a
            spec.append(f"{name} {len(k)} {len(a)}")
        strs = [x if type(x) is str else repr(x) for x in items]  # as redis-py would send them
        blob = "\x1e".join(strs)
        if blob.count("\x1e") == len(strs) - 1:
            return list(self._eval("STAGES", [stages[0][1][0]], [" ".join(spec), blob], later) or ())
        keys: list[str] = []  # a value holds the separator: every key and argument on its own
        args: list[Any] = [""]
        for _, k, a in stages:
            keys += k
            args += a
        args[0] = "F" + " ".join(spec)[1:]
        return list(self._eval("STAGES", keys, args, later) or ())

    def _admit_stage(self, model: str, settings: BreakerSettings, now: float) -> Stage:
        return "admit", [self._k("br", model)], [self._t(now), settings.cooldown_s, self._probe_lease_s]

    def _record_stage(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> Stage:
        counts = (not ok) and kind in settings.trip_on
        args = [self._t(now), int(ok), int(counts), int(probe), settings.window_s, settings.failure_threshold]
        return "record", [self._k("br", model)], args

    def _slot_stage(self, model: str, limit: int, token: str) -> Stage:
        return "slot", [self._k("slots", model)], [self._t(self._wall()), limit, token, self._slot_lease_s]

    def _rate_stage(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> Stage:
        args = [
            self._t(now),
            -1 if rpm is None else rpm,
            -1 if tpm is None else tpm,
            int(tokens),
            f"{_random_id()[:16]}:{int(tokens)}",
            WINDOW_S,
        ]
        return "rate", [self._k("rate", model), self._k("rtok", model)], args

    def _adapt_stage(self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool) -> Stage:
        member = ":".join((_random_id()[:16], *map(str, cost)))
        args = [wall, reserve, *cost, member, adaptive.POLL_S, adaptive.DEFAULT_WINDOW_S, _LEARNED_TTL_S, int(waited)]
        return "adapt", [self._k("alog", model), self._k("learned", model)], args

    @staticmethod
    def _adapted(raw: bytes | str) -> tuple[float, adaptive.Costs]:
        """An ``adapt`` stage's reply: ``(0.0, our usage in the window)`` or ``(the wait, zeros)``."""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        parts = text.split()
        if parts[0] != "0" or len(parts) != 5:
            return float(parts[0]), (0, 0, 0, 0)
        a, b, i, o = (int(float(p)) for p in parts[1:])
        return 0.0, (a, b, i, o)

    def _learn_stage(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> Stage:
        args: list[Any] = [wall, admitted_at, *own]
        for d in LIMIT_DIMENSIONS:
            r = getattr(reading, d)
            if r is None:
                args += [-1, -1, -1]
            else:
                args += [-1 if r.limit is None else r.limit, r.remaining, -1.0 if r.reset_at is None else r.reset_at]
        args += [adaptive.MAX_WINDOW_S, _LEARNED_TTL_S, adaptive.MIN_WINDOW_S]
        return "learn", [self._k("learned", model)], args

    def _reserve_stage(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float, rid: str) -> Stage:
        args: list[Any] = [self._t(wall), self._p, lease_s, self._retain_s, self._tomb_ttl, rid, len(charges)]
        for ch in charges:
            args += [ch.key, repr(float(ch.amount)), repr(float(ch.limit)), ch.expires_at, ch.unit[0]]
        keys = [self._k("leases"), self._k("bidx"), self._k("rsv", rid), *(self._k("bc", ch.key) for ch in charges)]
        return "reserve", keys, args

    def _finish_stage(self, reservation_id: str, actual: float, tokens: int) -> Stage:
        keys = [self._k("leases"), self._k("bidx"), self._k("rsv", reservation_id)]
        args = [-1.0, self._p, reservation_id, repr(float(actual)), self._retain_s, self._tomb_ttl, tokens]
        return "finish", keys, args

    def _ledger_stage(self, row: LedgerRow) -> Stage:
        raw = json.dumps({f: getattr(row, f) for f in _LEDGER_FIELDS}, separators=(",", ":"))
        keys = [self._k("ledger", "rows"), self._k("ledger")]
        return "ledger", keys, [row.request_id, row.ts, raw, self._ledger_retain_s]

    def _cache_stage(self, key: str, entry: CacheEntry) -> Stage | None:
        """Store with a TTL ending at ``stale_until`` (``None`` when that has passed)."""
        ttl_ms = int((entry.stale_until - self._wall()) * 1000)
        body = cacheable_json(entry.value) if ttl_ms > 0 else None
        if body is None:
            return None
        raw = f"{entry.expires_at!r} {entry.stale_until!r}\n{body}"
        return "cacheset", [self._k("ce", key)], [raw, ttl_ms]

    @staticmethod
    def _verdict(raw: Any) -> Admission:
        verdict = raw.decode() if isinstance(raw, bytes) else str(raw)
        return "probe" if verdict == "probe" else "open" if verdict == "open" else "closed"

    def _reserved(self, raw: bytes | str, charges: Sequence[BudgetCharge], rid: str) -> ReserveResult:
        """A reserve script's answer; the counters' totals in it are kept for soft-limit checks."""
        when = self._mono()
        out = _bytes(raw).split()
        if out[0] == b"1":
            if len(out) >= 3 + 2 * len(charges):  # (a retried reservation answers without them)
                for i, ch in enumerate(charges):
                    self._saw(ch.key, float(out[3 + 2 * i]), float(out[4 + 2 * i]), when)
            return ReserveResult(True, rid)
        ch = charges[int(out[1]) - 1]
        self._saw(ch.key, float(out[2]), 0.0, when)
        return ReserveResult(False, None, ch.budget, float(out[2]), ch.limit, ch.unit)

    def _settled(self, raw: Any) -> bool:
        """A finish script's answer: ``0`` (already done), or ``1`` then ``counter spent reserved`` (0x1f apart)."""
        if not raw:
            return False
        when = self._mono()
        out = _bytes(raw).split(b"\x1f")
        for i in range(1, len(out) - 2, 3):
            self._saw(out[i].decode(), float(out[i + 1]), float(out[i + 2]), when)
        return True

    def _mono(self) -> float:
        return self._clock.now() if self._clock is not None else time.monotonic()

    def _saw(self, key: str, spent: float, reserved: float, when: float) -> None:
        if len(self._seen) >= 10_000 and key not in self._seen:
            self._seen.clear()
        self._seen[key] = (spent, reserved, when)

    @staticmethod
    def _entry(raw: bytes | str) -> CacheEntry:
        """A stored cache entry: ``"<expires_at> <stale_until>\\n<json>"``; anything else is a
        ``StateUnavailable`` naming it (something other than this library wrote the key)."""
        head, _, body = _bytes(raw).partition(b"\n")
        try:
            expires_at, stale_until = head.split()
            return CacheEntry(result_from_json(body.decode()), float(expires_at), float(stale_until))
        except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError and UnicodeError are ValueErrors
            raise StateUnavailable(f"redis state: a cache entry is not in this library's format ({exc!r:.80})") from exc

    def _spend_lost(self, reservation_id: str, actual: float, tokens: int) -> None:
        """Redis holds this reservation; spend that cannot reach it is logged, not lost silently."""
        if actual > 0 or tokens > 0:
            log.error(
                "policyrouter: redis state at %s unavailable: settled spend $%.6f (%d tokens) of reservation %s "
                "not recorded in the shared budget",
                self._where,
                actual,
                tokens,
                reservation_id,
            )

    # ------------------------------------------------------------------ breakers
    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        def remote() -> Admission:
            return self._verdict(self._script(self._admit_stage(model, settings, now)))

        return self._call("breaker_admit", remote, lambda m: m.breaker_admit(model, settings, now))

    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        if ok and not probe:  # admitted as closed, and a success never changes a record: no round trip
            return CLOSED

        def remote() -> BreakerRecord:
            return self._record(self._script(self._record_stage(model, settings, now, ok, kind, probe)))

        return self._call("breaker_record", remote, lambda m: m.breaker_record(model, settings, now, ok, kind, probe))

    @staticmethod
    def _record(raw: Sequence[bytes]) -> BreakerRecord:
        status, opened_at, probe, failures = (x.decode() if isinstance(x, bytes) else str(x) for x in raw)
        return BreakerRecord(
            status,  # type: ignore[arg-type]
            tuple(float(t) for t in failures.split()),
            float(opened_at),
            probe == "1",
        )

    def breaker_get(self, model: str) -> BreakerRecord:
        def remote() -> BreakerRecord:
            v = self._r.hmget(self._k("br", model), "st", "at", "p", "f")
            if v[0] is None:
                return CLOSED
            return self._record([v[0], v[1] or b"0", v[2] or b"0", v[3] or b""])

        return self._call("breaker_get", remote, lambda m: m.breaker_get(model))

    # ------------------------------------------------------------------ limits
    def slot_acquire(self, model: str, limit: int) -> bool:
        token = _random_id()

        def remote() -> bool:
            ok = bool(self._script(self._slot_stage(model, limit, token)))
            if ok:
                with self._lock:
                    self._slot_tokens.setdefault(model, []).append(token)
            return ok

        def local(m: MemoryState) -> bool:
            ok = m.slot_acquire(model, limit)
            if ok:
                with self._lock:
                    self._slot_tokens.setdefault(model, []).append(LOCAL_PREFIX)
            return ok

        return self._call("slot_acquire", remote, local)

    def slot_release(self, model: str) -> None:
        with self._lock:
            tokens = self._slot_tokens.get(model)
            token = tokens.pop() if tokens else None
        if token is None:
            return
        if token == LOCAL_PREFIX:
            self._local_state().slot_release(model)
            return
        self._call("slot_release", lambda: self._r.zrem(self._k("slots", model), token), lambda m: None)

    def slots_in_use(self, model: str) -> int:
        self._drain()
        return int(self._r.zcount(self._k("slots", model), self._wall(), "+inf"))

    def _latency_stage(self, model: str, latency_s: float) -> Stage:
        return "ewma", [self._k("latency", model)], [repr(latency_s), repr(LATENCY_ALPHA)]

    def latency_put(self, model: str, latency_s: float) -> None:
        stage = self._latency_stage(model, latency_s)
        self._call("latency_put", lambda: self._script(stage), lambda m: m.latency_put(model, latency_s))

    def loads(self, models: tuple[str, ...]) -> tuple[Load, ...]:
        """Held slots and average latencies of ``models``, in one round trip."""

        def remote() -> tuple[Load, ...]:
            pipe = self._r.pipeline(transaction=False)
            wall = self._wall()
            for m in models:
                pipe.zcount(self._k("slots", m), wall, "+inf")
            pipe.mget([self._k("latency", m) for m in models])
            *counts, avgs = pipe.execute()
            return tuple(Load(int(n), None if a is None else float(a)) for n, a in zip(counts, avgs, strict=True))

        return self._call("loads", remote, lambda m: m.loads(models))

    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        def remote() -> float:
            return float(self._script(self._rate_stage(model, rpm, tpm, tokens, now)))

        return self._call("rate_acquire", remote, lambda m: m.rate_acquire(model, rpm, tpm, tokens, now))

    # ------------------------------------------------------------------ limits learned from the provider
    def learned_take(
        self, model: str, cost: adaptive.Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, adaptive.Costs]:
        def remote() -> tuple[float, adaptive.Costs]:
            return self._adapted(self._script(self._adapt_stage(model, cost, reserve, wall, waited)))

        return self._call("learned_take", remote, lambda m: m.learned_take(model, cost, reserve, wall, waited))

    def learned_put(
        self, model: str, reading: ProviderLimits, admitted_at: float, own: adaptive.Costs, wall: float
    ) -> None:
        def remote() -> None:
            self._script(self._learn_stage(model, reading, admitted_at, own, wall))

        self._call("learned_put", remote, lambda m: m.learned_put(model, reading, admitted_at, own, wall))

    def learned_get(self, model: str, wall: float) -> ProviderLimits | None:
        def remote() -> ProviderLimits | None:
            names = ["w", "q", *(f"{x}{d}" for x in "sluxa" for d in range(1, 5))]
            raw = dict(zip(names, self._r.hmget(self._k("learned", model), names), strict=True))
            if raw["w"] is None and all(raw[f"l{d}"] is None for d in range(1, 5)):
                return None

            def col(x: str) -> tuple[float, ...]:
                return tuple(float(raw[f"{x}{d}"] or 0) for d in range(1, 5))

            limits = tuple(None if raw[f"l{d}"] is None else int(float(raw[f"l{d}"])) for d in range(1, 5))
            others = tuple(int(v) for v in col("x"))
            learned = adaptive.Learned(float(raw["w"] or 0), limits, others, col("u"), col("a"), float(raw["q"] or 0))
            horizon = wall - learned.span
            used = [0, 0, 0, 0]
            for member in self._r.zrangebyscore(self._k("alog", model), f"({horizon}", "+inf"):
                for d, c in enumerate(_bytes(member).decode().split(":")[1:]):
                    used[d] += int(c)
            return adaptive.estimate(learned, (used[0], used[1], used[2], used[3]), wall)

        return self._call("learned_get", remote, lambda m: m.learned_get(model, wall))

    # ------------------------------------------------------------------ budgets
    def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
        rid = _random_id()

        def remote() -> ReserveResult:
            return self._reserved(self._script(self._reserve_stage(charges, wall, lease_s, rid)), charges, rid)

        def local(m: MemoryState) -> ReserveResult:
            res = m.budget_reserve(charges, wall, lease_s)
            if res.ok and res.reservation_id is not None:
                return ReserveResult(True, LOCAL_PREFIX + res.reservation_id)
            return res

        return self._call("budget_reserve", remote, local)

    def _finish(self, op: str, reservation_id: str, actual: float, tokens: int = 0) -> bool:
        """Settle ``actual`` USD and ``tokens`` on a reservation (``actual`` below 0: release it)."""
        if reservation_id.startswith(LOCAL_PREFIX):
            m = self._local_state()
            rid = reservation_id[len(LOCAL_PREFIX) :]
            if actual >= 0:
                m.budget_settle(rid, actual, self._wall(), tokens)
            else:
                m.budget_release(rid)
            return True

        def remote() -> bool:
            return self._settled(self._script(self._finish_stage(reservation_id, actual, tokens)))

        def local(m: MemoryState) -> bool:
            self._spend_lost(reservation_id, actual, tokens)
            return False

        return self._call(op, remote, local, force=True)

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None:
        """Turn a reservation into spend. Idempotent: a second settle counts nothing.

        A settle after the lease expired still counts the actual spend (once).
        """
        self._finish("budget_settle", reservation_id, max(0.0, actual_usd), max(0, actual_tokens))

    def budget_release(self, reservation_id: str) -> None:
        self._finish("budget_release", reservation_id, -1.0)

    def budget_used(self, key: str, wall: float) -> tuple[float, float]:
        def remote() -> tuple[float, float]:
            raw = self._eval("USED", [self._k("leases"), self._k("bc", key)], [self._t(wall), self._p, self._tomb_ttl])
            spent, reserved = float(raw[0]), float(raw[1])
            self._saw(key, spent, reserved, self._mono())
            return spent, reserved

        return self._call("budget_used", remote, lambda m: m.budget_used(key, wall))

    def budget_used_recent(self, key: str, wall: float) -> tuple[float, float]:
        """(spent, reserved) of a counter for soft-limit checks, without a round trip when this
        process saw them less than ``soft_refresh_s`` ago.

        Every reservation and settle of this process on the counter returns its totals, so
        under load they are at most one request old; else this reads them (``budget_used``).
        A crossing caused by other processes is noticed at this process's next reservation
        on the counter, or within ``soft_refresh_s``. Hard limits are unaffected: every
        reservation is checked on the server.
        """
        self._drain()  # the totals of this state's last settle, if its reply is still unread
        seen = self._seen.get(key)
        if seen is not None and self._mono() - seen[2] < self._soft_refresh_s:
            return seen[0], seen[1]
        return self.budget_used(key, wall)

    def budget_add_spent(self, key: str, amount: float) -> None:
        """Test/fixture helper: pretend ``amount`` was already spent on ``key``."""
        self._drain()
        self._r.hincrbyfloat(self._k("bc", key), "spent", amount)
        self._r.zadd(self._k("bidx"), {key: self._wall() + self._retain_s})

    def budget_mark_soft(self, key: str) -> bool:
        if key in self._soft_marked:  # set before, by this process or (it answered) another one
            return False

        def remote() -> bool:
            first = bool(self._r.set(self._k("soft", key), b"1", nx=True, ex=int(self._retain_s)))
            if len(self._soft_marked) >= 10_000:
                self._soft_marked.clear()
            self._soft_marked.add(key)
            return first

        return self._call("budget_mark_soft", remote, lambda m: m.budget_mark_soft(key))

    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]:
        def remote() -> list[tuple[str, float, float]]:
            self._eval("OPEN", [self._k("leases")], [self._t(self._wall()), self._p, self._tomb_ttl])  # expired leases
            idx = self._k("bidx")
            self._r.zremrangebyscore(idx, "-inf", self._wall())
            names = sorted(n.decode() for n in self._r.zrange(idx, 0, -1) if n.decode().startswith(prefix))
            pipe = self._r.pipeline(transaction=False)
            for n in names:
                pipe.hmget(self._k("bc", n), "spent", "reserved")
            rows = pipe.execute()
            return [
                (n, float(v[0] or 0), float(v[1] or 0)) for n, v in zip(names, rows, strict=True) if v[0] is not None
            ]

        return self._call("budget_counters", remote, lambda m: m.budget_counters(prefix))

    def open_reservations(self) -> int:
        return int(
            self._call(
                "open_reservations",
                lambda: self._scripts["OPEN"](
                    keys=[self._k("leases")], args=[self._t(self._wall()), self._p, self._tomb_ttl]
                ),
                lambda m: m.open_reservations(),
            )
        )

    # ------------------------------------------------------------------ cache
    def cache_get(self, key: str) -> CacheEntry | None:
        def remote() -> CacheEntry | None:
            raw = self._r.get(self._k("ce", key))
            return None if raw is None else self._entry(raw)

        return self._call("cache_get", remote, lambda m: m.cache_get(key))

    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        """Store with a Redis TTL ending at ``stale_until``; size is bounded by Redis' maxmemory policy."""
        stage = self._cache_stage(key, entry)
        if stage is None:
            return
        _, (k,), (raw, ttl_ms) = stage
        self._call("cache_set", lambda: self._r.set(k, raw, px=ttl_ms), lambda m: m.cache_set(key, entry, max_entries))

    # ------------------------------------------------------------------ ledger
    def ledger_append(self, row: LedgerRow) -> None:
        """Append once per request id: appending the same request again records nothing."""
        self._call("ledger_append", lambda: self._script(self._ledger_stage(row)), lambda m: m.ledger_append(row))

    # ------------------------------------------------------------------ the engine's calls (one round trip each)
    def _admission(self, a: Admit) -> tuple[list[Stage], Callable[[Sequence[Any]], Admitted]]:
        """The stages of one admission (the cache lookup first, when asked), and what turns
        their script results into its ``Admitted``. A fresh cache entry ends the script."""
        stages: list[Stage] = []
        if a.cache_key is not None:
            stages.append(("cacheget", [self._k("ce", a.cache_key)], [a.wall]))
        if a.breaker is not None:
            stages.append(self._admit_stage(a.model, a.breaker, a.now))
        token = _random_id() if a.concurrency is not None else ""
        if a.concurrency is not None:
            stages.append(self._slot_stage(a.model, a.concurrency, token))
        if a.rpm is not None or a.tpm is not None:
            stages.append(self._rate_stage(a.model, a.rpm, a.tpm, a.tokens, a.now))
        if a.adaptive is not None:
            cost = adaptive.costs(a.tokens - a.output_tokens, a.output_tokens)
            stages.append(self._adapt_stage(a.model, cost, a.adaptive, a.wall, a.waited))
        rid = _random_id() if a.charges is not None else ""
        if a.charges is not None:
            stages.append(self._reserve_stage(a.charges, a.wall, a.lease_s, rid))
        names = [name for name, _, _ in stages]

        def result(outs: Sequence[Any]) -> Admitted:
            probe = slot = False
            own: adaptive.Costs | None = None
            for name, raw in zip(names, outs, strict=False):
                if name == "cacheget":
                    if raw != 0:
                        return Admitted("cached", entry=self._entry(raw))
                elif name == "admit":
                    verdict = self._verdict(raw)
                    if verdict == "open":
                        return Admitted("open")
                    probe = verdict == "probe"
                elif name == "slot":
                    if not raw:
                        return Admitted("slot", probe)
                    slot = True
                    with self._lock:
                        self._slot_tokens.setdefault(a.model, []).append(token)
                elif name == "rate":
                    wait = float(raw)
                    if wait > 0:
                        return Admitted("rate", probe, slot, wait)
                elif name == "adapt":
                    wait, used = self._adapted(raw)
                    if wait > 0:
                        return Admitted("learned", probe, slot, wait)
                    own = used
                else:
                    res = self._reserved(raw, a.charges or (), rid)
                    return Admitted("ok" if res.ok else "budget", probe, slot, 0.0, res, own=own)
            return Admitted("ok", probe, slot, own=own)

        return stages, result

    def admit(self, a: Admit) -> Admitted:
        """Cache lookup, breaker, slot, rate window and budget in one script; see :class:`Admitted`."""
        stages, result = self._admission(a)
        if not stages:
            return Admitted("ok")

        def local(m: MemoryState) -> Admitted:  # each stage falls back on its own (and marks what is local)
            return combined.admit(self, a)

        return self._call("admit", lambda: result(self._run(stages)), local)

    def _finishing(
        self, f: Finish
    ) -> tuple[
        list[Stage],
        Callable[[Sequence[Any]], BreakerRecord | None],
        Callable[[MemoryState], BreakerRecord | None],
        bool,
    ]:
        """The stages of one attempt's finish; what turns their results into its record; its
        local fallback; whether Redis holds its reservation. Parts taken from the local
        fallback while Redis was down are finished locally, here."""
        stages: list[Stage] = []
        if f.latency_s is not None:  # first too: it returns nothing read
            stages.append(self._latency_stage(f.model, f.latency_s))
        if f.limits is not None and f.own is not None:  # first: the stages read from the end keep their places
            stages.append(self._learn_stage(f.model, f.limits, f.admitted_at, f.own, f.wall))
        if f.slot:
            with self._lock:
                tokens = self._slot_tokens.get(f.model)
                token = tokens.pop() if tokens else None
            if token == LOCAL_PREFIX:
                self._local_state().slot_release(f.model)
            elif token is not None:
                stages.append(("unslot", [self._k("slots", f.model)], [token]))
        actual, used = -1.0, max(0, f.tokens)
        shared = False  # a reservation Redis holds
        if f.reservation_id is not None:
            actual = max(0.0, f.cost_usd) if (f.ok or f.cost_usd > 0 or used > 0) else -1.0
            if f.reservation_id.startswith(LOCAL_PREFIX):
                self._finish("finish", f.reservation_id, actual, used)
            else:
                shared = True
                stages.append(self._finish_stage(f.reservation_id, actual, used))
        breaker = f.breaker
        record = breaker is not None and (f.probe or not f.ok)
        if breaker is not None and record:
            stages.append(self._record_stage(f.model, breaker, f.now, f.ok, f.kind, f.probe))
        unchanged = CLOSED if breaker is not None else None
        n = len(stages)

        def result(outs: Sequence[Any]) -> BreakerRecord | None:
            if shared:
                self._settled(outs[n - 2 if record else n - 1])
            return self._record(outs[n - 1]) if record else unchanged

        def local(m: MemoryState) -> BreakerRecord | None:
            if f.latency_s is not None:
                m.latency_put(f.model, f.latency_s)
            if f.limits is not None and f.own is not None:
                m.learned_put(f.model, f.limits, f.admitted_at, f.own, f.wall)
            if shared:
                self._spend_lost(f.reservation_id or "", actual, used)
            if breaker is not None and record:
                return m.breaker_record(f.model, breaker, f.now, f.ok, f.kind, f.probe)
            return unchanged

        return stages, result, local, shared

    def finish(self, f: Finish) -> BreakerRecord | None:
        """Slot release, budget settle (or release) and breaker record in one script.

        A success outside a probe writes no breaker state (no stage for it).
        """
        stages, result, local, shared = self._finishing(f)
        if not stages:
            return result([])  # nothing to send: the unchanged record
        return self._call("finish", lambda: result(self._run(stages)), local, force=shared)

    def _recording(self, r: Record) -> list[Stage]:
        stages: list[Stage] = []
        if r.cache is not None:
            stage = self._cache_stage(r.cache.key, r.cache.entry)
            if stage is not None:
                stages.append(stage)
        if r.row is not None:
            stages.append(self._ledger_stage(r.row))
        return stages

    def record(self, r: Record) -> None:
        """The last attempt's finish, the cache store and the ledger row in one script, sent
        without waiting for its reply.

        Nothing the caller gets depends on that reply (a success's breaker record is not
        used), so the request returns once the script is sent; Redis runs it on arrival, and
        this state reads the reply before any later operation of its own (``_drain``): its
        next reservation, read or ``close()`` comes after it. A failure found then (Redis
        went away after the send) is logged, with the spend and the request it concerns.
        """
        stages: list[Stage] = []
        result: Callable[[Sequence[Any]], BreakerRecord | None] | None = None
        fallback: Callable[[MemoryState], BreakerRecord | None] | None = None
        shared = False
        if r.finish is not None:
            stages, result, fallback, shared = self._finishing(r.finish)
        n = len(stages)
        stages += self._recording(r)
        if not stages:
            return

        def later(raw: Any, exc: BaseException | None) -> None:
            if exc is None:
                if result is not None and n:
                    result(list(raw)[:n])
                return
            log.error(
                "policyrouter: redis state at %s: the finish of request %s failed after it returned (%s); "
                "its settled spend $%.6f and ledger row may be missing from the shared state",
                self._where,
                r.row.request_id if r.row is not None else "?",
                exc,
                r.finish.cost_usd if r.finish is not None else 0.0,
            )

        def local(m: MemoryState) -> None:
            if fallback is not None and n:
                fallback(m)
            combined.record(m, Record(None, r.cache, r.row))

        self._call("record", lambda: self._run(stages, later) and None, local, force=shared)

    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]:
        def remote() -> list[LedgerRow]:
            ids = self._r.zrangebyscore(self._k("ledger"), since_wall if since_wall is not None else "-inf", "+inf")
            if not ids:
                return []
            raws = self._r.hmget(self._k("ledger", "rows"), ids)
            return [LedgerRow(**json.loads(r)) for r in raws if r is not None]

        return self._call("ledger_rows", remote, lambda m: m.ledger_rows(since_wall))

    def feedback_put(self, row: FeedbackRow) -> None:
        raw = json.dumps({"ts": row.ts, "request_id": row.request_id, "score": row.score, "label": row.label})
        rows, times = self._k("feedback", "rows"), self._k("feedback")

        def remote() -> None:
            old = self._r.zrangebyscore(times, "-inf", row.ts - self._ledger_retain_s)
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(rows, row.request_id, raw)
            pipe.zadd(times, {row.request_id: row.ts})
            if old:  # kept as long as the ledger rows they score
                pipe.zrem(times, *old)
                pipe.hdel(rows, *old)
            pipe.execute()

        self._call("feedback_put", remote, lambda m: m.feedback_put(row))

    def feedback_rows(self) -> list[FeedbackRow]:
        def remote() -> list[FeedbackRow]:
            raws = self._r.hvals(self._k("feedback", "rows"))
            return sorted((FeedbackRow(**json.loads(r)) for r in raws), key=lambda f: f.ts)

        return self._call("feedback_rows", remote, lambda m: m.feedback_rows())

    def close(self) -> None:
        self._drain()
        free, self._free = self._free, []
        for conn in free:
            with contextlib.suppress(self._redis_error, OSError):
                self._r.connection_pool.release(conn)
        with contextlib.suppress(self._redis_error):
            self._r.close()
