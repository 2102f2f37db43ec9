"""The queue protocol: what a queue engine (SQLite, Redis) does, and the rules all engines share.

Ordering (one rule, every engine): a job's score is ``start + priority * dispatches_per_level``
and the lowest score is served first. ``start`` is a virtual time counted in dispatches
(start-time fair queueing): the queue keeps ``vt``, the start of the last job it dispatched, and
each fairness flow (a tenant, or the whole queue with ``fairness: none``) its next start. A new
job starts at ``max(vt, flow's next)`` and moves the flow's next one step on. So a tenant with
10,000 queued jobs has starts ``vt .. vt+9999`` while another tenant's first job starts at
``vt``: it is served within one dispatch. Waiting ages a job: every dispatch moves ``vt`` on, so
newer jobs start later, and a job of class 5 is overtaken by at most ``4 * dispatches_per_level``
newer class-1 jobs. ``max_wait_s`` is the hard bound: a job waiting that long is served next.

Delivery is at-least-once with a lease: ``take`` hands a job to a worker with a token and a
lease; the worker renews it while it runs and ends it with ``complete`` or ``fail`` (the token
must match, so a worker whose lease ran out cannot overwrite the job's new holder). A lease
that runs out hands the job back (or to the dead-letter list after ``max_deliveries``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "FINAL",
    "Delivery",
    "JobInfo",
    "JobStatus",
    "NewJob",
    "QueueEngine",
    "QueueStats",
    "QueueView",
    "backoff_s",
    "dumps",
    "new_job_id",
    "priority_of",
    "view_of",
]

JobStatus = Literal["queued", "running", "done", "failed", "dead", "cancelled", "expired"]
FINAL: frozenset[str] = frozenset({"done", "failed", "dead", "cancelled", "expired"})


def new_job_id() -> str:
    """Time-ordered and unique across processes: ``job-`` + 12 hex of ms + 12 random hex."""
    return f"job-{int(time.time() * 1000):012x}{os.urandom(6).hex()}"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class QueueView:
    """What an engine needs of a queue's policy (its ``QueueSpec``), as plain numbers."""

    name: str
    level: int  # dispatches per priority class
    fair: bool  # tenants take turns
    max_wait_s: float | None
    max_deliveries: int
    lease_s: float
    result_ttl_s: float
    backoff_initial_s: float
    backoff_multiplier: float
    backoff_max_s: float
    demote: int


def view_of(name: str, spec: Any) -> QueueView:
    """``spec`` is a policy ``QueueSpec``."""
    b = spec.retry.backoff
    return QueueView(
        name=name,
        level=spec.aging.dispatches_per_level,
        fair=spec.fairness == "tenant",
        max_wait_s=spec.aging.max_wait_s,
        max_deliveries=spec.max_deliveries,
        lease_s=spec.lease_s,
        result_ttl_s=spec.result_ttl_s,
        backoff_initial_s=b.initial_s,
        backoff_multiplier=b.multiplier,
        backoff_max_s=b.max_s,
        demote=spec.retry.demote,
    )


def priority_of(spec: Any, tenant: str | None, metadata: Mapping[str, Any] | None) -> int:
    """A job's class from the queue's ``priority`` rules: tenant, then metadata, then default."""
    rules = spec.priority
    if tenant is not None and tenant in rules.tenants:
        return int(rules.tenants[tenant])
    for key, classes in rules.metadata.items():
        value = (metadata or {}).get(key)
        if value is not None and str(value) in classes:
            return int(classes[str(value)])
    return int(rules.default)


def backoff_s(q: QueueView, failures: int) -> float:
    """Delay before a job that failed ``failures`` times is visible again."""
    return float(min(q.backoff_max_s, q.backoff_initial_s * q.backoff_multiplier ** max(0, failures - 1)))


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue. ``payload`` is the JSON of the request (task, input or messages, ...)."""

    id: str
    task: str
    payload: str
    priority: int
    tenant: str | None = None
    idempotency_key: str | None = None
    not_after: float | None = None  # epoch seconds; a job not started by then expires


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job handed to a worker: run ``payload``, then ``complete`` or ``fail`` with ``token``."""

    id: str
    queue: str
    task: str
    payload: str
    token: str
    deliveries: int
    enqueued_at: float
    lease_until: float
    started_at: float = 0.0  # when this delivery was taken


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as ``router.job(id)`` shows it. ``result``/``error`` are JSON objects once final."""

    id: str
    queue: str
    task: str
    status: JobStatus
    priority: int
    tenant: str | None
    deliveries: int
    enqueued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    position: int | None = None  # jobs ahead of it (queued only)
    estimated_start_s: float | None = None  # seconds from now: position / last minute's throughput (None: none)

    @property
    def done(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    queued: int
    running: int
    dead: int
    oldest_wait_s: float | None
    per_minute: float  # jobs finished in the last minute
    by_status: Mapping[str, int] = field(default_factory=dict)


class QueueEngine(Protocol):
    """One queue store. Every method is atomic (one transaction, or one Redis script)."""

    def submit(self, q: QueueView, job: NewJob, now: float) -> tuple[str, bool]:
        """Enqueue ``job``; ``(id, True)``, or ``(existing id, False)`` for an idempotency key seen."""
        ...

    def take(self, queues: Sequence[QueueView], worker: str, now: float) -> Delivery | None:
        """The next job of ``queues`` by the ordering rule, leased to ``worker``; expired leases first return."""
        ...

    def renew(self, job_id: str, token: str, until: float) -> bool: ...
    def complete(self, q: QueueView, job_id: str, token: str, result: str, now: float) -> bool: ...
    def fail(self, q: QueueView, job_id: str, token: str, error: str, now: float, *, retry: bool) -> JobStatus | None:
        """A failed delivery: back to the queue (backoff, demoted) while ``retry`` and deliveries
        remain, else ``dead`` (deliveries exhausted) or ``failed`` (not retryable). ``None``: not the holder."""
        ...

    def release(self, job_id: str, token: str, now: float) -> bool:
        """Hand a held job back (graceful drain). Its delivery still counts: the call may have been
        sent, so the next delivery looks for its ledger row before calling again."""
        ...

    def cancel(self, job_id: str, now: float) -> bool: ...
    def get(self, job_id: str, now: float) -> JobInfo | None: ...
    def stats(self, q: QueueView, now: float) -> QueueStats: ...
    def dead(self, q: QueueView, limit: int = 100) -> list[JobInfo]: ...
    def retry_dead(self, q: QueueView, job_id: str, now: float) -> bool: ...
    def purge(self, q: QueueView, now: float) -> int: ...
    def close(self) -> None: ...
