"""``policyrouter experiment report``: a task's experiment variants side by side, from the ledger.

The state read is ``--state URL``, else the policy's own (sqlite or redis), as ``spend``.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from policyrouter.cli.common import CliError, UsageError, add_env, add_format, add_paths, add_task

if TYPE_CHECKING:
    from policyrouter.experiments import ExperimentReport

EXIT_NO_DATA = 1


def register(sub: Any) -> None:
    r = sub.add_parser(
        "experiment",
        help="compare the variants of a task's experiment (reads a deployment's state)",
        description="`experiment report`: compare the variants of a task's experiment against its control: "
        "requests, cost per request, p50/p95 latency, error and fallback rate, feedback mean with a 95%% "
        "confidence interval, and whether each difference is significant (Welch's test on cost and score, "
        "a two-proportion z-test on the error rate).",
    )
    r.add_argument("action", choices=("report",), help="report: the variants side by side")
    add_paths(r)
    add_task(r)
    add_env(r)
    r.add_argument(
        "--state",
        metavar="URL",
        default=None,
        help="state to read: sqlite:///path.sqlite or redis://host:port/0 (default: the policy's state)",
    )
    add_format(r)
    r.add_argument(
        "--require-data",
        action="store_true",
        help=f"exit {EXIT_NO_DATA} when no request of the experiment is recorded (default: a warning, exit 0)",
    )
    r.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import sys

    from policyrouter.cli.common import policy_path
    from policyrouter.compile import compile_policy
    from policyrouter.experiments import experiment_report
    from policyrouter.policy.loader import load_policy
    from policyrouter.policy.names import closest
    from policyrouter.state.url import MEMORY_NOT_INSPECTABLE, open_inspected

    plan = compile_policy(load_policy(policy_path(args), args.env), args.env)
    tp = plan.tasks.get(args.task)
    if tp is None:
        match = closest(args.task, plan.tasks)
        hint = f"did you mean `{match}`?" if match else "tasks defined: " + ", ".join(f"`{t}`" for t in plan.tasks)
        raise UsageError(f"--task: unknown task `{args.task}`", hint)
    if tp.experiment is None:
        with_one = [name for name, t in plan.tasks.items() if t.experiment is not None]
        hint = "tasks with one: " + ", ".join(f"`{t}`" for t in with_one) if with_one else "add `experiments:`"
        raise CliError(f"task `{args.task}` has no experiment", hint)
    opened = open_inspected(args.state, plan.state)
    if opened is None:
        raise CliError(MEMORY_NOT_INSPECTABLE)
    try:
        report = experiment_report(args.task, tp.experiment, opened.state)
    finally:
        opened.state.close()
    if args.format == "json":
        print(json.dumps({**report.to_dict(), "state": opened.where}, indent=2))
    else:
        _render(report)
    if report.empty:
        print(
            f"policyrouter experiment: warning: no request of experiment `{report.experiment}` is recorded in "
            f"{opened.where}",
            file=sys.stderr,
        )
        return EXIT_NO_DATA if args.require_data else 0
    return 0


def _render(report: ExperimentReport) -> None:
    from rich.table import Table

    from policyrouter.cli.common import console as make_console

    console = make_console()
    t = Table(title=f"experiment {report.experiment} (task {report.task})", title_justify="left")
    cols = ("variant", "requests", "cost/request", "p50 latency", "p95 latency", "errors", "fallbacks", "score")
    for col in cols:
        t.add_column(col, justify="left" if col == "variant" else "right")
    for v in report.variants:
        score = "-"
        if v.score_mean is not None:
            score = f"{v.score_mean:.3f}"
            if v.score_ci95 is not None:
                score += f" [{v.score_ci95[0]:.3f}, {v.score_ci95[1]:.3f}]"
            score += f" (n={v.scores})"
        t.add_row(
            v.variant + (" (control)" if v.variant == report.control else ""),
            str(v.requests),
            f"${v.cost_per_request:.6f}",
            _seconds(v.p50_latency_s),
            _seconds(v.p95_latency_s),
            f"{100 * v.error_rate:.1f}%",
            f"{100 * v.fallback_rate:.1f}%",
            score,
        )
    console.print(t)
    if not report.comparisons:
        return
    c = Table(title=f"against {report.control} (two-sided, alpha 0.05)", title_justify="left")
    for col in ("variant", "metric", "difference", "p-value", "verdict"):
        c.add_column(col, justify="right" if col in ("difference", "p-value") else "left")
    for cmp in report.comparisons:
        c.add_row(
            cmp.variant,
            cmp.metric,
            "-" if cmp.difference is None else f"{cmp.difference:+.6g}",
            "-" if cmp.p_value is None else f"{cmp.p_value:.4f}",
            cmp.verdict,
        )
    console.print(c)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
