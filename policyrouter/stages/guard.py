"""Input guards: size limit, blocked patterns and PII redaction, before anything is sent.

A task's ``guards:`` compile into a frozen :class:`GuardPlan` (patterns compiled once).
Each request gets a :class:`GuardRun`, the only per-request state: the router passes the
caller's ``input`` and ``messages`` to :meth:`GuardRun.apply`, which reaches every text
they hold (:func:`_each_text`: contents and content parts of any text type, text
documents, ``name``, tool-call arguments and ``tool_use`` input, keys and numbers too;
the policy's own ``system`` prompt is never guarded), then reads the
verdict. The stage decides; the router acts (raises, sends the redacted text, restores
placeholders in the answer).

Order, per request:

1. ``max_chars``: the caller's characters, summed over every text *before* redaction.
   Over it, the verdict is :data:`MAX_CHARS` and no pattern runs (a huge input costs no
   regex time). The router raises ``InputTooLong``: the same error as an input over
   ``max_input_tokens``, so one ``except`` covers "too big" whether the limit is in
   characters or tokens.
2. ``block``: each pattern is searched in the whole conversation (every text, one per
   line), raw and folded (so a block rule can match what redaction would hide, or what
   a zero-width space splits). A match makes the verdict that rule's name; the router
   raises ``GuardBlocked`` and sends nothing.
3. ``redact``: detectors find spans in each text's folded view (:class:`_View`: NFKC,
   invisible characters dropped, Unicode dashes as ``-``, digits as ASCII), mapped back
   to the original text;
   overlapping spans resolve by priority (custom patterns, then emails, cards, phones)
   and everything is replaced in one pass, so no detector ever sees another's placeholder.

Detectors (conservative: over-redacting a number is safer than leaking one):

* emails: ``local@domain.tld``, in any script (IDN and punycode domains), spaced around
  the ``@`` or broken over a line.
* cards: 13 to 19 digits, optionally grouped by spaces or dashes (or by one of ``.``
  and ``/``), that pass the Luhn check; when a longer digit run fails it, its prefixes
  ending at a group boundary are tried (a card followed by its expiry ``12/27``). A run after ``+`` is a phone number's.
* phones: a ``+`` country code followed by 8 to 15 digits, or 9 to 15 digits written
  in groups separated by spaces, dots, dashes or a parenthesised area code
  (``(555) 123-4567``, ``06 12 34 56 78``). Bare digit runs without ``+`` (order ids),
  dates (``2025-01-31``) and IPv4 addresses are left alone; so are 7-digit local numbers.
* custom ``patterns``: each match of the rule's regex (whole match), in the folded view.

Placeholders: with ``reversible: true`` each distinct value gets a numbered placeholder
(``[EMAIL_1]``, ``[EMAIL_2]``, ``[EMPLOYEE_ID_1]`` for a rule named ``employee-id``); the
same value repeats the same placeholder, and :meth:`GuardRun.restore` puts the originals
back in the answer. Without it the placeholder is unnumbered (``[EMAIL]``) and no
mapping is kept. Custom labels are the rule name, upper-cased, non-alphanumerics as ``_``.
"""

from __future__ import annotations

import bisect
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policyrouter.types import LedgerRow

if TYPE_CHECKING:
    from policyrouter.errors import RouterError
    from policyrouter.policy.models import Guards

__all__ = [
    "MAX_CHARS",
    "GuardPlan",
    "GuardRun",
    "StreamRestorer",
    "audit_metadata",
    "audit_row",
    "compile_guards",
    "find_cards",
    "find_emails",
    "find_phones",
    "guard_error",
    "luhn_ok",
    "restore",
    "stream_restorer",
]

MAX_CHARS = "max_chars"
"""Verdict of an input over ``guards.max_chars``."""

