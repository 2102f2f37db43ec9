"""The shared queue engine: Redis, for workers on many hosts.

Every operation is one Lua script (``queue/_redis_lua.py``), atomic on the server like the
budget scripts: two workers never take the same job, a seen idempotency key finds its job.
Needs the ``redis`` extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policyrouter.errors import ConfigurationError, StateUnavailable
from policyrouter.queue import _redis_lua as lua
from policyrouter.queue.base import Delivery, JobInfo, JobStatus, NewJob, QueueStats, QueueView

__all__ = ["RedisQueue"]

T = TypeVar("T")


class RedisQueue:
    """``RedisQueue(url, key_prefix=...)``: queue keys under ``<prefix>:q:`` and ``<prefix>:job:``."""

    def __init__(self, url: str, *, key_prefix: str = "policyrouter", socket_timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError(
                "the redis queue needs the redis extra: pip install 'policyrouter[redis]'"
            ) from None
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        key_prefix = next((v for k, v in query if k == "key_prefix"), None) or key_prefix
        if not key_prefix or any(c in key_prefix for c in "{}"):
            raise ConfigurationError(f"redis key_prefix {key_prefix!r} must be non-empty and contain no braces")
        url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode([(k, v) for k, v in query if k != "key_prefix"]), "")
        )
        self.where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"  # no password
        self.key_prefix = key_prefix
        try:
            self._r: Any = redis.Redis.from_url(  # typed loosely: its replies are str (decode_responses)
                url, decode_responses=True, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid redis URL {self.where}: {exc}") from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        names = ("SUBMIT", "TAKE", "RENEW", "COMPLETE", "FAIL", "RELEASE", "CANCEL", "RETRY_DEAD", "PURGE")
        self._scripts: dict[str, Any] = {n: self._r.register_script(getattr(lua, n)) for n in names}

    def __repr__(self) -> str:
        return f"RedisQueue({self.where!r}, key_prefix={self.key_prefix!r})"

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except self._errors as exc:
            raise StateUnavailable(f"redis queue at {self.where}: {type(exc).__name__}") from exc

    def _run(self, name: str, *args: Any) -> Any:
        return self._call(lambda: self._scripts[name](args=[self.key_prefix, *args]))

    def _base(self, q: str) -> str:
        return f"{self.key_prefix}:q:{q}"

    # ------------------------------------------------------------------ operations
    def submit(self, q: QueueView, job: NewJob, now: float) -> tuple[str, bool]:
        out = self._run("SUBMIT", q.name, job.id, job.task, job.payload, job.priority, job.tenant or "",
                        job.idempotency_key or "", "" if job.not_after is None else repr(job.not_after), repr(now),
                        q.level, "1" if q.fair else "0", repr(q.result_ttl_s))  # fmt: skip
        return str(out[0]), bool(int(out[1]))

    def take(self, queues: Sequence[QueueView], worker: str, now: float) -> Delivery | None:
        token = f"{worker}:{os.urandom(8).hex()}"
        args: list[Any] = [repr(now), token, len(queues)]
        for q in queues:
            args += [q.name, -1 if q.max_wait_s is None else repr(q.max_wait_s), q.max_deliveries, repr(q.lease_s)]
        out = self._run("TAKE", *args)
        if not out:
            return None
        return Delivery(
            str(out[0]), str(out[1]), str(out[2]), str(out[3]), token, int(out[4]), float(out[5]), float(out[6]), now
        )

    def renew(self, job_id: str, token: str, until: float) -> bool:
        return bool(int(self._run("RENEW", job_id, token, repr(until))))

    def complete(self, q: QueueView, job_id: str, token: str, result: str, now: float) -> bool:
        return bool(int(self._run("COMPLETE", job_id, token, result, repr(now))))

    def fail(self, q: QueueView, job_id: str, token: str, error: str, now: float, *, retry: bool) -> JobStatus | None:
        out = self._run("FAIL", job_id, token, error, repr(now), "1" if retry else "0", q.max_deliveries, q.level,
                        "1" if q.fair else "0", q.demote, repr(q.backoff_initial_s), repr(q.backoff_multiplier),
                        repr(q.backoff_max_s))  # fmt: skip
        return cast(JobStatus, str(out)) if out else None

    def release(self, job_id: str, token: str, now: float) -> bool:
        return bool(int(self._run("RELEASE", job_id, token)))

    def cancel(self, job_id: str, now: float) -> bool:
        return bool(int(self._run("CANCEL", job_id, repr(now))))

    # ------------------------------------------------------------------ reading
    def get(self, job_id: str, now: float) -> JobInfo | None:
        h: dict[str, str] = self._call(lambda: self._r.hgetall(f"{self.key_prefix}:job:{job_id}"))
        if not h or (h.get("expires_at") and float(h["expires_at"]) <= now):
            return None
        info = _info(job_id, h)
        if info.status != "queued":
            return info
        base = self._base(info.queue)
        rank = self._call(lambda: self._r.zrank(f"{base}:ready", job_id))
        done = int(self._call(lambda: self._r.zcount(f"{base}:done", now - 60.0, "+inf")))
        ahead = int(rank) if rank is not None else int(self._call(lambda: self._r.zcard(f"{base}:ready")))
        return _with_position(info, ahead, ahead / (done / 60.0) if done else None)

    def stats(self, q: QueueView, now: float) -> QueueStats:
        base = self._base(q.name)

        def read() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for s in ("ready", "delayed", "running", "dead"):
                pipe.zcard(f"{base}:{s}")
            pipe.zrange(f"{base}:age", 0, 0, withscores=True)
            pipe.zcount(f"{base}:done", now - 60.0, "+inf")
            out: list[Any] = pipe.execute()
            return out

        ready, delayed, running, dead, oldest, done = self._call(read)
        queued = int(ready) + int(delayed)
        return QueueStats(
            name=q.name,
            queued=queued,
            running=int(running),
            dead=int(dead),
            oldest_wait_s=max(0.0, now - float(oldest[0][1])) if oldest else None,
            per_minute=float(done),
            by_status={"queued": queued, "running": int(running), "dead": int(dead)},
        )

    def dead(self, q: QueueView, limit: int = 100) -> list[JobInfo]:
        ids = self._call(lambda: self._r.zrange(f"{self._base(q.name)}:dead", 0, limit - 1))
        out = []
        for jid in ids:
            h: dict[str, str] = self._call(partial(self._r.hgetall, f"{self.key_prefix}:job:{jid}"))
            if h:
                out.append(_info(str(jid), h))
        return out

    def retry_dead(self, q: QueueView, job_id: str, now: float) -> bool:
        return bool(int(self._run("RETRY_DEAD", q.name, job_id, repr(now), q.level, "1" if q.fair else "0")))

    def purge(self, q: QueueView, now: float) -> int:
        return int(self._run("PURGE", q.name))

    def close(self) -> None:
        self._r.close()


def _num(raw: str | None) -> float | None:
    return float(raw) if raw else None


def _info(job_id: str, h: dict[str, str]) -> JobInfo:
    return JobInfo(
        id=job_id,
        queue=h["queue"],
        task=h["task"],
        status=cast(JobStatus, h["status"]),
        priority=int(h["priority"]),
        tenant=h.get("tenant") or None,
        deliveries=int(h.get("deliveries", "0")),
        enqueued_at=float(h["enqueued_at"]),
        started_at=_num(h.get("started_at")),
        finished_at=_num(h.get("finished_at")),
        result=json.loads(h["result"]) if h.get("result") else None,
        error=json.loads(h["error"]) if h.get("error") else None,
    )


def _with_position(info: JobInfo, ahead: int, eta: float | None) -> JobInfo:
    return replace(info, position=ahead, estimated_start_s=eta)
