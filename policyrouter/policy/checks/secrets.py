"""Literal secrets: credentials written in the raw data, the source text, or the typed free-text fields.

The scanner's findings are also the one rule that keeps them out of every other
diagnostic: :func:`scrub` masks each flagged text (whole, or cut short by an excerpt)
and each credential pattern in a diagnostic's message, hint, path and environment, and
the loader scrubs every diagnostic it reports, whatever format renders it later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

from policyrouter.diagnostics import Diagnostic, Location, mask
from policyrouter.policy.checks.context import Context
from policyrouter.policy.source import PathKey, SourceMap, dotted

__all__ = ["SecretScan", "check_typed_secrets", "find_secrets", "scan_secrets", "scrub", "secret_spans"]

_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an Anthropic API key", re.compile(r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{16,}")),
    ("an OpenAI project API key", re.compile(r"(?<![A-Za-z0-9_-])sk-proj-[A-Za-z0-9_-]{16,}")),
    ("an OpenAI API key", re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}")),
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("a Google API key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
    (
        "a GitHub token",
        re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    (
        "a bearer token",
        re.compile(r"(?<![A-Za-z])(?i:bearer)\s+(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{8,}"),
    ),
    (
        "a URL with an embedded password",
        re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    ),
)
_ANY_SECRET = re.compile("|".join(f"(?:{pattern.pattern})" for _what, pattern in _SECRET_PATTERNS))
_SECRET_KEYS = frozenset(
    {
        "apikey",
        "token",
        "accesstoken",
        "authtoken",
        "bearertoken",
        "sessiontoken",
        "refreshtoken",
        "secret",
        "secretkey",
        "clientsecret",
        "secretaccesskey",
        "awssecretaccesskey",
        "password",
        "passwd",
        "privatekey",
        "authorization",
        "proxyauthorization",
        "xapikey",
    }
)
_SECRETISH_KEY = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$|^env:[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HINT = "put it in an environment variable and reference it with api_key_env"


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _pattern_secret(text: str) -> tuple[str, int] | None:
    """(what it looks like, offset) of the first secret pattern in ``text``."""
    if _ANY_SECRET.search(text) is None:  # one scan for the common case: no secret at all
        return None
    for what, pattern in _SECRET_PATTERNS:
        m = pattern.search(text)
        if m is not None:
            return what, m.start()
    return None


def secret_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` offsets of every credential pattern in ``text`` (for redaction)."""
    if _ANY_SECRET.search(text) is None:
        return
    for _what, pattern in _SECRET_PATTERNS:
        for m in pattern.finditer(text):
            yield m.start(), m.end()


def _value_secret(key: str | None, value: str) -> str | None:
    """What the string ``value`` (under mapping key ``key``) looks like, if it is a credential."""
    found = _pattern_secret(value)
    if found is not None:
        return found[0]
    if key is None:
        return None
    stripped = value.strip()
    if not stripped or _ENV_REFERENCE.match(stripped):
        return None
    norm = _norm_key(key)
    if norm in _SECRET_KEYS:
        return f"a literal credential under `{key}`"
    if (
        _SECRETISH_KEY.search(key)
        and not norm.endswith("env")
        and len(stripped) >= 20
        and not any(c.isspace() for c in stripped)
        and any(c.isdigit() for c in stripped)
        and any(c.isalpha() for c in stripped)
        and _entropy(stripped) >= 3.5
    ):
        return f"a high-entropy credential under `{key}`"
    return None


def _secret_diag(what: str, location: Location, path: PathKey, env: str | None) -> Diagnostic:
    overlay = path[1] if len(path) >= 3 and path[0] == "environments" else None
    if env is None and isinstance(overlay, str):
        # a raw overlay value: report it as the merged policy of that environment sees it, so
        # it matches what check_policy finds there (and the loader reports it once)
        path, env = path[2:], overlay
    return Diagnostic(
        severity="error",
        code="literal-secret",
        message=f"this looks like {what}; secrets must not be written in policy files",
        location=location,
        path=dotted(path),
        hint=_SECRET_HINT,
        env=env,
    )


def _walk_secrets(
    data: object, source: SourceMap, env: str | None, root: PathKey = (), root_key: str | None = None
) -> list[tuple[Diagnostic, str]]:
    """Each credential in ``data``: its diagnostic and the flagged text (the whole key or value)."""
    out: list[tuple[Diagnostic, str]] = []
    seen: set[int] = set()
    stack: list[tuple[PathKey, str | None, object]] = [(root, root_key, data)]
    while stack:
        path, key, node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:  # YAML aliases can share or even nest nodes
                continue
            seen.add(id(node))
            if isinstance(node, dict):
                for k, v in node.items():
                    k_str = k if isinstance(k, str) else None
                    if k_str is not None and (found := _pattern_secret(k_str)) is not None:
                        diag = _secret_diag(found[0], source.locate((*path, k_str), key=True), path, env)
                        out.append((diag, k_str))
                    stack.append(((*path, k if isinstance(k, (str, int)) else str(k)), k_str, v))
            else:
                stack.extend(((*path, i), key, v) for i, v in enumerate(node))
        elif isinstance(node, str):
            what = _value_secret(key, node)
            if what is not None:
                out.append((_secret_diag(what, source.locate(path), path, env), node))
    return out


