"""Reasoning models: what a task asks reaches models that reason, and the APIs would accept it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context, route_label
from policyrouter.policy.kinds import protocol_of
from policyrouter.policy.models import ModelSpec, Route, Task
from policyrouter.policy.reasoning import reasoning_of
from policyrouter.policy.source import PathKey
from policyrouter.types import Reasoning

__all__ = ["check_reasoning"]


@dataclass(frozen=True)
class _Level:
    """A tier a task reaches, with what it asks there and where that is written."""

    tier: str
    via: str
    asked: Reasoning | None
    path: PathKey


def _setting_path(base: PathKey, thinking: object) -> PathKey:
    """Where a level's setting is written: its ``thinking`` if set, else its ``reasoning``."""
    return (*base, "thinking" if thinking is not None else "reasoning")


def _levels(ctx: Context, t_name: str, task: Task) -> list[_Level]:
    """The task's tier and each route's, with the reasoning asked on each."""
    base: PathKey = ("tasks", t_name)
    asked = reasoning_of(task.reasoning, task.thinking)
    path = _setting_path(base, task.thinking)
    levels = [_Level(task.tier, "its tier", asked, path)]
    for i, route in enumerate(task.routes):
        levels.append(_route_level(route, i, base, asked, path))
    for tier, how in ctx.task_tiers.get(t_name, {}).items():  # degrade tiers keep the task's setting
        if how.startswith("budget"):
            levels.append(_Level(tier, how, asked, path))
    return [lv for lv in levels if lv.tier in ctx.policy.tiers]


def _route_level(route: Route, i: int, base: PathKey, asked: Reasoning | None, path: PathKey) -> _Level:
    own = reasoning_of(route.reasoning, route.thinking)
    via = f"route {route_label(route.name, i)}"
    if own is None:
        return _Level(route.tier, via, asked, path)
    return _Level(route.tier, via, own, _setting_path((*base, "routes", i), route.thinking))


def _kind(ctx: Context, model: ModelSpec) -> str | None:
    provider = ctx.policy.providers.get(model.provider)
    return provider.kind if provider is not None else None


def check_reasoning(ctx: Context) -> Iterator[Diagnostic]:
    """Reasoning asked of models that declare it; thinking budgets below the output cap; no
    temperature or forced tool use where a reasoning model would refuse it."""
    p = ctx.policy
    for m_name, model in p.models.items():
        if (model.reasoning is not None or model.thinking is not None) and "reasoning" not in model.capabilities:
            yield ctx.diag(
                "error",
                "reasoning-unsupported",
                f"model `{m_name}` sets {'thinking' if model.thinking else 'reasoning'} but does not declare "
                "the `reasoning` capability",
                _setting_path(("models", m_name), model.thinking),
                "add `reasoning` to its capabilities if the model reasons (o3, gpt-5, Claude with extended "
                "thinking), or remove the setting",
                key=True,
            )
    for t_name, task in p.tasks.items():
        yield from _task(ctx, t_name, task)


def _task(ctx: Context, t_name: str, task: Task) -> Iterator[Diagnostic]:
    p = ctx.policy
    dropped: dict[str, None] = {}  # reasoning models the task's temperature is not sent to
    for level in _levels(ctx, t_name, task):
        members = [m for m in dict.fromkeys(p.tier_models(level.tier)) if m in p.models]
        reasoners = [m for m in members if "reasoning" in p.models[m].capabilities]
        yield from _capability_diags(ctx, t_name, level, members, reasoners)
        for m_name in reasoners:
            yield from _reasoner_diags(ctx, t_name, task, level, m_name, dropped)
    yield from _temperature_diags(ctx, t_name, task, dropped)


def _capability_diags(
    ctx: Context, t_name: str, level: _Level, members: list[str], reasoners: list[str]
) -> Iterator[Diagnostic]:
    """Reasoning asked of a tier where no model, or not every model, declares the capability."""
    if level.asked is None:
        return
    if members and not reasoners:
        yield ctx.diag(
            "error",
            "reasoning-unsupported",
            f"task `{t_name}` asks for reasoning, but no model of {ctx.via(t_name, level.tier)} declares "
            "the `reasoning` capability: nothing would be sent",
            level.path,
            "add `reasoning` to the capabilities of the models that reason, or route the task to them",
            key=True,
        )
    elif len(reasoners) < len(members):
        lacking = next(m for m in members if m not in reasoners)
        yield ctx.diag(
            "warning",
            "reasoning-not-sent",
            f"task `{t_name}`: model `{lacking}` of {ctx.via(t_name, level.tier)} does not declare "
            "`reasoning`; it is sent no effort or thinking budget",
            level.path,
            "declare `capabilities: [reasoning]` on it if it reasons; a non-reasoning fallback is fine as is",
            key=True,
        )


def _reasoner_diags(
    ctx: Context, t_name: str, task: Task, level: _Level, m_name: str, dropped: dict[str, None]
) -> Iterator[Diagnostic]:
    """One reasoning model at a level: records it in ``dropped`` if it gets no temperature, and
    checks an Anthropic thinking budget against the output cap and forced tool use."""
    model = ctx.policy.models[m_name]
    own = reasoning_of(model.reasoning, model.thinking)
    asked = own or level.asked
    path = _setting_path(("models", m_name), model.thinking) if own else level.path
    protocol = protocol_of(_kind(ctx, model) or "")
    thinks = protocol == "anthropic" and asked is not None and asked.budget_tokens is not None
    if protocol == "openai" or thinks:
        dropped[m_name] = None
    if not thinks or asked is None or asked.budget_tokens is None:
        return
    if asked.budget_tokens >= task.max_output_tokens:
        yield ctx.diag(
            "error",
            "thinking-budget-too-large",
            f"task `{t_name}`: thinking budget {asked.budget_tokens} of model `{m_name}` is not below "
            f"max_output_tokens {task.max_output_tokens}; Anthropic refuses it (thinking is output)",
            path,
            f"raise the task's `max_output_tokens` above {asked.budget_tokens} (it must hold thinking and "
            "answer), or lower `thinking.budget_tokens` (at least 1024)",
            key=True,
        )
    if task.response_schema is not None and "json_schema" in model.capabilities:
        yield ctx.diag(
            "error",
            "thinking-forced-tool",
            f"task `{t_name}`: structured output on `{m_name}` forces a tool call, which Anthropic "
            "refuses while thinking is enabled",
            path,
            f"drop `json_schema` from `{m_name}`'s capabilities (the schema then goes in the prompt), "
            "or turn thinking off for this task",
            key=True,
        )


def _temperature_diags(ctx: Context, t_name: str, task: Task, dropped: dict[str, None]) -> Iterator[Diagnostic]:
    """A task temperature that some of its reasoning models will not be sent."""
    if task.temperature is None or not dropped:
        return
    names = ", ".join(f"`{m}`" for m in dropped)
    yield ctx.diag(
        "warning",
        "temperature-dropped",
        f"task `{t_name}` sets temperature {task.temperature:g}, which is not sent to reasoning model(s) "
        f"{names}: they accept only the default",
        ("tasks", t_name, "temperature"),
        "remove `temperature`, or keep it for the chain's other models: it is dropped where the "
        "provider would refuse it with a 400",
        key=True,
    )
