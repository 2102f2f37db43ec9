"""Circuit breaker settings and transitions (closed -> open -> half-open -> closed).

The transition function is pure; ``state/`` stores one ``BreakerRecord`` per model and
applies it under its own lock (or atomically on a shared backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

BreakerStatus = Literal["closed", "open", "half_open"]
Admission = Literal["closed", "probe", "open"]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0
    trip_on: frozenset[str] = frozenset({"rate_limited", "overloaded", "server_error", "timeout", "connection"})


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    status: BreakerStatus = "closed"
    failures: tuple[float, ...] = field(default=())
    opened_at: float = 0.0
    probe_in_flight: bool = False


CLOSED = BreakerRecord()


def admit(rec: BreakerRecord, s: BreakerSettings, now: float) -> tuple[Admission, BreakerRecord]:
    """May a call go to this model now? A single probe is let through after the cooldown."""
    if rec.status == "closed":
        return "closed", rec
    if rec.status == "open" and now - rec.opened_at >= s.cooldown_s:
        return "probe", replace(rec, status="half_open", probe_in_flight=True)
    if rec.status == "half_open" and not rec.probe_in_flight:
        return "probe", replace(rec, probe_in_flight=True)
    return "open", rec


def on_result(
    rec: BreakerRecord, s: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
) -> BreakerRecord:
    """Record an outcome. Returns the new record."""
    counts = (not ok) and kind in s.trip_on
    if probe:
        if ok or not counts:
            return CLOSED if ok else replace(rec, probe_in_flight=False)
        return BreakerRecord(status="open", opened_at=now)
    if rec.status != "closed":
        return rec
    if ok or not counts:
        return rec
    recent = (*(t for t in rec.failures if now - t < s.window_s), now)
    if len(recent) >= s.failure_threshold:
        return BreakerRecord(status="open", opened_at=now)
    return replace(rec, failures=recent)
