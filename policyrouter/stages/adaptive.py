"""Limits learned from the provider (``limits: {adaptive: true}``): what its rate-limit headers
say is left, counted down by every attempt admitted, so clients hold before a 429.

Per dimension (requests, tokens, input and output tokens) the state keeps one
:class:`LimitReading`: the window's limit, what is left, and when the provider says it is
full again. The rules, the same on every backend (Redis runs them as Lua, ``_redis_lua.py``):

* ``take``: an attempt goes when every known dimension keeps ``reserve`` x limit after its
  cost (1 request; counted input + max output tokens), and its costs are taken off; else it
  waits until that dimension's reset. A window whose reset has passed is full again, its
  end unknown until the next reading (meanwhile a short poll).
* ``learn``: a reading of a window already over is stale and ignored; one for an ended (or
  empty) window replaces it; otherwise remaining is the lower of the two and the reset the
  later. The count taken by attempts still in flight (not yet in the provider's reading) is
  never given back by a reading, so many processes never overshoot together.

Against a provider that refills continuously (a token bucket) this is conservative: it
waits for the reset the provider reports (full again), never for less.
"""

from __future__ import annotations

from policyrouter.types import LIMIT_DIMENSIONS, LimitReading, ProviderLimits

__all__ = ["POLL_S", "Costs", "costs", "learn", "take"]

POLL_S = 0.05  # a window full again whose end is not known yet: how long a held attempt waits to ask again

Costs = tuple[int, int, int, int]  # per LIMIT_DIMENSIONS: requests, tokens, input tokens, output tokens


def costs(input_tokens: int, max_output_tokens: int) -> Costs:
    """What one attempt takes of each dimension: one request, its counted input and max output."""
    return 1, input_tokens + max_output_tokens, input_tokens, max_output_tokens


def _rolled(r: LimitReading | None, wall: float) -> LimitReading | None:
    """``r`` as of ``wall``: past its reset, full again (end not known), or unknown without a limit."""
    if r is None or r.reset_at is None or r.reset_at > wall:
        return r
    return LimitReading(r.limit, r.limit, None) if r.limit is not None else None


def take(
    stored: ProviderLimits | None, cost: Costs, reserve: float, wall: float
) -> tuple[float, ProviderLimits | None]:
    """``(0.0, what is left after this attempt)``, or ``(seconds to wait, stored)`` when a
    dimension would go below its reserve."""
    if stored is None:
        return 0.0, None
    rows = [_rolled(getattr(stored, d), wall) for d in LIMIT_DIMENSIONS]
    wait = 0.0
    for r, c in zip(rows, cost, strict=True):
        if r is not None and r.remaining - c < reserve * (r.limit or 0):
            wait = max(wait, r.reset_at - wall if r.reset_at is not None else POLL_S)
    if wait > 0:
        return wait, stored
    left = [
        None if r is None else LimitReading(r.limit, r.remaining - c, r.reset_at)
        for r, c in zip(rows, cost, strict=True)
    ]
    return 0.0, ProviderLimits(*left)


def _merge(old: LimitReading | None, new: LimitReading | None, wall: float) -> LimitReading | None:
    if new is None or (new.reset_at is not None and new.reset_at <= wall):
        return old  # not reported, or about a window already over
    if old is None or (old.reset_at is not None and old.reset_at <= wall):
        return new
    reset = new.reset_at if old.reset_at is None or new.reset_at is None else max(old.reset_at, new.reset_at)
    limit = new.limit if new.limit is not None else old.limit
    return LimitReading(limit, min(old.remaining, new.remaining), reset if reset is not None else old.reset_at)


def learn(stored: ProviderLimits | None, reading: ProviderLimits, wall: float) -> ProviderLimits:
    """``stored`` updated with one response's ``reading`` (arrived at ``wall``)."""
    if stored is None:
        stored = ProviderLimits()
    return ProviderLimits(*(_merge(getattr(stored, d), getattr(reading, d), wall) for d in LIMIT_DIMENSIONS))
