"""Semantic diff of two policy sets: what a request would see differently.

Both sides are loaded, validated and *compiled* for the base and for every environment
either side defines, and the compiled plans are compared: a reordered YAML file, a
moved definition or an anchor are no change; a chain, limit, price, budget, route or
worst case that differs is. Each change names its environment, the task, model, budget
or provider it belongs to, the setting, and the old and new value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policyrouter.plan import Chain, ModelPlan, Plan, TaskPlan

__all__ = [
    "Change",
    "PolicyDiff",
    "UnknownEnvironment",
    "diff_policies",
    "flatten_plan",
    "render_markdown",
    "render_text",
]


@dataclass(frozen=True, slots=True)
class Change:
    env: str | None
    section: str  # tasks | models | budgets | providers | environments
    name: str
    setting: str
    old: str | None  # None: added
    new: str | None  # None: removed

    @property
    def op(self) -> str:
        return "+" if self.old is None else "-" if self.new is None else "~"


@dataclass(frozen=True)
class PolicyDiff:
    old: str
    new: str
    changes: tuple[Change, ...]
    envs: tuple[str | None, ...]

    @property
    def empty(self) -> bool:
        return not self.changes


def _usd_per_m(x: float) -> str:
    return f"${x * 1e6:g}"


def _chain(c: Chain) -> str:
    return f"{c.tier} [{', '.join(m.name for m in c.models)}]"


def _num(x: float | int | None) -> str:
    return "none" if x is None else f"{x:g}"


def _model(m: ModelPlan) -> dict[str, str]:
    out = {
        "provider": m.provider,
        "model id": m.upstream,
        "context window": _num(m.context_window),
        "max output tokens": _num(m.max_output_tokens),
        "capabilities": ", ".join(sorted(m.capabilities)) or "none",
    }
    if m.price is not None:
        p = m.price
        out["price"] = (
            f"in {_usd_per_m(p.input)} / out {_usd_per_m(p.output)} / cached {_usd_per_m(p.cached_input)}"
            f" / cache write {_usd_per_m(p.cache_write)} per 1M"
        )
    else:
        out["price"] = "none"
    if m.limits is not None:
        lim = m.limits
        out["limits"] = (
            f"rpm {_num(lim.rpm)}, tpm {_num(lim.tpm)}, concurrency {_num(lim.concurrency)}, "
            f"on_limit {lim.on_limit} (max wait {lim.max_wait_s:g}s)"
        )
    else:
        out["limits"] = "none"
    if m.breaker is not None:
        b = m.breaker
        out["circuit breaker"] = (
            f"{m.breaker_name or 'default'}: {b.failure_threshold} failures in {b.window_s:g}s, "
            f"cooldown {b.cooldown_s:g}s"
        )
    else:
        out["circuit breaker"] = "none"
    return out


def _task(t: TaskPlan) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in t.routes:
        cond = r.condition.describe() if r.condition is not None else "always"
        out[f"route {r.name}"] = f"when {cond} use {_chain(r.chain)}"
    out["route order"] = ", ".join([r.name for r in t.routes] + ["default"])
    out["default chain"] = _chain(t.default.chain)
    out["max input tokens"] = _num(t.max_input_tokens)
    out["on input overflow"] = t.on_input_overflow
    out["max output tokens"] = _num(t.max_output_tokens)
    out["temperature"] = _num(t.temperature)
    out["timeout"] = f"{t.timeout_s:g}s"
    out["deadline"] = f"{t.deadline_s:g}s"
    out["max total attempts"] = _num(t.max_total_attempts)
    rs = t.retry
    out["retry"] = (
        f"{t.retry_name or 'default'}: {rs.max_attempts} attempts per model, "
        f"backoff {rs.initial_s:g}s x{rs.multiplier:g} up to {rs.max_s:g}s ({rs.jitter} jitter), "
        f"on {', '.join(sorted(rs.retry_on))}"
    )
    if t.cache is not None:
        c = t.cache
        out["cache"] = f"ttl {c.ttl_s:g}s, scope {c.scope}, stale if error {c.stale_if_error_s:g}s"
    else:
        out["cache"] = "off"
    out["budgets"] = ", ".join(b.name for b in t.budgets) or "none"
    wc = t.worst_case
    out["worst-case calls"] = f"{wc.calls}"
    out["worst-case cost"] = "unbounded (no max_input_tokens)" if wc.cost_usd is None else f"${wc.cost_usd:.6f}"
    return out


def flatten_plan(plan: Plan) -> dict[tuple[str, str, str], str]:
    """``(section, name, setting) -> value`` for everything a request can observe."""
    flat: dict[tuple[str, str, str], str] = {}
    for name, spec in sorted(plan.providers.items()):
        dumped = spec.model_dump(mode="json", exclude_none=True) if hasattr(spec, "model_dump") else {}
        for key, value in sorted(dumped.items()):
            flat[("providers", name, key)] = str(value)
    for name, m in sorted(plan.models.items()):
        for key, value in _model(m).items():
            flat[("models", name, key)] = value
    for name, b in sorted(plan.budgets.items()):
        limits = [f"${b.limit_usd:g}"] if b.limit_usd is not None else []
        limits += [f"{b.limit_tokens:,} tokens"] if b.limit_tokens is not None else []
        flat[("budgets", name, "limit")] = f"{' and '.join(limits)} per {b.window} ({b.timezone})"
        flat[("budgets", name, "scope")] = b.scope + (f" {b.key}" if b.key else "")
        flat[("budgets", name, "soft limit")] = "none" if b.soft_limit is None else f"{b.soft_limit:.0%}"
        flat[("budgets", name, "degrade to")] = "none" if b.degrade_to is None else _chain(b.degrade_to)
    for name, t in sorted(plan.tasks.items()):
        for key, value in _task(t).items():
            flat[("tasks", name, key)] = value
    return flat


def _env_names(path: str) -> list[str]:
    from policyrouter.policy.loader import load_policy

    return sorted(load_policy(path).environments)


def _compile(path: str, env: str | None) -> Plan:
    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy

    return compile_policy(load_policy(path, env), env)


def diff_plans(old: Plan, new: Plan, env: str | None) -> list[Change]:
    a, b = flatten_plan(old), flatten_plan(new)
    out: list[Change] = []
    gone_entities = {k[:2] for k in a} - {k[:2] for k in b}
    new_entities = {k[:2] for k in b} - {k[:2] for k in a}
    for section, name in sorted(gone_entities):
        out.append(Change(env, section, name, "(all)", "defined", None))
    for section, name in sorted(new_entities):
        out.append(Change(env, section, name, "(all)", None, "defined"))
    for key in sorted(set(a) | set(b)):
        if key[:2] in gone_entities or key[:2] in new_entities:
            continue
        va, vb = a.get(key), b.get(key)
        if va != vb:
            out.append(Change(env, key[0], key[1], key[2], va, vb))
    for key in sorted(k for k in b if k[:2] in new_entities):
        out.append(Change(env, key[0], key[1], key[2], None, b[key]))
    return out


class UnknownEnvironment(ValueError):
    """``envs`` names an environment neither policy set defines (``match``: the closest one)."""

    def __init__(self, env: str, match: str | None, defined: Sequence[str]) -> None:
        super().__init__(f"unknown environment `{env}`")
        self.env, self.match, self.defined = env, match, tuple(defined)


def diff_policies(
    old: str | os.PathLike[str], new: str | os.PathLike[str], envs: Sequence[str] | None = None
) -> PolicyDiff:
    """Compare two policy sets for the base and every environment (or only ``envs``).

    Raises ``PolicyError`` when either side is invalid, ``UnknownEnvironment`` when an
    environment of ``envs`` is defined on neither side."""
    from policyrouter.policy.names import closest

    old_s, new_s = os.fspath(old), os.fspath(new)
    old_envs, new_envs = set(_env_names(old_s)), set(_env_names(new_s))
    defined = sorted(old_envs | new_envs)
    for name in envs or ():
        if name not in defined:
            raise UnknownEnvironment(name, closest(name, defined), defined)
    targets: list[str | None] = [None, *sorted(old_envs | new_envs)] if envs is None else list(envs)
    changes: list[Change] = []
    for env in targets:
        if env is not None and env not in new_envs:
            changes.append(Change(env, "environments", env, "(all)", "defined", None))
            continue
        if env is not None and env not in old_envs:
            changes.append(Change(env, "environments", env, "(all)", None, "defined"))
            continue
        changes.extend(diff_plans(_compile(old_s, env), _compile(new_s, env), env))
    return PolicyDiff(old_s, new_s, tuple(changes), tuple(targets))


def _env_label(env: str | None) -> str:
    return "base" if env is None else f"env {env}"


def _dedupe(d: PolicyDiff) -> list[tuple[str, list[Change]]]:
    """Per environment; an environment's change already shown for the base is not repeated."""
    base = {(c.section, c.name, c.setting, c.old, c.new) for c in d.changes if c.env is None}
    groups: list[tuple[str, list[Change]]] = []
    for env in d.envs:
        items = [c for c in d.changes if c.env == env]
        if env is not None:
            items = [c for c in items if (c.section, c.name, c.setting, c.old, c.new) not in base]
        groups.append((_env_label(env), items))
    return groups


