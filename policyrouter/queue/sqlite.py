"""The embedded queue engine: one SQLite file, several processes on one machine.

WAL mode; every operation is one ``BEGIN IMMEDIATE`` transaction, so two workers never take
the same job and a submit with a seen idempotency key finds the first job. The ordering rule
and the lease protocol are in ``queue/base.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from policyrouter.errors import StateUnavailable
from policyrouter.queue.base import (
    Delivery,
    JobInfo,
    JobStatus,
    NewJob,
    QueueStats,
    QueueView,
    backoff_s,
    dumps,
)

__all__ = ["SqliteQueue"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, task TEXT NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, priority INTEGER NOT NULL, tenant TEXT, idem TEXT,
    start REAL NOT NULL, score REAL NOT NULL, ready_at REAL NOT NULL, enqueued_at REAL NOT NULL,
    not_after REAL, deliveries INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    token TEXT, lease_until REAL, started_at REAL, finished_at REAL, expires_at REAL, ttl REAL NOT NULL,
    result TEXT, error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_jobs_idem ON queue_jobs (queue, idem) WHERE idem IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_jobs_order ON queue_jobs (queue, status, score, id);
CREATE INDEX IF NOT EXISTS queue_jobs_age ON queue_jobs (queue, status, enqueued_at);
CREATE INDEX IF NOT EXISTS queue_jobs_lease ON queue_jobs (status, lease_until);
CREATE INDEX IF NOT EXISTS queue_jobs_expiry ON queue_jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_jobs_finished ON queue_jobs (queue, finished_at);
CREATE TABLE IF NOT EXISTS queue_flows (queue TEXT NOT NULL, flow TEXT NOT NULL, next REAL NOT NULL,
    PRIMARY KEY (queue, flow));
CREATE TABLE IF NOT EXISTS queue_meta (queue TEXT PRIMARY KEY, vt REAL NOT NULL);
"""

_COLUMNS = (
    "id, queue, task, status, priority, tenant, deliveries, enqueued_at, started_at, finished_at, result, error, score"
)


