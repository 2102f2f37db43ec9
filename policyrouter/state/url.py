"""Open a deployment's state from outside it, for ``policyrouter spend`` and ``status``.

The state is the one ``--state URL`` names (``sqlite:///path``, ``sqlite:path``,
``redis://host:port/db``), else the one the policy's ``state:`` section names. Either way
the policy's settings apply: a Redis URL takes the policy's ``key_prefix`` (a
``?key_prefix=`` in the URL wins). A SQLite file that does not exist is an error, never a
new empty database reported as "nothing spent"; an unreachable Redis is an error, never
an empty local fallback. Memory state lives inside the serving process: there is nothing
to open from outside (``open_inspected`` returns ``None``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policyrouter.errors import ConfigurationError
from policyrouter.state.base import StateBackend

__all__ = ["MEMORY_NOT_INSPECTABLE", "Inspected", "open_inspected", "open_state"]

MEMORY_NOT_INSPECTABLE = (
    "the policy's state backend is memory: it lives inside the serving process and cannot be inspected "
    "from outside (use sqlite or redis state, pass --state URL, or call router.health() in the process)"
)


@dataclass(frozen=True)
class Inspected:
    """An opened state and where it is, for messages (a Redis URL without its password)."""

    state: StateBackend
    where: str


def open_state(url: str, settings: Any | None = None) -> StateBackend:
    """The state at ``url``; ``settings`` (a policy's ``StateSettings``) gives Redis its key prefix."""
    return _open_url(url, settings).state


def open_inspected(
    url: str | None, settings: Any | None, *, environ: Mapping[str, str] | None = None
) -> Inspected | None:
    """The state at ``url``, else the one ``settings`` names (``None``: memory, not inspectable)."""
    if url is not None:
        return _open_url(url, settings)
    if settings is None:
        raise ConfigurationError("no state to read: give a policy PATH or --state URL")
    if settings.backend == "sqlite":
        return _sqlite(settings.path, "the policy's state.path")
    if settings.backend == "redis":
        env = environ if environ is not None else os.environ
        var = settings.url_env or "REDIS_URL"
        if not env.get(var):
            raise ConfigurationError(
                f"the policy's redis state takes its URL from ${var}, which is not set: set it or pass --state URL"
            )
        return _redis(env[var], settings.key_prefix)
    return None


def _open_url(url: str, settings: Any | None) -> Inspected:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis(url, settings.key_prefix if settings is not None else "policyrouter")
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("//"):  # sqlite:///abs/path or sqlite://relative/path
            path = path[2:]
        return _sqlite(path, "--state")
    if url.endswith((".sqlite", ".sqlite3", ".db")):
        return _sqlite(url, "--state")
    raise ConfigurationError(
        f"unsupported state URL {url!r}: use sqlite:///path/to/file.sqlite or redis://host:port/db?key_prefix=app"
    )


def _redis(url: str, key_prefix: str) -> Inspected:
    from policyrouter.state.redis import RedisState, redact_url

    state = RedisState(url, key_prefix=key_prefix, on_unavailable="fail_closed")  # a ?key_prefix= in url wins
    return Inspected(state, f"redis {redact_url(url.split('?', 1)[0])} key prefix {state.key_prefix!r}")


def _sqlite(path: str, named_by: str) -> Inspected:
    if not os.path.isfile(path):
        raise ConfigurationError(
            f"no state file at {path!r} ({named_by}): point it at the sqlite file the router writes"
        )
    from policyrouter.state.sqlite import SqliteState

    return Inspected(SqliteState(path), f"sqlite {os.path.abspath(path)}")
