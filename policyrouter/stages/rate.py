"""The client-side rate window: a sliding window log, as providers count."""

from __future__ import annotations

from collections.abc import Iterable

WINDOW_S = 60.0  # rpm and tpm are per sliding minute


def tpm_wait(log: Iterable[tuple[float, int]], total: int, tokens: int, tpm: int, now: float) -> float:
    """Seconds until enough of the window's tokens (``log``: ``(time, tokens)`` oldest first,
    ``total`` of them) leave it for ``tokens`` more to fit under ``tpm``; 0.0 when they fit
    (or nothing in the window can make room)."""
    excess = total + tokens - tpm
    if excess <= 0:
        return 0.0
    freed = 0
    for t, n in log:
        freed += n
        if freed >= excess:
            return t + WINDOW_S - now
    return 0.0
