"""The shape a request asks for: structured output (a schema) or tools.

Resolved once per request, before anything is sent: a bad ``response_model`` or tool
definition is an :class:`~policyrouter.errors.InvalidRequest`, never a provider 400.
Output specs are cached per task schema and per ``response_model`` class.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from policyrouter.errors import InvalidRequest
from policyrouter.plan import TaskPlan
from policyrouter.stages.output import OutputSpec

__all__ = ["OutputSpecs", "check_tools"]

_CHOICES = frozenset({"auto", "required", "none"})


class OutputSpecs:
    """Builds and caches :class:`OutputSpec` objects (thread-safe)."""

    __slots__ = ("_by_key", "_lock")

    def __init__(self) -> None:
        self._by_key: dict[Any, OutputSpec] = {}
        self._lock = threading.Lock()

    def resolve(self, tp: TaskPlan, response_model: Any, request_id: str) -> OutputSpec | None:
        """The spec of ``response_model`` if given, else of the task's ``response_schema``."""
        if response_model is None and tp.response_schema is None:
            return None
        key: Any = response_model if response_model is not None else ("task", tp.name)
        try:
            spec = self._by_key.get(key)
        except TypeError:  # an unhashable response_model
            spec, key = None, None
        if spec is not None:
            return spec
        try:
            if response_model is not None:
                spec = OutputSpec.from_model(response_model)
            else:
                assert tp.response_schema is not None
                spec = OutputSpec.from_schema(tp.response_schema, name=tp.name)
        except Exception as exc:  # TypeError, pydantic / jsonschema SchemaError: a bad schema
            raise InvalidRequest(
                f"task {tp.name!r}: unusable output schema: {type(exc).__name__}: {str(exc)[:200]}",
                task=tp.name,
                request_id=request_id,
                arguments=("response_model",) if response_model is not None else (),
            ) from exc
        if key is not None:
            with self._lock:
                self._by_key[key] = spec
        return spec


def check_tools(
    tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any, task: str, request_id: str
) -> tuple[dict[str, Any], ...]:
    """Tools in OpenAI function format, checked; ``tool_choice`` checked against them."""

    def bad(message: str, argument: str = "tools") -> InvalidRequest:
        return InvalidRequest(message, task=task, request_id=request_id, arguments=(argument,))

    if tools is None:
        if tool_choice is not None:
            raise bad("tool_choice= needs tools=", "tool_choice")
        return ()
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise bad("tools= must be a list of tool definitions")
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(fn, Mapping):
            raise bad(f'tools[{i}]: expected {{"type": "function", "function": {{"name": ..., "parameters": ...}}}}')
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"tools[{i}]: function.name must be a non-empty string")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise bad(f"tools[{i}] ({name}): function.parameters must be a JSON Schema object")
        if name in names:
            raise bad(f"tools[{i}]: duplicate tool name {name!r}")
        names.add(name)
        out.append({"type": "function", "function": dict(fn)})
    if tool_choice is not None and not (isinstance(tool_choice, str) and tool_choice in _CHOICES):
        fn = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
        if not isinstance(fn, Mapping) or fn.get("name") not in names:
            raise bad(
                f"tool_choice must be 'auto', 'required', 'none' or a function among tools=, not {tool_choice!r}",
                "tool_choice",
            )
    return tuple(out)
