"""The state backend: has what it needs, and sets nothing it ignores."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context

__all__ = ["check_state"]


def check_state(ctx: Context) -> Iterator[Diagnostic]:
    """The state backend has what it needs, and nothing it ignores."""
    state = ctx.policy.state
    if state.backend == "redis" and not state.url_env:
        yield ctx.diag(
            "error",
            "state-no-url",
            "state backend redis has no way to get its URL",
            ("state", "backend"),
            "set `url_env` to the environment variable holding the Redis URL (e.g. REDIS_URL)",
        )
    ignored = []
    if state.path is not None and state.backend != "sqlite":
        ignored.append("path")
    if state.url_env is not None and state.backend != "redis":
        ignored.append("url_env")
    for setting in ignored:
        yield ctx.diag(
            "warning",
            "state-setting-ignored",
            f"state `{setting}` is ignored by backend {state.backend}",
            ("state", setting),
            "remove it (in an environment overlay, set it to null)",
            key=True,
        )
