"""``response_schema: {$ref: "invoice.schema.json"}``: a task's output schema kept in a
JSON (or YAML) file beside the policy file that names it.

Resolved at load time, before validation, so the compiled plan, the cache key and
``validate``'s schema checks all see the schema itself. A missing, unreadable or
non-object file is a ``response-schema-invalid`` error at the ``$ref``, naming the
problem in the file (``file:line:col: error[code]``). Only files in the policy file's
directory or below are read (no absolute paths, no ``..``, no symlink whose real path
is outside that directory), through the safe reader
(:mod:`~policyrouter.policy.files`): regular files of at most 1 MiB, with the policy's
alias and depth bounds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.files import read_document
from policyrouter.policy.source import PathKey, SourceMap, dotted

__all__ = ["resolve_schema_refs"]

MAX_SCHEMA_BYTES = 1 << 20
_HINT = "`$ref` names a JSON Schema file relative to the policy file, e.g. {$ref: invoice.schema.json}"
_OUTSIDE_HINT = "a `$ref` file must really be in the policy's directory: copy the schema there instead of linking it"


def _targets(doc: dict[str, Any]) -> Iterator[tuple[PathKey, dict[str, Any]]]:
    """``(path, task)`` of every task, in the base and in every environment overlay."""
    tasks = doc.get("tasks")
    if isinstance(tasks, dict):
        for name, task in tasks.items():
            if isinstance(task, dict):
                yield ("tasks", name), task
    envs = doc.get("environments")
    if isinstance(envs, dict):
        for env, overlay in envs.items():
            tasks = overlay.get("tasks") if isinstance(overlay, dict) else None
            if isinstance(tasks, dict):
                for name, task in tasks.items():
                    if isinstance(task, dict):
                        yield ("environments", env, "tasks", name), task


def resolve_schema_refs(doc: dict[str, Any], source: SourceMap) -> list[Diagnostic]:
    """Replace each file ``$ref`` response schema in ``doc`` (in place); the problems found."""
    problems: list[Diagnostic] = []
    for path, task in _targets(doc):
        schema = task.get("response_schema")
        if not isinstance(schema, dict) or set(schema) != {"$ref"} or not isinstance(schema["$ref"], str):
            continue
        ref = schema["$ref"]
        if ref.startswith("#"):
            continue  # a JSON pointer into the schema itself: nothing to load
        where = (*path, "response_schema", "$ref")
        location = source.locate(where)

        def bad(message: str, location: Any = location, where: PathKey = where, hint: str = _HINT) -> None:
            problems.append(
                Diagnostic("error", "response-schema-invalid", message, location, path=dotted(where), hint=hint)
            )

        rel = PurePosixPath(ref)
        if rel.is_absolute() or ".." in rel.parts or "://" in ref:
            bad(f"response_schema $ref {ref!r} must be a relative path inside the policy's directory")
            continue
        file = Path(location.file).parent / rel
        home, real = os.path.realpath(Path(location.file).parent), os.path.realpath(file)
        if os.path.commonpath([home, real]) != home:  # a symlink out of the directory
            bad(
                f"response_schema $ref {ref!r} leads through a symlink to {real}, outside the policy's directory",
                hint=_OUTSIDE_HINT,
            )
            continue
        document = read_document(  # the path just checked, so a link swapped since cannot lead out
            real, max_bytes=MAX_SCHEMA_BYTES, display=str(file), as_json=file.suffix not in (".yaml", ".yml")
        )
        if not document.ok:
            bad(f"response_schema $ref {ref!r}: {document.diagnostics[0].one_line()}")
            continue
        loaded = document.data
        if not isinstance(loaded, dict):
            bad(f"response_schema $ref {ref!r}: {file} does not hold a JSON Schema object")
            continue
        task["response_schema"] = loaded
    return problems
