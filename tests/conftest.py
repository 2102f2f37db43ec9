"""Shared fixtures: a real ``redis-server`` on 127.0.0.1 (no skip: a missing redis-server fails)."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer


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
