"""Open a state backend from a URL: ``sqlite:///path``, ``sqlite:path``, ``redis://host:port/db?key_prefix=app``.

For the commands that inspect a running deployment's state (``spend``, ``status``): a
SQLite file that does not exist is an error, never a new empty database reported as
"nothing spent"."""

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
        return _sqlite(path)
    if url.endswith((".sqlite", ".sqlite3", ".db")):
        return _sqlite(url)
    raise ConfigurationError(
        f"unsupported state URL {url!r}: use sqlite:///path/to/file.sqlite or redis://host:port/db?key_prefix=app"
    )


def _sqlite(path: str) -> StateBackend:
    import os

    if not os.path.isfile(path):
        raise ConfigurationError(f"no state file at {path!r}: point --state at the sqlite file the router writes")
    from policyrouter.state.sqlite import SqliteState

    return SqliteState(path)
