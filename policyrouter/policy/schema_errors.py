"""pydantic ``ValidationError`` -> :class:`Diagnostic`: stable code, policy path, ``file:line:col``, hint.

:func:`schema_diagnostics` turns each error of ``Policy.model_validate`` into one diagnostic,
reading pydantic's error ``type``, ``loc`` and ``ctx``; pydantic's message text is only
ever shown (for types the table does not name), never read:

======================= =====================================================================
code                    pydantic error types
======================= =====================================================================
missing-field           ``missing`` (hint: the field's description)
unknown-field           ``extra_forbidden`` (hint: did you mean)
invalid-value           ``literal_error``/``enum`` (the allowed values), ``value_error``
                        (a model rule's own message)
wrong-type              ``*_type`` and the errors of one union value (what was expected)
out-of-range            ``greater_than``, ``greater_than_equal``, ``less_than``, ``less_than_equal``
invalid-format          ``string_pattern_mismatch`` (a name, env var name or URL)
schema                  any other type
======================= =====================================================================

Field names, allowed values and descriptions come from the :class:`Policy` model's
annotations along the policy path.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.policy.models import Policy
from policyrouter.policy.names import closest
from policyrouter.policy.source import PathKey, SourceMap, dotted
from policyrouter.policy.yamlsrc import reads_as_number

__all__ = ["describe", "error_path", "schema_diagnostics"]

_MISSING: Any = object()  # no such key or index in the data

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}
_RANGE = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
_PATTERN_HINTS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$": "a name starts with a letter or digit and holds only "
    "letters, digits and `_ . : / -`",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "write the *name* of an environment variable (like OPENAI_API_KEY), "
    "never the key itself",
    r"^https?://": "a URL starting with http:// or https://",
}


@dataclass
class _Resolved:
    error: Mapping[str, Any]
    path: PathKey
    key: bool  # the error is about a mapping key (``[key]`` in pydantic's loc)
    union: PathKey | None  # where a union branch tag was stripped


def schema_diagnostics(exc: ValidationError, data: Any, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """One diagnostic per problem of a pydantic ``ValidationError`` on ``data``.

    Union branch names and other non-data segments of pydantic's ``loc`` are dropped;
    the errors of one union value become one diagnostic (the branch that got furthest).
    """
    resolved = [_resolve(err, data) for err in exc.errors(include_url=False)]
    out: list[Diagnostic] = []
    unions: dict[PathKey, list[_Resolved]] = {}
    for item in resolved:
        if item.union is None:
            out.append(_diagnostic([item], source, env))
        else:
            unions.setdefault(item.union, []).append(item)
    for group in unions.values():
        deepest = max(len(item.path) for item in group)
        by_path: dict[PathKey, list[_Resolved]] = {}
        for item in group:
            if len(item.path) == deepest:
                by_path.setdefault(item.path, []).append(item)
        out.extend(_diagnostic(items, source, env) for items in by_path.values())
    return out


def error_path(error: Mapping[str, Any], data: Any) -> PathKey:
    """The policy path in ``data`` that one pydantic error (of ``errors()``) is about."""
    return _resolve(error, data).path


def _resolve(error: Mapping[str, Any], data: Any) -> _Resolved:
    loc = error["loc"]
    missing = error["type"] == "missing"
    current = data
    path: list[str | int] = []
    union: PathKey | None = None
    key = False
    for index, part in enumerate(loc):
        if part == "[key]":
            key = True
            break
        step: Any = _MISSING
        if isinstance(current, dict) and isinstance(part, str):
            step = current.get(part, _MISSING)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            step = current[part]
        if step is not _MISSING:
            current = step
            path.append(part)
        elif missing and index == len(loc) - 1:
            path.append(part)
        elif union is None:  # a union branch tag or validator name, not a data key
            union = tuple(path)
    return _Resolved(error, tuple(path), key, union)


def _diagnostic(items: list[_Resolved], source: SourceMap, env: str | None) -> Diagnostic:
    first = items[0]
    kind: str = first.error["type"]
    # the errors of one union value, or a type error alone, both read as "expects X, got Y"
    if len(items) > 1 or kind in _EXPECTED or kind.endswith("_type"):
        code, message, location, hint = _wrong_type(items, source)
    elif first.key:
        code, message, location, hint = _invalid_name(first, source)
    elif kind == "missing":
        code, message, location, hint = _missing_field(first, source)
    elif kind == "extra_forbidden":
        code, message, location, hint = _unknown_field(first, source)
    elif kind in ("literal_error", "enum"):
        code, message, location, hint = _invalid_choice(first, source)
    else:
        code, message, location, hint = _invalid_scalar(first, source)
    return Diagnostic("error", code, message, location, path=dotted(first.path), hint=hint, env=env)


def _wrong_type(items: list[_Resolved], source: SourceMap) -> tuple[str, str, Location, str]:
    """A value of the wrong type: every type the union's branches would accept."""
    first = items[0]
    value = first.error.get("input")
    location = source.locate(first.path)
    expected = _join_or(list(dict.fromkeys(_expected(item.error["type"]) for item in items)))
    message = f"`{_name(first.path)}` expects {expected}, got {describe(value)}"
    return "wrong-type", message, location, _type_hint(items, value, _quoted(source, location))


