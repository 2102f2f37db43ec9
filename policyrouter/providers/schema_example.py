"""``example_for(schema)``: a small deterministic instance of a JSON Schema.

What the offline mock and ``MockLLMServer`` answer when asked for structured output or a
forced tool call, so offline runs take the same validation path as real answers. The same
schema always gives the same instance. Covered: ``type`` (one or a list), ``const``,
``enum`` (the first value), ``anyOf`` / ``oneOf`` (the first branch that is not ``null``),
``allOf`` (merged), local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), objects (every
required property, and the optional ones unless they recurse), arrays (``minItems``, at
least one item, ``prefixItems``), numbers (``minimum`` / ``maximum`` / exclusive bounds /
``multipleOf``), strings (``minLength`` / ``maxLength``, common ``format`` values, and a
``pattern`` if one of a few candidates matches it). Best effort, not a solver: an unusual
``pattern`` or ``uniqueItems`` with ``minItems > 1`` may yield an instance that fails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["example_for"]

_MAX_DEPTH = 32
_STRING_CANDIDATES = ("mock", "MOCK", "MOC", "AAA", "aaa", "000", "0", "a", "A", "mock-1", "a@b.co")
_FORMATS = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "mock@example.com",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_for(schema: Any, root: Any = None) -> Any:
    """A valid instance of ``schema`` (a JSON Schema as a dict); ``root`` resolves ``$ref``
    (default: ``schema`` itself)."""
    return _Example(schema if root is None else root).of(schema, frozenset(), 0)


class _Example:
    """One generation over one root schema; ``refs`` are the ``$ref``s being expanded."""

    def __init__(self, root: Any) -> None:
        self._root = root

    def of(self, schema: Any, refs: frozenset[str], depth: int) -> Any:
        if schema is True or not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.of(self._resolve(ref), refs | {ref}, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            return self.of(self._merged(schema), refs, depth + 1)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                not_null = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
                return self.of((not_null or branches)[0], refs, depth + 1)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, refs, depth)
        if kind == "array":
            return self._array(schema, refs, depth)
        if kind in ("integer", "number"):
            return _number(schema, kind == "integer")
        if kind == "string":
            return _string(schema)
        if kind == "boolean":
            return True
        return None

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}  # a remote reference: nothing to follow offline
        target: Any = self._root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        return target if isinstance(target, Mapping) else {}

    def _merged(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``allOf`` folded into one schema: properties and required lists joined, other keys by the last part."""
        out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping) and isinstance(part.get("$ref"), str):
                part = self._resolve(part["$ref"])
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties" and isinstance(value, Mapping):
                    out["properties"] = {**out.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    out["required"] = [*out.get("required", []), *value]
                else:
                    out.setdefault(key, value)
        return out

    def _object(self, schema: Mapping[str, Any], refs: frozenset[str], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = [name for name in schema.get("required", ()) if isinstance(name, str)]
        names = [name for name in props if name in required or not self._recurses(props[name], refs)]
        names += [name for name in required if name not in props]
        return {name: self.of(props.get(name, {}), refs, depth + 1) for name in names}

    def _array(self, schema: Mapping[str, Any], refs: frozenset[str], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), max(low, 1))
        count = min(max(low, 1, len(prefix)), high) if high >= low else low
        items = schema.get("items", {})
        if count > len(prefix) and self._recurses(items, refs) and low <= len(prefix):
            count = len(prefix)  # one more level of a recursive schema is not needed
        return [self.of(prefix[i] if i < len(prefix) else items, refs, depth + 1) for i in range(count)]

    def _recurses(self, schema: Any, refs: frozenset[str]) -> bool:
        """``schema`` is (or wraps) a ``$ref`` already being expanded: an optional part left out."""
        if not isinstance(schema, Mapping):
            return False
        if schema.get("$ref") in refs:
            return True
        parts = [*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())]
        return any(self._recurses(part, refs) for part in parts) or self._recurses(schema.get("items"), refs)


def _kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    if kind is None and ("items" in schema or "prefixItems" in schema):
        return "array"
    return kind if isinstance(kind, str) else None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _bound(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    """0 if allowed, else the allowed value (a multiple of ``multipleOf``) nearest the bounds."""
    lo, lo_strict = _limit(schema, "minimum", "exclusiveMinimum", max)
    hi, hi_strict = _limit(schema, "maximum", "exclusiveMaximum", min)

    def allowed(v: float) -> bool:
        above = lo is None or v > lo or (v == lo and not lo_strict)
        return above and (hi is None or v < hi or (v == hi and not hi_strict))

    step = _bound(schema.get("multipleOf")) or (1.0 if integer else None)
    if step is None:
        candidates = [0.0] if lo is None or hi is None else [0.0, (lo + hi) / 2]
        candidates += [b + d for b in (lo, hi) if b is not None for d in (0.0, 1.0, -1.0)]
    else:
        k = math.ceil(lo / step) if lo is not None else (min(0, math.floor(hi / step)) if hi is not None else 0)
        candidates = [(k + d) * step for d in (0, 1, -1)]
    value = next((c for c in candidates if allowed(c)), candidates[0])
    return int(value) if integer else float(value)


def _limit(schema: Mapping[str, Any], inclusive: str, exclusive: str, pick: Any) -> tuple[float | None, bool]:
    """The tighter of a bound and its exclusive form, and whether it is exclusive."""
    plain, strict = _bound(schema.get(inclusive)), _bound(schema.get(exclusive))
    if strict is None:
        return plain, False
    if plain is None or pick(plain, strict) == strict:
        return strict, True
    return plain, False


def _string(schema: Mapping[str, Any]) -> str:
    low = _int(schema.get("minLength"), 0)
    high = _int(schema.get("maxLength"), 1 << 30)
    fmt = schema.get("format")
    pattern = schema.get("pattern")
    candidates = [_FORMATS[fmt]] if isinstance(fmt, str) and fmt in _FORMATS else []
    candidates += [("mock" * (low // 4 + 1))[: max(low, min(high, 4))], *_STRING_CANDIDATES]
    for text in candidates:
        if low <= len(text) <= high and (not isinstance(pattern, str) or _matches(pattern, text)):
            return text
    return candidates[0]


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False
