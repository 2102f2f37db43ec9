"""``router.health()``: breakers, budgets and provider reachability, spending no tokens.

Breakers and budgets are read from the state backend (so with sqlite or redis they are
the fleet's, not only this process's); without one (memory state seen from outside the
serving process) they are unknown, and so is the status. Providers are reached through their ``ping``
(``GET /v1/models`` for OpenAI and Anthropic; free): a provider without one is
reported as not checked rather than called with a prompt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.plan import Plan
from policyrouter.providers.base import Provider
from policyrouter.spend import BudgetUsage, budget_usage
from policyrouter.state.base import StateBackend

__all__ = ["BreakerHealth", "HealthReport", "ProviderHealth", "check_health"]


@dataclass(frozen=True)
class BreakerHealth:
    model: str
    breaker: str
    status: str  # closed | open | half_open
    recent_failures: int


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    kind: str
    status: str  # ok | unchecked | auth | unreachable | error | misconfigured
    detail: str = ""
    latency_s: float | None = None


@dataclass(frozen=True)
class HealthReport:
    """``ok`` is false when a breaker is not closed, a budget is at or over its limit,
    a checked provider did not answer, or breakers and budgets are ``unknown`` (why)."""

    ok: bool
    env: str | None
    breakers: tuple[BreakerHealth, ...]
    budgets: tuple[BudgetUsage, ...]
    providers: tuple[ProviderHealth, ...]
    problems: tuple[str, ...]
    unknown: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "env": self.env,
            "problems": list(self.problems),
            "unknown": self.unknown,
            "breakers": [asdict(b) for b in self.breakers],
            "budgets": [{**asdict(b), "percent": round(b.percent, 2)} for b in self.budgets],
            "providers": [asdict(p) for p in self.providers],
        }

    def __str__(self) -> str:
        return render_text(self)


def check_health(
    plan: Plan,
    state: StateBackend | None,
    clients: Mapping[str, Provider],
    wall: float,
    *,
    providers: bool = True,
    unknown: str = "",
) -> HealthReport:
    """``state=None``: breakers and budgets cannot be read; ``unknown`` says why (a problem)."""
    problems: list[str] = [unknown] if state is None else []
    breakers = []
    for m in plan.models.values():
        if m.breaker is None or state is None:
            continue
        rec = state.breaker_get(m.name)
        breakers.append(BreakerHealth(m.name, m.breaker_name or "", rec.status, len(rec.failures)))
        if rec.status != "closed":
            problems.append(f"breaker of model {m.name!r} is {rec.status}")
    budgets = budget_usage(plan, state, wall) if state is not None else []
    for b in budgets:
        if b.percent >= 100.0:
            problems.append(f"budget {b.budget!r} ({b.key}) is exhausted")
    checked = []
    for name, p in clients.items():
        kind = getattr(p, "kind", "?")
        ping = getattr(p, "ping", None)
        if not providers or ping is None:
            detail = "" if not providers else "no free reachability check"
            checked.append(ProviderHealth(name, kind, "unchecked", detail))
            continue
        t0 = time.perf_counter()
        try:
            ping()
        except ProviderError as exc:
            status = {"auth": "auth", "connection": "unreachable", "timeout": "unreachable"}.get(exc.kind, "error")
            checked.append(ProviderHealth(name, kind, status, f"{exc.kind}: {exc.message[:200]}"))
            problems.append(f"provider {name!r}: {status}")
            continue
        except ConfigurationError as exc:
            checked.append(ProviderHealth(name, kind, "misconfigured", str(exc)))
            problems.append(f"provider {name!r}: misconfigured")
            continue
        checked.append(ProviderHealth(name, kind, "ok", "", round(time.perf_counter() - t0, 6)))
    return HealthReport(
        ok=not problems,
        env=plan.env,
        breakers=tuple(breakers),
        budgets=tuple(budgets),
        providers=tuple(checked),
        problems=tuple(problems),
        unknown=unknown if state is None else None,
    )


def render_text(report: HealthReport) -> str:
    """The report as ``policyrouter status`` prints it."""
    word = "UNKNOWN" if report.unknown else "ok" if report.ok else "DEGRADED"
    lines = [f"status    {word}" + (f" (env {report.env})" if report.env else "")]
    lines += [f"  problem {p}" for p in report.problems]
    lines.append("breakers")
    if report.unknown:
        lines.append("  (unknown: see the problem above)")
    elif not report.breakers:
        lines.append("  (no model has a circuit breaker)")
    width = max((len(b.model) for b in report.breakers), default=0)
    for b in report.breakers:
        failures = f", {b.recent_failures} recent failure(s)" if b.recent_failures else ""
        lines.append(f"  {b.model:<{width}}  {b.status:<9} breaker {b.breaker}{failures}")
    lines.append("budgets")
    if report.unknown:
        lines.append("  (unknown: see the problem above)")
    elif not report.budgets:
        lines.append("  (no budgets)")
    for u in report.budgets:
        parts = []
        if u.limit_usd is not None:
            parts.append(f"${u.spent_usd:.6f} spent + ${u.reserved_usd:.6f} reserved of ${u.limit_usd:g}")
        if u.limit_tokens is not None:
            parts.append(f"{u.spent_tokens:,} + {u.reserved_tokens:,} tokens of {u.limit_tokens:,}")
        lines.append(f"  {u.budget} [{u.scope}/{u.window} {u.key}]  {'; '.join(parts)} ({u.percent:.1f}%)")
    lines.append("providers")
    width = max((len(p.provider) for p in report.providers), default=0)
    for p in report.providers:
        detail = f" ({p.detail})" if p.detail else (" (--ping reaches it)" if p.status == "unchecked" else "")
        lines.append(f"  {p.provider:<{width}}  {p.kind:<17} {p.status}{detail}")
    return "\n".join(lines) + "\n"