@dataclass(frozen=True)
class SecretScan:
    """What :func:`find_secrets` flagged: one ``literal-secret`` per place, and the flagged
    texts (whole keys and values, and each credential pattern matched in them or in a line)."""

    diagnostics: list[Diagnostic]
    texts: frozenset[str]


def find_secrets(data: object, source: SourceMap, env: str | None = None) -> SecretScan:
    """Literal secrets in raw policy data and in the source text (comments included).

    ``data`` is the raw YAML data (before schema validation: an ``api_key:`` field is a
    schema error, but the key it holds must still be reported as ``literal-secret``).
    The source text of every file in ``source.lines`` is scanned too, so a key pasted in a
    comment is found; one report per line. Messages never repeat the secret. Never raises.
    """
    walked = _walk_secrets(data, source, env)  # iterative: no depth limit to hit
    found = [diag for diag, _text in walked]
    texts = {text for _diag, text in walked}
    lines_hit = {(d.location.file, d.location.line) for d in found}
    for file, lines in source.lines.items():
        for lineno, text in enumerate(lines, start=1):
            spans = list(secret_spans(text))
            texts.update(text[start:end] for start, end in spans)
            if (file, lineno) in lines_hit or not spans:
                continue
            hit = _pattern_secret(text)
            if hit is not None:
                lines_hit.add((file, lineno))
                found.append(_secret_diag(hit[0], Location(file, lineno, hit[1] + 1), (), env))
    return SecretScan(sorted(set(found), key=Diagnostic.sort_key), frozenset(texts))


def scan_secrets(data: object, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """The ``literal-secret`` diagnostics of :func:`find_secrets`."""
    return find_secrets(data, source, env).diagnostics


_MIN_ECHO = 8
"""Characters of a flagged text that an echo cut short by an excerpt must keep to be masked."""
_WORD = re.compile(r"\w")


def _echoes(text: str, secret: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` repeats ``secret`` as a token: whole, or its start cut by an excerpt (``…`` follows)."""
    head = secret[:_MIN_ECHO]
    start = text.find(head) if head else -1
    while start != -1:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        whole = end - start == len(secret) and (end == len(text) or not _WORD.match(text[end]))
        if (start == 0 or not _WORD.match(text[start - 1])) and (whole or text.startswith("…", end)):
            yield start, end
        start = text.find(head, start + 1)


def _scrub_text(text: str, secrets: Collection[str]) -> str:
    spans = list(secret_spans(text))
    for secret in secrets:
        for form in {secret, repr(secret)[1:-1]}:  # as written, and as a repr() echo escapes it
            spans.extend(_echoes(text, form))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted(spans):  # overlapping spans are masked as one, never unmasked again
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, last = [], 0
    for start, end in merged:
        out += [text[last:start], mask(text[start:end])]
        last = end
    return "".join(out) + text[last:]


def scrub(diagnostic: Diagnostic, secrets: Collection[str]) -> Diagnostic:
    """``diagnostic`` with every text in ``secrets`` and every credential pattern masked in its
    message, hint, path and environment name (the one rule: no diagnostic echoes a secret)."""
    d = diagnostic
    message, hint, path = (_scrub_text(text, secrets) for text in (d.message, d.hint, d.path))
    env = _scrub_text(d.env, secrets) if d.env else d.env
    if (message, hint, path, env) == (d.message, d.hint, d.path, d.env):
        return d
    return replace(d, message=message, hint=hint, path=path, env=env)


def check_typed_secrets(ctx: Context) -> Iterator[Diagnostic]:
    """Credentials in the free-text fields the schema accepts: provider URLs and headers,
    model ids, prompts, route metadata and response schemas."""
    p = ctx.policy
    fields: list[tuple[PathKey, object]] = []
    for name, prov in p.providers.items():
        fields += [(("providers", name, "base_url"), prov.base_url), (("providers", name, "headers"), prov.headers)]
        if prov.mock is not None:
            fields.append((("providers", name, "mock", "reply"), prov.mock.reply))
    for name, model in p.models.items():
        fields.append((("models", name, "model"), model.model))
    for name, task in p.tasks.items():
        fields += [(("tasks", name, "system"), task.system), (("tasks", name, "description"), task.description)]
        fields.append((("tasks", name, "response_schema"), task.response_schema))
        for i, route in enumerate(task.routes):
            fields.append((("tasks", name, "routes", i, "when", "metadata"), route.when.metadata))
    for path, value in fields:
        if value:
            yield from (diag for diag, _text in _walk_secrets(value, ctx.source, ctx.env, path, str(path[-1])))
