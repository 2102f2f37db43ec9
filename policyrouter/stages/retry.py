"""Retry and fallback decisions: small frozen objects, no sleeping.

A failed attempt is classified into an error kind; ``decide`` says what happens next
and the router acts on it (sleeps through its injected clock, moves along the chain,
or fails). Defaults follow DESIGN.md: transient kinds retry on the same model,
model-specific kinds fall back, ``bad_request`` fails fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import random

Action = Literal["retry", "fallback", "fail"]

FAIL_FAST_KINDS = frozenset({"bad_request"})
"""Kinds that no other model will fix: the request itself is wrong."""

SKIP_SMALLER_WINDOW_KINDS = frozenset({"context_length"})
"""Kinds after which only models with a larger context window are worth trying."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """A compiled retry policy."""

    max_attempts: int = 3
    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: str = "full"
    retry_on: frozenset[str] = frozenset({"rate_limited", "overloaded", "server_error", "timeout", "connection"})
    respect_retry_after: bool = True

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (1 = the first retry), jitter applied."""
        base = min(self.max_s, self.initial_s * self.multiplier ** (retry_number - 1))
        if self.jitter == "full":
            return rng.uniform(0.0, base)
        if self.jitter == "equal":
            return base / 2 + rng.uniform(0.0, base / 2)
        return base

    def delay(self, retry_number: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Backoff, or the provider's Retry-After when longer, capped by ``max_s``."""
        d = self.backoff(retry_number, rng)
        if self.respect_retry_after and retry_after_s is not None and retry_after_s > d:
            d = retry_after_s
        return min(d, self.max_s)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0


def decide(
    settings: RetrySettings,
    kind: str,
    attempt_on_model: int,
    retry_after_s: float | None,
    rng: random.Random,
) -> Decision:
    """What to do after attempt number ``attempt_on_model`` (1-based) failed with ``kind``."""
    if kind in FAIL_FAST_KINDS:
        return Decision("fail")
    if kind in settings.retry_on and attempt_on_model < settings.max_attempts:
        return Decision("retry", settings.delay(attempt_on_model, retry_after_s, rng))
    return Decision("fallback")
