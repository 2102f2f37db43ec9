"""Open a state backend from a URL: ``sqlite:///path``, ``sqlite:path``, ``redis://host:port/db?key_prefix=app``."""

from __future__ import annotations

from policyrouter.errors import ConfigurationError
from policyrouter.state.base import StateBackend


def open_state(url: str) -> StateBackend:
    if url.startswith(("redis://", "rediss://", "unix://")):
        from policyrouter.state.redis import RedisState

        return RedisState(url)  # a key_prefix=... query parameter selects the application's keys
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("//"):  # sqlite:///abs/path or sqlite://relative/path
            path = path[2:]
        from policyrouter.state.sqlite import SqliteState

        return SqliteState(path)
    if url.endswith((".sqlite", ".sqlite3", ".db")):
        from policyrouter.state.sqlite import SqliteState

        return SqliteState(url)
    raise ConfigurationError(
        f"unsupported state URL {url!r}: use sqlite:///path/to/file.sqlite or redis://host:port/db?key_prefix=app"
    )
