"""Budgets: their settings, and that they can price and pay for the requests of the tasks they cover."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.source import PathKey

__all__ = [
    "check_budget_fits_request",
    "check_budget_settings",
    "check_degrade_cheaper",
    "check_pricing",
    "check_soft_limits",
    "check_token_budget_fits_request",
    "check_unbounded_input",
]


def check_soft_limits(ctx: Context) -> Iterator[Diagnostic]:
    """``soft_limit`` is a fraction in (0, 1) and comes with an action."""
    for name, b in ctx.policy.budgets.items():
        path: PathKey = ("budgets", name)
        if b.soft_limit is not None and not 0 < b.soft_limit < 1:
            yield ctx.diag(
                "error",
                "soft-limit-range",
                f"budget `{name}`: soft_limit {b.soft_limit:g} is outside (0, 1)",
                (*path, "soft_limit"),
                "soft_limit is a fraction of the budget's limits: 0.8 means at 80% of limit_usd or limit_tokens",
            )
        has_action = b.on_soft_limit is not None and b.on_soft_limit.degrade_to is not None
        if b.on_soft_limit is not None and b.soft_limit is None:
            yield ctx.diag(
                "error",
                "soft-limit-action-unused",
                f"budget `{name}` has on_soft_limit but no soft_limit, so the action never fires",
                (*path, "on_soft_limit"),
                "add `soft_limit: 0.8` (a fraction of the budget's limits), or remove on_soft_limit",
                key=True,
            )
        elif b.soft_limit is not None and not has_action:
            yield ctx.diag(
                "warning",
                "soft-limit-no-action",
                f"budget `{name}` has soft_limit but no on_soft_limit action",
                (*path, "soft_limit"),
                "add `on_soft_limit: {degrade_to: <cheaper tier>}`, or remove soft_limit",
                key=True,
            )


def check_budget_settings(ctx: Context) -> Iterator[Diagnostic]:
    """Budget key, timezone, and that the budget covers some task."""
    for name, b in ctx.policy.budgets.items():
        if b.key is not None and b.scope != "metadata":
            yield ctx.diag(
                "warning",
                "budget-key-ignored",
                f"budget `{name}` has `key` but scope {b.scope} does not use it",
                ("budgets", name, "key"),
                "set `scope: metadata` to budget per metadata value, or remove `key`",
                key=True,
            )
        if not _valid_timezone(b.timezone):
            yield ctx.diag(
                "error",
                "invalid-timezone",
                f"budget `{name}`: `{b.timezone}` is not an IANA timezone",
                ("budgets", name, "timezone"),
                "use a zone name such as UTC, Europe/Berlin or America/New_York",
            )
        if ctx.policy.tasks and not ctx.budget_tasks.get(name):
            yield ctx.diag(
                "warning",
                "budget-covers-nothing",
                f"budget `{name}` covers no task",
                ("budgets", name),
                "check its `tasks` list and the tasks' `budgets` lists",
                key=True,
            )


def _valid_timezone(tz: str) -> bool:
    import zoneinfo

    if tz == "UTC":
        return True
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        try:  # no tz database on this machine: cannot tell, do not complain
            zoneinfo.ZoneInfo("UTC")
        except (zoneinfo.ZoneInfoNotFoundError, OSError):
            return True
        return False
    return True


def _fmt_usd(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def check_pricing(ctx: Context) -> Iterator[Diagnostic]:
    """Every model a task under a USD budget can reach has a price (a token budget needs none)."""
    p = ctx.policy
    reported: set[str] = set()
    for t_name in p.tasks:
        budgets = [b for b in ctx.task_budgets.get(t_name, ()) if p.budgets[b].limit_usd is not None]
        if not budgets:
            continue
        for m in ctx.task_models(t_name):
            if p.models[m].pricing is None and m not in reported:
                reported.add(m)
                yield ctx.diag(
                    "error",
                    "missing-pricing",
                    f"model `{m}` has no pricing, but budget `{budgets[0]}` covers task `{t_name}`, which can reach it",
                    ("models", m),
                    "add `pricing: {input: ..., output: ...}` in USD per 1M tokens (the provider's list price)",
                    key=True,
                )


def check_unbounded_input(ctx: Context) -> Iterator[Diagnostic]:
    """A budgeted task needs ``max_input_tokens`` for its worst case to be known."""
    for t_name, task in ctx.policy.tasks.items():
        budgets = ctx.task_budgets.get(t_name)
        if budgets and task.max_input_tokens is None:
            names = ", ".join(f"`{b}`" for b in budgets)
            yield ctx.diag(
                "warning",
                "budget-unbounded-input",
                f"task `{t_name}` has no max_input_tokens, so the worst case of budget {names} cannot be computed",
                ("tasks", t_name),
                "set `max_input_tokens` (and `on_input_overflow`) on the task",
                key=True,
            )


def check_budget_fits_request(ctx: Context) -> Iterator[Diagnostic]:
    """A hard budget can pay for one worst-case request of every task it covers."""
    p = ctx.policy
    for b_name, budget in p.budgets.items():
        if budget.limit_usd is None:
            continue
        too_big: list[tuple[float, str, str]] = []
        for t_name in ctx.budget_tasks.get(b_name, ()):
            found = ctx.worst_request(t_name)
            if found is not None and budget.limit_usd < found[0]:
                too_big.append((found[0], t_name, found[1]))
        if not too_big:
            continue
        worst, t_name, model = max(too_big)
        task = p.tasks[t_name]
        more = f"; {len(too_big) - 1} other task(s) too" if len(too_big) > 1 else ""
        yield ctx.diag(
            "error",
            "budget-below-request",
            f"budget `{b_name}` ({_fmt_usd(budget.limit_usd)}) is smaller than one worst-case "
            f"request of task `{t_name}`: {task.max_input_tokens} input + {task.max_output_tokens} "
            f"output tokens on `{model}` cost {_fmt_usd(worst)}{more}",
            ("budgets", b_name, "limit_usd"),
            f"raise limit_usd above {_fmt_usd(worst)}, lower the task's token limits, or keep "
            "expensive models out of its tiers",
        )


def check_token_budget_fits_request(ctx: Context) -> Iterator[Diagnostic]:
    """A token budget can hold one largest request (input cap + max output) of every task it
    covers. One whose limit is at most a task's ``max_output_tokens`` refuses every request of
    it (an error); one below the largest request refuses the larger ones always (a warning)."""
    p = ctx.policy
    for b_name, budget in p.budgets.items():
        limit = budget.limit_tokens
        if limit is None:
            continue
        never = sorted(t for t in ctx.budget_tasks.get(b_name, ()) if p.tasks[t].max_output_tokens >= limit)
        if never:
            task = p.tasks[never[0]]
            more = f"; {len(never) - 1} other task(s) too" if len(never) > 1 else ""
            yield ctx.diag(
                "error",
                "token-budget-never-fits",
                f"budget `{b_name}` ({limit:,} tokens) can never hold a request of task `{never[0]}`: "
                f"its max_output_tokens alone ({task.max_output_tokens:,}) reaches the limit, so every "
                f"request is refused{more}",
                ("budgets", b_name, "limit_tokens"),
                f"raise limit_tokens well above {task.max_output_tokens:,}, or lower the task's max_output_tokens",
            )
            continue
        too_big = []
        for t_name in ctx.budget_tasks.get(b_name, ()):
            task = p.tasks[t_name]
            largest = None if task.max_input_tokens is None else task.max_input_tokens + task.max_output_tokens
            if largest is not None and largest > limit:
                too_big.append((largest, t_name))
        if not too_big:
            continue
        worst, t_name = max(too_big)
        task = p.tasks[t_name]
        more = f"; {len(too_big) - 1} other task(s) too" if len(too_big) > 1 else ""
        yield ctx.diag(
            "warning",
            "token-budget-below-request",
            f"budget `{b_name}` ({limit:,} tokens) is smaller than one worst-case request of task "
            f"`{t_name}`: {task.max_input_tokens:,} input + {task.max_output_tokens:,} output tokens = "
            f"{worst:,}, so a request with more than {limit - task.max_output_tokens:,} input tokens "
            f"is always refused{more}",
            ("budgets", b_name, "limit_tokens"),
            f"raise limit_tokens to at least {worst:,}, or lower the task's max_input_tokens / max_output_tokens",
        )


def _tier_output_price(ctx: Context, tier: str) -> tuple[float, str] | None:
    p = ctx.policy
    prices = [(pr.output, m) for m in p.tier_models(tier) if m in p.models and (pr := p.models[m].pricing) is not None]
    return max(prices) if prices else None


def check_degrade_cheaper(ctx: Context) -> Iterator[Diagnostic]:
    """``degrade_to`` names a tier cheaper than the tiers it replaces (by max output price)."""
    p = ctx.policy
    for b_name, budget in p.budgets.items():
        target = budget.on_soft_limit.degrade_to if budget.on_soft_limit is not None else None
        if target is None or target not in p.tiers:
            continue
        target_price = _tier_output_price(ctx, target)
        replaced: set[str] = set()
        for t_name in ctx.budget_tasks.get(b_name, ()):
            task = p.tasks[t_name]
            replaced |= {t for t in (task.tier, *(r.tier for r in task.routes)) if t in p.tiers and t != target}
        prices = [(pr, t) for t in sorted(replaced) if (pr := _tier_output_price(ctx, t)) is not None]
        if target_price is None or not prices:
            continue
        (top, _), top_tier = max(prices)
        if target_price[0] >= top:
            yield ctx.diag(
                "warning",
                "degrade-not-cheaper",
                f"budget `{b_name}` degrades to tier `{target}` "
                f"(up to ${target_price[0]:g}/1M output tokens), "
                f"which is not cheaper than the tiers it replaces (most expensive: `{top_tier}`, "
                f"${top:g}/1M)",
                ("budgets", b_name, "on_soft_limit", "degrade_to"),
                "degrade to a tier of cheaper models",
            )
