"""Task settings: a cache that can hit, a deadline that fits the timeout, no setting without effect."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.sampling import sampled_above

__all__ = ["check_task_settings"]


def check_task_settings(ctx: Context) -> Iterator[Diagnostic]:
    """Cache determinism, deadline vs timeout, settings without effect."""
    for t_name, task in ctx.policy.tasks.items():
        cache = task.cache
        if cache is not None and not cache.force:
            temp = task.temperature
            if sampled_above(temp, cache.max_temperature):
                shown = "unset (provider default 1.0)" if temp is None else f"{temp:g}"
                yield ctx.diag(
                    "warning",
                    "cache-nondeterministic",
                    f"task `{t_name}` is cached but its temperature is {shown}, above "
                    f"cache.max_temperature {cache.max_temperature:g}: nothing will be cached",
                    ("tasks", t_name, "cache"),
                    "set a low `temperature` (e.g. 0), or `cache.force: true` to cache sampled answers",
                    key=True,
                )
        if task.deadline_s is not None and task.deadline_s < task.timeout_s:
            yield ctx.diag(
                "warning",
                "deadline-below-timeout",
                f"task `{t_name}`: deadline_s {task.deadline_s:g} is shorter than timeout_s {task.timeout_s:g}",
                ("tasks", t_name, "deadline_s"),
                "the deadline covers all attempts; make it at least timeout_s (default 4 x timeout_s)",
            )
        if task.max_input_tokens is None and task.on_input_overflow != "reject":
            yield ctx.diag(
                "warning",
                "task-setting-ignored",
                f"task `{t_name}`: on_input_overflow {task.on_input_overflow} has no effect without max_input_tokens",
                ("tasks", t_name, "on_input_overflow"),
                "set `max_input_tokens`",
                key=True,
            )
