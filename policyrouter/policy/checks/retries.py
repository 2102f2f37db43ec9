"""Retries: only what a retry can fix, with a sane backoff, and a bounded number of upstream calls."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.models import Task

__all__ = ["RETRY_STORM_LIMIT", "check_attempts", "check_retry_policies"]

RETRY_STORM_LIMIT = 10
"""Worst-case upstream calls of one request above which ``retry-storm`` warns."""
_NON_TRANSIENT = (
    "bad_request",
    "auth",
    "not_found",
    "context_length",
    "content_filter",
    "invalid_output",
    "circuit_open",
    "budget_exceeded",
)


def check_retry_policies(ctx: Context) -> Iterator[Diagnostic]:
    """Retries only what a retry can fix, with a sane backoff."""
    for name, rp in ctx.policy.retry_policies.items():
        for i, kind in enumerate(rp.retry_on):
            if kind in _NON_TRANSIENT:
                yield ctx.diag(
                    "warning",
                    "retry-non-transient",
                    f"retry policy `{name}` retries `{kind}`, which fails the same way again",
                    ("retry_policies", name, "retry_on", i),
                    "retry only transient kinds (rate_limited, overloaded, server_error, timeout, "
                    "connection); the others fall back to the next model",
                )
        if rp.backoff.initial_s > rp.backoff.max_s:
            yield ctx.diag(
                "warning",
                "backoff-inverted",
                f"retry policy `{name}`: backoff.initial_s ({rp.backoff.initial_s:g}) is above "
                f"backoff.max_s ({rp.backoff.max_s:g})",
                ("retry_policies", name, "backoff", "initial_s"),
                "every delay is capped at max_s; lower initial_s or raise max_s",
            )


def _attempts_per_model(ctx: Context, task: Task) -> int | None:
    name = task.retry if task.retry is not None else "default"
    if name in ctx.policy.retry_policies:
        return ctx.policy.retry_policies[name].max_attempts
    return 1 if task.retry is None else None


def check_attempts(ctx: Context) -> Iterator[Diagnostic]:
    """Worst-case upstream calls per request: retries x chain length."""
    for t_name, task in ctx.policy.tasks.items():
        chains = ctx.task_chains(t_name)
        longest = max((len(c) for c in chains), default=0)
        per_model = _attempts_per_model(ctx, task)
        if not longest or per_model is None:
            continue
        if task.max_total_attempts is None:
            worst = per_model * longest
            if worst > RETRY_STORM_LIMIT:
                yield ctx.diag(
                    "warning",
                    "retry-storm",
                    f"task `{t_name}` may make {worst} upstream calls for one request "
                    f"({per_model} attempts x {longest} models)",
                    ("tasks", t_name),
                    "set `max_total_attempts` on the task, or lower the retry policy's max_attempts",
                    key=True,
                )
        elif task.max_total_attempts < longest:
            yield ctx.diag(
                "warning",
                "unreachable-fallback",
                f"task `{t_name}`: max_total_attempts {task.max_total_attempts} is smaller than its "
                f"{longest}-model chain, so the last models are never tried",
                ("tasks", t_name, "max_total_attempts"),
                f"raise max_total_attempts to at least {longest}, or shorten the tier",
            )
