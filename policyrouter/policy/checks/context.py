"""The context every check pass reads (:class:`Context`), and the facts :func:`derive` computes once."""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass, field

from policyrouter.diagnostics import Diagnostic, Severity
from policyrouter.policy.models import ModelSpec, Policy, Task
from policyrouter.policy.source import PathKey, SourceMap, dotted

__all__ = ["Context", "derive", "route_label"]


@dataclass
class Context:
    """What every pass reads: the policy, where its nodes are, and derived facts.

    Facts are computed once (``derive``) from known names only, so passes never trip
    over an unknown reference; ``unknown-reference`` reports those.
    """

    policy: Policy
    source: SourceMap
    env: str | None
    # task -> {tier: how the task reaches it}
    task_tiers: dict[str, dict[str, str]] = field(default_factory=dict)
    # task -> budgets counting it
    task_budgets: dict[str, list[str]] = field(default_factory=dict)
    # budget -> tasks it covers
    budget_tasks: dict[str, list[str]] = field(default_factory=dict)
    _models: dict[str, dict[str, str]] = field(default_factory=dict)
    _worst: dict[str, tuple[float, str] | None] = field(default_factory=dict)

    def diag(
        self,
        severity: Severity,
        code: str,
        message: str,
        path: PathKey,
        hint: str = "",
        *,
        key: bool = False,
    ) -> Diagnostic:
        return Diagnostic(
            severity=severity,
            code=code,
            message=message,
            location=self.source.locate(path, key=key),
            path=dotted(path),
            hint=hint,
            env=self.env,
        )

    def task_models(self, task: str) -> dict[str, str]:
        """Known models the task can reach -> the tier it reaches them through (memoized)."""
        out = self._models.get(task)
        if out is None:
            out = {}
            for tier in self.task_tiers.get(task, {}):
                for member in self.policy.tier_models(tier):
                    if member in self.policy.models:
                        out.setdefault(member, tier)
            self._models[task] = out
        return out

    def via(self, task: str, tier: str) -> str:
        """How ``task`` reaches ``tier``, for messages: "tier `x` (route `long`)"."""
        how = self.task_tiers.get(task, {}).get(tier, "its tier")
        return f"tier `{tier}`" + ("" if how == "its tier" else f" ({how})")

    def task_chains(self, task: str) -> list[list[str]]:
        """Known model chains (deduplicated, in order) of the task's reachable tiers."""
        chains = []
        for tier in self.task_tiers.get(task, {}):
            chain = list(dict.fromkeys(m for m in self.policy.tier_models(tier) if m in self.policy.models))
            chains.append(chain)
        return chains

    def worst_request(self, task: str) -> tuple[float, str] | None:
        """(cost, model) of the task's most expensive single attempt, if computable (memoized)."""
        if task not in self._worst:
            spec = self.policy.tasks[task]
            costs = [
                (cost, m)
                for m in self.task_models(task)
                if (cost := _request_cost(spec, self.policy.models[m])) is not None
            ]
            self._worst[task] = max(costs) if costs else None
        return self._worst[task]


def _covers(budget_name: str, tasks_filter: Set[str] | None, task_name: str, task: Task) -> bool:
    if tasks_filter is not None and task_name not in tasks_filter:
        return False
    return task.budgets is None or budget_name in task.budgets


def derive(ctx: Context) -> None:
    p = ctx.policy
    ctx.task_budgets = {t: [] for t in p.tasks}
    for b_name, budget in p.budgets.items():
        filter_ = None if budget.tasks is None else set(budget.tasks)
        covered = [t for t, task in p.tasks.items() if _covers(b_name, filter_, t, task)]
        ctx.budget_tasks[b_name] = covered
        for t in covered:
            ctx.task_budgets[t].append(b_name)
    for t_name, task in p.tasks.items():
        budgets = ctx.task_budgets[t_name]
        tiers: dict[str, str] = {}
        if task.tier in p.tiers:
            tiers[task.tier] = "its tier"
        for i, route in enumerate(task.routes):
            if route.tier in p.tiers:
                tiers.setdefault(route.tier, f"route {route_label(route.name, i)}")
        for tier, _, how in variant_tiers(t_name, task):
            if tier in p.tiers:
                tiers.setdefault(tier, how)
        for b in budgets:
            action = p.budgets[b].on_soft_limit
            if action is not None and action.degrade_to in p.tiers:
                tiers.setdefault(action.degrade_to, f"budget `{b}` degrade_to")
        ctx.task_tiers[t_name] = tiers


def variant_tiers(t_name: str, task: Task) -> Iterator[tuple[str, PathKey, str]]:
    """Each tier an experiment variant of the task names: (tier, its path, what names it)."""
    for e_name, e in task.experiments.items():
        for v_name, v in e.variants.items():
            at: PathKey = ("tasks", t_name, "experiments", e_name, "variants", v_name)
            if v.tier is not None:
                yield v.tier, (*at, "tier"), f"variant `{v_name}`"
            for i, route in enumerate(v.routes or ()):
                yield route.tier, (*at, "routes", i, "tier"), f"variant `{v_name}` route {route_label(route.name, i)}"


def route_label(name: str | None, index: int) -> str:
    return f"`{name}`" if name else f"#{index}"


def _request_cost(task: Task, model: ModelSpec) -> float | None:
    if model.pricing is None or task.max_input_tokens is None:
        return None
    pr = model.pricing
    return (task.max_input_tokens * pr.input + task.max_output_tokens * pr.output) / 1_000_000
