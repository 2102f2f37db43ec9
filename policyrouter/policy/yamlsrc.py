"""Safe YAML -> plain data, with the source position of every node.

:func:`load_yaml` reads one policy file's bytes and returns a :class:`YamlDocument`:
plain Python data (``dict``/``list``/``str``/``int``/``float``/``bool``/``None``), the
``file:line:col`` of every value and every mapping key keyed by policy path
(``("tasks", "summarize", "tier")``, list indices as ints), and the diagnostics found.

How it works, and why it is safe:

1. The bytes are decoded as UTF-8 (a leading BOM is dropped).
2. PyYAML's *parser* (libyaml when available) turns the text into events; we compose our
   own small node tree from them with an explicit stack. We do not use ``yaml.compose``:
   libyaml's composer recurses in C and crashes the interpreter on deeply nested input
   (``[[[[...`` a few hundred kilobytes long), and the pure-Python one is slow.
   Nesting deeper than ``max_depth`` is ``yaml-too-deep``: we count collection starts on
   the event stream ourselves. libyaml (0.2.6 and later) has a nesting limit of its own
   that its scanner hits while reading ahead, before our count does; so when libyaml
   fails, the same events are read again from PyYAML's pure-Python parser (no such
   limit; it is what runs when libyaml is absent), and its verdict is the one reported.
   If that parser fails too, libyaml's syntax error is reported.
3. We construct plain data from the nodes ourselves. Only the standard safe tags are
   accepted (null, bool, int, float, str, seq, map; a timestamp stays the string it was
   written as); anything else (``!!python/object``, ``!!binary``, ``!!set``, ``!custom``)
   is ``yaml-tag``. PyYAML's constructors never run on the document. Numbers follow
   YAML 1.1 with two exceptions: a base-60 form (``1:30``) is text, not 90, and an
   integer beyond 64 bits or a finite float that overflows to infinity is
   ``yaml-number-too-large`` (checked before converting, so 5,000 digits cost nothing).
4. Aliases are expanded by visiting the anchored node again, and every node visited
   counts towards ``max_nodes``; past it we stop with ``yaml-alias-limit`` (a "billion
   laughs" document is rejected after ``max_nodes`` visits, in bounded memory).
   An alias inside its own anchor is ``yaml-alias-cycle``.
5. YAML merge keys (``<<: *defaults``) are ``yaml-merge``: a policy reads the same to
   every YAML tool, and the merge key is not part of YAML 1.2. An alias (``*name``) still
   reuses a whole value.

Diagnostics come in two kinds. *Fatal* ones (encoding, syntax, tab, empty, not a mapping,
tag, merge, number too large, alias limit, depth) leave :attr:`YamlDocument.data` as ``None``. ``yaml-duplicate-key``
(the first value is kept) and ``yaml-key-type`` (the entry is dropped) still return data,
so the policy's other problems are reported in the same run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.policy.source import PathKey

__all__ = [
    "MAX_DEPTH_DEFAULT",
    "MAX_NODES_DEFAULT",
    "Positions",
    "RawPosition",
    "YamlDocument",
    "decode",
    "load_yaml",
    "reads_as_number",
]

MAX_NODES_DEFAULT = 100_000
MAX_DEPTH_DEFAULT = 200

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_P = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR = _P + "null", _P + "bool", _P + "int", _P + "float", _P + "str"
_TIMESTAMP, _MERGE, _VALUE = _P + "timestamp", _P + "merge", _P + "value"
_SEQ, _MAP = _P + "seq", _P + "map"
_SCALAR_TAGS = frozenset({_NULL, _BOOL, _INT, _FLOAT, _STR, _TIMESTAMP, _MERGE, _VALUE})

_SCALAR, _SEQUENCE, _MAPPING = 0, 1, 2

# A composed node: (kind, tag, value, line, col). ``value`` is the scalar text, the list
# of child nodes (sequence), or the flat list [key0, value0, key1, value1, ...] (mapping).
_Node = tuple[int, str, Any, int, int]

_IMPLICIT: dict[str | None, list[tuple[str, re.Pattern[str]]]] = Resolver.yaml_implicit_resolvers

_TAG_NAMES = {_NULL: "null", _BOOL: "a boolean", _INT: "an integer", _FLOAT: "a number"}

# The largest integer a policy may write: what SQLite and every counter can hold.
_INT_MAX = (1 << 63) - 1
_INT_CHARS = 70  # longer than any integer literal up to _INT_MAX in any base (0b + 63 digits)


RawPosition = tuple[str, int, int]
"""``(file, line, col)`` of one node, as :class:`Positions` stores it."""


class Positions(Mapping[PathKey, Location]):
    """Policy path -> :class:`Location`, built lazily from raw ``(file, line, col)`` tuples.

    Loading records one position per node and most are never looked at, so the
    ``Location`` objects are only created on access. ``raw`` is the underlying dict
    (the loader merges and overlays these cheaply).
    """

    __slots__ = ("raw",)

    def __init__(self, raw: dict[PathKey, RawPosition] | None = None) -> None:
        self.raw: dict[PathKey, RawPosition] = {} if raw is None else raw

    def __getitem__(self, path: PathKey) -> Location:
        file, line, col = self.raw[path]
        return Location(file, line, col)

    def __contains__(self, path: object) -> bool:
        return path in self.raw

    def __iter__(self) -> Iterator[PathKey]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Positions({len(self.raw)} paths)"


@dataclass(frozen=True)
class YamlDocument:
    """The result of :func:`load_yaml` for one file.

    ``data`` is the plain data, or ``None`` when a fatal problem stopped the load.
    ``values``/``keys`` map a policy path to the position of its value node / its
    mapping key (see :class:`policyrouter.policy.source.SourceMap`). ``lines`` are the
    file's text lines (for caret displays).
    """

    file: str
    data: Any  # None when a fatal problem stopped the load
    values: Positions = field(default_factory=Positions)
    keys: Positions = field(default_factory=Positions)
    lines: tuple[str, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        """True when data was produced (non-fatal diagnostics may still be present)."""
        return self.data is not None


class _Fatal(Exception):
    """Internal: stops composing or constructing at the first fatal problem."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def load_yaml(
    data: bytes,
    file: str,
    *,
    max_nodes: int = MAX_NODES_DEFAULT,
    max_depth: int = MAX_DEPTH_DEFAULT,
) -> YamlDocument:
    """Load one YAML policy file safely; never raises on bad input (see module doc)."""
    text, problem = decode(data, file)
    if problem is not None:
        return YamlDocument(file, None, diagnostics=(problem,))
    lines = tuple(_LINE_BREAK.split(text))
    try:
        root = _compose_text(text, file, lines, max_nodes, max_depth)
    except _Fatal as fatal:
        return YamlDocument(file, None, lines=lines, diagnostics=(fatal.diagnostic,))
    if root is None or (root[0] == _SCALAR and root[1] == _NULL and root[2] == ""):
        empty = _error(
            "yaml-empty",
            "the policy file is empty (or holds only comments)",
            Location(file, 1, 1),
            hint="a policy file needs at least `version: 1`",
        )
        return YamlDocument(file, None, lines=lines, diagnostics=(empty,))
    if root[0] != _MAPPING:
        what = "a list" if root[0] == _SEQUENCE else f"a single value ({excerpt(root[2])!r})"
        not_mapping = _error(
            "yaml-not-mapping",
            f"the top level of a policy file must be a mapping of sections, not {what}",
            Location(file, root[3], root[4]),
            hint="start the file with `version: 1` and the sections "
            "(providers, models, tiers, tasks, ...) as top-level keys",
        )
        return YamlDocument(file, None, lines=lines, diagnostics=(not_mapping,))
    # Without aliases the builder visits at most as many nodes as were composed (checked
    # above), so running out of budget here means alias expansion.
    builder = _Builder(file, max_nodes, max_depth)
    try:
        value = builder.build(root, (), 0)
    except _Fatal as fatal:
        return YamlDocument(file, None, lines=lines, diagnostics=(*builder.diagnostics, fatal.diagnostic))
    out = None if builder.fatal else value
    return YamlDocument(
        file, out, Positions(builder.values), Positions(builder.keys), lines, tuple(builder.diagnostics)
    )


