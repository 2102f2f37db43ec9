"""When an answer is too random to cache: one rule, read by `validate` and by the cache (no pydantic)."""

from __future__ import annotations

__all__ = ["UNSET_TEMPERATURE", "sampled_above"]

UNSET_TEMPERATURE = 1.0
"""What a request without a temperature samples at: the providers' default."""


def sampled_above(temperature: float | None, max_temperature: float) -> bool:
    """Is an answer sampled at ``temperature`` (``None``: the provider's default) too random to
    cache under ``max_temperature``? The one rule `validate` warns by and the cache follows."""
    return (UNSET_TEMPERATURE if temperature is None else temperature) > max_temperature
