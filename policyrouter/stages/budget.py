"""Budget windows, counter keys and reservation amounts.

A budget counter is one (budget, unit, calendar window, scope value). The window is
calendar-aligned in the budget's timezone (UTC by default), so "day" means midnight
to midnight, not the last 24 hours. A budget limits USD (``limit_usd``), tokens
(``limit_tokens``) or both; each limit has its own counter, and either one refuses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:  # datetime and zoneinfo load on the first window computed
    from datetime import tzinfo

BudgetUnit = Literal["usd", "tokens"]
PriceRows = tuple[tuple[float, float, float], ...]
"""``(input rate, output rate, most tool fees per call)`` of the models that can be the dearest;
the input rate is the dearer of input and cache write."""

_tz_cache: dict[str, tzinfo] = {}
_window_cache: dict[tuple[str, str], tuple[float, float, str]] = {}  # the current window per (window, timezone)
_lock = threading.Lock()


class Budget(Protocol):
    """What the budget rules read of a compiled budget (``plan.BudgetPlan``)."""

    @property
    def name(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def key(self) -> str | None: ...
    @property
    def window(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def limit_usd(self) -> float | None: ...
    @property
    def limit_tokens(self) -> int | None: ...


class BudgetCharge(NamedTuple):
    """One budget counter a reservation touches: its key, amount and hard limit, in ``unit``."""

    budget: str
    key: str
    amount: float
    limit: float
    expires_at: float  # wall time after which the window's counter may be dropped
    unit: BudgetUnit = "usd"


def settled_amount(unit: str, usd: float, tokens: int) -> float:
    """What an attempt that cost ``usd`` and used ``tokens`` adds to a counter of ``unit``."""
    return float(tokens) if unit == "tokens" else usd


def limits(b: Budget) -> tuple[tuple[BudgetUnit, float], ...]:
    """The budget's hard limits, one per counter: USD, tokens, or both."""
    out: list[tuple[BudgetUnit, float]] = []
    if b.limit_usd is not None:
        out.append(("usd", b.limit_usd))
    if b.limit_tokens is not None:
        out.append(("tokens", float(b.limit_tokens)))
    return tuple(out)


def _tz(name: str) -> tzinfo:
    tz = _tz_cache.get(name)
    if tz is None:
        from datetime import timezone
        from zoneinfo import ZoneInfo

        tz = timezone.utc if name.upper() == "UTC" else ZoneInfo(name)
        _tz_cache[name] = tz
    return tz


def window_bounds(window: str, tz_name: str, wall: float) -> tuple[float, float, str]:
    """(start, end, label) of the calendar window holding ``wall``; the current one is kept."""
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
    b: Budget,
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


def counter_prefix(name: str, label: str, unit: str = "usd") -> str:
    """The start of every counter key of budget ``name`` in window ``label``: ``name|label|`` for
    USD, ``name#tokens|label|`` for tokens (``#`` cannot occur in a budget name)."""
    return f"{name}|{label}|" if unit == "usd" else f"{name}#{unit}|{label}|"


def counter_key(b: Budget, value: str, wall: float, unit: str = "usd") -> tuple[str, float]:
    """The key of ``b``'s ``unit`` counter for scope ``value`` in the window holding ``wall``, and the window's end."""
    _, end, label = window_bounds(b.window, b.timezone, wall)
    return counter_prefix(b.name, label, unit) + value, end


def charges(
    budgets: Sequence[Budget],
    task: str,
    tenant: str | None,
    user: str | None,
    model: str,
    metadata: Mapping[str, Any] | None,
    amount: float,
    wall: float,
    tokens: int = 0,
) -> tuple[BudgetCharge, ...]:
    """One attempt's reservation: ``amount`` USD on each USD counter, ``tokens`` on each token counter."""
    out = []
    for b in budgets:
        value = scope_value(b, task, tenant, user, model, metadata)
        for unit, limit in limits(b):
            key, end = counter_key(b, value, wall, unit)
            out.append(BudgetCharge(b.name, key, float(tokens) if unit == "tokens" else amount, limit, end, unit))
    return tuple(out)


def attempt_worst_case(rows: tuple[PriceRows, ...], index: int, input_tokens: int, max_output: int) -> float:
    """Reservation for an attempt: counted input + max output (+ the most tool fees one call can
    bill) at the dearest model left.

    ``Price.worst_case``'s arithmetic (input billed at the higher of the input and cache-write
    rates) over ``rows[index]``, the price pairs of the chain's models from ``index`` on that can
    be the dearest (``Chain.price_rows``, computed when the plan is compiled).
    """
    if not 0 <= index < len(rows):
        return 0.0  # no model left
    worst = 0.0
    for rate, out, fees in rows[index]:
        w = input_tokens * rate + max_output * out + fees
        if w > worst:
            worst = w
    return worst
