"""Spend reports: usage against every budget, and the ledger grouped by a dimension.

A request counts once in the ledger, cache hits included (their row costs $0).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

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
    """One value of the grouping dimension: its requests (cache hits included) and their spend."""

    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cache_hits: int = 0
    cached_input_tokens: int = 0  # provider prompt cache: input tokens read from it
    cache_write_tokens: int = 0  # provider prompt cache: input tokens written to it
    prompt_cache_saved_usd: float = 0.0  # provider prompt cache: uncached prices less what was billed
    cache_saved_usd: float = 0.0  # our response cache: what the hits' answers had cost

    @property
    def hit_rate(self) -> float:
        """The share of requests the cache answered (0.0 to 1.0)."""
        return self.cache_hits / self.requests if self.requests else 0.0


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
    """The ledger since ``since_wall`` grouped by ``by``, most expensive first (then most requests)."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0, 0, 0, 0.0, 0.0])
    for row in state.ledger_rows(since_wall):
        key = str(getattr(row, by) or "(none)")
        if by == "variant" and row.variant is not None:  # a variant's name is only unique in its experiment
            key = f"{row.experiment}/{row.variant}"
        a = acc[key]
        a[0] += 1
        a[1] += row.input_tokens
        a[2] += row.output_tokens
        a[3] += row.cost_usd
        a[4] += row.outcome == "cache_hit"
        a[5] += row.cached_input_tokens
        a[6] += row.cache_write_tokens
        a[7] += row.prompt_cache_saved_usd
        a[8] += row.cache_saved_usd
    return sorted(
        (
            SpendGroup(k, int(v[0]), int(v[1]), int(v[2]), v[3], int(v[4]), int(v[5]), int(v[6]), v[7], v[8])
            for k, v in acc.items()
        ),
        key=lambda g: (-g.cost_usd, -g.requests, g.key),
    )


@dataclass(frozen=True)
class SpendReport:
    """What ``policyrouter spend`` prints: the budgets of the policy (if one was given) and
    the ledger of one window grouped ``by`` a dimension. ``empty``: the state holds no
    ledger row of the window and no budget counter at all (a wrong file, URL or key prefix,
    or a router that has not run)."""

    window: str
    label: str
    by: str
    budgets: tuple[BudgetUsage, ...]
    groups: tuple[SpendGroup, ...]
    empty: bool

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups)

    @property
    def cache_hits(self) -> int:
        return sum(g.cache_hits for g in self.groups)

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.requests if self.requests else 0.0

    @property
    def cache_saved_usd(self) -> float:
        """What our response cache's hits did not spend."""
        return sum(g.cache_saved_usd for g in self.groups)

    @property
    def prompt_cache_saved_usd(self) -> float:
        """What the providers' prompt caches saved against uncached prices (writes' premium deducted)."""
        return sum(g.prompt_cache_saved_usd for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.label,  # e.g. 2026-03-14 (UTC)
            "window_unit": self.window,
            "by": self.by,
            "empty": self.empty,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "hit_rate": round(self.hit_rate, 4),
            "cache_saved_usd": round(self.cache_saved_usd, 10),
            "prompt_cache": {
                "cached_input_tokens": sum(g.cached_input_tokens for g in self.groups),
                "cache_write_tokens": sum(g.cache_write_tokens for g in self.groups),
                "saved_usd": round(self.prompt_cache_saved_usd, 10),
            },
            "budgets": [{**asdict(b), "percent": round(b.percent, 2)} for b in self.budgets],
            "groups": [{**asdict(g), "hit_rate": round(g.hit_rate, 4)} for g in self.groups],
        }


def spend_report(plan: Plan | None, state: StateBackend, by: str, window: str, wall: float) -> SpendReport:
    """Budgets (with ``plan``) and the ledger of the ``window`` (UTC) holding ``wall``, by ``by``."""
    start, _, label = window_bounds(window, "UTC", wall)
    budgets = tuple(budget_usage(plan, state, wall)) if plan is not None else ()
    groups = tuple(ledger_groups(state, by, start))
    empty = not groups and not state.budget_counters("")
    return SpendReport(window, label, by, budgets, groups, empty)
