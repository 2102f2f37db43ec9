"""Redis state: budgets, limits, breakers, cache and ledger shared by processes and hosts.

Every check-and-update is one Lua script (``state/_redis_lua.py``), so it is atomic on the
server and costs one round trip. Every key starts with the hash tag ``{prefix}``, so all
of them live on one Redis Cluster slot and a script may touch any of them.

Keys (``P`` = ``key_prefix``)::

    {P}:bc:<budget>|<window>|<scope>   hash spent/reserved; expires `retain_s` after its window
    {P}:bidx                            zset of counter names (for `policyrouter spend`)
    {P}:res:<id>, {P}:leases            reservations and their lease ends
    {P}:soft:<counter>                  soft-limit event already sent for this window
    {P}:br:<model>                      breaker record
    {P}:slots:<model>                   leased concurrency slots
    {P}:rate:<model>, {P}:rtok:<model>  sliding-window request log and its token sum
    {P}:cache:<key>                     cached answer, expiring with the entry
    {P}:ledger, {P}:ledger:rows         ledger rows by time, by request id

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
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policyrouter.clock import Clock
from policyrouter.errors import ConfigurationError, StateUnavailable
from policyrouter.stages.circuit import CLOSED, Admission, BreakerRecord, BreakerSettings
from policyrouter.state import _redis_lua as lua
from policyrouter.state.base import BudgetCharge, CacheEntry, LedgerRow, ReserveResult
from policyrouter.state.memory import MemoryState

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisState", "redact_url"]

log = logging.getLogger("policyrouter")

OnUnavailable = Literal["fail_closed", "fail_open"]
EventSink = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")

WINDOW_S = 60.0
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
    open, how often Redis is tried again.
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
        probe_lease_s: float = 120.0,
        retry_interval_s: float = 1.0,
    ) -> None:
        mod = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (mod.ConnectionError, mod.TimeoutError)
        self._redis_error: type[BaseException] = mod.RedisError
        if url is not None:
            url, from_url = _split_prefix(url)
            key_prefix = from_url or key_prefix
        if not key_prefix or any(c in key_prefix for c in "{}"):
            raise ConfigurationError(f"redis key_prefix {key_prefix!r} must be non-empty and contain no braces")
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ConfigurationError(f"on_unavailable must be fail_closed or fail_open, not {on_unavailable!r}")
        self._where = redact_url(url) if url is not None else "<client>"
        if client is None:
            if url is None:
                raise ConfigurationError("RedisState needs a url or a client")
            try:
                client = mod.Redis.from_url(
                    url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
                )
            except ValueError as exc:
                raise ConfigurationError(f"invalid redis URL {self._where}: {exc}") from None
        self._r: Any = client
        self.key_prefix = key_prefix
        self.on_unavailable: OnUnavailable = on_unavailable
        self._p = "{" + key_prefix + "}"
        self._clock = clock
        self._retain_s = retain_s
        self._ledger_retain_s = ledger_retain_s
        self._tomb_ttl = 86400
        self._slot_lease_s = slot_lease_s
        self._probe_lease_s = probe_lease_s
        self._retry_interval_s = retry_interval_s
        self._lock = threading.Lock()
        self._slot_tokens: dict[str, list[str]] = {}
        self._local: MemoryState | None = None
        self._down_since: float | None = None
        self._last_try = 0.0
        self._sinks: list[EventSink] = []
        self._scripts = {
            name: self._r.register_script(getattr(lua, name))
            for name in ("RESERVE", "FINISH", "USED", "OPEN", "ADMIT", "RECORD", "SLOT", "RATE", "LEDGER")
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

    # ------------------------------------------------------------------ breakers
    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission:
        def remote() -> Admission:
            raw = self._scripts["ADMIT"](
                keys=[self._k("br", model)], args=[self._t(now), settings.cooldown_s, self._probe_lease_s]
            )
            verdict = raw.decode() if isinstance(raw, bytes) else str(raw)
            return "probe" if verdict == "probe" else "open" if verdict == "open" else "closed"

        return self._call("breaker_admit", remote, lambda m: m.breaker_admit(model, settings, now))

    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord:
        if ok and not probe:  # admitted as closed, and a success never changes a record: no round trip
            return CLOSED

        def remote() -> BreakerRecord:
            counts = (not ok) and kind in settings.trip_on
            raw = self._scripts["RECORD"](
                keys=[self._k("br", model)],
                args=[
                    self._t(now),
                    int(ok),
                    int(counts),
                    int(probe),
                    settings.window_s,
                    settings.failure_threshold,
                ],
            )
            return self._record(raw)

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
        token = uuid.uuid4().hex

        def remote() -> bool:
            ok = bool(
                self._scripts["SLOT"](
                    keys=[self._k("slots", model)], args=[self._t(self._wall()), limit, token, self._slot_lease_s]
                )
            )
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
        return int(self._r.zcount(self._k("slots", model), self._wall(), "+inf"))

    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        def remote() -> float:
            raw = self._scripts["RATE"](
                keys=[self._k("rate", model), self._k("rtok", model)],
                args=[
                    self._t(now),
                    -1 if rpm is None else rpm,
                    -1 if tpm is None else tpm,
                    int(tokens),
                    f"{uuid.uuid4().hex[:16]}:{int(tokens)}",
                    WINDOW_S,
                ],
            )
            return float(raw)

        return self._call("rate_acquire", remote, lambda m: m.rate_acquire(model, rpm, tpm, tokens, now))

    # ------------------------------------------------------------------ budgets
    def budget_reserve(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult:
        rid = uuid.uuid4().hex

        def remote() -> ReserveResult:
            args: list[Any] = [
                self._t(wall),
                self._p,
                lease_s,
                self._retain_s,
                self._tomb_ttl,
                rid,
                len(charges),
            ]
            for ch in charges:
                args += [ch.key, repr(float(ch.amount)), repr(float(ch.limit)), ch.expires_at]
            keys = [self._k("leases"), self._k("bidx"), self._k("res", rid), *(self._k("bc", ch.key) for ch in charges)]
            ok, index, used = self._scripts["RESERVE"](keys=keys, args=args)
            if ok == 1:
                return ReserveResult(True, rid)
            ch = charges[int(index) - 1]
            return ReserveResult(False, None, ch.budget, float(used), ch.limit)

        def local(m: MemoryState) -> ReserveResult:
            res = m.budget_reserve(charges, wall, lease_s)
            if res.ok and res.reservation_id is not None:
                return ReserveResult(True, LOCAL_PREFIX + res.reservation_id)
            return res

        return self._call("budget_reserve", remote, local)

    def _finish(self, op: str, reservation_id: str, actual: float) -> bool:
        if reservation_id.startswith(LOCAL_PREFIX):
            m = self._local_state()
            rid = reservation_id[len(LOCAL_PREFIX) :]
            if actual >= 0:
                m.budget_settle(rid, actual, self._wall())
            else:
                m.budget_release(rid)
            return True

        def remote() -> bool:
            return bool(
                self._scripts["FINISH"](
                    keys=[self._k("leases"), self._k("bidx"), self._k("res", reservation_id)],
                    args=[-1.0, self._p, reservation_id, repr(float(actual)), self._retain_s, self._tomb_ttl],
                )
            )

        def local(m: MemoryState) -> bool:
            # Redis holds this reservation; spend that cannot reach it is logged, not lost silently
            if actual > 0:
                log.error(
                    "policyrouter: redis state at %s unavailable: settled spend $%.6f of reservation %s not recorded "
                    "in the shared budget",
                    self._where,
                    actual,
                    reservation_id,
                )
            return False

        return self._call(op, remote, local, force=True)

    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float) -> None:
        """Turn a reservation into spend. Idempotent: a second settle counts nothing.

        A settle after the lease expired still counts the actual spend (once).
        """
        self._finish("budget_settle", reservation_id, max(0.0, actual_usd))

    def budget_release(self, reservation_id: str) -> None:
        self._finish("budget_release", reservation_id, -1.0)

    def budget_used(self, key: str, wall: float) -> tuple[float, float]:
        def remote() -> tuple[float, float]:
            spent, reserved = self._scripts["USED"](
                keys=[self._k("leases"), self._k("bc", key)], args=[self._t(wall), self._p, self._tomb_ttl]
            )
            return float(spent), float(reserved)

        return self._call("budget_used", remote, lambda m: m.budget_used(key, wall))

    def budget_add_spent(self, key: str, amount: float) -> None:
        """Test/fixture helper: pretend ``amount`` was already spent on ``key``."""
        self._r.hincrbyfloat(self._k("bc", key), "spent", amount)
        self._r.zadd(self._k("bidx"), {key: self._wall() + self._retain_s})

    def budget_mark_soft(self, key: str) -> bool:
        def remote() -> bool:
            return bool(self._r.set(self._k("soft", key), b"1", nx=True, ex=int(self._retain_s)))

        return self._call("budget_mark_soft", remote, lambda m: m.budget_mark_soft(key))

    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]:
        def remote() -> list[tuple[str, float, float]]:
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
        from policyrouter.state.sqlite import _result_from_json

        def remote() -> CacheEntry | None:
            raw = self._r.get(self._k("cache", key))
            if raw is None:
                return None
            d = json.loads(raw)
            return CacheEntry(_result_from_json(d["v"]), d["e"], d["s"])

        return self._call("cache_get", remote, lambda m: m.cache_get(key))

    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None:
        """Store with a Redis TTL ending at ``stale_until``; size is bounded by Redis' maxmemory policy."""
        from policyrouter.state.sqlite import _result_to_json

        ttl_ms = int((entry.stale_until - self._wall()) * 1000)
        if ttl_ms <= 0:
            return
        raw = json.dumps({"v": _result_to_json(entry.value), "e": entry.expires_at, "s": entry.stale_until})
        self._call(
            "cache_set",
            lambda: self._r.set(self._k("cache", key), raw, px=ttl_ms),
            lambda m: m.cache_set(key, entry, max_entries),
        )

    # ------------------------------------------------------------------ ledger
    def ledger_append(self, row: LedgerRow) -> None:
        """Append once per request id: appending the same request again records nothing."""
        raw = json.dumps(asdict(row), separators=(",", ":"))
        self._call(
            "ledger_append",
            lambda: self._scripts["LEDGER"](
                keys=[self._k("ledger", "rows"), self._k("ledger")],
                args=[row.request_id, row.ts, raw, self._ledger_retain_s],
            ),
            lambda m: m.ledger_append(row),
        )

    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]:
        def remote() -> list[LedgerRow]:
            ids = self._r.zrangebyscore(self._k("ledger"), since_wall if since_wall is not None else "-inf", "+inf")
            if not ids:
                return []
            raws = self._r.hmget(self._k("ledger", "rows"), ids)
            return [LedgerRow(**json.loads(r)) for r in raws if r is not None]

        return self._call("ledger_rows", remote, lambda m: m.ledger_rows(since_wall))

    def close(self) -> None:
        with contextlib.suppress(self._redis_error):
            self._r.close()
