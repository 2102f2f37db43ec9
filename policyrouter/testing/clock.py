"""A fake clock that jumps forward instantly: retry, backoff and window tests never sleep."""

from __future__ import annotations

import threading


class FakeClock:
    """``now()``/``wall()`` advance only through ``sleep``/``asleep``/``advance``.

    ``sleeps`` records every requested sleep, so tests can assert on backoff delays.
    Thread-safe.
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