def render_text(d: PolicyDiff) -> str:
    lines = [f"policy diff {d.old} -> {d.new}"]
    if d.empty:
        lines.append("no semantic changes")
        return "\n".join(lines) + "\n"
    for label, items in _dedupe(d):
        lines.append("")
        if not items:
            lines.append(f"{label}: no changes beyond the base")
            continue
        lines.append(f"{label}:")
        current = None
        for c in items:
            entity = f"{c.section}.{c.name}"
            if entity != current:
                lines.append(f"  {entity}")
                current = entity
            if c.setting == "(all)":
                lines.append(f"    {c.op} {'added' if c.op == '+' else 'removed'}")
            elif c.op == "~":
                lines.append(f"    ~ {c.setting}: {c.old} -> {c.new}")
            else:
                lines.append(f"    {c.op} {c.setting}: {c.new if c.op == '+' else c.old}")
    n = sum(len(items) for _, items in _dedupe(d))
    lines += ["", f"{n} change{'s' if n != 1 else ''}"]
    return "\n".join(lines) + "\n"


def _md(text: str | None) -> str:
    return "" if text is None else "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def render_markdown(d: PolicyDiff) -> str:
    out = [f"### Policy diff: `{d.old}` → `{d.new}`", ""]
    if d.empty:
        out.append("No semantic changes.")
        return "\n".join(out) + "\n"
    for label, items in _dedupe(d):
        out.append(f"**{label}**" + ("" if items else ": no changes beyond the base"))
        out.append("")
        if not items:
            continue
        out.append("| | what | setting | old | new |")
        out.append("|:-:|:---|:---|:---|:---|")
        for c in items:
            setting = "" if c.setting == "(all)" else c.setting
            old = "" if c.setting == "(all)" and c.old else _md(c.old)
            new = "" if c.setting == "(all)" and c.new else _md(c.new)
            what = f"{c.section}.{c.name}" + (" (added)" if c.setting == "(all)" and c.op == "+" else "")
            what += " (removed)" if c.setting == "(all)" and c.op == "-" else ""
            out.append(f"| {c.op} | {what} | {setting} | {old} | {new} |")
        out.append("")
    n = sum(len(items) for _, items in _dedupe(d))
    out.append(f"{n} change{'s' if n != 1 else ''}.")
    return "\n".join(out) + "\n"


def to_dict(d: PolicyDiff) -> dict[str, Any]:
    return {
        "old": d.old,
        "new": d.new,
        "changes": [
            {"env": c.env, "section": c.section, "name": c.name, "setting": c.setting, "old": c.old, "new": c.new}
            for c in d.changes
        ],
    }
