"""The one "did you mean" lookup of the package: the defined name closest to a misspelt one."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest"]


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely meant: the same name in another case, else the
    nearest by ``difflib`` (ratio >= 0.6), else ``None``."""
    names = list(candidates)
    lowered = word.lower()
    for name in names:
        if name.lower() == lowered:
            return name
    import difflib  # only on an error path

    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None
