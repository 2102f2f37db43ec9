"""Structured output: a usable response_schema, and models that declare JSON support."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.source import PathKey

__all__ = ["check_capabilities", "check_response_schemas"]

_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _schema_problems(node: object, path: PathKey, depth: int = 0) -> Iterator[tuple[PathKey, str]]:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        yield path, "a schema must be a mapping"
        return
    if depth > 64:
        return
    t = node.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        bad = [x for x in types if not isinstance(x, str) or x not in _JSON_TYPES]
        if bad:
            yield (*path, "type"), f"`type` must be one of {', '.join(sorted(_JSON_TYPES))}"
    props = node.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            yield (*path, "properties"), "`properties` must map property names to schemas"
        else:
            for k, sub in props.items():
                yield from _schema_problems(sub, (*path, "properties", str(k)), depth + 1)
    req = node.get("required")
    if req is not None and not (isinstance(req, list) and all(isinstance(x, str) for x in req)):
        yield (*path, "required"), "`required` must be a list of property names"
    items = node.get("items")
    if items is not None:
        yield from _schema_problems(items, (*path, "items"), depth + 1)
    enum = node.get("enum")
    if enum is not None and not isinstance(enum, list):
        yield (*path, "enum"), "`enum` must be a list"
    for kw in ("anyOf", "oneOf", "allOf"):
        subs = node.get(kw)
        if subs is not None:
            if not isinstance(subs, list) or not subs:
                yield (*path, kw), f"`{kw}` must be a non-empty list of schemas"
            else:
                for i, sub in enumerate(subs):
                    yield from _schema_problems(sub, (*path, kw, i), depth + 1)


def check_response_schemas(ctx: Context) -> Iterator[Diagnostic]:
    """``response_schema`` is a structurally valid JSON Schema (a light check, no jsonschema import)."""
    for t_name, task in ctx.policy.tasks.items():
        if task.response_schema is None:
            continue
        for path, problem in _schema_problems(task.response_schema, ("tasks", t_name, "response_schema")):
            yield ctx.diag(
                "error",
                "response-schema-invalid",
                f"task `{t_name}`: response_schema: {problem}",
                path,
                "response_schema is a JSON Schema (draft 2020-12) of the model's output",
            )


def check_capabilities(ctx: Context) -> Iterator[Diagnostic]:
    """A structured-output task reaches models that declare JSON support."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        if task.response_schema is None:
            continue
        lacking = [
            m
            for m in ctx.task_models(t_name)
            if p.models[m].capabilities and not {"json_schema", "json_mode"} & set(p.models[m].capabilities)
        ]
        if lacking:
            yield ctx.diag(
                "warning",
                "capability-missing",
                f"task `{t_name}` has a response_schema but model `{lacking[0]}` declares "
                "neither json_schema nor json_mode",
                ("tasks", t_name, "response_schema"),
                "add `json_schema` or `json_mode` to the model's capabilities if it supports "
                "them, or keep it out of this task's tiers",
                key=True,
            )
