"""Mock scripts: a YAML file of replies, faults and limits per model, checked whole.

The file ``policyrouter mock --script`` and :meth:`MockLLMServer.load_script` read::

    models:
      gpt-4.1-mini-2025-04-14:
        reply: {text: "Paris.", usage: {input: 12, output: 2}}   # once the script is used up
        script:                                                 # one entry per request
          - {status: 429, retry_after_s: 2}
          - 529
          - {kind: stall, seconds: 30}
          - {tool_calls: [{name: get_weather, arguments: {city: Paris}}]}
          - {json: {city: Paris}}
          - ok
        limits: {rpm: 60, concurrency: 4}

It is read through the safe reader (:mod:`policyrouter.policy.files`); every problem is a
:class:`~policyrouter.diagnostics.Diagnostic` with ``file:line:col`` and a hint, and all of
them are raised at once as :class:`MockScriptError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.errors import PolicyRouterError
from policyrouter.policy.files import read_document
from policyrouter.policy.names import closest
from policyrouter.policy.source import PathKey, dotted
from policyrouter.policy.yamlsrc import YamlDocument
from policyrouter.testing.mock_server._answer import USAGE_KEYS
from policyrouter.testing.mock_server._types import FAULT_KINDS, Fault

__all__ = ["MAX_SCRIPT_BYTES", "MockScript", "MockScriptError", "ModelScript", "load_script"]

MAX_SCRIPT_BYTES = 4 << 20

_INT, _NUMBER, _TEXT, _MAP, _LIST = "an integer", "a number", "a string", "a mapping", "a list"
_FAULT_FIELDS: dict[str, str] = {  # every Fault field (a test keeps them in step), plus `json`
    **dict.fromkeys(("retry_after_s", "seconds", "latency_s", "pace_s"), _NUMBER),
    **dict.fromkeys(("status", "retry_after_ms", "after_chunks", "pause_after_chunks", "size_bytes"), _INT),
    **dict.fromkeys(("kind", "message", "text", "raw_body", "content_type", "error_type"), _TEXT),
    "usage": _MAP,
    "tool_calls": _LIST,
    "json": "",  # any JSON value: the answer's text
}
_REPLY_FIELDS = {"text": _TEXT, "json": "", "usage": _MAP, "latency_s": _NUMBER, "tool_calls": _LIST}
_LIMIT_FIELDS = {"rpm": _INT, "concurrency": _INT, "tpm": _INT}
_MODEL_FIELDS = {"reply": _MAP, "script": _LIST, "limits": _MAP}
_ENTRY_HINT = "an entry is `ok`, an HTTP status (429), a fault kind (`reset`) or a mapping of Fault fields"


@dataclass(frozen=True)
class ModelScript:
    """How one model answers: ``reply`` (keyword arguments of ``set_reply``), the fault
    ``script`` entries (``None`` is a normal answer), and ``limits`` (of ``enforce_limits``)."""

    reply: Mapping[str, Any] | None = None
    script: tuple[Fault | None, ...] | None = None
    limits: Mapping[str, int] | None = None


@dataclass(frozen=True)
class MockScript:
    """A checked mock script: model id -> :class:`ModelScript`."""

    file: str
    models: Mapping[str, ModelScript]


class MockScriptError(PolicyRouterError):
    """A mock script that cannot be read or does not have the documented shape;
    ``diagnostics`` lists every problem, sorted by location."""

    kind = "mock_script_invalid"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics, key=Diagnostic.sort_key))
        lines = [f"{len(self.diagnostics)} problem(s) in the mock script"]
        for d in self.diagnostics:
            lines.append(d.one_line())
            lines.extend([f"  = hint: {d.hint}"] if d.hint else [])
        super().__init__("\n".join(lines))


def load_script(path: str | os.PathLike[str]) -> MockScript:
    """Read and check a mock script; raises :class:`MockScriptError` listing every problem."""
    doc = read_document(path, max_bytes=MAX_SCRIPT_BYTES, display=os.fspath(path))
    problems = [d for d in doc.diagnostics if d.severity == "error"]
    if doc.data is None or problems:
        raise MockScriptError(problems or list(doc.diagnostics))
    checker = _Checker(doc)
    script = checker.script(doc.data)
    if checker.problems:
        raise MockScriptError(checker.problems)
    return script


class _Checker:
    """Walks the data once, collecting a diagnostic per problem and building what is valid."""

    def __init__(self, doc: YamlDocument) -> None:
        self._doc = doc
        self.problems: list[Diagnostic] = []

    def script(self, data: Any) -> MockScript:
        top = self._fields(data, (), {"models": _MAP}, "a mock script is a mapping with `models:`")
        models: dict[str, ModelScript] = {}
        if top is not None and "models" not in top:
            self._add((), "missing `models:`", "list each model id under `models:`")
        for model, spec in (top or {}).get("models", {}).items():
            where: PathKey = ("models", model)
            fields = self._fields(spec, where, _MODEL_FIELDS, "give `reply`, `script` and/or `limits`")
            if fields is not None:
                models[str(model)] = ModelScript(
                    reply=self._reply(fields["reply"], (*where, "reply")) if "reply" in fields else None,
                    script=tuple(self._entry(e, (*where, "script", i)) for i, e in enumerate(fields.get("script", ())))
                    if "script" in fields
                    else None,
                    limits=self._limits(fields["limits"], (*where, "limits")) if "limits" in fields else None,
                )
        return MockScript(self._doc.file, models)

    # -- sections

    def _reply(self, data: Any, where: PathKey) -> dict[str, Any] | None:
        fields = self._fields(data, where, _REPLY_FIELDS, "give `text` or `json`, `tool_calls`, `usage`, `latency_s`")
        if fields is None:
            return None
        reply = self._answer_text(fields, where)
        if "usage" in fields:
            reply["usage"] = self._usage(fields["usage"], (*where, "usage"))
        if "latency_s" in fields:
            reply["latency_s"] = fields["latency_s"]
            self._not_negative(fields, where, "latency_s")
        if "tool_calls" in fields:
            reply["tool_calls"] = self._tool_calls(fields["tool_calls"], (*where, "tool_calls"))
        return reply

    def _entry(self, data: Any, where: PathKey) -> Fault | None:
        if data == "ok":
            return None
        if isinstance(data, bool) or not isinstance(data, (int, str, dict)):
            self._add(where, f"invalid script entry {_show(data)}", _ENTRY_HINT)
            return None
        if isinstance(data, str) and data not in FAULT_KINDS:
            match = closest(data, [*FAULT_KINDS, "ok"])
            self._add(
                where, f"unknown script entry {_show(data)}", f"did you mean `{match}`?" if match else _ENTRY_HINT
            )
            return None
        if isinstance(data, int):
            data = {"status": data}
        elif isinstance(data, str):
            data = {"kind": data}
        fields = self._fields(data, where, _FAULT_FIELDS, _ENTRY_HINT)
        if fields is None:
            return None
        args = {k: v for k, v in fields.items() if k not in ("json", "text", "usage", "tool_calls", "raw_body")}
        args.update(self._answer_text(fields, where))
        if "raw_body" in fields:
            args["raw_body"] = fields["raw_body"].encode("utf-8")  # a recorded response, as written
        if "usage" in fields:
            args["usage"] = fields["usage"]  # put on the wire as written (a fault may send odd usage)
        if "tool_calls" in fields:
            args["tool_calls"] = self._tool_calls(fields["tool_calls"], (*where, "tool_calls"))
        if isinstance(args.get("kind"), str) and args["kind"] not in FAULT_KINDS:
            match = closest(args["kind"], FAULT_KINDS)
            hint = f"did you mean `{match}`?" if match else "kinds: " + ", ".join(sorted(FAULT_KINDS))
            self._add((*where, "kind"), f"unknown fault kind {_show(args['kind'])}", hint)
            return None
        try:
            return Fault(**args)
        except ValueError as exc:  # Fault's own rules: status range, negative durations, kinds with a status
            self._add(where, str(exc), "see the Fault fields in the README's MockLLMServer section")
            return None

    def _limits(self, data: Any, where: PathKey) -> dict[str, int] | None:
        fields = self._fields(data, where, _LIMIT_FIELDS, "give `rpm`, `tpm` and/or `concurrency`")
        if fields is None:
            return None
        for name, value in fields.items():
            if value < 1:
                self._add((*where, name), f"`{name}` must be at least 1, got {value}", "")
        return fields

    # -- values

    def _answer_text(self, fields: Mapping[str, Any], where: PathKey) -> dict[str, Any]:
        if "text" in fields and "json" in fields:
            self._add((*where, "json"), "give `text` or `json`, not both", "`json` is the answer's text as JSON")
        if "json" in fields:
            return {"text": json.dumps(fields["json"])}
        return {"text": fields["text"]} if "text" in fields else {}

    def _usage(self, data: Any, where: PathKey) -> dict[str, int]:
        fields = self._fields(
            data, where, dict.fromkeys(sorted(USAGE_KEYS), _INT), "token counts: " + ", ".join(sorted(USAGE_KEYS))
        )
        for name in fields or {}:
            self._not_negative(fields or {}, where, name)
        return dict(fields or {})

    def _tool_calls(self, data: list[Any], where: PathKey) -> list[dict[str, Any]]:
        calls = []
        for index, call in enumerate(data):
            spot = (*where, index)
            fields = self._fields(
                call, spot, {"name": _TEXT, "arguments": _MAP}, "a tool call is `{name: ..., arguments: {...}}`"
            )
            if fields is not None and "name" not in fields:
                self._add(spot, "a tool call needs a `name`", "the name of one of the request's tools")
            elif fields is not None:
                calls.append(fields)
        return calls

    def _not_negative(self, fields: Mapping[str, Any], where: PathKey, name: str) -> None:
        if fields[name] < 0:
            self._add((*where, name), f"`{name}` must be >= 0, got {fields[name]}", "")

    def _fields(self, data: Any, where: PathKey, allowed: Mapping[str, str], hint: str) -> dict[str, Any] | None:
        """``data`` as a mapping of ``allowed`` fields of the right types, or None (problems added)."""
        if not isinstance(data, dict):
            self._add(where, f"`{dotted(where) or 'the file'}` must be a mapping, got {_show(data)}", hint)
            return None
        out: dict[str, Any] = {}
        for key, value in data.items():
            spot = (*where, key)
            if key not in allowed:
                match = closest(str(key), allowed)
                self._add(spot, f"unknown key {_show(key)}", f"did you mean `{match}`?" if match else hint, key=True)
            elif not _fits(value, allowed[key]):
                self._add(spot, f"`{key}` must be {allowed[key]}, got {_show(value)}", hint)
            else:
                out[key] = value
        return out

    def _add(self, where: PathKey, message: str, hint: str, *, key: bool = False) -> None:
        doc = self._doc
        location = (doc.keys.get(where) if key else None) or doc.values.get(where) or doc.keys.get(where)
        probe = where
        while location is None and probe:
            probe = probe[:-1]
            location = doc.values.get(probe)
        spot = location or Location(doc.file, 1, 1)
        self.problems.append(Diagnostic("error", "mock-script", message, spot, path=dotted(where), hint=hint))


def _fits(value: Any, expected: str) -> bool:
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds: dict[str, type] = {_TEXT: str, _MAP: dict, _LIST: list}
    return expected not in kinds or isinstance(value, kinds[expected])


def _show(value: Any) -> str:
    return excerpt(json.dumps(value, default=str))
