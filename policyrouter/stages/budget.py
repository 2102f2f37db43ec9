"""Budget windows, counter keys and reservation amounts.

A budget counter is one (budget, calendar window, scope value). The window is
calendar-aligned in the budget's timezone (UTC by default), so "day" means midnight
to midnight, not the last 24 hours.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policyrouter.state.base import BudgetCharge

if TYPE_CHECKING:  # datetime and zoneinfo load on the first window computed
    from datetime import tzinfo

    from policyrouter.plan import BudgetPlan, PriceRows

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


class ChargeSet:
    """The budget counters one request scope charges while their windows last.

    ``specs`` holds (budget, counter key, limit, window end) per budget of the task; the set is
    valid for wall times in [``start``, ``until``). ``bound`` is a state backend's own cache of
    what the keys resolve to there (memory: the counter objects), so a reservation looks
    nothing up by key while the windows last.
    """

    __slots__ = ("bound", "specs", "start", "until")

    def __init__(self, specs: tuple[tuple[str, str, float, float], ...], start: float, until: float) -> None:
        self.specs = specs
        self.start = start
        self.until = until
        self.bound: Any = None

    def charges(self, amount: float) -> list[BudgetCharge]:
        """The :class:`BudgetCharge` of each budget for a reservation of ``amount``."""
        out = []
        for name, key, limit, end in self.specs:  # a loop, not a comprehension: no function object per call
            out.append(_new(BudgetCharge, (name, key, amount, limit, end)))
        return out

    def __repr__(self) -> str:
        return f"ChargeSet({[s[1] for s in self.specs]!r})"


_new = tuple.__new__  # a BudgetCharge (a named tuple) without its Python-level __new__: the hot path
_ONE_FIELD = {"tenant": 1, "user": 2, "model": 3}


class ChargeSets:
    """A task's budgets, resolved per request scope: the :class:`ChargeSet` of a (tenant, user,
    model, metadata) while every window of its budgets lasts, built once per scope and window.

    The cache is keyed by what the budgets' scopes read: nothing (global and task scopes),
    the one field they read (tenant, user or model), or the scope value of every budget.
    """

    __slots__ = ("_cache", "_mode", "budgets", "task")

    def __init__(self, task: str, budgets: tuple[BudgetPlan, ...]) -> None:
        self.task = task
        self.budgets = budgets
        read = {b.scope for b in budgets} - {"global", "task"}
        self._mode = 0 if not read else _ONE_FIELD.get(next(iter(read)), 4) if len(read) == 1 else 4
        self._cache: dict[Any, ChargeSet] = {}

    def get(
        self, tenant: str | None, user: str | None, model: str, metadata: Mapping[str, Any] | None, wall: float
    ) -> ChargeSet:
        mode = self._mode
        if mode == 1:
            k: Any = tenant
        elif mode == 0:
            k = None
        elif mode == 2:
            k = user
        elif mode == 3:
            k = model
        else:
            k = tuple([scope_value(b, self.task, tenant, user, model, metadata) for b in self.budgets])
        hit = self._cache.get(k)
        if hit is not None and hit.start <= wall < hit.until:
            return hit
        return self._build(k, tenant, user, model, metadata, wall)

    def _build(
        self,
        k: Any,
        tenant: str | None,
        user: str | None,
        model: str,
        metadata: Mapping[str, Any] | None,
        wall: float,
    ) -> ChargeSet:
        specs = []
        start, until = float("-inf"), float("inf")
        for b in self.budgets:
            key, end = counter_key(b, scope_value(b, self.task, tenant, user, model, metadata), wall)
            start, until = max(start, window_bounds(b.window, b.timezone, wall)[0]), min(until, end)
            specs.append((b.name, key, b.limit_usd, end))
        cs = ChargeSet(tuple(specs), start, until)
        cache = self._cache
        if len(cache) >= _KEY_CACHE_MAX:
            cache.clear()
        cache[k] = cs
        return cs


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
