"""The job API behind ``router.submit`` / ``job`` / ``wait`` / ``cancel``: checks, then one engine call."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from policyrouter.clock import Clock
from policyrouter.errors import InvalidRequest, JobNotFound, JobTimeout
from policyrouter.queue.base import JobInfo, NewJob, QueueEngine, QueueView, dumps, new_job_id, priority_of, view_of
from policyrouter.types import Message

__all__ = ["Jobs", "payload_of"]


def payload_of(payload: str) -> dict[str, Any]:
    """A job's request arguments, as ``submit`` stored them."""
    out: dict[str, Any] = json.loads(payload)
    return out


class Jobs:
    """Submits to and reads the queues of one plan (``plan.queues``) in one engine."""

    def __init__(self, queues: Mapping[str, Any], engine: QueueEngine, clock: Clock) -> None:
        self._specs = dict(queues)
        self.views: dict[str, QueueView] = {name: view_of(name, spec) for name, spec in self._specs.items()}
        self._by_task = {task: name for name, spec in self._specs.items() for task in spec.tasks}
        self.engine = engine
        self._clock = clock

    def queue_of(self, task: str) -> str:
        name = self._by_task.get(task)
        if name is None:
            raise InvalidRequest(
                f"no queue serves task {task!r}: list it under a queue's `tasks:` in the policy's `queues:` section",
                arguments=("task",),
                task=task,
            )
        return name

    def submit(
        self,
        task: str,
        input: str | None,
        messages: Sequence[Message] | None,
        *,
        priority: int | None,
        tenant: str | None,
        user: str | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
        not_after: float | None,
    ) -> str:
        qname = self.queue_of(task)
        if (input is None) == (messages is None):
            raise InvalidRequest("give exactly one of input= or messages=", arguments=("input", "messages"), task=task)
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 100
        ):
            raise InvalidRequest(
                f"priority must be an int in 1..100, got {priority!r}", arguments=("priority",), task=task
            )
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256
        ):
            raise InvalidRequest("idempotency_key must be a non-empty string of at most 256 characters",
                                 arguments=("idempotency_key",), task=task)  # fmt: skip
        now = self._clock.wall()
        if not_after is not None and (not math.isfinite(not_after) or not_after <= now):
            raise InvalidRequest("not_after must be a future epoch time (seconds)", arguments=("not_after",), task=task)
        args: dict[str, Any] = {
            "task": task,
            "input": input,
            "messages": list(messages) if messages else None,
            "tenant": tenant,
            "user": user,
            "metadata": dict(metadata) if metadata else None,
        }
        try:
            payload = dumps(args)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"a job's arguments must be JSON: {exc}", arguments=("metadata",), task=task) from exc
        cls = priority if priority is not None else priority_of(self._specs[qname], tenant, metadata)
        job = NewJob(new_job_id(), task, payload, cls, tenant, idempotency_key, not_after)
        job_id, _ = self.engine.submit(self.views[qname], job, now)
        return job_id

    def job(self, job_id: str) -> JobInfo:
        info = self.engine.get(job_id, self._clock.wall())
        if info is None:
            raise JobNotFound(f"no job {job_id!r} (never submitted, or finished longer ago than its result_ttl_s)")
        return info

    def cancel(self, job_id: str) -> bool:
        """True when the job was waiting and is now cancelled; False when it already ran or runs."""
        self.job(job_id)
        return self.engine.cancel(job_id, self._clock.wall())

    def wait(self, job_id: str, timeout: float | None, poll_s: float) -> JobInfo:
        deadline = None if timeout is None else self._clock.now() + timeout
        while True:
            info = self.job(job_id)
            if info.done:
                return info
            if deadline is not None and self._clock.now() >= deadline:
                raise JobTimeout(f"job {job_id!r} is still {info.status} after {timeout:g}s", info)
            self._clock.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - self._clock.now())))

    async def await_job(self, job_id: str, timeout: float | None, poll_s: float) -> JobInfo:
        deadline = None if timeout is None else self._clock.now() + timeout
        while True:
            info = self.job(job_id)
            if info.done:
                return info
            if deadline is not None and self._clock.now() >= deadline:
                raise JobTimeout(f"job {job_id!r} is still {info.status} after {timeout:g}s", info)
            await self._clock.asleep(
                poll_s if deadline is None else max(0.0, min(poll_s, deadline - self._clock.now()))
            )
