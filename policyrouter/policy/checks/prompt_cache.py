"""Provider prompt caching: a task's ``prompt_cache`` reaches a model that caches, and no setting is idle."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.prompt_cache import ANTHROPIC_KINDS

__all__ = ["check_prompt_cache"]

CACHING_KINDS = ANTHROPIC_KINDS | {"openai", "azure_openai"}
"""Provider kinds whose adapter maps ``prompt_cache`` to the request."""
_OPENAI_KINDS = frozenset({"openai", "azure_openai"})


def _kind(ctx: Context, model: str) -> str | None:
    provider = ctx.policy.providers.get(ctx.policy.models[model].provider)
    return provider.kind if provider is not None else None


def check_prompt_cache(ctx: Context) -> Iterator[Diagnostic]:
    """A ``prompt_cache`` task reaches a caching model; breakpoints are listed once; ``retention``
    reaches an OpenAI model; ``prompt_cache_min_tokens`` is set on an Anthropic model."""
    for t_name, task in ctx.policy.tasks.items():
        pc = task.prompt_cache
        if pc is None:
            continue
        path = ("tasks", t_name, "prompt_cache")
        kinds = {_kind(ctx, m) for m in ctx.task_models(t_name)}
        if kinds and not kinds & CACHING_KINDS:
            yield ctx.diag(
                "warning",
                "prompt-cache-no-effect",
                f"task `{t_name}` asks for prompt_cache but none of its models is on an openai or anthropic provider",
                path,
                "mock and openai_compatible providers get no cache parameters; remove prompt_cache or route the "
                "task to an openai/anthropic model",
                key=True,
            )
        for i, where in enumerate(pc.breakpoints):
            if where in pc.breakpoints[:i]:
                yield ctx.diag(
                    "warning",
                    "prompt-cache-setting-ignored",
                    f"task `{t_name}`: breakpoint `{where}` is listed twice (one mark is placed)",
                    (*path, "breakpoints", i),
                    "list each of tools, system, history at most once",
                )
        if pc.retention is not None and kinds and not kinds & _OPENAI_KINDS:
            yield ctx.diag(
                "warning",
                "prompt-cache-setting-ignored",
                f"task `{t_name}`: prompt_cache.retention is an OpenAI setting and no model of the task is OpenAI",
                (*path, "retention"),
                "remove `retention`; Anthropic's lifetime is `ttl` (5m or 1h)",
                key=True,
            )
    for m_name, model in ctx.policy.models.items():
        kind = _kind(ctx, m_name)
        if model.prompt_cache_min_tokens is not None and kind is not None and kind not in ANTHROPIC_KINDS:
            yield ctx.diag(
                "warning",
                "prompt-cache-setting-ignored",
                f"model `{m_name}`: prompt_cache_min_tokens only decides Anthropic breakpoints; {kind} ignores it",
                ("models", m_name, "prompt_cache_min_tokens"),
                "remove it (OpenAI caches prompts of 1024 tokens and more on its own)",
                key=True,
            )
