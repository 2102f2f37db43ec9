"""Experiment assignment: a stable point in [0, 1) per (experiment, key), and the arm it falls in.

The point is sha256 of the experiment name and the sticky key, never Python's ``hash`` (salted
per process): the same user gets the same variant in every process, host and reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["arm", "point"]


def point(experiment: str, key: str) -> float:
    """Where ``key`` falls in ``experiment``: uniform in [0, 1), the same everywhere."""
    digest = hashlib.sha256(f"{experiment}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm(weights: Sequence[float], at: float) -> int:
    """The index of the weight whose share of the total holds ``at`` (in [0, 1))."""
    total = sum(weights)
    edge = 0.0
    for i, w in enumerate(weights):
        edge += w / total
        if at < edge:
            return i
    return len(weights) - 1  # float rounding at the top edge
