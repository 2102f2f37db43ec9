"""Limits learned from the provider (``limits: {adaptive: true}``): its rate-limit headers set the
limit, and every attempt admitted is logged, so clients hold before a 429.

Per model the state keeps a log of the attempts it admitted (their time and cost: 1 request;
counted input + max output tokens; input and output apart) and, per dimension (requests,
tokens, input tokens, output tokens), what the headers taught (:class:`Learned`):

* the **limit** (``x-ratelimit-limit-*``; without one, what was left plus what we held);
* the **window**: the shortest time from an attempt's admission to the reset its response
  reported (a sliding window is full again a window after its newest request, so this is
  the window plus the shortest trip to the provider);
* the **usage that is not ours**: what the provider counted at a reading beyond our own
  admissions in the window then (other clients of the key), until that reading's reset.

An attempt goes when, in every known dimension, our usage in the last window + the others'
+ its cost keeps ``reserve`` x limit free; else it waits until enough of the log leaves the
window (or the others' usage expires), behind the attempts already held (``hold``). Any
window of that length then holds at most the limit less the reserve of our attempts: a
sliding-window provider counts the same attempts. Ours that the log no longer counts but the
provider still does (a slow trip to it; a fixed window, or a token bucket refilling slower than
the window we learned) show up in its next reading as usage that is not ours, held against
the limit until that reading's reset, so the provider's own count always has the last word.
Backends keep the log and these numbers atomically (memory: one lock; SQLite: one
transaction; Redis: one script stage per admission and per response, the same rules in Lua).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from policyrouter.types import LIMIT_DIMENSIONS, LimitReading, ProviderLimits

__all__ = [
    "DEFAULT_WINDOW_S",
    "MAX_WINDOW_S",
    "MIN_WINDOW_S",
    "NONE4",
    "POLL_S",
    "Costs",
    "Learned",
    "costs",
    "estimate",
    "floored",
    "hold",
    "learn",
    "pace",
    "promise",
]

DEFAULT_WINDOW_S = 60.0  # the log's window before a reset was read (providers count per minute)
MAX_WINDOW_S = 3600.0  # a reset further away than this is not a window
MIN_WINDOW_S = 0.01  # nor one this close
POLL_S = 0.05  # a held attempt whose cost no log entry can free asks again after this long

Costs = tuple[int, int, int, int]  # per LIMIT_DIMENSIONS: requests, tokens, input tokens, output tokens
NONE4: tuple[None, None, None, None] = (None, None, None, None)


def costs(input_tokens: int, max_output_tokens: int) -> Costs:
    """What one attempt takes of each dimension: one request, its counted input and max output."""
    return 1, input_tokens + max_output_tokens, input_tokens, max_output_tokens


@dataclass(frozen=True, slots=True)
class Learned:
    """What the headers taught about one model, per dimension (``LIMIT_DIMENSIONS`` order)."""

    window_s: float = 0.0  # 0.0: no reset read yet (the log keeps DEFAULT_WINDOW_S)
    limit: tuple[int | None, ...] = NONE4
    others: tuple[int, ...] = (0, 0, 0, 0)  # usage the provider counted that was not ours
    others_until: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # the reset of the reading that said so
    others_at: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # the admission of that reading's attempt
    queued: float = 0.0  # the time promised to the last attempt held (``hold``)

    @property
    def span(self) -> float:
        """The log's window, in seconds."""
        return self.window_s or DEFAULT_WINDOW_S


def _others(learned: Learned, d: int, wall: float) -> int:
    return learned.others[d] if learned.others_until[d] > wall else 0


def pace(learned: Learned, cost: Costs) -> float:
    """Seconds the window takes to free ``cost`` at the learned limits (the spacing of held attempts)."""
    return max((learned.span * cost[d] / lim for d, lim in enumerate(learned.limit) if lim), default=0.0)


