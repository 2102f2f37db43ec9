"""Diagnostics: one problem found in a policy, with where it is and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]

MAX_SHOWN = 80
"""Characters of a value from a file that a message echoes (see :func:`excerpt`)."""

MAX_TEXT = 1000
"""Characters of a diagnostic's message or hint; longer ones are cut when made."""


def excerpt(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and an ellipsis.

    Every value a message echoes from a file goes through here, so a 900 KB line or a
    file read by mistake (``/etc/passwd`` behind a symlink) is never printed whole.
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mask(text: str) -> str:
    """``text`` masked to the same length: its first 3 characters kept when it is over 6."""
    return text[:3] + "*" * (len(text) - 3) if len(text) > 6 else "*" * len(text)


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A position in a policy file. ``line`` and ``col`` are 1-based; 0 means unknown."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a policy.

    ``code`` is stable (documented in the README) so CI filters and tests can rely on it.
    ``path`` is the policy path (``tasks.summarize.tier``). ``hint`` says how to fix it.
    ``env`` names the environment whose merged policy shows the problem (None: base).
    """

    severity: Severity
    code: str
    message: str
    location: Location
    path: str = ""
    hint: str = ""
    env: str | None = field(default=None)

    def __post_init__(self) -> None:
        # the backstop for an echo that skipped excerpt(): no message or hint is unbounded
        if len(self.message) > MAX_TEXT:
            object.__setattr__(self, "message", excerpt(self.message, MAX_TEXT))
        if len(self.hint) > MAX_TEXT:
            object.__setattr__(self, "hint", excerpt(self.hint, MAX_TEXT))

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.location.file, self.location.line, self.location.col, self.code, self.message)

    def one_line(self) -> str:
        return f"{self.location}: {self.severity}[{self.code}]: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "col": self.location.col,
            "path": self.path,
            "hint": self.hint,
            "env": self.env,
        }
