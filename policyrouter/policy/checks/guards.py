"""Input guards: patterns compile, and logged content is redacted."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.source import PathKey

__all__ = ["check_guards"]


def check_guards(ctx: Context) -> Iterator[Diagnostic]:
    """Guard patterns compile; logged content is redacted."""
    for t_name, task in ctx.policy.tasks.items():
        guards = task.guards
        rules: list[tuple[PathKey, str, str]] = []
        if guards is not None:
            rules += [(("tasks", t_name, "guards", "block", i), r.name, r.regex) for i, r in enumerate(guards.block)]
            if guards.redact is not None:
                rules += [
                    (("tasks", t_name, "guards", "redact", "patterns", i), r.name, r.regex)
                    for i, r in enumerate(guards.redact.patterns)
                ]
        for path, name, regex in rules:
            try:
                re.compile(regex)
            except re.error as exc:
                where = f" at position {exc.pos}" if exc.pos is not None else ""
                yield ctx.diag(
                    "error",
                    "invalid-regex",
                    f"task `{t_name}`: pattern `{name}` is not a valid regular expression: {exc.msg}{where}",
                    (*path, "regex"),
                    "patterns use Python `re` syntax; in YAML, single-quote them so backslashes stay as written",
                )
        if task.log_content and (guards is None or guards.redact is None):
            yield ctx.diag(
                "warning",
                "log-content-unredacted",
                f"task `{t_name}` logs prompt and answer text without redaction",
                ("tasks", t_name, "log_content"),
                "add `guards: {redact: {}}` (emails, phones and cards by default), or turn log_content off",
                key=True,
            )