def _invalid_name(item: _Resolved, source: SourceMap) -> tuple[str, str, Location, str]:
    """A mapping key (an entry's name) that is refused."""
    error, path = item.error, item.path
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    code = "invalid-format" if kind == "string_pattern_mismatch" else "schema"
    parent = dotted(path[:-1])
    message = f"invalid name `{path[-1] if path else ''}`" + (f" in `{parent}`" if parent else "")
    if kind != "string_pattern_mismatch":
        message += f": {_pydantic_message(error)}"
    hint = _PATTERN_HINTS.get(str(ctx.get("pattern", "")), "")
    return code, message, source.locate(path, key=True), hint


def _missing_field(item: _Resolved, source: SourceMap) -> tuple[str, str, Location, str]:
    path = item.path
    name = _name(path)
    parent = dotted(path[:-1])
    message = f"missing required field `{name}`" + (f" in `{parent}`" if parent else "")
    description = _field_description(path)
    hint = f"`{name}`: {description}" if description else ""
    return "missing-field", message, source.locate(path, key=True), hint


def _unknown_field(item: _Resolved, source: SourceMap) -> tuple[str, str, Location, str]:
    path = item.path
    parent = dotted(path[:-1])
    message = f"unknown field `{_name(path)}`" + (f" in `{parent}`" if parent else " at the top level")
    hint = _did_you_mean(str(path[-1]) if path else "", _allowed_fields(path[:-1]), "fields")
    return "unknown-field", message, source.locate(path, key=True), hint


def _invalid_choice(item: _Resolved, source: SourceMap) -> tuple[str, str, Location, str]:
    """A value outside a field's allowed set; a quoted number or boolean literal is told to drop the quotes."""
    error, path = item.error, item.path
    value = error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    location = source.locate(path)
    allowed = _allowed_values(path) or [str(ctx.get("expected", ""))]
    message = f"invalid value {_show(value)} for `{_name(path)}`: expected " + _join_or([f"`{a}`" for a in allowed])
    hint = _did_you_mean(str(value), allowed, "values") if isinstance(value, str) else ""
    literals = _literals(path)
    if isinstance(value, str) and literals and not any(isinstance(v, str) for v in literals):
        quoted = value.strip() in allowed and _quoted(source, location)
        hint = f"remove the quotes: write {value.strip()}" if quoted else ""
    return "invalid-value", message, location, hint


def _invalid_scalar(item: _Resolved, source: SourceMap) -> tuple[str, str, Location, str]:
    """A value of the right type that fails a bound, a pattern or a model rule (else pydantic's own text)."""
    error, path = item.error, item.path
    kind: str = error["type"]
    value = error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    name = _name(path)
    if kind in _RANGE:
        bound_key, words = _RANGE[kind]
        message = f"`{name}` must be {words} {_num(ctx.get(bound_key))}, got {_show(value)}"
        description = _field_description(path)  # what the field means says what a good value is
        return "out-of-range", message, source.locate(path), f"`{name}`: {description}" if description else ""
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        message = f"`{name}` does not have the expected format: {_show(value)}"
        return (
            "invalid-format",
            message,
            source.locate(path),
            _PATTERN_HINTS.get(pattern, f"it must match the pattern `{pattern}`"),
        )
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))  # the validator's own ValueError text
        return "invalid-value", message, source.locate(path, key=True), ""
    message = f"`{name}`: {_pydantic_message(error)}" if path else _pydantic_message(error)
    return "schema", message, source.locate(path), ""


