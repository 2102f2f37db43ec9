"""Rate-limit headers as each provider spells them, for ``enforce_limits(..., report_headers=True)``.

OpenAI (and Azure): ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, the reset a
duration (``20ms``, ``1.5s``, ``6m0s``). Anthropic: ``anthropic-ratelimit-{requests,tokens}-
{limit,remaining,reset}``, the reset an RFC 3339 time. Both resets say when the window is
full again; they are rounded up to the millisecond, never early.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

__all__ = ["duration", "limit_headers"]

Left = tuple[tuple[int, int] | None, tuple[int, int] | None]  # (limit, remaining) of requests, of tokens


def duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset: ``20ms``, ``1.5s``, ``6m0s`` (rounded up to the ms)."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:g}s"
    return f"{minutes}m{secs}" if minutes else secs


def _rfc3339(wall: float) -> str:
    ms = math.ceil(wall * 1000)
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def limit_headers(protocol: str, left: Left, full_in: float) -> tuple[tuple[str, str], ...]:
    """The headers reporting ``left`` (per dimension) and a window full again in ``full_in`` seconds
    (none on Bedrock and Vertex, which report no rate limits in headers)."""
    if protocol in ("bedrock", "vertex"):
        return ()
    out: list[tuple[str, str]] = []
    for name, dim in zip(("requests", "tokens"), left, strict=True):
        if dim is None:
            continue
        limit, remaining = dim
        if protocol == "anthropic":
            out += [
                (f"anthropic-ratelimit-{name}-limit", str(limit)),
                (f"anthropic-ratelimit-{name}-remaining", str(remaining)),
                (f"anthropic-ratelimit-{name}-reset", _rfc3339(time.time() + full_in)),
            ]
        else:
            out += [
                (f"x-ratelimit-limit-{name}", str(limit)),
                (f"x-ratelimit-remaining-{name}", str(remaining)),
                (f"x-ratelimit-reset-{name}", duration(full_in)),
            ]
    return tuple(out)
