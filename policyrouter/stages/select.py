"""How a tier picks the first model of a request's chain (its ``strategy``).

``pick`` decides among the models still in the draw (the engine takes out a model whose
breaker is open or whose limits are exhausted, and draws again); it reads the loads the state
backend shares (calls in flight, a decaying average latency) and draws with the router's rng.

    ordered         the first listed (no draw)
    weighted        at random, in proportion to each model's ``weight``
    least_busy      the fewest calls in flight (ties: at random)
    lowest_latency  the lowest average latency, within ``LATENCY_BAND`` of it at random; a model
                    without a sample first; ``EXPLORE`` of the draws at random, so a model that
                    recovers is seen again
    lowest_cost     the cheapest worst case for this request (ties: the first listed)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["EXPLORE", "LATENCY_ALPHA", "LATENCY_BAND", "LOADED", "STRATEGIES", "Load", "ewma", "pick"]

STRATEGIES = ("ordered", "weighted", "least_busy", "lowest_latency", "lowest_cost")
LOADED = frozenset({"least_busy", "lowest_latency"})  # the strategies that read loads from state
LATENCY_ALPHA = 0.3  # weight of the newest attempt in a model's average latency
LATENCY_BAND = 0.1  # models within 10% of the lowest average share the traffic
EXPLORE = 0.1  # share of lowest_latency draws made uniformly, to keep every average fresh


@dataclass(frozen=True, slots=True)
class Load:
    """What the state backend knows of one model: calls in flight, average latency (``None``: no sample)."""

    in_flight: int = 0
    latency_s: float | None = None


def ewma(old: float | None, sample: float) -> float:
    """The average latency after one more finished attempt."""
    return sample if old is None else old + LATENCY_ALPHA * (sample - old)


def pick(
    strategy: str,
    left: Sequence[int],
    rng: random.Random,
    *,
    weights: Sequence[float] = (),
    loads: Sequence[Load] | None = None,
    costs: Sequence[float] | None = None,
) -> int:
    """The index of the model to try first, among ``left`` (non-empty indexes into the tier's
    models): ``weights`` for weighted, ``loads`` for least_busy and lowest_latency, ``costs``
    (each model's worst case for this request) for lowest_cost."""
    if strategy == "weighted" and weights:
        return _weighted(weights, left, rng)
    if strategy == "least_busy" and loads is not None:
        fewest = min(loads[i].in_flight for i in left)
        return rng.choice([i for i in left if loads[i].in_flight == fewest])
    if strategy == "lowest_latency" and loads is not None:
        return _fastest(left, loads, rng)
    if strategy == "lowest_cost" and costs is not None:
        return min(left, key=lambda i: costs[i])
    return left[0]


def _weighted(weights: Sequence[float], left: Sequence[int], rng: random.Random) -> int:
    total = sum(weights[i] for i in left)
    x = rng.random() * total
    for i in left:
        x -= weights[i]
        if x < 0:
            return i
    return left[-1]  # rounding at the very top of the range


def _fastest(left: Sequence[int], loads: Sequence[Load], rng: random.Random) -> int:
    unseen = [i for i in left if loads[i].latency_s is None]
    if unseen:
        return unseen[0]
    if rng.random() < EXPLORE:
        return rng.choice(list(left))
    best = min(loads[i].latency_s or 0.0 for i in left)
    return rng.choice([i for i in left if (loads[i].latency_s or 0.0) <= best * (1 + LATENCY_BAND)])
