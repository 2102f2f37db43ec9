"""A SQLite ``state.path`` names one file wherever the process starts.

A relative path (and the default file name, when ``path`` is not set) is resolved at load
time against the directory of the policy file that declares it: ``state.path`` in the
base, or in the environment overlay that sets it. Two processes started in different
directories then share one file and enforce one budget. ``~`` is the user's home;
absolute paths and ``:memory:`` are kept as written.
"""

from __future__ import annotations

import os

from policyrouter.policy.models import Policy
from policyrouter.policy.source import SourceMap

__all__ = ["DEFAULT_SQLITE_FILE", "resolve_state_path"]

DEFAULT_SQLITE_FILE = "policyrouter-state.sqlite"
"""The SQLite file of a ``state: {backend: sqlite}`` without ``path``, beside the policy file."""


def resolve_state_path(policy: Policy, source: SourceMap) -> Policy:
    """``policy`` with its SQLite ``state.path`` absolute (other backends unchanged)."""
    state = policy.state
    if state.backend != "sqlite" or state.path == ":memory:":
        return policy
    written = state.path if state.path is not None else DEFAULT_SQLITE_FILE
    declared_in = source.locate(("state", "path") if state.path is not None else ("state", "backend")).file
    path = os.path.expanduser(written)
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(declared_in)), path)
    return policy.model_copy(update={"state": state.model_copy(update={"path": os.path.normpath(path)})})
