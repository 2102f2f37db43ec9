"""``policyrouter spend``: usage against every budget, and spend grouped by a dimension."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("spend", help="print spend against every budget and by tenant/task/model")
    p.add_argument("path", nargs="*", metavar="PATH", help="policy file or directory (for budget limits)")
    p.add_argument("--state", required=True, metavar="URL", help="sqlite:///path.sqlite or redis://host:port/0")
    p.add_argument("--env", default=None, metavar="NAME", help="environment overlay to apply")
    p.add_argument("--by", choices=("tenant", "task", "model", "user"), default="task", help="group spend by this")
    p.add_argument("--window", choices=("minute", "hour", "day", "month"), default="day", help="ledger window")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.spend import budget_usage, ledger_groups
    from policyrouter.stages.budget import window_bounds
    from policyrouter.state.url import open_state

    state = open_state(args.state)
    wall = time.time()
    budgets = []
    if args.path:
        from policyrouter.compile import compile_policy
        from policyrouter.policy.loader import load_policy

        plan = compile_policy(load_policy(args.path if len(args.path) > 1 else args.path[0], args.env), args.env)
        budgets = budget_usage(plan, state, wall)
    start, _, label = window_bounds(args.window, "UTC", wall)
    groups = ledger_groups(state, args.by, start)
    state.close()
    if args.format == "json":
        print(
            json.dumps(
                {
                    "budgets": [{**b.__dict__, "percent": round(b.percent, 2)} for b in budgets],
                    "window": label,
                    "by": args.by,
                    "groups": [g.__dict__ for g in groups],
                },
                indent=2,
            )
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.path:
        t = Table(title="budgets (current window)", title_justify="left")
        for col in ("budget", "scope", "window", "key", "used", "reserved", "limit", "percent"):
            t.add_column(col, justify="right" if col in ("used", "reserved", "limit", "percent") else "left")
        for b in budgets:
            t.add_row(
                b.budget,
                b.scope,
                b.label,
                b.key,
                f"${b.spent_usd:.4f}",
                f"${b.reserved_usd:.4f}",
                f"${b.limit_usd:.2f}",
                f"{b.percent:.1f}%",
            )
        console.print(t)
    t = Table(title=f"spend by {args.by} ({args.window} {label} UTC)", title_justify="left")
    for col in (args.by, "requests", "input tokens", "output tokens", "cost"):
        t.add_column(col, justify="left" if col == args.by else "right")
    for g in groups:
        t.add_row(g.key, str(g.requests), str(g.input_tokens), str(g.output_tokens), f"${g.cost_usd:.4f}")
    console.print(t)
    return 0
