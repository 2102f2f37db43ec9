"""Spend reports: usage against every budget, and the ledger grouped by a dimension."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from policyrouter.plan import Plan
from policyrouter.stages.budget import counter_prefix, limits, window_bounds
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
    limit_usd: float | None  # None: the budget limits tokens only
    spent_tokens: int = 0
    reserved_tokens: int = 0
    limit_tokens: int | None = None  # None: the budget limits USD only

    @property
    def percent(self) -> float:
        """Spent + reserved as a share of the limit, the larger share when there are two."""
        usd = (self.spent_usd + self.reserved_usd) / self.limit_usd if self.limit_usd else 0.0
        tokens = (self.spent_tokens + self.reserved_tokens) / self.limit_tokens if self.limit_tokens else 0.0
        return 100.0 * max(usd, tokens)


@dataclass(frozen=True)
class SpendGroup:
    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def budget_usage(plan: Plan, state: StateBackend, wall: float) -> list[BudgetUsage]:
    """Every counter of the current window of every budget (one row per scope value, with its USD
    and its token counter)."""
    out = []
    for b in plan.budgets.values():
        _, _, label = window_bounds(b.window, b.timezone, wall)
        found: dict[str, dict[str, tuple[float, float]]] = {}
        for unit, _limit in limits(b):
            prefix = counter_prefix(b.name, label, unit)
            for key, spent, reserved in state.budget_counters(prefix):
                found.setdefault(key[len(prefix) :], {})[unit] = (spent, reserved)
        for value, used in sorted(found.items()) or [("*", {})]:
            usd, tokens = used.get("usd", (0.0, 0.0)), used.get("tokens", (0.0, 0.0))
            out.append(
                BudgetUsage(
                    b.name,
                    b.scope,
                    b.window,
                    label,
                    value,
                    usd[0],
                    usd[1],
                    b.limit_usd,
                    round(tokens[0]),
                    round(tokens[1]),
                    b.limit_tokens,
                )
            )
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
