"""Queues: every task a queue serves exists, and a task is served by one queue only."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context

__all__ = ["check_queues"]


def check_queues(ctx: Context) -> Iterator[Diagnostic]:
    """A queue's tasks resolve, and no task has two queues (a submit must know where it goes)."""
    served: dict[str, str] = {}
    for qname, queue in ctx.policy.queues.items():
        for i, task in enumerate(queue.tasks):
            if task not in ctx.policy.tasks:
                yield ctx.diag(
                    "error",
                    "unknown-reference",
                    f"queue {qname!r} serves unknown task {task!r}",
                    ("queues", qname, "tasks", i),
                    "name a task defined under `tasks:`",
                )
            elif task in served:
                yield ctx.diag(
                    "error",
                    "task-in-two-queues",
                    f"task {task!r} is served by queues {served[task]!r} and {qname!r}",
                    ("queues", qname, "tasks", i),
                    "a task's jobs go to one queue: remove it from one of them",
                )
            else:
                served[task] = qname
        if queue.aging.max_wait_s is not None and queue.aging.max_wait_s < queue.lease_s:
            yield ctx.diag(
                "warning",
                "queue-max-wait-below-lease",
                f"queue {qname!r}: max_wait_s {queue.aging.max_wait_s:g} is below lease_s {queue.lease_s:g}",
                ("queues", qname, "aging", "max_wait_s"),
                "a job handed back after a lease expiry has already waited longer than the bound",
            )
