"""Open the queue engine beside the policy's state: the same SQLite file, or the same Redis."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from policyrouter.errors import ConfigurationError
from policyrouter.policy.statepath import DEFAULT_SQLITE_FILE
from policyrouter.queue.base import QueueEngine, QueueView, view_of

__all__ = ["create_queue", "open_queue", "views"]


def views(plan: Any) -> dict[str, QueueView]:
    """The plan's queues, by name."""
    return {name: view_of(name, spec) for name, spec in plan.queues.items()}


def create_queue(settings: Any, *, environ: Mapping[str, str] | None = None) -> QueueEngine:
    """The engine for a policy's ``StateSettings``: queues live where the state lives."""
    env = environ if environ is not None else os.environ
    backend = getattr(settings, "backend", "memory")
    if backend == "sqlite":
        from policyrouter.queue.sqlite import SqliteQueue

        return SqliteQueue(settings.path or DEFAULT_SQLITE_FILE)
    if backend == "redis":
        var = settings.url_env or "REDIS_URL"
        url = env.get(var)
        if not url:
            raise ConfigurationError(f"the redis queue needs its URL in environment variable {var}")
        from policyrouter.queue.redis import RedisQueue

        return RedisQueue(url, key_prefix=settings.key_prefix)
    raise ConfigurationError(
        "queues need a store that the submitting process and the workers share: set `state: {backend: sqlite}` "
        "(one machine) or `state: {backend: redis}` (many hosts), or pass Router(queue=SqliteQueue(path))"
    )


def open_queue(url: str, settings: Any | None = None) -> QueueEngine:
    """The queue at a ``--state`` URL (``sqlite:///path``, ``redis://...``)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from policyrouter.queue.redis import RedisQueue

        return RedisQueue(url, key_prefix=settings.key_prefix if settings is not None else "policyrouter")
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        path = path[2:] if path.startswith("//") else path
    elif url.endswith((".sqlite", ".sqlite3", ".db")):
        path = url
    else:
        raise ConfigurationError(
            f"unsupported state URL {url!r}: use sqlite:///path/to/file.sqlite or redis://host:port/db"
        )
    if not os.path.isfile(path):
        raise ConfigurationError(f"no state file at {path!r}: point --state at the sqlite file the router writes")
    from policyrouter.queue.sqlite import SqliteQueue

    return SqliteQueue(path)