def _expected(kind: str) -> str:
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind.endswith("_type"):
        return "a " + kind.removesuffix("_type").replace("_", " ")
    return "a valid value"


def _pydantic_message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message[:1].lower() + message[1:]


def _type_hint(items: list[_Resolved], value: Any, quoted: bool) -> str:
    kinds = {item.error["type"] for item in items}
    if isinstance(value, str):
        text = value.strip()
        if kinds & {"int_type", "float_type"}:
            return _number_hint(text, quoted, whole="float_type" not in kinds)
        if "bool_type" in kinds and text.lower() in ("true", "false") and quoted:
            return f"remove the quotes: write {text.lower()}"
        if kinds & {"list_type"}:
            return f"write a list: `[{excerpt(value)}]`, or one `- item` per line"
    if isinstance(value, bool) and "string_type" in kinds:
        return "YAML 1.1 reads yes/no/on/off/true/false as booleans; quote the value if you meant text"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "string_type" in kinds:
        return "quote the value to make it text"
    if isinstance(value, float) and kinds == {"int_type"}:
        return "use a whole number"
    if value is None:
        return "an empty value is null: give a value, or remove the key to use the default"
    return ""


_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _number_hint(text: str, quoted: bool, *, whole: bool) -> str:
    """Why a number-like string is text, for a field that wants a number; "" when it is not."""
    if quoted and reads_as_number(text):
        return f"remove the quotes: write {excerpt(text)}"
    if _BASE_60.fullmatch(text):
        return f"`{excerpt(text)}` is text: a policy does not read YAML 1.1 base-60 numbers; write the number itself"
    try:
        number = float(text)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    shown = repr(number)
    if whole and number.is_integer():
        shown = str(int(number))
    elif "e" in shown and "." not in shown:
        shown = shown.replace("e", ".0e")  # YAML 1.1 wants a dot before the exponent
    return f"YAML 1.1 reads `{excerpt(text)}` as text, not a number: write {shown}"


def _quoted(source: SourceMap, location: Location) -> bool:
    """Whether the value written at ``location`` is a quoted scalar."""
    line = source.source_line(location.file, location.line)
    return line is not None and location.col >= 1 and line[location.col - 1 : location.col] in ("'", '"')


def describe(value: Any) -> str:
    """``value`` as a message says what it got: ``integer 3``, ``a list``, ``null (an empty value)``."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(excerpt(value, 60))
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _name(path: PathKey) -> str:
    """The last key of ``path`` with any trailing indices: ``tier``, ``members[2]``."""
    index = len(path)
    while index and isinstance(path[index - 1], int):
        index -= 1
    head = str(path[index - 1]) if index else ""
    return head + "".join(f"[{p}]" for p in path[index:])


def _join_or(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _did_you_mean(word: str, candidates: Sequence[str], what: str) -> str:
    match = closest(word, candidates)
    if match is not None:
        return f"did you mean `{match}`?"
    if candidates and len(candidates) <= 20:
        return f"allowed {what}: " + ", ".join(f"`{c}`" for c in candidates)
    return ""


# Types along a policy path, for field names, allowed values and descriptions.


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step below ``annotation`` along ``part``, or None."""
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for member in get_args(annotation):
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info is not None else None
    if origin is dict and isinstance(part, str):
        return get_args(annotation)[1]
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    return None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _annotation_at(path: PathKey) -> Any:
    annotation: Any = Policy
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _allowed_fields(path: PathKey) -> list[str]:
    annotation = _annotation_at(path)
    fields: list[str] = []
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            fields.extend(member.model_fields)
    return fields


def _literals(path: PathKey) -> list[Any]:
    values: list[Any] = []
    for member in _members(_annotation_at(path)):
        if get_origin(member) is Literal:
            values.extend(get_args(member))
    return values


def _allowed_values(path: PathKey) -> list[str]:
    return [str(v) for v in _literals(path)]


def _field_description(path: PathKey) -> str:
    if not path:
        return ""
    parent = _annotation_at(path[:-1])
    for member in _members(parent):
        if isinstance(member, type) and issubclass(member, BaseModel):
            info = member.model_fields.get(str(path[-1]))
            if info is not None and info.description:
                return info.description
    return ""
