"""Experiments: one per task, a window that opens before it closes, a control that names a variant."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.checks.structured import _schema_problems
from policyrouter.policy.names import closest

__all__ = ["check_experiments"]


def check_experiments(ctx: Context) -> Iterator[Diagnostic]:
    """Two experiments on a task, an empty window, an unknown control, a variant's unusable schema."""
    for t_name, task in ctx.policy.tasks.items():
        names = list(task.experiments)
        for extra in names[1:]:
            yield ctx.diag(
                "error",
                "experiment-conflict",
                f"task `{t_name}` has two experiments, `{names[0]}` and `{extra}`: a request can be in one",
                ("tasks", t_name, "experiments", extra),
                "run one experiment per task: merge their variants into one, or remove the finished one",
                key=True,
            )
        for e_name, e in task.experiments.items():
            at = ("tasks", t_name, "experiments", e_name)
            if e.start is not None and e.end is not None and e.end <= e.start:
                yield ctx.diag(
                    "error",
                    "experiment-window-empty",
                    f"experiment `{e_name}` of task `{t_name}` ends ({e.end.isoformat()}) before it starts "
                    f"({e.start.isoformat()}): it never assigns a request",
                    (*at, "end"),
                    "set `end` after `start` (ISO times with a zone, e.g. 2026-03-01T00:00:00Z)",
                )
            if e.control is not None and e.control not in e.variants:
                match = closest(e.control, e.variants)
                yield ctx.diag(
                    "error",
                    "unknown-reference",
                    f"experiment `{e_name}` of task `{t_name}`: control `{e.control}` is not one of its variants",
                    (*at, "control"),
                    f"did you mean `{match}`?" if match else f"name one of: {', '.join(e.variants)}",
                )
            for v_name, v in e.variants.items():
                if v.response_schema is None:
                    continue
                for path, what in _schema_problems(v.response_schema, (*at, "variants", v_name, "response_schema")):
                    yield ctx.diag(
                        "error",
                        "response-schema-invalid",
                        f"variant `{v_name}` of experiment `{e_name}`: {what}",
                        path,
                        "give a JSON Schema object, e.g. {type: object, properties: {...}}",
                    )
