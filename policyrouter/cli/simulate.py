"""``policyrouter simulate PATH --traffic FILE.jsonl [--baseline OTHER] [--env E] ...``.

Replays recorded request metadata through the compiled plan (the real retry loop,
budgets, breakers and limits against in-process providers answering with the record's
token counts) and reports cost by task, tenant and model, budget exhaustion, degrade,
fallback and rejection rates. With ``--baseline`` a side-by-side diff.
Exit 0 after a report, 2 on an unreadable file or a bad option.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policyrouter.cli.common import UsageError, add_env, add_format, add_paths, add_progress

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay recorded traffic through a policy: cost, budgets, fallbacks; --baseline for a diff",
        description="Replay a traffic file (JSONL; the ledger's format) through the compiled plan offline.",
    )
    add_paths(parser, many=False, help="policy file or directory (the candidate)")
    parser.add_argument("--traffic", required=True, metavar="FILE", help="JSONL traffic file (the ledger's format)")
    parser.add_argument(
        "--baseline", metavar="PATH", help="policy file or directory to compare against (e.g. main's policies/)"
    )
    add_env(parser, help="environment overlay for both policies")
    add_format(parser, "markdown", help="output format: text (default, tables), json, or markdown", hidden=("table",))
    parser.add_argument("--fault-rate", type=float, default=0.0, metavar="P", help="each call fails with P (0..1)")
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="PROVIDER@START/END",
        help="provider down from START to END (ISO 8601 or epoch seconds); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of jitter and faults (default 0)")
    parser.add_argument("--plot", metavar="FILE", help="write a cumulative spend chart (.png/.svg; extra `plot`)")
    add_progress(parser, "replaying", default="on a terminal, for files over 8 MiB")
    parser.set_defaults(handler=run)


def _outage(spec: str) -> Any:
    from policyrouter.simulate.engine import Outage
    from policyrouter.simulate.traffic import TrafficError, parse_time

    provider, sep, span = spec.partition("@")
    start, sep2, end = span.partition("/")
    if not (sep and sep2 and provider and start and end):
        raise ValueError(f"--outage {spec!r}: expected PROVIDER@START/END")
    try:
        a = parse_time(float(start) if start.replace(".", "", 1).isdigit() else start, "--outage")
        b = parse_time(float(end) if end.replace(".", "", 1).isdigit() else end, "--outage")
    except TrafficError as exc:
        raise ValueError(str(exc)) from None
    if b <= a:
        raise ValueError(f"--outage {spec!r}: END must be after START")
    return Outage(provider, a, b)


def run(args: argparse.Namespace) -> int:
    import os

    from policyrouter.cli.common import console, show_progress, width
    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy
    from policyrouter.simulate.engine import FaultModel, simulate
    from policyrouter.simulate.render import render_json, render_markdown, render_table
    from policyrouter.simulate.traffic import read_traffic

    try:
        outages = tuple(_outage(s) for s in args.outage)
        faults = FaultModel(args.fault_rate, outages, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plans = []
    if args.baseline:
        plans.append((os.path.normpath(args.baseline), compile_policy(load_policy(args.baseline, args.env), args.env)))
    plans.append((os.path.normpath(args.path), compile_policy(load_policy(args.path, args.env), args.env)))
    known = {name for _, plan in plans for name in plan.providers}
    for o in outages:
        if o.provider not in known:
            raise UsageError(f"--outage names unknown provider {o.provider!r}")
    size = os.path.getsize(args.traffic)
    if show_progress(args, worth_it=size > 8 << 20):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[records]} records"),
            TimeRemainingColumn(),
            transient=True,
            console=console(stderr=True, force_terminal=True),
        ) as bar:
            task = bar.add_task("simulate", total=size, records=0)
            reports = simulate(
                plans,
                read_traffic(args.traffic, on_bytes=lambda n: bar.update(task, completed=n)),
                faults=faults,
                seed=args.seed,
                on_record=lambda n: bar.update(task, records=f"{n:,}"),
            )
    else:
        reports = simulate(plans, read_traffic(args.traffic), faults=faults, seed=args.seed)
    if args.format == "markdown":
        sys.stdout.write(render_markdown(reports))
    elif args.format == "json":
        sys.stdout.write(render_json(reports))
    else:
        sys.stdout.write(render_table(reports, width=width(), color=sys.stdout.isatty()))
    if args.plot:
        from policyrouter.simulate.plot import plot_cumulative_spend

        plot_cumulative_spend(reports, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
