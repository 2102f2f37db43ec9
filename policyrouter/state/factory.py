"""Build the state backend a policy's ``state:`` section asks for."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from policyrouter.errors import ConfigurationError
from policyrouter.policy.statepath import DEFAULT_SQLITE_FILE
from policyrouter.state.base import StateBackend


def create_state(settings: Any, *, environ: Mapping[str, str] | None = None) -> StateBackend:
    """``settings`` is the policy's ``StateSettings``."""
    env = environ if environ is not None else os.environ
    backend = getattr(settings, "backend", "memory")
    if backend == "memory":
        from policyrouter.state.memory import MemoryState

        return MemoryState()
    if backend == "sqlite":
        from policyrouter.state.sqlite import SqliteState

        return SqliteState(settings.path or DEFAULT_SQLITE_FILE)  # a loaded policy's path is already absolute
    if backend == "redis":
        var = settings.url_env or "REDIS_URL"
        url = env.get(var)
        if not url:
            raise ConfigurationError(f"state backend redis needs its URL in environment variable {var}")
        from policyrouter.state.redis import RedisState

        return RedisState(url, key_prefix=settings.key_prefix, on_unavailable=settings.on_unavailable)
    raise ConfigurationError(f"unknown state backend {backend!r}")
