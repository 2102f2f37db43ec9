"""Rate-limit headers, as each provider spells them, read into one :class:`ProviderLimits`.

* OpenAI (and Azure OpenAI, and most OpenAI-compatible gateways):
  ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; the reset is a duration until
  the window is full again (``6m0s``, ``1s``, ``20ms``). Azure may send only the
  ``remaining`` headers.
* Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``;
  the reset is an RFC 3339 time.

A dimension is read when its ``remaining`` header is a whole number; without a readable reset
it is taken to be full again a minute later (both providers count per minute). Headers that
say nothing readable give ``None``: a malformed header never fails the call it came with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from policyrouter.types import LimitDimension, LimitReading, ProviderLimits

__all__ = ["DEFAULT_RESET_S", "parse_duration", "parse_time", "read_limits"]

DEFAULT_RESET_S = 60.0  # a remaining count without a readable reset holds for a minute

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_FRACTION = re.compile(r"\.(\d+)")

# (dimension, OpenAI-style suffix, Anthropic-style infix)
_OPENAI = (("requests", "requests"), ("tokens", "tokens"))
_ANTHROPIC: tuple[tuple[LimitDimension, str], ...] = (
    ("requests", "requests"),
    ("tokens", "tokens"),
    ("input_tokens", "input-tokens"),
    ("output_tokens", "output-tokens"),
)


def parse_duration(text: str) -> float | None:
    """Seconds of a Go-style duration (``6m0s``, ``1.5s``, ``20ms``) or a bare number of seconds;
    ``None`` when it is neither."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def parse_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time (``2025-01-01T00:00:30Z``, fractions and offsets
    allowed); ``None`` when it is not one (or has no offset)."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)  # 3.10 wants 3 or 6 digits
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _count(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    return int(raw) if raw.isdigit() else None


def _reading(limit: int | None, remaining: int | None, reset_at: float | None, wall: float) -> LimitReading | None:
    if remaining is None:
        return None
    return LimitReading(limit, remaining, reset_at if reset_at is not None else wall + DEFAULT_RESET_S)


def read_limits(headers: Mapping[str, str] | None, wall: float) -> ProviderLimits | None:
    """The rate limits ``headers`` report, their resets as wall-clock times (``wall``: when the
    response arrived); ``None`` when they report none."""
    if not headers:
        return None
    # one pass over the headers (an HTTP client's lookups are linear scans), lower-cased names
    headers = {k.lower(): v for k, v in headers.items() if k[:1] in "xXaA" and "ratelimit-" in k.lower()}
    if not headers:
        return None
    found: dict[str, LimitReading] = {}
    for dim, suffix in _OPENAI:
        reset = headers.get(f"x-ratelimit-reset-{suffix}")
        seconds = parse_duration(reset) if reset is not None else None
        reading = _reading(
            _count(headers, f"x-ratelimit-limit-{suffix}"),
            _count(headers, f"x-ratelimit-remaining-{suffix}"),
            wall + seconds if seconds is not None else None,
            wall,
        )
        if reading is not None:
            found[dim] = reading
    for dim, infix in _ANTHROPIC:
        reset = headers.get(f"anthropic-ratelimit-{infix}-reset")
        reading = _reading(
            _count(headers, f"anthropic-ratelimit-{infix}-limit"),
            _count(headers, f"anthropic-ratelimit-{infix}-remaining"),
            parse_time(reset) if reset is not None else None,
            wall,
        )
        if reading is not None:
            found[dim] = reading
    return ProviderLimits(**found) if found else None
