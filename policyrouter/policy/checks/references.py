"""Names: every reference resolves, every tier is a chain of distinct models, every definition is used."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context, variant_tiers
from policyrouter.policy.models import Tier, tier_members
from policyrouter.policy.names import closest
from policyrouter.policy.source import PathKey

__all__ = [
    "REFERENCE_SECTIONS",
    "check_references",
    "check_tier_weights",
    "check_tiers",
    "check_unused",
    "member_paths",
    "referenced",
]

# what an ``unknown-reference`` names, and the section that would define it
REFERENCE_SECTIONS: Mapping[str, str] = {
    "provider": "providers",
    "circuit breaker": "circuit_breakers",
    "model": "models",
    "tier": "tiers",
    "retry policy": "retry_policies",
    "budget": "budgets",
    "task": "tasks",
}
_UNKNOWN = re.compile(r"refers to unknown (" + "|".join(REFERENCE_SECTIONS) + r") `([^`]+)`$")


def referenced(d: Diagnostic) -> tuple[str, str] | None:
    """(section, name) an ``unknown-reference`` diagnostic says is missing, else ``None``."""
    found = _UNKNOWN.search(d.message) if d.code == "unknown-reference" else None
    return (REFERENCE_SECTIONS[found.group(1)], found.group(2)) if found else None


def _did_you_mean(name: str, candidates: Iterable[str], what: str) -> str:
    names = sorted(candidates)
    if not names:
        return f"no {what} is defined; define it or fix the name"
    match = closest(name, names)
    if match is not None:
        return f"did you mean `{match}`?"
    shown = ", ".join(f"`{n}`" for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return f"defined {what}s: {shown}"


def member_paths(tier: str, spec: list[str] | Tier) -> list[tuple[str, PathKey]]:
    """Each model name of a tier with where it is written (short or long form)."""
    if isinstance(spec, list):
        return [(m, ("tiers", tier, i)) for i, m in enumerate(spec)]
    return [
        (m, ("tiers", tier, "models", i)) if isinstance(m, str) else (m.model, ("tiers", tier, "models", i, "model"))
        for i, m in enumerate(spec.models)
    ]


def check_tier_weights(ctx: Context) -> Iterator[Diagnostic]:
    """A ``weight`` only means something on a ``weighted`` tier (``tier-weight-unused``)."""
    for tier, spec in ctx.policy.tiers.items():
        if isinstance(spec, list) or spec.strategy == "weighted":
            continue
        for i, m in enumerate(spec.models):
            if not isinstance(m, str) and m.weight is not None:
                yield ctx.diag(
                    "warning",
                    "tier-weight-unused",
                    f"model `{m.model}` has a weight in tier `{tier}`, whose strategy is `{spec.strategy}`",
                    ("tiers", tier, "models", i, "weight"),
                    "weights are used only by `strategy: weighted`; set it, or remove the weight",
                )


def check_references(ctx: Context) -> Iterator[Diagnostic]:
    """Every name used is defined (``unknown-reference``), with a did-you-mean hint."""
    p = ctx.policy

    def ref(name: str, defined: Mapping[str, object], what: str, path: PathKey, user: str) -> Iterator[Diagnostic]:
        if name not in defined:
            yield ctx.diag(
                "error",
                "unknown-reference",
                f"{user} refers to unknown {what} `{name}`",
                path,
                _did_you_mean(name, defined, what),
            )

    for m_name, model in p.models.items():
        yield from ref(model.provider, p.providers, "provider", ("models", m_name, "provider"), f"model `{m_name}`")
        if model.circuit_breaker is not None:
            yield from ref(
                model.circuit_breaker,
                p.circuit_breakers,
                "circuit breaker",
                ("models", m_name, "circuit_breaker"),
                f"model `{m_name}`",
            )
    for tier, spec in p.tiers.items():
        for member, path in member_paths(tier, spec):
            yield from ref(member, p.models, "model", path, f"tier `{tier}`")
    for t_name, task in p.tasks.items():
        where = f"task `{t_name}`"
        yield from ref(task.tier, p.tiers, "tier", ("tasks", t_name, "tier"), where)
        for i, route in enumerate(task.routes):
            yield from ref(route.tier, p.tiers, "tier", ("tasks", t_name, "routes", i, "tier"), where)
        for tier, at, _ in variant_tiers(t_name, task):
            yield from ref(tier, p.tiers, "tier", at, where)
        if task.retry is not None:
            yield from ref(task.retry, p.retry_policies, "retry policy", ("tasks", t_name, "retry"), where)
        for i, b in enumerate(task.budgets or ()):
            yield from ref(b, p.budgets, "budget", ("tasks", t_name, "budgets", i), where)
    for b_name, budget in p.budgets.items():
        where = f"budget `{b_name}`"
        for i, t in enumerate(budget.tasks or ()):
            yield from ref(t, p.tasks, "task", ("budgets", b_name, "tasks", i), where)
        if budget.on_soft_limit is not None and budget.on_soft_limit.degrade_to is not None:
            yield from ref(
                budget.on_soft_limit.degrade_to,
                p.tiers,
                "tier",
                ("budgets", b_name, "on_soft_limit", "degrade_to"),
                where,
            )


def check_tiers(ctx: Context) -> Iterator[Diagnostic]:
    """Chains are non-empty and list each model once."""
    for tier, spec in ctx.policy.tiers.items():
        if not tier_members(spec):
            yield ctx.diag(
                "error",
                "empty-tier",
                f"tier `{tier}` has no models",
                ("tiers", tier),
                "list at least one model; the tier is an ordered fallback chain",
            )
        seen: dict[str, int] = {}
        for i, (member, path) in enumerate(member_paths(tier, spec)):
            if member in seen:
                yield ctx.diag(
                    "error",
                    "duplicate-tier-member",
                    f"model `{member}` is listed twice in tier `{tier}` (first at position {seen[member]})",
                    path,
                    "remove the repeat; to retry a model more, raise its retry policy's max_attempts",
                )
            else:
                seen[member] = i


def check_unused(ctx: Context) -> Iterator[Diagnostic]:
    """Definitions nothing references (``default`` retry policies and breakers apply implicitly)."""
    p = ctx.policy
    used_tiers = {t.tier for t in p.tasks.values()}
    used_tiers |= {r.tier for t in p.tasks.values() for r in t.routes}
    used_tiers |= {tier for t_name, t in p.tasks.items() for tier, _, _ in variant_tiers(t_name, t)}
    used_tiers |= {
        b.on_soft_limit.degrade_to
        for b in p.budgets.values()
        if b.on_soft_limit is not None and b.on_soft_limit.degrade_to is not None
    }
    used_models = {m for spec in p.tiers.values() for m in tier_members(spec)}
    used_providers = {m.provider for m in p.models.values()}
    used_retry = {t.retry for t in p.tasks.values()} | {"default"}
    used_breakers = {m.circuit_breaker for m in p.models.values()} | {"default"}
    sections: tuple[tuple[str, str, Iterable[str], set[Any], str], ...] = (
        (
            "tiers",
            "tier",
            p.tiers,
            used_tiers,
            "use it as a task's `tier`, a route's `tier` or a `degrade_to`",
        ),
        ("models", "model", p.models, used_models, "add it to a tier"),
        ("providers", "provider", p.providers, used_providers, "reference it from a model's `provider`"),
        ("retry_policies", "retry policy", p.retry_policies, used_retry, "name it in a task's `retry`"),
        (
            "circuit_breakers",
            "circuit breaker",
            p.circuit_breakers,
            used_breakers,
            "name it in a model's `circuit_breaker`",
        ),
    )
    for section, what, names, used, how in sections:
        for name in names:
            if name not in used:
                yield ctx.diag(
                    "warning",
                    "unused-definition",
                    f"{what} `{name}` is never used",
                    (section, name),
                    f"{how}, or delete it",
                    key=True,
                )
