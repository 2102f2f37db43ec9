"""Spend reports: usage against every budget, and the ledger grouped by a dimension."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from policyrouter.plan import Plan
from policyrouter.stages.budget import window_bounds
from policyrouter.state.base import StateBackend


@dataclass(frozen=True)
class BudgetUsage:
    budget: str
    scope: str
    window: str
    label: str
    key: str
    spent_usd: float
    reserved_usd: float
    limit_usd: float

    @property
    def percent(self) -> float:
        return 100.0 * (self.spent_usd + self.reserved_usd) / self.limit_usd if self.limit_usd else 0.0


@dataclass(frozen=True)
class SpendGroup:
    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def budget_usage(plan: Plan, state: StateBackend, wall: float) -> list[BudgetUsage]:
    """Every counter of the current window of every budget (one row per scope value)."""
    out = []
    for b in plan.budgets.values():
        _, _, label = window_bounds(b.window, b.timezone, wall)
        prefix = f"{b.name}|{label}|"
        rows = state.budget_counters(prefix)
        if not rows:
            rows = [(prefix + "*", 0.0, 0.0)]
        for key, spent, reserved in rows:
            out.append(BudgetUsage(b.name, b.scope, b.window, label, key[len(prefix) :], spent, reserved, b.limit_usd))
    return out


def ledger_groups(state: StateBackend, by: str, since_wall: float) -> list[SpendGroup]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for row in state.ledger_rows(since_wall):
        key = str(getattr(row, by) or "(none)")
        a = acc[key]
        a[0] += 1
        a[1] += row.input_tokens
        a[2] += row.output_tokens
        a[3] += row.cost_usd
    return sorted(
        (SpendGroup(k, int(v[0]), int(v[1]), int(v[2]), v[3]) for k, v in acc.items()),
        key=lambda g: -g.cost_usd,
    )