Pattern = re.Pattern[str]
Finder = Callable[[str], "list[tuple[int, int]]"]

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+"  # local part: letters of any script
    r"(?:[ \t]*\n[ \t]*@|[ \t]+@(?=\s)|@)[ \t]*\n?[ \t]*"  # the @, spaced on both sides or broken over a line
    r"[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*"  # domain labels (IDN too)
    r"\.(?:[A-Za-z]{2,63}(?![A-Za-z0-9-])|xn--[a-z0-9-]+|[^\W\d_]{2,}(?![\w-]))"  # a TLD: Latin, punycode, IDN
)
_CJK_THEN_ASCII = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+(?=[A-Za-z0-9._%+-]+\Z)")
"""A local part that starts in CJK text and ends in ASCII: the CJK is the sentence before it."""
_CARD = re.compile(
    r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?!\d)"  # plain, or grouped by spaces and dashes
    r"|(?<![\d./])\d{2,6}(?P<sep>[./])\d{2,6}(?:(?P=sep)\d{1,6}){1,5}(?!\d)"  # grouped by one of . or /
)
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{8,15}"  # compact international: +14155552671
    r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{1,4}){1,5}"  # grouped
    r"|(?:\+\d{1,3}[ .-]?)?\(\d{1,4}\)[ .-]?\d{3,10}"  # (555) 1234567
    r"|\d{2,5}/\d{5,10}"  # area code / number: 030/12345678
    r")(?![\w/])"
)
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DIGIT = re.compile(r"\d")
_PLACEHOLDER = re.compile(r"\[([A-Z0-9_]+?)_(\d+)\]")
_INVISIBLE = frozenset({"\u034f", "\u180b", "\u180c", "\u180d", "\u180f", *map(chr, range(0xFE00, 0xFE10))})
"""Invisible marks that are not format characters (Cf): the grapheme joiner and variation selectors."""


def _invisible(ch: str) -> bool:
    return ch in _INVISIBLE or unicodedata.category(ch) == "Cf"


_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2212", "-"))
"""Dashes NFKC keeps, that group digits as ``-`` does: hyphen, non-breaking hyphen, figure
dash, en dash, minus sign."""


def _fold(cluster: str) -> str:
    """One character and its combining marks as detectors read them: invisible characters
    dropped, NFKC (full-width forms, non-breaking spaces, ligatures), the dashes above as
    ``-``, digits of any script as ASCII."""
    kept = "".join(ch for ch in cluster if not _invisible(ch))
    folded = unicodedata.normalize("NFKC", kept).translate(_DASHES)
    if folded.isascii():
        return folded
    return "".join(str(d) if (d := unicodedata.decimal(ch, -1)) >= 0 else ch for ch in folded)


class _FoldTable(dict[int, str]):
    """``str.translate`` table of :func:`_fold` by code point, filled on first sight (bounded)."""

    def __missing__(self, point: int) -> str:
        folded = _fold(chr(point))
        if len(self) < _FOLD_CACHE:
            self[point] = folded
        return folded


_FOLD_CACHE = 1 << 16
_FOLDS = _FoldTable()


