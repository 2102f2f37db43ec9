"""Circuit breaker settings and transitions (closed -> open -> half-open -> closed).

The transition function is pure; ``state/`` stores one ``BreakerRecord`` per model and
applies it under its own lock (or atomically on a shared backend).

Times are the backend's own base (monotonic in memory, wall clock where it persists). A time
stored more than its span ahead of ``now`` (the clock stepped back, or the machine rebooted)
counts as run out, so no cooldown, probe lease or failure outlives its span by a clock step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

BreakerStatus = Literal["closed", "open", "half_open"]
Admission = Literal["closed", "probe", "open"]

# How long a half-open probe blocks the next one when its holder never reports (killed, hung)
PROBE_LEASE_S = 120.0


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
    probe_at: float = 0.0  # when the probe in flight was let through (its lease runs from here)


CLOSED = BreakerRecord()


def ran_out(since: float, now: float, span: float) -> bool:
    """``span`` seconds have passed since ``since``, or ``since`` lies more than ``span`` ahead
    of ``now`` (a clock step: counted as run out rather than waited for)."""
    return now - since >= span or since - now > span


def admit(
    rec: BreakerRecord, s: BreakerSettings, now: float, probe_lease_s: float = PROBE_LEASE_S
) -> tuple[Admission, BreakerRecord]:
    """May a call go to this model now? A single probe is let through after the cooldown; a
    probe whose lease ran out (its holder died or hung) counts as given back."""
    if rec.status == "closed":
        return "closed", rec
    if rec.status == "open" and ran_out(rec.opened_at, now, s.cooldown_s):
        return "probe", replace(rec, status="half_open", probe_in_flight=True, probe_at=now)
    if rec.status == "half_open" and (not rec.probe_in_flight or ran_out(rec.probe_at, now, probe_lease_s)):
        return "probe", replace(rec, probe_in_flight=True, probe_at=now)
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
    recent = (*(t for t in rec.failures if not ran_out(t, now, s.window_s)), now)
    if len(recent) >= s.failure_threshold:
        return BreakerRecord(status="open", opened_at=now)
    return replace(rec, failures=recent)
