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

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay recorded traffic through a policy: cost, budgets, fallbacks; --baseline for a diff",
        description="Replay a traffic file (JSONL; the ledger's format) through the compiled plan offline.",
    )
    parser.add_argument("path", metavar="PATH", help="policy file or directory (the candidate)")
    parser.add_argument("--traffic", required=True, metavar="FILE", help="JSONL traffic file")
    parser.add_argument("--baseline", metavar="OTHER", help="policy to compare against (e.g. main's policies/)")
    parser.add_argument("--env", default=None, help="environment overlay for both policies")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    parser.add_argument("--fault-rate", type=float, default=0.0, metavar="P", help="each call fails with P (0..1)")
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="PROVIDER@START/END",
        help="provider down from START to END (ISO 8601 or epoch seconds); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of jitter and faults (default 0)")
    parser.add_argument("--plot", metavar="FILE", help="write a cumulative spend chart (.png/.svg; extra `plot`)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show progress")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
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

    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy
    from policyrouter.simulate.engine import FaultModel, simulate
    from policyrouter.simulate.render import render_json, render_markdown, render_table
    from policyrouter.simulate.traffic import read_traffic

    try:
        outages = tuple(_outage(s) for s in args.outage)
        faults = FaultModel(args.fault_rate, outages, args.seed)
    except ValueError as exc:
        print(f"policyrouter simulate: error: {exc}", file=sys.stderr)
        return 2
    plans = []
    if args.baseline:
        plans.append((os.path.normpath(args.baseline), compile_policy(load_policy(args.baseline, args.env), args.env)))
    plans.append((os.path.normpath(args.path), compile_policy(load_policy(args.path, args.env), args.env)))
    known = {name for _, plan in plans for name in plan.providers}
    for o in outages:
        if o.provider not in known:
            print(f"policyrouter simulate: error: --outage names unknown provider {o.provider!r}", file=sys.stderr)
            return 2
    size = os.path.getsize(args.traffic)
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and size > 8 << 20)
    if show:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[records]} records"),
            TimeRemainingColumn(),
            transient=True,
            console=_stderr_console(),
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
        sys.stdout.write(render_table(reports, color=sys.stdout.isatty()))
    if args.plot:
        from policyrouter.simulate.plot import plot_cumulative_spend

        plot_cumulative_spend(reports, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)