class _View:
    """What detectors and block rules read of a text (:func:`_fold` of each character), and
    the way back: :meth:`span` maps a span of the view to the span of the text it came from.

    Characters that fold to one character keep their offsets, so most texts fold in one
    ``translate``; only around the others (invisible, expanding, combining) is the map built.
    """

    __slots__ = ("_ends", "_starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] = []
        self._ends: list[int] = []
        if text.isascii():  # the common case: nothing to fold
            return
        irregular = {ch for ch in set(text) if len(_FOLDS[ord(ch)]) != 1 or unicodedata.combining(ch)}
        if not irregular:
            self.text = text.translate(_FOLDS)
            return
        marks = "".join(re.escape(ch) for ch in irregular if unicodedata.combining(ch))
        others = "".join(re.escape(ch) for ch in irregular if not unicodedata.combining(ch))
        units = [f"[^{marks}]?[{marks}]+"] if marks else []  # a character with its combining marks
        units += [f"[{others}]"] if others else []
        pieces: list[str] = []
        pos = 0
        for m in re.finditer("|".join(units), text):
            self._keep(pieces, text, pos, m.start())
            piece = _fold(m.group())
            pieces.append(piece)
            self._starts.extend([m.start()] * len(piece))
            self._ends.extend([m.end()] * len(piece))
            pos = m.end()
        self._keep(pieces, text, pos, len(text))
        self.text = "".join(pieces)

    def _keep(self, pieces: list[str], text: str, start: int, end: int) -> None:
        """Fold ``text[start:end]``, whose characters each fold to one, offsets kept."""
        pieces.append(text[start:end].translate(_FOLDS))
        self._starts.extend(range(start, end))
        self._ends.extend(range(start + 1, end + 1))

    def span(self, start: int, end: int) -> tuple[int, int]:
        if not self._starts:
            return start, end
        return self._starts[start], self._ends[end - 1]


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers pass it).

    Anything but a non-empty string of ASCII digits fails.
    """
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def find_emails(text: str) -> list[tuple[int, int]]:
    if "@" not in text:
        return []
    out = []
    for m in _EMAIL.finditer(text):
        start = m.start()
        lead = _CJK_THEN_ASCII.match(text, start, text.index("@", start))
        out.append((lead.end() if lead is not None else start, m.end()))
    return out


def find_cards(text: str) -> list[tuple[int, int]]:
    if _DIGIT.search(text) is None:
        return []
    out = []
    for m in _CARD.finditer(text):
        span = _card_in(m.group())
        if span is not None:
            out.append((m.start(), m.start() + span))
    return out


def _card_in(run: str) -> int | None:
    """Length of the longest card number at the start of a digit run, or ``None``.

    The whole run is tried first, then shorter prefixes that end at a group boundary, so
    a card followed by more digits (``4111 1111 1111 1111 12/27``) is still found.
    """
    ends = [i + 1 for i, ch in enumerate(run) if ch.isdigit()]  # end offset of the n-th digit
    digits = "".join(ch for ch in run if ch.isdigit())
    for n in range(min(len(digits), 19), 12, -1):
        end = ends[n - 1]
        if (end == len(run) or not run[end].isdigit()) and luhn_ok(digits[:n]):
            return end
    return None


def find_phones(text: str) -> list[tuple[int, int]]:
    if _DIGIT.search(text) is None:
        return []
    out = []
    for m in _PHONE.finditer(text):
        s = m.group()
        n = sum(ch.isdigit() for ch in s)
        if n > 15 or n < (8 if s.startswith("+") else 9):
            continue
        if _is_date(s) or _IPV4.fullmatch(s):
            continue
        out.append(m.span())
    return out


def _is_date(s: str) -> bool:
    """Whether a phone-shaped run starts with a date that ends it or is followed by a time:
    ``2025-01-31``, ``01/02/2025 10 30``; not ``06.12.34.56.78``."""
    m = _DATE_LIKE.match(s)
    return m is not None and (m.end() == len(s) or s[m.end()] == " ")


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@dataclass(frozen=True, slots=True)
class GuardPlan:
    """A task's compiled guards. Patterns are compiled once, here."""

    max_chars: int | None = None
    block: tuple[tuple[str, Pattern], ...] = ()
    detectors: tuple[tuple[str, str], ...] = ()  # (label, kind): kind "email" | "card" | "phone" | "pattern"
    patterns: tuple[tuple[str, Pattern], ...] = ()  # custom redaction rules: (name, regex)
    reversible: bool = False

    @property
    def redacts(self) -> bool:
        return bool(self.detectors)

    def describe(self) -> dict[str, Any]:
        """What ``explain`` shows: rule names only, never a pattern's matches."""
        return {
            "redact": self._detector_names(),
            "reversible": self.reversible,
            "block": [name for name, _ in self.block],
            "max_chars": self.max_chars,
        }

    def _detector_names(self) -> list[str]:
        custom = iter(name for name, _ in self.patterns)
        return [next(custom) if kind == "pattern" else label.lower() for label, kind in self.detectors]

    def start(self) -> GuardRun:
        """Per-request state for one pass through these guards."""
        return GuardRun(self)


def compile_guards(guards: Guards | None) -> GuardPlan | None:
    """``guards:`` of a task -> :class:`GuardPlan`, or ``None`` when it guards nothing."""
    if guards is None:
        return None
    detectors: list[tuple[str, str]] = []
    patterns: list[tuple[str, Pattern]] = []
    reversible = False
    r = guards.redact
    if r is not None:
        for rule in r.patterns:  # custom rules first: they are the most specific
            detectors.append((_label(rule.name), "pattern"))
            patterns.append((rule.name, re.compile(rule.regex)))
        if r.emails:
            detectors.append(("EMAIL", "email"))
        if r.cards:
            detectors.append(("CARD", "card"))
        if r.phones:
            detectors.append(("PHONE", "phone"))
        reversible = r.reversible
    block = tuple((rule.name, re.compile(rule.regex)) for rule in guards.block)
    if not detectors and not block and guards.max_chars is None:
        return None
    return GuardPlan(
        max_chars=guards.max_chars,
        block=block,
        detectors=tuple(detectors),
        patterns=tuple(patterns),
        reversible=reversible,
    )


