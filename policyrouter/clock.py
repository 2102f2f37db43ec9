"""Time, injected. The router never calls ``time`` directly, so tests never sleep."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for durations, wall time for calendar windows, and sleeping."""

    def now(self) -> float: ...
    def wall(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock. ``now`` and ``wall`` are ``time.monotonic`` and ``time.time``
    themselves (static methods): read several times per request, they cost no Python frame."""

    __slots__ = ()

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        import asyncio  # lazy: `import policyrouter` stays light for sync users

        await asyncio.sleep(seconds if seconds > 0 else 0)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that jumps forward instantly: ``now()``/``wall()`` advance only through
    ``sleep``/``asleep``/``advance``, so retry, backoff and window tests never sleep.

    ``sleeps`` records every requested sleep, so tests can assert on backoff delays.
    Thread-safe. (Public as ``policyrouter.testing.clock.FakeClock``.)
    """

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_767_225_600.0) -> None:
        self._now = start
        self._offset = wall_start - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
