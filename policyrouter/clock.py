"""Time, injected. The router never calls ``time`` directly, so tests never sleep."""

from __future__ import annotations

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