_BUILTIN: Mapping[str, Finder] = {"email": find_emails, "card": find_cards, "phone": find_phones}


class GuardRun:
    """One request's pass through a :class:`GuardPlan`.

    Call :meth:`scrub` (or :meth:`content`) on every caller text, then read
    :attr:`verdict`: ``None`` (proceed with the scrubbed texts), :data:`MAX_CHARS`, or
    the name of the block rule that matched. ``counts`` holds redactions per rule name.
    """

    __slots__ = ("_forward", "_numbers", "_reverse", "chars", "counts", "plan", "verdict")

    def __init__(self, plan: GuardPlan) -> None:
        self.plan = plan
        self.chars = 0
        self.verdict: str | None = None
        self.counts: dict[str, int] = {}
        self._forward: dict[tuple[str, str], str] = {}  # (label, value) -> placeholder
        self._reverse: dict[str, str] = {}  # placeholder -> value
        self._numbers: dict[str, int] = {}

    # ------------------------------------------------------------------ input
    def apply(self, input: Any, messages: Any) -> tuple[Any, Any]:
        """The caller's ``input`` string and ``messages`` with their PII replaced, after
        :attr:`verdict` is set from all of their text at once (:func:`_each_text`).

        Anything that is not text (a malformed message, a non-string input) is passed
        through untouched for the router's own validation to reject.
        """
        texts: list[str] = []

        def seen(text: str) -> str:
            texts.append(text)
            return text

        _each_text(input, messages, seen)
        plan = self.plan
        self.chars = sum(map(len, texts))
        if plan.max_chars is not None and self.chars > plan.max_chars:
            self.verdict = MAX_CHARS  # no pattern runs on an input refused for its size
            return input, messages
        views = {text: _View(text) for text in texts}
        self.verdict = self._blocked(texts, views)
        if self.verdict is not None or not plan.detectors:
            return input, messages
        return _each_text(input, messages, lambda text: self._redact(text, record=True, view=views.get(text)))

    def _blocked(self, texts: list[str], views: Mapping[str, _View]) -> str | None:
        """The first block rule matching the whole conversation (one text per line), as
        written or as detectors read it."""
        if not self.plan.block:
            return None
        whole = "\n".join(texts)
        folded = "\n".join(views[text].text for text in texts)
        for name, rx in self.plan.block:
            if rx.search(whole) is not None or (folded != whole and rx.search(folded) is not None):
                return name
        return None

    def _spans(self, text: str) -> list[tuple[int, int, str, str]]:
        """Non-overlapping ``(start, end, label, rule)`` spans, by detector priority."""
        taken: list[tuple[int, int, str, str]] = []  # sorted by start, never overlapping
        custom = iter(self.plan.patterns)
        for label, kind in self.plan.detectors:
            if kind == "pattern":
                rule, rx = next(custom)
                found = [m.span() for m in rx.finditer(text) if m.end() > m.start()]
            else:
                rule = kind
                found = _BUILTIN[kind](text)
            for start, end in found:
                i = bisect.bisect_left(taken, (start,))
                if (i == 0 or taken[i - 1][1] <= start) and (i == len(taken) or taken[i][0] >= end):
                    taken.insert(i, (start, end, label, rule))
        return taken

    def _redact(self, text: str, *, record: bool, view: _View | None = None) -> str:
        if not text:
            return text
        view = view or _View(text)
        spans = self._spans(view.text)
        if not spans:
            return text
        parts: list[str] = []
        pos = 0
        for view_start, view_end, label, rule in spans:
            start, end = view.span(view_start, view_end)
            if start < pos:  # a second span inside one folded character: the first covers it
                continue
            parts.append(text[pos:start])
            parts.append(self._placeholder(label, text[start:end], record))
            if record:
                self.counts[rule] = self.counts.get(rule, 0) + 1
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def _placeholder(self, label: str, value: str, record: bool) -> str:
        if not self.plan.reversible:
            return f"[{label}]"
        key = (label, value)
        ph = self._forward.get(key)
        if ph is None:
            if not record:
                return f"[{label}]"
            n = self._numbers[label] = self._numbers.get(label, 0) + 1
            ph = self._forward[key] = f"[{label}_{n}]"
            self._reverse[ph] = value
        return ph

    # ------------------------------------------------------------------ output
    @property
    def redacted(self) -> int:
        return sum(self.counts.values())

    @property
    def has_placeholders(self) -> bool:
        """Whether the answer may hold placeholders to put back (reversible redactions made)."""
        return bool(self._reverse)

    def restore(self, text: str) -> str:
        """The answer with this request's placeholders replaced by the original values."""
        reverse = self._reverse
        if not reverse or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: reverse.get(m.group(0), m.group(0)), text)

    def redact_output(self, text: str) -> str:
        """The answer as events may show it (``log_content``): PII redacted, placeholders
        kept, nothing new remembered (a value the prompt did not have stays unnumbered)."""
        if not self.plan.detectors or not text:
            return text
        return self._redact(text, record=False)

    def actions(self) -> str:
        """Audit summary for the ledger: ``redact:email=2,redact:card=1`` / ``block:rule`` /
        ``max_chars``. Names and counts only, never a value."""
        if self.verdict == MAX_CHARS:
            return MAX_CHARS
        if self.verdict is not None:
            return f"block:{self.verdict}"
        return ",".join(f"redact:{rule}={n}" for rule, n in sorted(self.counts.items()))

    def summary(self) -> dict[str, Any]:
        """Event form of the guard actions: rule names and counts only."""
        return {
            "redacted": dict(sorted(self.counts.items())),
            "blocked": self.verdict if self.verdict not in (None, MAX_CHARS) else None,
            "max_chars_exceeded": self.verdict == MAX_CHARS,
        }


