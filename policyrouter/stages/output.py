"""Output validation: the structured-output contract of a request.

An :class:`OutputSpec` is built once per schema (a task's ``response_schema`` or a
``response_model`` class) and is immutable. It decides, per model, how to ask for the
output (:meth:`OutputSpec.format_for`: the native mode the model declares, else JSON
instructions), checks an answer (:meth:`OutputSpec.check`: parsed object or the list of
validation errors) and writes the repair turn that shows the model its errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policyrouter.tokens import MESSAGE_OVERHEAD, count_text
from policyrouter.types import Message, OutputFormat, ProviderResponse

__all__ = ["OutputSpec", "is_strict_schema"]

MAX_ERRORS = 10
"""Validation errors shown to the model (and kept on ``InvalidOutput``)."""
REPAIR_NOTE_MAX_CHARS = 1200
"""The repair turn's list of problems is cut to this, so each repair grows the prompt by a bounded amount."""
_NOTE_HEAD = "Your answer does not match the required JSON Schema:\n"
_NOTE_TAIL = "\nReply again with only the corrected JSON."


def is_strict_schema(schema: Any) -> bool:
    """Whether ``schema`` meets OpenAI's strict structured-output rules: every object
    lists all its properties as required and forbids additional ones."""
    if isinstance(schema, list):
        return all(is_strict_schema(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if not isinstance(props, dict) or set(schema.get("required", ())) != set(props):
            return False
    return all(is_strict_schema(v) for k, v in schema.items() if k not in ("enum", "const", "required"))


@dataclass(frozen=True)
class OutputSpec:
    """What the output of a request must be: a JSON Schema, optionally a pydantic class."""

    name: str
    schema: dict[str, Any]
    model_cls: Any = None
    strict: bool = False
    _validator: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_model(cls, model_cls: Any) -> OutputSpec:
        """From a pydantic ``BaseModel`` subclass; ``Result.parsed`` is an instance."""
        schema_fn = getattr(model_cls, "model_json_schema", None)
        if not isinstance(model_cls, type) or schema_fn is None:
            raise TypeError(f"response_model must be a pydantic BaseModel class, not {model_cls!r}")
        schema: dict[str, Any] = schema_fn()
        return cls(_name(model_cls.__name__), schema, model_cls, is_strict_schema(schema))

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], name: str = "response") -> OutputSpec:
        """From a JSON Schema (draft 2020-12); ``Result.parsed`` is the decoded JSON."""
        from jsonschema import Draft202012Validator

        doc = dict(schema)
        Draft202012Validator.check_schema(doc)
        return cls(_name(str(doc.get("title") or name)), doc, None, is_strict_schema(doc), Draft202012Validator(doc))

    def format_for(self, capabilities: frozenset[str]) -> OutputFormat:
        """How to ask ``capabilities``' model: native schema mode, JSON mode, or instructions."""
        if "json_schema" in capabilities:
            mode = "json_schema"
        elif "json_mode" in capabilities:
            mode = "json_mode"
        else:
            mode = "prompt"
        return OutputFormat(self.name, self.schema, mode, self.strict)  # type: ignore[arg-type]

    def instructions(self) -> str:
        """The system-prompt text that asks for JSON when no native schema mode is used."""
        return (
            "Reply with a single JSON value and nothing else (no prose, no code fences). "
            f"It must conform to this JSON Schema:\n{json.dumps(self.schema, sort_keys=True)}"
        )

    def check(self, response: ProviderResponse) -> tuple[Any, list[str]]:
        """``(parsed, [])`` for a valid answer, ``(None, errors)`` otherwise."""
        text = _strip_fences(response.text)
        if not text:
            return None, ["the answer is empty; a JSON value was expected"]
        if self.model_cls is not None:
            from pydantic import ValidationError

            try:
                return self.model_cls.model_validate_json(text), []
            except ValidationError as exc:
                return None, [_pydantic_error(e) for e in exc.errors()[:MAX_ERRORS]]
        try:
            value = json.loads(text)
        except ValueError as exc:
            return None, [f"not valid JSON: {exc}"]
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            return None, [_schema_error(e) for e in errors[:MAX_ERRORS]]
        return value, []

    def repair_turns(self, raw: str, errors: list[str]) -> tuple[Message, Message]:
        """The assistant's invalid answer and a user turn listing what is wrong."""
        problems = "\n".join(f"- {e}" for e in errors)[:REPAIR_NOTE_MAX_CHARS]
        return (
            {"role": "assistant", "content": raw or "(empty)"},
            {"role": "user", "content": f"{_NOTE_HEAD}{problems}{_NOTE_TAIL}"},
        )


def repair_growth(output_tokens: int, note: str) -> int:
    """The input tokens one repair turn adds: the invalid answer and the note, as two messages."""
    return output_tokens + count_text(note) + 2 * MESSAGE_OVERHEAD


def max_repair_growth(max_output_tokens: int) -> int:
    """The most one repair turn adds: an answer of ``max_output_tokens`` and the longest note
    (a character is at most one token)."""
    longest_note = len(_NOTE_HEAD) + REPAIR_NOTE_MAX_CHARS + len(_NOTE_TAIL)
    return max_output_tokens + longest_note + 2 * MESSAGE_OVERHEAD


def _name(raw: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in raw)[:64]
    return cleaned or "response"


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```") and t.endswith("```"):
        t = t[3:-3]
        if t.startswith("json"):
            t = t[4:]
    return t.strip()


def _pydantic_error(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
    return f"{loc}: {err.get('msg', 'invalid')}"


def _schema_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err.absolute_path) or "(root)"
    return f"{loc}: {err.message}"
