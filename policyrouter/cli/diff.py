"""``policyrouter diff OLD_PATH NEW_PATH [--env E]... [--format text|markdown|json] [--exit-code]``.

A semantic diff of two policy sets (files or directories): chains, routes, limits,
prices, budgets, retries and worst cases that changed, per task and environment,
compared on the compiled plans. Exit 0 (with ``--exit-code``: 1 when anything
changed), 1 when a side is invalid, 2 when a path cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policyrouter.cli.common import add_format

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="semantic diff of two policy sets: chains, limits, prices, budgets, routes",
        description="Compare two policy sets on their compiled plans, for the base and every environment.",
    )
    parser.add_argument("old", metavar="OLD_PATH", help="policy file or directory (before)")
    parser.add_argument("new", metavar="NEW_PATH", help="policy file or directory (after)")
    parser.add_argument(
        "--env", action="append", default=None, metavar="NAME", help="only this environment (repeatable)"
    )
    add_format(parser, "markdown", help="output format: text (default), json, or markdown (a PR comment)")
    parser.add_argument("--exit-code", action="store_true", help="exit 1 when the policies differ")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policyrouter.cli.common import UsageError
    from policyrouter.policydiff import UnknownEnvironment, diff_policies, render_markdown, render_text, to_dict

    try:
        d = diff_policies(args.old, args.new, args.env)
    except UnknownEnvironment as exc:
        defined = ", ".join(f"`{e}`" for e in exc.defined) or "none"
        hint = f"did you mean `{exc.match}`?" if exc.match else f"environments defined: {defined}"
        raise UsageError(f"--env: {exc} (defined by neither policy set)", hint) from exc
    if args.format == "markdown":
        sys.stdout.write(render_markdown(d))
    elif args.format == "json":
        sys.stdout.write(json.dumps(to_dict(d), indent=2) + "\n")
    else:
        sys.stdout.write(render_text(d))
    return 1 if (args.exit_code and not d.empty) else 0