# ---------------------------------------------------------------------- caller text

TextMap = Callable[[str], str]


def _each_text(input: Any, messages: Any, f: TextMap) -> tuple[Any, Any]:
    """``input`` and ``messages`` with ``f`` applied to every text the caller wrote: the
    input string and, in each message, its content (a string, or content parts of any
    type: ``text``, ``input_text``, ``refusal``, tool results, ``tool_use`` input, a
    ``document`` with a text source), its ``name``, and its tool calls' arguments (in JSON,
    every key, string and number)."""
    if isinstance(input, str):
        input = f(input)
    if isinstance(messages, (list, tuple)):
        messages = [_message(m, f) for m in messages]
    return input, messages


def _message(message: Any, f: TextMap) -> Any:
    if not isinstance(message, Mapping):
        return message
    out = dict(message)
    if "content" in message:
        out["content"] = _content(message["content"], f)
    if isinstance(message.get("name"), str):
        out["name"] = f(message["name"])
    if isinstance(message.get("tool_calls"), list):
        out["tool_calls"] = [_tool_call(call, f) for call in message["tool_calls"]]
    if isinstance(message.get("function_call"), Mapping):
        out["function_call"] = _arguments(message["function_call"], f)
    return out


def _content(content: Any, f: TextMap) -> Any:
    if isinstance(content, str):
        return f(content)
    if not isinstance(content, list):
        return content
    parts = []
    for part in content:
        if isinstance(part, Mapping):
            part = dict(part)
            for key in ("text", "refusal"):
                if isinstance(part.get(key), str):
                    part[key] = f(part[key])
            if "content" in part:  # a tool result
                part["content"] = _content(part["content"], f)
            source = part.get("source")
            if isinstance(source, Mapping) and source.get("type") == "text" and isinstance(source.get("data"), str):
                part["source"] = {**source, "data": f(source["data"])}  # an Anthropic document of plain text
            if isinstance(part.get("input"), Mapping):  # an Anthropic tool_use block
                part["input"] = _json_value(part["input"], f)
        parts.append(part)
    return parts


def _tool_call(call: Any, f: TextMap) -> Any:
    """An OpenAI tool call (``{"function": {"name", "arguments"}}``) or a normalized one."""
    if not isinstance(call, Mapping):
        return call
    function = call.get("function")
    if isinstance(function, Mapping):
        return {**call, "function": _arguments(function, f)}
    return _arguments(call, f)


