"""Input guards: size limit, blocked patterns and PII redaction, before anything is sent.

A task's ``guards:`` compile into a frozen :class:`GuardPlan` (patterns compiled once).
Each request gets a :class:`GuardRun`, the only per-request state: the router passes
every piece of *caller* text through :meth:`GuardRun.scrub` (the input string, or the
content of each caller message, system messages included; the policy's own ``system``
prompt is never guarded), then reads the verdict. The stage decides; the router acts
(raises, sends the redacted text, restores placeholders in the answer).

Order, per request:

1. ``max_chars``: the caller's characters, summed over every text *before* redaction.
   Over it, the verdict is :data:`MAX_CHARS` and no pattern runs on the rest of the
   input (a huge input costs no regex time). The router raises ``InputTooLong``: the
   same error as an input over ``max_input_tokens``, so one ``except`` covers "too big"
   whether the limit is in characters or tokens.
2. ``block``: each pattern is searched in the raw text (so a block rule can match what
   redaction would hide). A match makes the verdict that rule's name; the router raises
   ``GuardBlocked`` and sends nothing.
3. ``redact``: detectors find spans in the raw text; overlapping spans resolve by
   priority (custom patterns, then emails, cards, phones) and everything is replaced in
   one pass, so no detector ever sees another's placeholder.

Detectors (conservative: over-redacting a number is safer than leaking one):

* emails: ``local@domain.tld``.
* cards: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the Luhn
  check; when a longer digit run fails it, its prefixes ending at a group boundary are
  tried (a card followed by its expiry ``12/27``). A run after ``+`` is a phone number's.
* phones: a ``+`` country code followed by 8 to 15 digits, or 9 to 15 digits written
  in groups separated by spaces, dots, dashes or a parenthesised area code
  (``(555) 123-4567``, ``06 12 34 56 78``). Bare digit runs without ``+`` (order ids),
  dates (``2025-01-31``) and IPv4 addresses are left alone; so are 7-digit local numbers.
* custom ``patterns``: each match of the rule's regex (whole match).

Placeholders: with ``reversible: true`` each distinct value gets a numbered placeholder
(``[EMAIL_1]``, ``[EMAIL_2]``, ``[EMPLOYEE_ID_1]`` for a rule named ``employee-id``); the
same value repeats the same placeholder, and :meth:`GuardRun.restore` puts the originals
back in the answer. Without it the placeholder is unnumbered (``[EMAIL]``) and no
mapping is kept. Custom labels are the rule name, upper-cased, non-alphanumerics as ``_``.
"""

from __future__ import annotations

import json
import re
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

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?!\d)")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{8,15}"  # compact international: +14155552671
    r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{1,4}){1,5}"  # grouped
    r"|(?:\+\d{1,3}[ .-]?)?\(\d{1,4}\)[ .-]?\d{3,10}"  # (555) 1234567
    r")(?![\w])"
)
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DIGIT = re.compile(r"\d")
_PLACEHOLDER = re.compile(r"\[([A-Z0-9_]+?)_(\d+)\]")


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
    return [m.span() for m in _EMAIL.finditer(text)]


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
        if _DATE_LIKE.match(s) or _IPV4.fullmatch(s):
            continue
        out.append(m.span())
    return out


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
    def scrub(self, text: str) -> str:
        """``text`` with its PII replaced; records a verdict instead when it must stop."""
        if self.verdict is not None:
            return text
        plan = self.plan
        self.chars += len(text)
        if plan.max_chars is not None and self.chars > plan.max_chars:
            self.verdict = MAX_CHARS
            return text
        for name, rx in plan.block:
            if rx.search(text) is not None:
                self.verdict = name
                return text
        if not plan.detectors or not text:
            return text
        return self._redact(text, record=True)

    def content(self, content: Any) -> Any:
        """Scrub a message's content: a string, or the text parts of OpenAI content parts."""
        if isinstance(content, str):
            return self.scrub(content)
        if isinstance(content, list):
            out = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    part = {**part, "text": self.scrub(part["text"])}
                out.append(part)
            return out
        return content

    def apply(self, input: Any, messages: Any) -> tuple[Any, Any]:
        """Scrub the caller's ``input`` string or the contents of its ``messages``.

        Anything that is not text (a malformed message, a non-string input) is passed
        through untouched for the router's own validation to reject.
        """
        if isinstance(input, str):
            input = self.scrub(input)
        if isinstance(messages, (list, tuple)):
            out: list[Any] = []
            for m in messages:
                if isinstance(m, Mapping) and "content" in m:
                    m = {**m, "content": self.content(m["content"])}
                out.append(m)
            messages = out
        return input, messages

    def _spans(self, text: str) -> list[tuple[int, int, str, str]]:
        """Non-overlapping ``(start, end, label, rule)`` spans, by detector priority."""
        taken: list[tuple[int, int, str, str]] = []
        custom = iter(self.plan.patterns)
        for label, kind in self.plan.detectors:
            if kind == "pattern":
                rule, rx = next(custom)
                found = [m.span() for m in rx.finditer(text) if m.end() > m.start()]
            else:
                rule = kind
                found = _BUILTIN[kind](text)
            for start, end in found:
                if all(end <= s or start >= e for s, e, _, _ in taken):
                    taken.append((start, end, label, rule))
        taken.sort()
        return taken

    def _redact(self, text: str, *, record: bool) -> str:
        spans = self._spans(text)
        if not spans:
            return text
        parts: list[str] = []
        pos = 0
        for start, end, label, rule in spans:
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
