"""Source positions of a loaded policy: policy path -> ``file:line:col``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from policyrouter.diagnostics import Location

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Where every node of a (merged) policy came from.

    ``values[path]`` is the position of the value node at ``path``;
    ``keys[path]`` the position of the mapping key that introduced it.
    ``lines[file]`` holds the file's source lines, for caret displays.
    """

    values: Mapping[PathKey, Location] = field(default_factory=dict)
    keys: Mapping[PathKey, Location] = field(default_factory=dict)
    lines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_file: str = "<policy>"

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        """Position of ``path``; falls back to the nearest known ancestor, then the file."""
        p = tuple(path)
        while True:
            if key and p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not key and p in self.keys:
                return self.keys[p]
            if not p:
                return Location(self.default_file)
            p = p[:-1]

    def source_line(self, file: str, line: int) -> str | None:
        src = self.lines.get(file)
        if src is None or line < 1 or line > len(src):
            return None
        return src[line - 1]


def dotted(path: PathKey) -> str:
    """``("tasks", "summarize", "routes", 0, "tier")`` -> ``tasks.summarize.routes[0].tier``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