def _arguments(spec: Mapping[str, Any], f: TextMap) -> Any:
    arguments = spec.get("arguments")
    if isinstance(arguments, str):
        return {**spec, "arguments": _json_text(arguments, f)}
    if isinstance(arguments, (Mapping, list)):
        return {**spec, "arguments": _json_value(arguments, f)}
    return spec


def _json_text(raw: str, f: TextMap) -> str:
    """A JSON document with ``f`` applied to its keys and values, re-encoded only when one
    changed (so arguments without PII are sent byte for byte); not JSON, it is one text."""
    try:
        value = json.loads(raw, parse_float=_JsonFloat)
    except ValueError:
        return f(raw)
    mapped = _json_value(value, f)
    return raw if mapped == value else json.dumps(mapped, ensure_ascii=False)


class _JsonFloat(float):
    """A JSON number with a fraction or exponent that keeps its text: a 19-digit card
    written ``4111111111111111110.0`` is past a float's precision, so its text is what leaks."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _JsonFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text


def _json_value(value: Any, f: TextMap) -> Any:
    if isinstance(value, str):
        return f(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a card number sent as a number
        text = str(value)
        mapped = f(text)
        return value if mapped == text else mapped
    if isinstance(value, list):
        return [_json_value(item, f) for item in value]
    if isinstance(value, Mapping):  # keys are caller text too: {"jane@example.com": ...}
        return {_json_value(key, f): _json_value(item, f) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------- router glue


def guard_error(run: GuardRun, task: str, request_id: str) -> RouterError:
    """The typed error of a refusing verdict: ``InputTooLong`` or ``GuardBlocked``."""
    from policyrouter.errors import GuardBlocked, InputTooLong

    if run.verdict == MAX_CHARS:
        return InputTooLong(
            f"task {task!r}: input has {run.chars} characters or more, over guards.max_chars={run.plan.max_chars}",
            task=task,
            request_id=request_id,
        )
    rule = run.verdict or ""
    return GuardBlocked(
        f"task {task!r}: input matched blocked pattern {rule!r}; nothing was sent",
        rule=rule,
        task=task,
        request_id=request_id,
    )


_PARTIAL = re.compile(r"\[[A-Z0-9_]*\Z")
_PARTIAL_MAX = 64  # longer than any placeholder: ``[`` that far back is just text


class StreamRestorer:
    """Restores placeholders in streamed text deltas, which may split one placeholder
    (``[EMA`` + ``IL_1]``): a delta's tail that could still become a placeholder is held
    back until the next delta (or :meth:`flush`) shows what it is."""

    __slots__ = ("_pending", "_run")

    def __init__(self, run: GuardRun) -> None:
        self._run = run
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta if self._pending else delta
        self._pending = ""
        cut = text.rfind("[")
        if cut != -1 and len(text) - cut <= _PARTIAL_MAX and _PARTIAL.match(text, cut):
            text, self._pending = text[:cut], text[cut:]
        return self._run.restore(text)

    def flush(self) -> str:
        """What is still held back, restored (at the end of a stream or before a reset)."""
        text, self._pending = self._pending, ""
        return self._run.restore(text)


def stream_restorer(run: GuardRun | None) -> StreamRestorer | None:
    """A :class:`StreamRestorer` when ``run`` has placeholders to put back, else ``None``."""
    if run is None or not run.has_placeholders:
        return None
    return StreamRestorer(run)


def restore(run: GuardRun | None, text: str) -> str:
    """``text`` with ``run``'s placeholders replaced by the caller's values (reversible only)."""
    return text if run is None else run.restore(text)


def audit_metadata(run: GuardRun | None) -> str:
    """The ledger row's ``metadata`` JSON: ``{"guards": "redact:email=1"}`` (names and counts)."""
    if run is None:
        return "{}"
    return json.dumps({"guards": run.actions()}, sort_keys=True)


def audit_row(
    wall: float, request_id: str, task: str, run: GuardRun, outcome: str, user: str | None, tenant: str | None
) -> LedgerRow:
    """The audit record of a request the guards refused (nothing sent, nothing spent)."""
    return LedgerRow(
        ts=wall,
        request_id=request_id,
        task=task,
        route="",
        model="",
        tenant=tenant,
        user=user,
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cost_usd=0.0,
        provider_request_ids="",
        outcome=outcome,
        attempts=0,
        metadata=audit_metadata(run),
    )
