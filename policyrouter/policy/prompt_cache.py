"""Provider prompt caching facts the policy language defaults to (one copy, read by compile and checks).

Anthropic bills a cache write at 1.25 x the input price (5-minute lifetime) or 2 x (1 hour),
and caches a prefix only from a minimum length: 1024 tokens for Sonnet and Opus, 2048 for
Haiku. Other providers bill no write (OpenAI caches prefixes of 1024 tokens and more on its own).
"""

from __future__ import annotations

import re

from policyrouter.policy.kinds import ANTHROPIC_PROTOCOL_KINDS
from policyrouter.policy.models import ModelSpec, Pricing

__all__ = ["ANTHROPIC_KINDS", "min_cacheable_tokens", "write_prices"]

ANTHROPIC_KINDS = ANTHROPIC_PROTOCOL_KINDS  # ``cache_control`` breakpoints and write prices

WRITE_5M_FACTOR = 1.25
WRITE_1H_FACTOR = 2.0
MIN_TOKENS = 1024
MIN_TOKENS_HAIKU = 2048
_HAIKU = re.compile(r"haiku", re.IGNORECASE)


def write_prices(pricing: Pricing, kind: str) -> tuple[float, float]:
    """USD per 1M tokens written with the 5-minute and the 1-hour lifetime: as priced, else the defaults."""
    anthropic = kind in ANTHROPIC_KINDS
    five = pricing.cache_write
    if five is None:
        five = pricing.input * WRITE_5M_FACTOR if anthropic else pricing.input
    hour = pricing.cache_write_1h
    if hour is None:
        hour = pricing.input * WRITE_1H_FACTOR if anthropic else pricing.input
    return five, hour


def min_cacheable_tokens(model: ModelSpec) -> int:
    """The shortest prefix the model caches: as set, else 2048 for a Haiku id and 1024 otherwise."""
    if model.prompt_cache_min_tokens is not None:
        return model.prompt_cache_min_tokens
    return MIN_TOKENS_HAIKU if _HAIKU.search(model.model) else MIN_TOKENS