def hold(
    learned: Learned | None,
    used: Costs,
    log: Iterable[tuple[float, Costs]],
    cost: Costs,
    reserve: float,
    wall: float,
    waited: bool = False,
) -> float:
    """0.0 when ``cost`` fits every known dimension beside ``used`` (our usage in the window) and
    the others'; else the seconds until it may (``log``: the window's entries, oldest first).

    Held attempts queue: ``learned.queued`` is the time promised to the last one held. A new
    attempt (not ``waited``) goes behind them, and each held one waits for its own cost *and*
    those ahead of it to leave the window, so the holders wake one by one as room frees, not
    all at each freed slot."""
    if learned is None:
        return 0.0
    step = pace(learned, cost)
    ahead = (learned.queued - wall) / step if step > 0 and learned.queued > wall else 0.0
    queue_first = not waited and ahead >= 1
    longest, entries = 0.0, None
    for d in range(4):
        limit = learned.limit[d]
        if limit is None:
            continue
        others = _others(learned, d, wall)
        need = used[d] + others + cost[d] - (limit - reserve * limit)
        if need <= 0 and not queue_first:
            continue
        need = max(need, 0) + ahead * cost[d]
        candidates = [learned.others_until[d] - wall] if others >= need else []
        entries = list(log) if entries is None else entries
        freed = 0
        for t, c in entries:
            freed += c[d]
            if freed >= need:
                candidates.append(t + learned.span - wall)
                break
        if not candidates:  # more is queued than the window holds: after the last one promised
            candidates.append(max(learned.queued, wall) + step - wall)
        longest = max(longest, min(candidates))
    return max(longest, POLL_S if queue_first else 0.0) if longest > 0 or queue_first else 0.0


def promise(learned: Learned, wall: float, wait: float) -> Learned:
    """``learned`` with a held attempt promised ``wall + wait``."""
    return replace(learned, queued=max(learned.queued, wall + wait))


def learn(learned: Learned | None, reading: ProviderLimits, admitted_at: float, own: Costs, wall: float) -> Learned:
    """``learned`` updated with the ``reading`` of the attempt admitted at ``admitted_at`` when
    ``own`` was our usage in the window (its own cost included)."""
    cur = learned or Learned()
    window, limit, others = cur.window_s, list(cur.limit), list(cur.others)
    until, at = list(cur.others_until), list(cur.others_at)
    for d, dim in enumerate(LIMIT_DIMENSIONS):
        r: LimitReading | None = getattr(reading, dim)
        if r is None:
            continue
        span = r.reset_at - admitted_at if r.reset_at is not None else 0.0
        if MIN_WINDOW_S <= span <= MAX_WINDOW_S:
            window = min(window, span) if window else span
        limit[d] = r.limit if r.limit is not None else max(limit[d] or 0, r.remaining + own[d])
        lim = limit[d] or 0
        if r.reset_at is not None and r.reset_at > wall and admitted_at >= at[d]:  # the newest word
            others[d], until[d], at[d] = max(0, lim - r.remaining - own[d]), r.reset_at, admitted_at
    return Learned(window, tuple(limit), tuple(others), tuple(until), tuple(at), cur.queued)


def floored(reading: ProviderLimits, admitted_at: float, window_s: float) -> ProviderLimits:
    """``reading`` with every reset at least ``window_s`` after the admission: a token bucket's
    reset is when it is *full* again (often seconds), not its window, and learning that as the
    window would let a burst far past the limit through. Providers count per minute unless the
    policy's ``limits.window_s`` says otherwise."""
    least = admitted_at + window_s

    def floor(r: LimitReading | None) -> LimitReading | None:
        if r is None or r.reset_at is None or r.reset_at >= least:
            return r
        return replace(r, reset_at=least)

    return ProviderLimits(*(floor(getattr(reading, d)) for d in LIMIT_DIMENSIONS))


def estimate(learned: Learned | None, used: Costs, wall: float) -> ProviderLimits | None:
    """What is left by our count (limit - our usage in the window - the others'), per known dimension."""
    if learned is None:
        return None
    rows: list[LimitReading | None] = []
    for d in range(4):
        limit = learned.limit[d]
        if limit is None:
            rows.append(None)
            continue
        others = _others(learned, d, wall)
        rows.append(LimitReading(limit, limit - used[d] - others, learned.others_until[d] if others else None))
    return ProviderLimits(*rows) if any(r is not None for r in rows) else None
