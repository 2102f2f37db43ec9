"""What the state-backend tests share: one time base, the same backend on memory, SQLite and
Redis (the ``state`` fixture in ``conftest.py``), the engine's three calls made either by
the backend itself or by the reference compositions of ``state/combined.py``, and threads
racing reservations on one backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from policyrouter.stages.circuit import BreakerRecord
from policyrouter.state import combined
from policyrouter.state.base import Admit, Admitted, BudgetCharge, Finish, Record, StateBackend

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAR = WALL + 10 * 86400  # a window end well after every time the tests use
BACKENDS = ["memory", "sqlite", "redis"]
# "native": the backend's own admit/finish/record (one lock, one transaction, one Redis script);
# "combined": the reference compositions over the backend's per-stage calls. Both must answer alike.
WAYS = ["native", "combined"]


@dataclass(frozen=True)
class EngineCalls:
    admit: Callable[[Admit], Admitted]
    finish: Callable[[Finish], BreakerRecord | None]
    record: Callable[[Record], None]


def engine_calls(state: StateBackend, way: str) -> EngineCalls:
    """The engine's three calls on ``state``: its own (``native``) or ``combined``'s compositions."""
    if way == "native":
        return EngineCalls(state.admit, state.finish, state.record)
    return EngineCalls(partial(combined.admit, state), partial(combined.finish, state), partial(combined.record, state))


def open_state(kind: str, directory: Path, request: pytest.FixtureRequest, name: str = "") -> StateBackend:
    """A fresh backend of ``kind`` (as the ``state`` fixture makes them); ``name`` tells apart
    several of one kind in one test (their own file, their own Redis key prefix)."""
    from policyrouter.state.memory import MemoryState
    from policyrouter.state.redis import RedisState
    from policyrouter.state.sqlite import SqliteState
    from policyrouter.testing.clock import FakeClock

    if kind == "memory":
        return MemoryState()
    if kind == "sqlite":
        return SqliteState(directory / f"state{name}.sqlite")
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix") + name
    return RedisState(url, key_prefix=prefix, clock=FakeClock(wall_start=WALL))


def race(
    state: StateBackend,
    charges: tuple[BudgetCharge, ...],
    *,
    threads: int,
    tries: int,
    usd: float = 0.0,
    tokens: int = 0,
) -> int:
    """``threads`` threads each try ``tries`` reservations of ``charges`` on ``state`` at once, and
    settle every one granted to ``usd`` and ``tokens``; how many were granted."""
    granted = [0] * threads
    start = threading.Barrier(threads)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(tries):
            res = state.budget_reserve(charges, WALL, 60)
            if res.ok and res.reservation_id:
                granted[i] += 1
                state.budget_settle(res.reservation_id, usd, WALL, tokens)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(granted)
