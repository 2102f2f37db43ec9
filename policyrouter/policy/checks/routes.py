"""Routes: each can match some request, and no earlier route always matches first."""

from __future__ import annotations

import math
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context, route_label
from policyrouter.policy.models import InputTokensCondition, RouteWhen, Task
from policyrouter.policy.source import PathKey

__all__ = ["check_routes"]


def _token_range(cond: InputTokensCondition | None) -> tuple[float, float]:
    """Inclusive integer range ``[lo, hi]`` of input token counts the condition admits."""
    lo: float = 0
    hi: float = math.inf
    if cond is None:
        return lo, hi
    if cond.gt is not None:
        lo = max(lo, cond.gt + 1)
    if cond.gte is not None:
        lo = max(lo, cond.gte)
    if cond.lt is not None:
        hi = min(hi, cond.lt - 1)
    if cond.lte is not None:
        hi = min(hi, cond.lte)
    return lo, hi


def _meta_sets(when: RouteWhen) -> dict[str, frozenset[tuple[str, object]]]:
    out: dict[str, frozenset[tuple[str, object]]] = {}
    for k, v in (when.metadata or {}).items():
        values = v if isinstance(v, list) else [v]
        out[k] = frozenset((type(x).__name__, x) for x in values)
    return out


def _never_matches(when: RouteWhen, task: Task) -> str | None:
    lo, hi = _token_range(when.input_tokens)
    if lo > hi:
        return "its input_tokens range is empty"
    if task.max_input_tokens is not None and lo > task.max_input_tokens:
        return f"it needs more than {int(lo) - 1} input tokens but max_input_tokens is {task.max_input_tokens}"
    if when.tenant is not None and not when.tenant:
        return "its tenant list is empty"
    empty = [k for k, s in _meta_sets(when).items() if not s]
    if empty:
        return f"metadata `{empty[0]}` must be one of an empty list"
    return None


def _subsumes(a: RouteWhen, b: RouteWhen) -> bool:
    """Every request matching ``b`` also matches ``a``."""
    a_lo, a_hi = _token_range(a.input_tokens)
    b_lo, b_hi = _token_range(b.input_tokens)
    if not (a_lo <= b_lo and b_hi <= a_hi):
        return False
    a_meta, b_meta = _meta_sets(a), _meta_sets(b)
    if any(k not in b_meta or not b_meta[k] <= allowed for k, allowed in a_meta.items()):
        return False
    return a.tenant is None or (b.tenant is not None and set(b.tenant) <= set(a.tenant))


def check_routes(ctx: Context) -> Iterator[Diagnostic]:
    """Routes that can never match, or that an earlier route always wins."""
    for t_name, task in ctx.policy.tasks.items():
        live: list[int] = []
        for i, route in enumerate(task.routes):
            path: PathKey = ("tasks", t_name, "routes", i)
            label = route_label(route.name, i)
            why = _never_matches(route.when, task)
            if why is not None:
                yield ctx.diag(
                    "warning",
                    "route-never-matches",
                    f"task `{t_name}`: route {label} can never match: {why}",
                    (*path, "when"),
                    "fix the condition or delete the route",
                )
                continue
            shadow = next((j for j in live if _subsumes(task.routes[j].when, route.when)), None)
            if shadow is not None:
                yield ctx.diag(
                    "warning",
                    "route-shadowed",
                    f"task `{t_name}`: route {label} is shadowed by route "
                    f"{route_label(task.routes[shadow].name, shadow)}, which matches every request it would",
                    (*path, "when"),
                    "routes are tried in order and the first match wins: move the narrower route first",
                )
            live.append(i)
