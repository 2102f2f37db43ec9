"""Shared fixtures: a real ``redis-server`` on 127.0.0.1 (no skip: a missing redis-server fails)."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _state_kit import BACKENDS, WALL
from redis_server import RedisServer

from policyrouter.state.base import StateBackend


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (per xdist worker); tests use distinct key prefixes."""
    with tempfile.TemporaryDirectory(prefix="pr-redis-") as d:
        server = RedisServer(Path(d)).start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


_prefixes = itertools.count(1)


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to the test, so tests sharing the server never see each other's keys."""
    return f"t{os.getpid()}n{next(_prefixes)}"


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    """One state backend of each kind: memory, a SQLite file, and Redis (its scripts on the test's
    times, through a FakeClock), closed after the test."""
    from policyrouter.state.memory import MemoryState
    from policyrouter.state.redis import RedisState
    from policyrouter.state.sqlite import SqliteState
    from policyrouter.testing.clock import FakeClock

    backend: StateBackend
    if request.param == "memory":
        backend = MemoryState()
    elif request.param == "sqlite":
        backend = SqliteState(tmp_path / "state.sqlite")
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        backend = RedisState(url, key_prefix=prefix, clock=FakeClock(wall_start=WALL))
    yield backend
    backend.close()
