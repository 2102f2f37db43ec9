"""Capacity: a task's token limits fit the context window, output limit and tpm of every model it reaches."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.models import Task
from policyrouter.policy.source import PathKey

__all__ = ["check_adaptive_limits", "check_context_windows", "check_output_limits", "check_rate_limits"]


def _worst_tokens_path(t_name: str, task: Task) -> PathKey:
    return ("tasks", t_name, "max_input_tokens" if task.max_input_tokens is not None else "max_output_tokens")


def check_context_windows(ctx: Context) -> Iterator[Diagnostic]:
    """Input + output limits fit the context window of every reachable model."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        need = (task.max_input_tokens or 0) + task.max_output_tokens
        over = []
        for m, tier in ctx.task_models(t_name).items():
            window = p.models[m].context_window
            # without max_input_tokens, output alone must leave room for some input
            if window is not None and (need > window if task.max_input_tokens is not None else need >= window):
                over.append((window, m, tier))
        if not over:
            continue
        window, model, tier = min(over)
        what = (
            f"max_input_tokens + max_output_tokens ({need})"
            if task.max_input_tokens is not None
            else f"max_output_tokens ({need}) leaves no room for input and"
        )
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        yield ctx.diag(
            "error",
            "context-overflow",
            f"task `{t_name}`: {what} exceeds the {window}-token context window of model `{model}`"
            f"{more}, reachable through {ctx.via(t_name, tier)}",
            _worst_tokens_path(t_name, task),
            f"lower max_input_tokens/max_output_tokens to fit {window} tokens, or move `{model}` out of "
            "the task's tiers",
        )


def check_output_limits(ctx: Context) -> Iterator[Diagnostic]:
    """``max_output_tokens`` is within every reachable model's output limit."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        over = sorted(
            ((p.models[m].max_output_tokens or 0), m, tier)
            for m, tier in ctx.task_models(t_name).items()
            if p.models[m].max_output_tokens is not None
            and task.max_output_tokens > (p.models[m].max_output_tokens or 0)
        )
        if over:
            limit, model, tier = over[0]
            yield ctx.diag(
                "error",
                "output-over-model-limit",
                f"task `{t_name}`: max_output_tokens {task.max_output_tokens} is over the "
                f"{limit}-token output limit of model `{model}`, reachable through {ctx.via(t_name, tier)}",
                ("tasks", t_name, "max_output_tokens"),
                f"lower max_output_tokens to {limit} or less",
            )


def check_rate_limits(ctx: Context) -> Iterator[Diagnostic]:
    """Warn where a request the task allows is above a reachable model's tokens-per-minute limit.

    A request counts its input plus ``max_output_tokens`` against ``limits.tpm``; smaller
    requests are served, so this is a warning that says which sizes never are.
    """
    p = ctx.policy
    for t_name, task in p.tasks.items():
        out_tokens = task.max_output_tokens
        for m, tier in ctx.task_models(t_name).items():
            limits = p.models[m].limits
            tpm = limits.tpm if limits is not None else None
            if tpm is None:
                continue
            via = ctx.via(t_name, tier)
            if out_tokens >= tpm:
                yield ctx.diag(
                    "warning",
                    "tpm-below-request",
                    f"task `{t_name}`: no request can ever be served by model `{m}` (tpm {tpm}), "
                    f"reachable through {via}: max_output_tokens {out_tokens} alone fills its minute",
                    ("tasks", t_name, "max_output_tokens"),
                    f"lower max_output_tokens below {tpm}, or raise models.{m}.limits.tpm",
                )
            elif task.max_input_tokens is not None and task.max_input_tokens + out_tokens > tpm:
                yield ctx.diag(
                    "warning",
                    "tpm-below-request",
                    f"task `{t_name}`: requests above {tpm} tokens (inputs above {tpm - out_tokens} "
                    f"tokens, with max_output_tokens {out_tokens}) can never be served by model `{m}` "
                    f"(tpm {tpm}), reachable through {via}; the task allows up to "
                    f"{task.max_input_tokens + out_tokens}",
                    ("tasks", t_name, "max_input_tokens"),
                    f"such requests skip `{m}`; to serve them all there, lower max_input_tokens to "
                    f"{tpm - out_tokens} or raise models.{m}.limits.tpm",
                )


def check_adaptive_limits(ctx: Context) -> Iterator[Diagnostic]:
    """Warn where ``limits.reserve`` is set on a model whose limits are not ``adaptive`` (it does nothing)."""
    for m_name, model in ctx.policy.models.items():
        limits = model.limits
        if limits is not None and not limits.adaptive and "reserve" in limits.model_fields_set:
            yield ctx.diag(
                "warning",
                "reserve-without-adaptive",
                f"model `{m_name}`: limits.reserve applies only to adaptive limits, and these are not adaptive",
                ("models", m_name, "limits", "reserve"),
                "add `adaptive: true` to hold to the provider's rate-limit headers, or remove reserve",
            )
