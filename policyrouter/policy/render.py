"""Render diagnostics for people (text), machines (json) and CI (GitHub annotations).

All three take the diagnostics and the :class:`SourceMap` they point into, sort the
diagnostics by location, and show file paths relative to the current directory when
the file is under it (as given otherwise), so output is stable across machines.

Text looks like a compiler::

    policies/app.yaml:12:11: error[unknown-reference]: task `summarize` refers to unknown tier `smiple`
      12 |     tier: smiple
         |           ^^^^^^
      = hint: did you mean `simple`?

    1 error, 0 warnings
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence

from policyrouter.diagnostics import Diagnostic, mask
from policyrouter.policy.source import SourceMap

__all__ = ["FORMATS", "count", "display_path", "render", "render_github", "render_json", "render_text"]

FORMATS = ("text", "json", "github")


def display_path(file: str, cwd: str | None = None) -> str:
    """``file`` relative to ``cwd`` (default: the current directory) when under it, with ``/``."""
    if not file or file.startswith("<"):
        return file
    try:
        base = os.path.abspath(cwd if cwd is not None else os.getcwd())
        absolute = os.path.abspath(file)
        rel = os.path.relpath(absolute, base)
    except (ValueError, OSError):  # another drive on Windows, or cwd gone
        return file.replace(os.sep, "/")
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return file.replace(os.sep, "/")
    return rel.replace(os.sep, "/")


def count(diagnostics: Iterable[Diagnostic]) -> tuple[int, int]:
    """(errors, warnings)."""
    errors = warnings = 0
    for d in diagnostics:
        if d.severity == "error":
            errors += 1
        else:
            warnings += 1
    return errors, warnings


def _sorted(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=Diagnostic.sort_key)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors, warnings = count(diagnostics)
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"


# --------------------------------------------------------------------------- text


_TOKEN_END = ",]}#"
_MAX_SHOWN = 160


def _token_width(line: str, start: int) -> int:
    """Width of the YAML token starting at 0-based ``start`` (for the caret underline)."""
    if start >= len(line) or line[start].isspace():
        return 1
    quote = line[start]
    if quote in "\"'":
        end = line.find(quote, start + 1)
        return end - start + 1 if end > start else len(line) - start
    end = start
    while end < len(line):
        ch = line[end]
        if ch in _TOKEN_END or (ch == ":" and (end + 1 == len(line) or line[end + 1] in " \t")):
            break
        if ch == " " and end + 1 < len(line) and line[end + 1] == "#":
            break
        end += 1
    return max(1, len(line[start:end].rstrip()))


def _redact(text: str, cols: Iterable[int]) -> str:
    """``text`` with secrets masked (same length, so carets still line up).

    Masks the token at each 1-based column in ``cols`` (where ``literal-secret`` was
    reported) and anything matching a known credential pattern.
    """
    from policyrouter.policy.checks import secret_spans

    spans = list(secret_spans(text))
    for col in cols:
        start = col - 1
        if 0 <= start < len(text):
            width = _token_width(text, start)
            if text[start] in "\"'" and width >= 2:
                start, width = start + 1, width - 2
            spans.append((start, start + width))
    chars = list(text)
    for start, end in spans:
        chars[start:end] = mask(text[start:end])
    return "".join(chars)


def _snippet(d: Diagnostic, source: SourceMap, secrets: Mapping[tuple[str, int], list[int]]) -> list[str]:
    loc = d.location
    text = source.source_line(loc.file, loc.line) if loc.line else None
    if text is None:
        return []
    text = _redact(text.rstrip("\r\n"), secrets.get((loc.file, loc.line), ()))
    start = min(max(loc.col - 1, 0), len(text))
    width = _token_width(text, start)
    if len(text) > _MAX_SHOWN:  # a minified line: show a window around the column
        left = max(0, start - _MAX_SHOWN // 3)
        right = left + _MAX_SHOWN
        prefix, suffix = ("..." if left else ""), ("..." if right < len(text) else "")
        text = prefix + text[left:right] + suffix
        start = start - left + len(prefix)
        width = max(1, min(width, right - (start - len(prefix) + left)))
    gutter = str(loc.line)
    pad = " " * len(gutter)
    out = [f"  {gutter} | {text}"]
    if loc.col >= 1:
        # keep tabs so the caret lines up however the terminal renders them
        lead = "".join(ch if ch == "\t" else " " for ch in text[:start])
        out.append(f"  {pad} | {lead}{'^' * width}")
    return out


def render_text(diagnostics: Sequence[Diagnostic], source: SourceMap) -> str:
    """Compiler-style report: one block per diagnostic, then ``N errors, M warnings``.

    Source lines are shown with secrets masked: a CI log must not repeat a leaked key.
    """
    secrets: dict[tuple[str, int], list[int]] = {}
    for d in diagnostics:
        if d.code == "literal-secret" and d.location.line:
            secrets.setdefault((d.location.file, d.location.line), []).append(d.location.col)
    blocks: list[str] = []
    for d in _sorted(diagnostics):
        loc = d.location
        where = display_path(loc.file)
        if loc.line:
            where += f":{loc.line}:{loc.col}" if loc.col else f":{loc.line}"
        lines = [f"{where}: {d.severity}[{d.code}]: {d.message}", *_snippet(d, source, secrets)]
        if d.env is not None:
            lines.append(f"  = note: in environment `{d.env}`")
        if d.hint:
            lines.append(f"  = hint: {d.hint}")
        blocks.append("\n".join(lines))
    blocks.append(summary(diagnostics))
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------- json


def render_json(diagnostics: Sequence[Diagnostic], source: SourceMap | None = None, *, strict: bool = False) -> str:
    """``{"ok", "errors", "warnings", "diagnostics": [...]}``, stable key order, 2-space indent.

    ``ok`` is false when there are errors (or, with ``strict``, warnings).
    """
    errors, warnings = count(diagnostics)
    items = []
    for d in _sorted(diagnostics):
        item = d.to_dict()
        item["file"] = display_path(d.location.file)
        items.append(item)
    ok = errors == 0 and not (strict and warnings)
    doc = {"ok": ok, "errors": errors, "warnings": warnings, "diagnostics": items}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- github


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic], source: SourceMap | None = None) -> str:
    """GitHub Actions workflow commands: ``::error file=F,line=L,col=C,title=code::message``."""
    out = []
    for d in _sorted(diagnostics):
        loc = d.location
        props = [f"file={_escape_property(display_path(loc.file))}"]
        if loc.line:
            props.append(f"line={loc.line}")
            if loc.col:
                props.append(f"col={loc.col}")
        title = d.code if d.env is None else f"{d.code} ({d.env})"
        props.append(f"title={_escape_property(title)}")
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        out.append(f"::{d.severity} {','.join(props)}::{_escape_data(message)}")
    out.append(summary(diagnostics))
    return "\n".join(out) + "\n"


def render(fmt: str, diagnostics: Sequence[Diagnostic], source: SourceMap, *, strict: bool = False) -> str:
    """Render in ``fmt`` (one of ``FORMATS``)."""
    if fmt == "json":
        return render_json(diagnostics, source, strict=strict)
    if fmt == "github":
        return render_github(diagnostics, source)
    if fmt == "text":
        return render_text(diagnostics, source)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
