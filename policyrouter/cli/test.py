"""``policyrouter test PATH... [-k TEXT] [--env E] [--format text|json|junit] [-o FILE]``.

Runs policy test files (``*.policytest.yaml``) found under each PATH through the
compiled plan, offline (scripted mock providers, a fake clock, fresh state per case).
Exit 0 when every case passes, 1 on a failure or an error (a stale or invalid case,
a broken file or policy), 2 when a path is missing or no test file is found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from policyrouter.cli.common import UsageError, add_env, add_format

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test",
        help="run policy tests (*.policytest.yaml) offline against the compiled plan",
        description="Run policy test files: each case gives a request, a starting state and scripted "
        "provider outcomes, and expects a route, model, attempts, error and cost.",
    )
    parser.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="test file or directory (default .)")
    parser.add_argument("-k", dest="select", metavar="TEXT", help="only cases whose file::name contains TEXT")
    add_env(parser, help="override the environment every test file names")
    add_format(parser, "junit", help="output format: text (default), json, or junit (XML for CI test reports)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from policyrouter.policytest.report import render
    from policyrouter.policytest.runner import discover, run_paths

    # scripted auth failures log at ERROR by design; the report already shows every attempt
    logging.getLogger("policyrouter").addHandler(logging.NullHandler())
    files = discover(args.paths)
    if not files:
        raise UsageError(f"no policy test files (*.policytest.yaml) under {' '.join(args.paths)}")
    report = run_paths(files, select=args.select, env=args.env)
    text = render(args.format, report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        if args.format != "text":
            print(render("text", report).splitlines()[-1])
    else:
        sys.stdout.write(text)
    return 0 if report.ok else 1
