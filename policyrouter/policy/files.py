"""The one way the product reads a file: policies, ``$ref`` schemas, policy tests, traffic.

Every file gets the same protections, so none of them can hang, exhaust memory or end
in a traceback:

- **regular files only**: the file is opened with ``O_NONBLOCK`` (opening a FIFO does
  not wait for a writer) and checked with ``fstat`` on the open descriptor, so a
  directory, a FIFO, a device (``/dev/zero`` behind a symlink) or a file swapped for one
  after a check is refused before a byte is read, and the descriptor closed;
- **size**: checked from ``fstat`` before reading, and again while reading (a file that
  grows under us stops at the bound); line files bound each line instead;
- **structure**: YAML through :mod:`~policyrouter.policy.yamlsrc` (node, alias and depth
  bounds), JSON with the same depth bound counted before decoding;
- **diagnostics**: every refusal is a :class:`Diagnostic` naming the file (and
  ``line:col`` where there is one), raised as :class:`FileRefused` by the readers that
  return data, returned in a :class:`YamlDocument` by :func:`read_document`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.errors import PolicyRouterError
from policyrouter.policy.yamlsrc import MAX_DEPTH_DEFAULT, MAX_NODES_DEFAULT, YamlDocument, decode, load_yaml

__all__ = [
    "MAX_LINE_BYTES",
    "FileRefused",
    "json_depth_problem",
    "open_regular",
    "read_batches",
    "read_bytes",
    "read_document",
]

MAX_LINE_BYTES = 1 << 20
"""Longest line of a line-per-record file (traffic JSONL), in bytes."""

_CHUNK_BYTES = 1 << 22
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # not on Windows, where FIFOs do not block an open
_BINARY = getattr(os, "O_BINARY", 0)
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class FileRefused(PolicyRouterError):
    """A file that cannot or may not be read; ``.diagnostic`` says which and why."""

    kind = "file_refused"

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.one_line())
        self.diagnostic = diagnostic


def _refuse(code: str, message: str, location: Location, hint: str = "") -> FileRefused:
    return FileRefused(Diagnostic("error", code, message, location, hint=hint))


@contextmanager
def open_regular(
    path: str | os.PathLike[str], *, max_bytes: int | None, display: str | None = None
) -> Iterator[BinaryIO]:
    """``path`` opened for reading in binary, once it is known to be a regular file no
    larger than ``max_bytes`` (None: any size). Raises :class:`FileRefused`."""
    shown = os.fspath(path) if display is None else display
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        raise _refuse("file-not-found", f"no such file: {shown}", Location(shown)) from None
    except OSError as exc:
        raise _refuse("file-unreadable", f"cannot read {shown}: {exc.strerror or exc}", Location(shown)) from None
    try:  # checked on the raw descriptor: fdopen itself refuses a directory, with a traceback
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = _KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
            raise _refuse("file-unreadable", f"{shown} is not a regular file ({what})", Location(shown))
        if max_bytes is not None and info.st_size > max_bytes:
            raise _too_large(shown, max_bytes)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)  # no refusal leaks the descriptor
        raise
    with handle:
        yield handle


def _too_large(shown: str, max_bytes: int) -> FileRefused:
    return _refuse(
        "file-too-large",
        f"{shown} is larger than the limit of {max_bytes} bytes",
        Location(shown),
        hint="split it into several files, or raise the limit (max_bytes)",
    )


def read_bytes(path: str | os.PathLike[str], *, max_bytes: int, display: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. Raises :class:`FileRefused`."""
    shown = os.fspath(path) if display is None else display
    with open_regular(path, max_bytes=max_bytes, display=shown) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _refuse("file-unreadable", f"cannot read {shown}: {exc.strerror or exc}", Location(shown)) from None
    if len(data) > max_bytes:  # it grew after the size check
        raise _too_large(shown, max_bytes)
    return data


def read_batches(
    path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES, display: str | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of a regular file of any size, streamed in batches of about 4 MB:
    ``(bytes read so far, lines without their "\\n")``. A line over ``max_line_bytes`` is
    ``line-too-long`` at its line number. Raises :class:`FileRefused`."""
    shown = os.fspath(path) if display is None else display
    with open_regular(path, max_bytes=None, display=shown) as handle:
        carry = b""
        done = lineno = 0
        while True:
            chunk = handle.read(_CHUNK_BYTES)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)  # at the end, the last line needs no newline
            lines = data[:cut].split(b"\n")
            if chunk or lines[-1] == b"":
                lines.pop()  # what follows the last newline
            carry = data[cut:]
            if lines and max(map(len, lines)) > max_line_bytes:
                index = next(i for i, line in enumerate(lines) if len(line) > max_line_bytes)
                raise _line_too_long(shown, lineno + index + 1, max_line_bytes)
            if len(carry) > max_line_bytes:
                raise _line_too_long(shown, lineno + len(lines) + 1, max_line_bytes)
            lineno += len(lines)
            done += cut
            if lines:
                yield done, lines
            if not chunk:
                return


def _line_too_long(shown: str, line: int, limit: int) -> FileRefused:
    return _refuse("line-too-long", f"line {line} is longer than {limit} bytes", Location(shown, line, 1))


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth_problem(text: str, file: str, *, max_depth: int = MAX_DEPTH_DEFAULT, line: int = 1) -> Diagnostic | None:
    """``json-too-deep`` where ``text`` (JSON starting at ``line``) nests deeper than
    ``max_depth``, else None. Counted before decoding: the decoder recurses."""
    if text.count("[") + text.count("{") <= max_depth:
        return None  # too few brackets to nest that deep: the common case costs two counts
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                start = match.start()
                row = line + text.count("\n", 0, start)
                col = start - (text.rfind("\n", 0, start) + 1) + 1
                return Diagnostic(
                    "error",
                    "json-too-deep",
                    f"the document nests deeper than {max_depth} levels",
                    Location(file, row, col),
                )
        elif token in "]}":
            depth -= 1
    return None


def _load_json(data: bytes, file: str, max_depth: int) -> YamlDocument:
    text, problem = decode(data, file)
    if problem is not None:
        return YamlDocument(file, None, diagnostics=(problem,))
    lines = tuple(text.splitlines())
    problem = json_depth_problem(text, file, max_depth=max_depth)
    if problem is None:
        try:
            return YamlDocument(file, json.loads(text), lines=lines)
        except json.JSONDecodeError as exc:
            problem = Diagnostic(
                "error", "json-syntax", f"invalid JSON: {excerpt(exc.msg)}", Location(file, exc.lineno, exc.colno)
            )
        except ValueError:  # an integer past the interpreter's digit limit
            problem = Diagnostic("error", "json-syntax", "invalid JSON: a number too large", Location(file, 1, 1))
    return YamlDocument(file, None, lines=lines, diagnostics=(problem,))


def read_document(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    max_nodes: int = MAX_NODES_DEFAULT,
    max_depth: int = MAX_DEPTH_DEFAULT,
    display: str | None = None,
    as_json: bool = False,
) -> YamlDocument:
    """A YAML (or, with ``as_json``, JSON) file read safely; never raises on a bad file:
    a refusal is the document's diagnostic and ``data`` is None."""
    shown = os.fspath(path) if display is None else display
    try:
        raw = read_bytes(path, max_bytes=max_bytes, display=shown)
    except FileRefused as refused:
        return YamlDocument(shown, None, diagnostics=(refused.diagnostic,))
    if as_json:
        return _load_json(raw, shown, max_depth)
    return load_yaml(raw, shown, max_nodes=max_nodes, max_depth=max_depth)