class SqliteQueue:
    """``SqliteQueue(path)``: the queue tables in ``path`` (the state's file is fine: tables differ)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateUnavailable(f"sqlite queue at {self.path!r} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SqliteQueue({self.path!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateUnavailable(f"sqlite queue {self.path!r}: {exc}") from exc
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                try:
                    c.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise StateUnavailable(f"sqlite queue {self.path!r}: {exc}") from exc

    # ------------------------------------------------------------------ submit
    def submit(self, q: QueueView, job: NewJob, now: float) -> tuple[str, bool]:
        with self._tx() as c:
            if job.idempotency_key is not None:
                c.execute(
                    "DELETE FROM queue_jobs WHERE queue = ? AND idem = ? AND expires_at <= ?",
                    (q.name, job.idempotency_key, now),
                )
                seen = c.execute(
                    "SELECT id FROM queue_jobs WHERE queue = ? AND idem = ?", (q.name, job.idempotency_key)
                ).fetchone()
                if seen is not None:
                    return str(seen[0]), False
            start = self._start(c, q, job.tenant)
            c.execute(
                "INSERT INTO queue_jobs (id, queue, task, payload, status, priority, tenant, idem, start, score,"
                " ready_at, enqueued_at, not_after, ttl) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, q.name, job.task, job.payload, job.priority, job.tenant, job.idempotency_key,
                 start, start + job.priority * q.level, now, now, job.not_after, q.result_ttl_s),
            )  # fmt: skip
            return job.id, True

    @staticmethod
    def _start(c: sqlite3.Connection, q: QueueView, tenant: str | None) -> float:
        """The job's virtual start: ``max(vt, flow's next)``; the flow's next moves one step on."""
        row = c.execute("SELECT vt FROM queue_meta WHERE queue = ?", (q.name,)).fetchone()
        vt = float(row[0]) if row else 0.0
        flow = (tenant or "") if q.fair else ""
        row = c.execute("SELECT next FROM queue_flows WHERE queue = ? AND flow = ?", (q.name, flow)).fetchone()
        start = max(vt, float(row[0]) if row else 0.0)
        c.execute(
            "INSERT INTO queue_flows (queue, flow, next) VALUES (?, ?, ?)"
            " ON CONFLICT(queue, flow) DO UPDATE SET next = excluded.next",
            (q.name, flow, start + 1),
        )
        return start

    # ------------------------------------------------------------------ take
    def take(self, queues: Sequence[QueueView], worker: str, now: float) -> Delivery | None:
        token = f"{worker}:{os.urandom(8).hex()}"
        with self._tx() as c:
            c.execute("DELETE FROM queue_jobs WHERE expires_at <= ?", (now,))
            for q in queues:
                self._reclaim(c, q, now)
                self._expire(c, q, now)
            pick = self._pick(c, queues, now)
            if pick is None:
                return None
            jid, qname, start = pick
            q = next(v for v in queues if v.name == qname)
            until = now + q.lease_s
            c.execute(
                "UPDATE queue_jobs SET status = 'running', token = ?, lease_until = ?, deliveries = deliveries + 1,"
                " started_at = ? WHERE id = ?",
                (token, until, now, jid),
            )
            c.execute(
                "INSERT INTO queue_meta (queue, vt) VALUES (?, ?) ON CONFLICT(queue) DO UPDATE SET vt = max(vt, ?)",
                (qname, start, start),
            )
            row = c.execute(
                "SELECT task, payload, deliveries, enqueued_at FROM queue_jobs WHERE id = ?", (jid,)
            ).fetchone()
            return Delivery(jid, qname, row[0], row[1], token, int(row[2]), float(row[3]), until, now)

    @staticmethod
    def _pick(c: sqlite3.Connection, queues: Sequence[QueueView], now: float) -> tuple[str, str, float] | None:
        for q in queues:  # a job past the maximum wait is served next
            if q.max_wait_s is None:
                continue
            row = c.execute(
                "SELECT id, start FROM queue_jobs WHERE queue = ? AND status = 'queued' AND enqueued_at <= ?"
                " AND ready_at <= ? ORDER BY enqueued_at LIMIT 1",
                (q.name, now - q.max_wait_s, now),
            ).fetchone()
            if row is not None:
                return str(row[0]), q.name, float(row[1])
        best: tuple[float, str, str, float] | None = None
        for q in queues:
            row = c.execute(
                "SELECT score, id, start FROM queue_jobs WHERE queue = ? AND status = 'queued' AND ready_at <= ?"
                " ORDER BY score, id LIMIT 1",
                (q.name, now),
            ).fetchone()
            if row is not None and (best is None or (row[0], row[1]) < (best[0], best[1])):
                best = (float(row[0]), str(row[1]), q.name, float(row[2]))
        return None if best is None else (best[1], best[2], best[3])

    @staticmethod
    def _reclaim(c: sqlite3.Connection, q: QueueView, now: float) -> None:
        """Jobs whose lease ran out go back to the queue, or to the dead letters when out of deliveries."""
        error = dumps({"kind": "lease_expired", "message": "the worker holding the job stopped renewing its lease"})
        c.execute(
            "UPDATE queue_jobs SET status = 'dead', token = NULL, finished_at = ?, error = ?"
            " WHERE queue = ? AND status = 'running' AND lease_until <= ? AND deliveries >= ?",
            (now, error, q.name, now, q.max_deliveries),
        )
        c.execute(
            "UPDATE queue_jobs SET status = 'queued', token = NULL, ready_at = ?"
            " WHERE queue = ? AND status = 'running' AND lease_until <= ?",
            (now, q.name, now),
        )

    @staticmethod
    def _expire(c: sqlite3.Connection, q: QueueView, now: float) -> None:
        error = dumps({"kind": "expired", "message": "not started before its not_after"})
        c.execute(
            "UPDATE queue_jobs SET status = 'expired', finished_at = ?, expires_at = ?, error = ?"
            " WHERE queue = ? AND status = 'queued' AND not_after <= ?",
            (now, now + q.result_ttl_s, error, q.name, now),
        )

    # ------------------------------------------------------------------ a held job
    def renew(self, job_id: str, token: str, until: float) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE queue_jobs SET lease_until = ? WHERE id = ? AND token = ? AND status = 'running'",
                (until, job_id, token),
            )
            return cur.rowcount == 1

    def complete(self, q: QueueView, job_id: str, token: str, result: str, now: float) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE queue_jobs SET status = 'done', token = NULL, result = ?, error = NULL, finished_at = ?,"
                " expires_at = ? WHERE id = ? AND token = ? AND status = 'running'",
                (result, now, now + q.result_ttl_s, job_id, token),
            )
            return cur.rowcount == 1

    def fail(self, q: QueueView, job_id: str, token: str, error: str, now: float, *, retry: bool) -> JobStatus | None:
        with self._tx() as c:
            row = c.execute(
                "SELECT deliveries, failures, priority, tenant FROM queue_jobs"
                " WHERE id = ? AND token = ? AND status = 'running'",
                (job_id, token),
            ).fetchone()
            if row is None:
                return None
            deliveries, failures, priority, tenant = int(row[0]), int(row[1]) + 1, int(row[2]), row[3]
            if retry and deliveries < q.max_deliveries:
                priority += q.demote
                start = self._start(c, q, tenant)
                c.execute(
                    "UPDATE queue_jobs SET status = 'queued', token = NULL, failures = ?, priority = ?, start = ?,"
                    " score = ?, ready_at = ?, error = ? WHERE id = ?",
                    (
                        failures,
                        priority,
                        start,
                        start + priority * q.level,
                        now + backoff_s(q, failures),
                        error,
                        job_id,
                    ),
                )
                return "queued"
            status: JobStatus = "dead" if retry else "failed"
            expires = None if status == "dead" else now + q.result_ttl_s  # dead letters stay until handled
            c.execute(
                "UPDATE queue_jobs SET status = ?, token = NULL, failures = ?, finished_at = ?, expires_at = ?,"
                " error = ? WHERE id = ?",
                (status, failures, now, expires, error, job_id),
            )
            return status

    def release(self, job_id: str, token: str, now: float) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE queue_jobs SET status = 'queued', token = NULL, ready_at = ?"
                " WHERE id = ? AND token = ? AND status = 'running'",
                (now, job_id, token),
            )
            return cur.rowcount == 1

    def cancel(self, job_id: str, now: float) -> bool:
        """Only a queued job can be cancelled (a running one finishes; its result is kept)."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE queue_jobs SET status = 'cancelled', finished_at = ?, expires_at = ? + ttl"
                " WHERE id = ? AND status = 'queued'",
                (now, now, job_id),
            )
            return cur.rowcount == 1

    # ------------------------------------------------------------------ reading
    def get(self, job_id: str, now: float) -> JobInfo | None:
        with self._tx() as c:
            row = c.execute(
                f"SELECT {_COLUMNS}, start FROM queue_jobs WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
                (job_id, now),
            ).fetchone()
            if row is None:
                return None
            info = _info(row)
            if info.status != "queued":
                return info
            ahead = c.execute(
                "SELECT count(*) FROM queue_jobs WHERE queue = ? AND status = 'queued' AND ready_at <= ?"
                " AND (score < ? OR (score = ? AND id < ?))",
                (info.queue, now, row[12], row[12], job_id),
            ).fetchone()[0]
            done = c.execute(
                "SELECT count(*) FROM queue_jobs WHERE queue = ? AND finished_at > ?", (info.queue, now - 60.0)
            ).fetchone()[0]
        eta = ahead / (done / 60.0) if done else None
        return _replace_position(info, int(ahead), eta)

    def stats(self, q: QueueView, now: float) -> QueueStats:
        with self._tx() as c:
            counts = {
                str(s): int(n)
                for s, n in c.execute(
                    "SELECT status, count(*) FROM queue_jobs WHERE queue = ? AND (expires_at IS NULL OR expires_at > ?)"
                    " GROUP BY status",
                    (q.name, now),
                ).fetchall()
            }
            oldest = c.execute(
                "SELECT min(enqueued_at) FROM queue_jobs WHERE queue = ? AND status = 'queued'", (q.name,)
            ).fetchone()[0]
            done = c.execute(
                "SELECT count(*) FROM queue_jobs WHERE queue = ? AND finished_at > ?", (q.name, now - 60.0)
            ).fetchone()[0]
        return QueueStats(
            name=q.name,
            queued=counts.get("queued", 0),
            running=counts.get("running", 0),
            dead=counts.get("dead", 0),
            oldest_wait_s=None if oldest is None else max(0.0, now - float(oldest)),
            per_minute=float(done),
            by_status=counts,
        )

    def dead(self, q: QueueView, limit: int = 100) -> list[JobInfo]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM queue_jobs WHERE queue = ? AND status = 'dead' ORDER BY finished_at LIMIT ?",
                (q.name, limit),
            ).fetchall()
        return [_info(r) for r in rows]

    def retry_dead(self, q: QueueView, job_id: str, now: float) -> bool:
        """A dead letter back in the queue with fresh deliveries, at its tenant's next turn."""
        with self._tx() as c:
            row = c.execute(
                "SELECT priority, tenant FROM queue_jobs WHERE id = ? AND queue = ? AND status = 'dead'",
                (job_id, q.name),
            ).fetchone()
            if row is None:
                return False
            start = self._start(c, q, row[1])
            c.execute(
                "UPDATE queue_jobs SET status = 'queued', deliveries = 0, failures = 0, start = ?, score = ?,"
                " ready_at = ?, finished_at = NULL, expires_at = NULL WHERE id = ?",
                (start, start + int(row[0]) * q.level, now, job_id),
            )
            return True

    def purge(self, q: QueueView, now: float) -> int:
        """Drop the queue's waiting jobs and dead letters (running jobs finish)."""
        with self._tx() as c:
            cur = c.execute("DELETE FROM queue_jobs WHERE queue = ? AND status IN ('queued', 'dead')", (q.name,))
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _info(row: Sequence[Any]) -> JobInfo:
    return JobInfo(
        id=str(row[0]),
        queue=str(row[1]),
        task=str(row[2]),
        status=cast(JobStatus, row[3]),
        priority=int(row[4]),
        tenant=row[5],
        deliveries=int(row[6]),
        enqueued_at=float(row[7]),
        started_at=row[8],
        finished_at=row[9],
        result=json.loads(row[10]) if row[10] else None,
        error=json.loads(row[11]) if row[11] else None,
    )


def _replace_position(info: JobInfo, ahead: int, eta: float | None) -> JobInfo:
    return replace(info, position=ahead, estimated_start_s=eta)