# --------------------------------------------------------------------------- decoding


def decode(data: bytes, file: str) -> tuple[str, Diagnostic | None]:
    """UTF-8 text of a file (a leading BOM dropped), or ``yaml-encoding`` naming the bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = data.count(b"\n", 0, offset) + 1
        col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        bad = data[offset : offset + 1].hex()
        hint = "re-save the file as UTF-8 (without a byte order mark, or with the UTF-8 one)"
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "the file looks like UTF-16; " + hint
        return "", _error(
            "yaml-encoding",
            f"the file is not valid UTF-8: byte 0x{bad} at offset {offset} (line {line})",
            Location(file, line, col),
            hint=hint,
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


# --------------------------------------------------------------------------- composing


def _compose_text(text: str, file: str, lines: tuple[str, ...], max_nodes: int, max_depth: int) -> _Node | None:
    """Text -> node tree through libyaml, or the pure-Python parser where libyaml gives up."""
    try:
        return _compose(_Loader(text), file, max_nodes, max_depth)
    except yaml.YAMLError as exc:
        syntax = _syntax_diagnostic(exc, file, text, lines)
    if _Loader is yaml.SafeLoader:
        raise _Fatal(syntax)
    # libyaml's own nesting limit can stop it before our depth count does: recount without it.
    try:
        return _compose(yaml.SafeLoader(text), file, max_nodes, max_depth)
    except yaml.YAMLError:
        raise _Fatal(syntax) from None


def _compose(loader: Any, file: str, max_nodes: int, max_depth: int) -> _Node | None:
    """Events -> node tree, iteratively. Returns the root (None: no document)."""
    composer = _Composer(file, max_nodes, max_depth)
    try:
        events: Iterator[Any] = iter(loader.get_event, None)
        for event in events:
            composer.feed(event)
    finally:
        loader.dispose()
    return composer.root[0] if composer.root else None


class _Composer:
    """The state of composing one stream: open collections, anchors, and the node and document counts."""

    __slots__ = (
        "anchors",
        "count",
        "documents",
        "file",
        "max_depth",
        "max_nodes",
        "open_anchors",
        "resolved",
        "root",
        "stack",
        "top",
    )

    def __init__(self, file: str, max_nodes: int, max_depth: int) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.root: list[_Node] = []  # children of the stream: the document's root node
        self.top = self.root  # children list of the innermost open collection
        self.stack: list[tuple[list[_Node], str | None, _Node]] = []
        self.anchors: dict[str, _Node] = {}
        self.open_anchors: set[str] = set()
        self.resolved: dict[str, str] = {}  # plain scalar -> its tag (values repeat)
        self.documents = 0
        self.count = 0

    def feed(self, event: Any) -> None:
        """Take one parser event; stream and document ends need nothing."""
        kind = type(event)
        if kind is ScalarEvent:
            self._add(self._scalar(event))
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            self._open(event, kind is MappingStartEvent)
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            self._close()
        elif kind is AliasEvent:
            self._add(self._alias(event))
        elif kind is DocumentStartEvent:
            self._start_document(event)

    def _scalar(self, event: Any) -> _Node:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._plain_tag(event.value) if event.implicit[0] else _STR
        mark = event.start_mark
        node: _Node = (_SCALAR, tag, event.value, mark.line + 1, mark.column + 1)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def _plain_tag(self, value: str) -> str:
        tag = self.resolved.get(value)
        if tag is None:
            tag = _resolve_plain(value)
            self.resolved[value] = tag
        return tag

    def _open(self, event: Any, is_map: bool) -> None:
        """Start a mapping or sequence: later nodes go into it until its end event."""
        tag = event.tag
        if tag is None or tag == "!":
            tag = _MAP if is_map else _SEQ
        mark = event.start_mark
        children: list[_Node] = []
        node: _Node = (_MAPPING if is_map else _SEQUENCE, tag, children, mark.line + 1, mark.column + 1)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.top.append(node)
        self.stack.append((self.top, event.anchor, node))
        self.top = children
        if len(self.stack) > self.max_depth:
            raise self._fatal(
                "yaml-too-deep",
                f"the document nests deeper than {self.max_depth} levels",
                node[3],
                node[4],
                "policies need a handful of levels; flatten the structure",
            )
        self.count += 1

    def _close(self) -> None:
        """End the innermost collection; its anchor, if any, becomes usable."""
        self.top, anchor, done = self.stack.pop()
        if anchor is not None:
            self.anchors[anchor] = done
            self.open_anchors.discard(anchor)

    def _alias(self, event: Any) -> _Node:
        """The anchored node an alias names; an alias inside its own anchor is a cycle."""
        target = self.anchors.get(event.anchor)
        if target is not None:
            return target
        mark = event.start_mark
        cyclic = event.anchor in self.open_anchors
        if cyclic:
            raise self._fatal(
                "yaml-alias-cycle",
                f"alias `*{event.anchor}` is used inside its own anchor",
                mark.line + 1,
                mark.column + 1,
                "a recursive structure cannot be a policy",
            )
        raise self._fatal(
            "yaml-syntax",
            f"alias `*{event.anchor}` refers to no anchor `&{event.anchor}` above it",
            mark.line + 1,
            mark.column + 1,
            "define the anchor before using it",
        )

    def _start_document(self, event: Any) -> None:
        """A policy file holds one document: a second one is an error."""
        self.documents += 1
        if self.documents > 1:
            mark = event.start_mark
            raise self._fatal(
                "yaml-syntax",
                "a policy file holds one YAML document, but a second one starts here",
                mark.line + 1,
                mark.column + 1,
                "split it into two files, or remove the `---` separator",
            )

    def _add(self, node: _Node) -> None:
        """Place a scalar or alias in the open collection, within the node budget."""
        self.top.append(node)
        self.count += 1
        if self.count > self.max_nodes:
            raise self._fatal(
                "yaml-too-many-nodes",
                f"the document has more than {self.max_nodes} nodes",
                node[3],
                node[4],
                "split the policy into several files in one directory",
            )

    def _fatal(self, code: str, message: str, line: int, col: int, hint: str) -> _Fatal:
        """The problem that stops composing, at ``line``:``col`` of this file."""
        return _Fatal(_error(code, message, Location(self.file, line, col), hint=hint))


def reads_as_number(text: str) -> bool:
    """Whether a policy file reads ``text``, written without quotes, as a number."""
    return _resolve_plain(text) in (_INT, _FLOAT)


def _resolve_plain(value: str) -> str:
    for tag, regexp in _IMPLICIT.get(value[:1], []) + _IMPLICIT.get(None, []):
        if regexp.match(value):
            # YAML 1.1's base-60 numbers (1:30 is 90) are text, as in YAML 1.2
            return _STR if tag in (_INT, _FLOAT) and ":" in value else tag
    return _STR


def _syntax_diagnostic(exc: yaml.YAMLError, file: str, text: str, lines: tuple[str, ...]) -> Diagnostic:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        col = mark.column + 1 if mark is not None else 0
        for candidate in dict.fromkeys((line, line - 1)):
            tab = _leading_tab(lines, candidate)
            if tab:
                return _error(
                    "yaml-tab",
                    "a tab character is used for indentation",
                    Location(file, candidate, tab),
                    hint="YAML forbids tabs for indentation; use spaces",
                )
        opened = _unclosed_quote(text, lines, (mark.line, mark.column) if mark is not None else None)
        if opened is not None:
            return opened.diagnostic(file)
        parts = [p for p in (exc.context, exc.problem) if p]
        message = "; ".join(parts) or "invalid YAML"
        if exc.context and exc.context_mark is not None and mark is not exc.context_mark:
            message += f" (the construct started at line {exc.context_mark.line + 1})"
        return _error("yaml-syntax", f"invalid YAML: {message}", Location(file, line, col))
    if isinstance(exc, yaml.reader.ReaderError):
        position = exc.position
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        return _error(
            "yaml-syntax",
            f"invalid character in YAML: {exc.reason} (#x{exc.character:04x})"
            if isinstance(exc.character, int)
            else f"invalid character in YAML: {exc.reason}",
            Location(file, line, col),
            hint="remove the control character",
        )
    return _error("yaml-syntax", f"invalid YAML: {exc}", Location(file))


# a line that reads as a mapping entry (``  tier: simple``, ``- name: x``): text a quoted string should not hold
_KEY_LINE = re.compile(r"^[ ]*(?:-[ ]+)?[A-Za-z0-9_][A-Za-z0-9_.-]*:(?:[ \t]|$)")


@dataclass(frozen=True)
class _OpenQuote:
    """A quoted string left unclosed: where its quote is, and the line it ran on to (0: the end of the file)."""

    line: int
    col: int
    quote: str
    ran_to: int

    def diagnostic(self, file: str) -> Diagnostic:
        until = f"line {self.ran_to}" if self.ran_to else "the end of the file"
        return _error(
            "yaml-syntax",
            f"invalid YAML: the string opened here with `{self.quote}` is not closed on its line, "
            f"so it runs on to {until}",
            Location(file, self.line, self.col),
            hint=f"close the string with `{self.quote}` on line {self.line}; for text over several "
            "lines, use a block scalar (`|` or `>`)",
        )


def _unclosed_quote(text: str, lines: tuple[str, ...], error: tuple[int, int] | None) -> _OpenQuote | None:
    """The quoted string whose missing closing quote caused a syntax error at ``error`` (0-based line, col).

    Read from the scanner's tokens and marks, never from its messages. The string opens with
    a quote, holds a line that reads as a mapping entry no deeper than the line it opened on,
    and either ran to the end of the file (the scanner stopped inside it) or is the last
    string before the error, which is on the line it ended (its quote closed on the next
    string's opening quote).
    """
    scanner: Any = yaml.SafeLoader(text)  # the pure-Python scanner: marks only, on an error path
    opened: Any = None  # (start mark, end mark) of the suspect string
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if error is not None and (token.end_mark.line, token.end_mark.column) > error:
                break
            if isinstance(token, yaml.ScalarToken) and token.style in ('"', "'"):
                opened = token.start_mark, token.end_mark
    except yaml.MarkedYAMLError as exc:
        start, end = exc.context_mark, exc.problem_mark
        opened = (start, end) if start is not None and end is not None and end.index >= len(text) else None
    finally:
        scanner.dispose()
    if opened is None:
        return None
    start, end = opened
    quote = _char_at(lines, start.line, start.column)
    if quote not in ('"', "'") or (end.index < len(text) and (error is None or error[0] != end.line)):
        return None
    depth = len(lines[start.line]) - len(lines[start.line].lstrip(" "))
    entries = (lines[i] for i in range(start.line + 1, min(end.line + 1, len(lines))))
    if not any(_KEY_LINE.match(line) and len(line) - len(line.lstrip(" ")) <= depth for line in entries):
        return None
    return _OpenQuote(start.line + 1, start.column + 1, quote, 0 if end.index >= len(text) else end.line + 1)


def _char_at(lines: tuple[str, ...], line: int, col: int) -> str:
    """The character at 0-based ``line``/``col``, or ""."""
    return lines[line][col : col + 1] if 0 <= line < len(lines) else ""


def _leading_tab(lines: tuple[str, ...], line: int) -> int:
    """1-based column of a tab in ``line``'s leading whitespace, or 0."""
    if not 1 <= line <= len(lines):
        return 0
    text = lines[line - 1]
    stripped = len(text) - len(text.lstrip(" \t"))
    index = text.find("\t", 0, stripped)
    return index + 1 if index >= 0 else 0


# --------------------------------------------------------------------------- constructing

_Scalar = Union[str, int, float, bool, None]


class _Builder:
    """Node tree -> plain data, recording positions and counting visits.

    The common cases (string keys, scalar values) are handled inline: this loop runs once
    per node of every policy file, so it is kept free of avoidable calls.
    """

    def __init__(self, file: str, budget: int, max_depth: int) -> None:
        self.file = file
        self.budget = budget
        self.max_depth = max_depth
        self.values: dict[PathKey, RawPosition] = {}
        self.keys: dict[PathKey, RawPosition] = {}
        self.diagnostics: list[Diagnostic] = []
        self.fatal = False
        self._constructor = SafeConstructor()

    def build(self, node: _Node, path: PathKey, depth: int) -> Any:
        if node[0] == _SCALAR:
            self._count(node)
            self.values[path] = (self.file, node[3], node[4])
            return self._scalar(node)
        return self._collection(node, path, depth)

    def _count(self, node: _Node) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _Fatal(
                _error(
                    "yaml-alias-limit",
                    "the document expands to too many nodes through aliases (`*name`)",
                    Location(self.file, node[3], node[4]),
                    hint='this looks like an alias bomb ("billion laughs"); write the values out '
                    "or reuse them with fewer nested aliases",
                )
            )

    def _collection(self, node: _Node, path: PathKey, depth: int) -> Any:
        self._count(node)
        if depth >= self.max_depth:
            raise _Fatal(
                _error(
                    "yaml-too-deep",
                    f"the document nests deeper than {self.max_depth} levels (aliases expanded)",
                    Location(self.file, node[3], node[4]),
                    hint="policies need a handful of levels; flatten the structure",
                )
            )
        kind, tag, value, line, col = node
        self.values[path] = (self.file, line, col)
        if kind == _SEQUENCE:
            if tag != _SEQ:
                self._bad_tag(node)
            build = self.build
            return [build(child, (*path, index), depth + 1) for index, child in enumerate(value)]
        if tag != _MAP:
            self._bad_tag(node)
        return self._mapping(node, path, depth)

    def _mapping(self, node: _Node, path: PathKey, depth: int) -> dict[str, Any]:
        """A mapping's entries: the first of a duplicated key wins; a merge key is an error."""
        file, values, keys = self.file, self.values, self.keys
        out: dict[str, Any] = {}
        items: list[_Node] = node[2]
        first: dict[str, _Node] = {}
        for index in range(0, len(items), 2):
            key_node, value_node = items[index], items[index + 1]
            key: str | None
            if key_node[0] == _SCALAR and key_node[1] == _STR:
                key = key_node[2]
                self.budget -= 1
            elif key_node[0] == _SCALAR and key_node[1] == _MERGE:
                self._merge_key(key_node)
                continue
            else:
                key = self._key(key_node)
                if key is None:
                    continue
            if key in first:
                self.diagnostics.append(
                    _error(
                        "yaml-duplicate-key",
                        f"duplicate key `{excerpt(key)}` (first defined at line {first[key][3]})",
                        Location(file, key_node[3], key_node[4]),
                        hint="a key may appear once per mapping; the first value is used",
                    )
                )
                continue
            first[key] = key_node
            child = (*path, key)
            keys[child] = (file, key_node[3], key_node[4])
            if value_node[0] == _SCALAR:
                self._count(value_node)
                values[child] = (file, value_node[3], value_node[4])
                out[key] = value_node[2] if value_node[1] == _STR else self._scalar(value_node)
            else:
                out[key] = self._collection(value_node, child, depth + 1)
        return out

    def _merge_key(self, node: _Node) -> None:
        self._fail(
            node,
            "yaml-merge",
            "merge keys (`<<`) are not allowed in a policy file",
            hint="write the keys out; an alias (`*name`) can still reuse a whole value, "
            'and a key meant as text is quoted: `"<<":`',
        )

    def _key(self, node: _Node) -> str | None:
        kind, tag, value, line, col = node
        if kind == _SCALAR and tag in (_STR, _TIMESTAMP, _VALUE):
            self.budget -= 1
            return str(value)
        where = Location(self.file, line, col)
        if kind != _SCALAR:
            self.diagnostics.append(
                _error(
                    "yaml-key-type",
                    "a mapping key must be a plain string, not a " + ("list" if kind == _SEQUENCE else "mapping"),
                    where,
                )
            )
            return None
        if tag in _TAG_NAMES:
            what = _TAG_NAMES[tag]
            value = excerpt(value)
            if tag == _BOOL:
                as_bool = "true" if value.lower() in ("yes", "true", "on") else "false"
                hint = (
                    f"YAML 1.1 reads `{value}` as the boolean {as_bool} (so are yes/no/on/off/true/false);"
                    f' quote the key: `"{value}":`'
                )
            elif tag == _NULL:
                hint = f'`{value or "(empty)"}` is read as null; write a name, or quote it: `"{value}":`'
            else:
                hint = f'YAML reads `{value}` as {what}; quote the key: `"{value}":`'
            self.diagnostics.append(
                _error(
                    "yaml-key-type",
                    f"mapping key `{value}` is {what}, but policy keys must be strings",
                    where,
                    hint=hint,
                )
            )
            return None
        self._bad_tag(node)
        return None

    def _scalar(self, node: _Node) -> _Scalar:
        tag: str = node[1]
        value: str = node[2]
        try:
            if tag in (_STR, _TIMESTAMP, _MERGE, _VALUE):
                return value
            if tag == _INT:
                return self._int(node)
            if tag == _FLOAT:
                return self._float(node)
            if tag == _BOOL:
                return bool(self._constructor.bool_values[value.lower()])
            if tag == _NULL:
                return None
        except (ValueError, KeyError, IndexError):
            what = _TAG_NAMES[tag].split()[-1]
            self._fail(node, "yaml-tag", f"`{excerpt(value)}` is not a valid {what} for tag `{_short(tag)}`")
            return None
        self._bad_tag(node)
        return None

    def _int(self, node: _Node) -> int | None:
        value: str = node[2]
        if value.isdigit() and (value[0] != "0" or value == "0") and len(value) < 19:
            return int(value)  # the common case, always within 64 bits
        if ":" in value:
            raise ValueError(value)  # base 60, only reachable through an explicit !!int tag
        if len(value) <= _INT_CHARS:
            number = int(self._constructor.construct_yaml_int(ScalarNode(_INT, value)))
            if -_INT_MAX <= number <= _INT_MAX:
                return number
        self._too_large(node, f"the integer is beyond what a policy can hold (±{_INT_MAX})")
        return None

    def _float(self, node: _Node) -> float | None:
        value: str = node[2]
        if ":" in value:
            raise ValueError(value)  # base 60, only reachable through an explicit !!float tag
        if value[-1:].isdigit() and "_" not in value:
            number = float(value)
        else:
            number = float(self._constructor.construct_yaml_float(ScalarNode(_FLOAT, value)))
        if math.isinf(number) and value[-1:].isdigit():  # written finite (not .inf), overflowed
            self._too_large(node, "the number overflows to infinity")
            return None
        return number

    def _too_large(self, node: _Node, why: str) -> None:
        value: str = node[2]
        self._fail(
            node,
            "yaml-number-too-large",
            f"`{excerpt(value)}` ({len(value)} characters): {why}",
            hint="write a smaller number; a value meant as text is quoted",
        )

    def _bad_tag(self, node: _Node) -> None:
        self._fail(
            node,
            "yaml-tag",
            f"YAML tag `{_short(node[1])}` is not allowed in a policy file",
            hint="only plain YAML is accepted (strings, numbers, booleans, null, lists, mappings); remove the tag",
        )

    def _fail(self, node: _Node, code: str, message: str, *, hint: str = "") -> None:
        """A fatal problem at ``node``: reported, and the document yields no data."""
        self.diagnostics.append(_error(code, message, Location(self.file, node[3], node[4]), hint=hint))
        self.fatal = True


def _short(tag: str) -> str:
    return "!!" + tag[len(_P) :] if tag.startswith(_P) else tag


def _error(code: str, message: str, location: Location, *, hint: str = "") -> Diagnostic:
    return Diagnostic("error", code, message, location, hint=hint)
