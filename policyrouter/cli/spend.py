"""``policyrouter spend``: usage against every budget, and spend grouped by a dimension.

The state read is ``--state URL``, else the policy's own (sqlite or redis), with the
policy's settings (a Redis ``key_prefix``). Memory state cannot be read from outside:
an error (exit 1). When the state holds nothing at all (no ledger row in the window, no
budget counter) a warning goes to stderr: exit 0, or 1 with ``--require-data``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyrouter.spend import BudgetUsage, SpendReport

EXIT_NO_DATA = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "spend",
        help="print spend against every budget and by tenant/task/model/user/variant (reads a deployment's state)",
        description="Print spend against every budget and the ledger grouped by a dimension, "
        "read from the state a deployment writes (sqlite or redis).",
    )
    p.add_argument(
        "path", nargs="*", metavar="PATH", help="policy file(s) or directory: its budgets and state settings"
    )
    p.add_argument(
        "--state",
        metavar="URL",
        default=None,
        help="state to read: sqlite:///path.sqlite or redis://host:port/0 (default: the policy's state; "
        "a redis URL takes the policy's key_prefix unless it has ?key_prefix=)",
    )
    p.add_argument("--env", metavar="NAME", default=None, help="environment overlay of the policy")
    p.add_argument(
        "--by",
        choices=("tenant", "task", "model", "user", "variant"),
        default="task",
        help="group the ledger by (default: task; variant: experiment/variant)",
    )
    p.add_argument(
        "--window",
        choices=("minute", "hour", "day", "month"),
        default="day",
        help="ledger window, the current one in UTC (default: day)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument(
        "--require-data",
        action="store_true",
        help=f"exit {EXIT_NO_DATA} when the state holds nothing at all (default: a warning, exit 0)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.spend import spend_report
    from policyrouter.state.url import MEMORY_NOT_INSPECTABLE, open_inspected

    if not args.path and args.state is None:
        print("policyrouter spend: error: give a policy PATH or --state URL (or both)", file=sys.stderr)
        return 2
    plan = None
    if args.path:
        from policyrouter.compile import compile_policy
        from policyrouter.policy.loader import load_policy

        plan = compile_policy(load_policy(args.path if len(args.path) > 1 else args.path[0], args.env), args.env)
    opened = open_inspected(args.state, plan.state if plan is not None else None)
    if opened is None:
        print(f"policyrouter spend: error: {MEMORY_NOT_INSPECTABLE}", file=sys.stderr)
        return 1
    try:
        report = spend_report(plan, opened.state, args.by, args.window, time.time())
    finally:
        opened.state.close()
    if args.format == "json":
        print(json.dumps({**report.to_dict(), "state": opened.where}, indent=2))
    else:
        _render(report, plan is not None)
    if report.empty:
        print(
            f"policyrouter spend: warning: nothing recorded in {opened.where}: no ledger row this {report.window} "
            "and no budget counter; check --state, the policy's state.path or key_prefix, and that the router "
            "has served requests",
            file=sys.stderr,
        )
        return EXIT_NO_DATA if args.require_data else 0
    return 0


def _render(report: SpendReport, with_budgets: bool) -> None:
    from rich.table import Table

    from policyrouter.cli.common import console as make_console

    console = make_console()
    if with_budgets and not report.budgets:
        console.print("budgets: the policy has none", highlight=False)
    elif with_budgets:
        t = Table(title="budgets (current window)", title_justify="left")
        for col in ("budget", "scope", "window", "key", "used", "reserved", "limit", "percent"):
            t.add_column(col, justify="right" if col in ("used", "reserved", "limit", "percent") else "left")
        for b in report.budgets:
            t.add_row(
                b.budget,
                b.scope,
                b.label,
                b.key,
                _amounts(b, f"${b.spent_usd:.6f}", b.spent_tokens),
                _amounts(b, f"${b.reserved_usd:.6f}", b.reserved_tokens),
                _amounts(b, f"${b.limit_usd or 0:.2f}", b.limit_tokens or 0),
                f"{b.percent:.1f}%",
            )
        console.print(t)
    # provider prompt caching gets its columns once a row has used it
    prompt = any(g.cached_input_tokens or g.cache_write_tokens for g in report.groups)
    t = Table(title=f"spend by {report.by} ({report.window} {report.label} UTC)", title_justify="left")
    cols = [report.by, "requests", "cache hits", "hit rate", "input tokens", "output tokens", "cost"]
    if prompt:
        cols[6:6] = ["prompt cache read", "prompt cache write", "prompt cache saved"]
    for col in cols:
        t.add_column(col, justify="left" if col == report.by else "right")
    for g in report.groups:
        cells = [
            g.key,
            str(g.requests),
            str(g.cache_hits),
            f"{100 * g.hit_rate:.1f}%",
            str(g.input_tokens),
            str(g.output_tokens),
            f"${g.cost_usd:.6f}",
        ]
        if prompt:
            cells[6:6] = [str(g.cached_input_tokens), str(g.cache_write_tokens), f"${g.prompt_cache_saved_usd:.6f}"]
        t.add_row(*cells)
    console.print(t)
    summary = f"{report.requests} request(s), {report.cache_hits} cache hit(s) ({100 * report.hit_rate:.1f}%)"
    if report.cache_hits:
        summary += f", response cache saved ${report.cache_saved_usd:.6f}"
    if prompt:
        summary += f"; provider prompt cache saved ${report.prompt_cache_saved_usd:.6f} against uncached prices"
    console.print(summary, highlight=False)


def _amounts(b: BudgetUsage, usd: str, tokens: int) -> str:
    """A budget's USD and token amounts in one cell; a budget with one limit shows one."""
    parts = [usd] if b.limit_usd is not None else []
    if b.limit_tokens is not None:
        parts.append(f"{tokens:,} tok")
    return " / ".join(parts)
