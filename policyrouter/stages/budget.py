"""Budget windows, counter keys and reservation amounts.

A budget counter is one (budget, calendar window, scope value). The window is
calendar-aligned in the budget's timezone (UTC by default), so "day" means midnight
to midnight, not the last 24 hours.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policyrouter.plan import BudgetPlan, PriceRows
from policyrouter.state.base import BudgetCharge

if TYPE_CHECKING:  # datetime and zoneinfo load on the first window computed
    from datetime import tzinfo

_tz_cache: dict[str, tzinfo] = {}
_window_cache: dict[tuple[str, str], tuple[float, float, str]] = {}
_lock = threading.Lock()


def _tz(name: str) -> tzinfo:
    tz = _tz_cache.get(name)
    if tz is None:
        from datetime import timezone
        from zoneinfo import ZoneInfo

        tz = timezone.utc if name.upper() == "UTC" else ZoneInfo(name)
        _tz_cache[name] = tz
    return tz


def window_bounds(window: str, tz_name: str, wall: float) -> tuple[float, float, str]:
    """(start, end, label) of the calendar window holding ``wall``; memoized per window."""
    cached = _window_cache.get((window, tz_name))
    if cached is not None and cached[0] <= wall < cached[1]:
        return cached
    from datetime import datetime, timedelta

    tz = _tz(tz_name)
    now = datetime.fromtimestamp(wall, tz)
    if window == "minute":
        start = now.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=1)
        label = start.strftime("%Y-%m-%dT%H:%M")
    elif window == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
        label = start.strftime("%Y-%m-%dT%H")
    elif window == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)  # aware wall-clock arithmetic: next midnight, DST-safe
        label = start.strftime("%Y-%m-%d")
    else:  # month
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    bounds = (start.timestamp(), end.timestamp(), label)
    with _lock:
        _window_cache[(window, tz_name)] = bounds
    return bounds


def scope_value(
    b: BudgetPlan,
    task: str,
    tenant: str | None,
    user: str | None,
    model: str | None,
    metadata: Mapping[str, Any] | None,
) -> str:
    if b.scope == "global":
        return "*"
    if b.scope == "task":
        return task
    if b.scope == "tenant":
        return tenant if tenant is not None else "(none)"
    if b.scope == "user":
        return user if user is not None else "(none)"
    if b.scope == "model":
        return model or "(none)"
    value = (metadata or {}).get(b.key or "")
    return "(none)" if value is None else str(value)


# (id(budget), scope value) -> (budget, key, window start, window end): the hot path
# builds no string while the window lasts. The budget is kept and compared by identity,
# so a reused id() never serves another budget's key.
_key_cache: dict[tuple[int, str], tuple[BudgetPlan, str, float, float]] = {}
_KEY_CACHE_MAX = 10_000


def counter_key(b: BudgetPlan, value: str, wall: float) -> tuple[str, float]:
    hit = _key_cache.get((id(b), value))
    if hit is not None and hit[0] is b and hit[2] <= wall < hit[3]:
        return hit[1], hit[3]
    start, end, label = window_bounds(b.window, b.timezone, wall)
    key = f"{b.name}|{label}|{value}"
    with _lock:
        if len(_key_cache) >= _KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[(id(b), value)] = (b, key, start, end)
    return key, end


# (id(budgets), task, tenant, user, model) -> (budgets, valid from, valid until, (name, key, limit, end) per
# budget): a request without metadata builds no key while every window of its budgets lasts. The
# budgets tuple is kept and compared by identity, like ``_key_cache``.
_new = tuple.__new__  # a BudgetCharge (a named tuple) without its Python-level __new__: the hot path
_ChargeSpec = tuple[tuple[BudgetPlan, ...], float, float, tuple[tuple[str, str, float, float], ...]]
_charges_cache: dict[tuple[int, str, str | None, str | None, str], _ChargeSpec] = {}


def charges(
    budgets: tuple[BudgetPlan, ...],
    amount: float,
    *,
    task: str,
    tenant: str | None,
    user: str | None,
    model: str,
    metadata: Mapping[str, Any] | None,
    wall: float,
) -> list[BudgetCharge]:
    if metadata is not None:
        return _charges(budgets, amount, task, tenant, user, model, metadata, wall)
    ck = (id(budgets), task, tenant, user, model)
    hit = _charges_cache.get(ck)
    if hit is None or hit[0] is not budgets or not hit[1] <= wall < hit[2]:
        specs = []
        start, until = float("-inf"), float("inf")
        for b in budgets:
            key, end = counter_key(b, scope_value(b, task, tenant, user, model, None), wall)
            start, until = max(start, window_bounds(b.window, b.timezone, wall)[0]), min(until, end)
            specs.append((b.name, key, b.limit_usd, end))
        hit = (budgets, start, until, tuple(specs))
        with _lock:
            if len(_charges_cache) >= _KEY_CACHE_MAX:
                _charges_cache.clear()
            _charges_cache[ck] = hit
    out = []
    for name, key, limit, end in hit[3]:  # a loop, not a comprehension: no function object per call
        out.append(_new(BudgetCharge, (name, key, amount, limit, end)))
    return out


def _charges(
    budgets: tuple[BudgetPlan, ...],
    amount: float,
    task: str,
    tenant: str | None,
    user: str | None,
    model: str,
    metadata: Mapping[str, Any] | None,
    wall: float,
) -> list[BudgetCharge]:
    out = []
    for b in budgets:
        key, end = counter_key(b, scope_value(b, task, tenant, user, model, metadata), wall)
        out.append(BudgetCharge(b.name, key, amount, b.limit_usd, end))
    return out


def attempt_worst_case(rows: tuple[PriceRows, ...], index: int, input_tokens: int, max_output: int) -> float:
    """Reservation for an attempt: counted input + max output at the dearest model left.

    ``Price.worst_case``'s arithmetic (input billed at the higher of the input and cache-write
    rates) over ``rows[index]``, the price pairs of the chain's models from ``index`` on that can
    be the dearest (``Chain.price_rows``, computed when the plan is compiled).
    """
    if not 0 <= index < len(rows):
        return 0.0  # no model left
    worst = 0.0
    for rate, out in rows[index]:
        w = input_tokens * rate + max_output * out
        if w > worst:
            worst = w
    return worst
