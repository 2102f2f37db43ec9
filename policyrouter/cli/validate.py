"""``policyrouter validate PATH... [--env NAME | --all-envs] [--format F] [--strict]``.

Loads each policy (file or directory), checks the base and every environment overlay
(or one ``--env``), and prints every problem with ``file:line:col``. Exit 0 when there
are no errors (warnings allowed, unless ``--strict``), 1 when there are, 2 when a path
cannot be read. Imports nothing heavy at module level (see ``cli.main``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policyrouter.cli.common import add_format, add_paths

__all__ = ["DEFAULT_MAX_BYTES", "register", "run"]

DEFAULT_MAX_BYTES = 1024 * 1024


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check policy files for errors (CI-friendly)",
        description="Check a policy (files or directories, merged into one policy): schema, "
        "references, limits, budgets, secrets. Without --env, the base policy and every "
        "environment overlay are checked. Exit 0: no errors; 1: errors (or warnings with "
        "--strict); 2: a path cannot be read, --env names no environment, or the arguments are wrong.",
    )
    add_paths(parser)
    envs = parser.add_mutually_exclusive_group()
    envs.add_argument("--env", metavar="NAME", help="check only the policy merged for this environment")
    envs.add_argument(
        "--all-envs",
        action="store_true",
        help="check the base and every environment (the default)",
    )
    add_format(parser, "github", help="output format: text (default), json, or github (workflow annotations)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    parser.add_argument(
        "--max-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"largest policy file accepted, in bytes (default {DEFAULT_MAX_BYTES})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policyrouter.policy.loader import validate_paths
    from policyrouter.policy.render import count, render

    report = validate_paths(
        list(args.path),
        env=args.env,
        all_envs=args.env is None,
        max_bytes=args.max_bytes,
    )
    diagnostics = list(report.diagnostics)
    sys.stdout.write(render(args.format, diagnostics, report.source, strict=args.strict))
    if report.io_error or any(d.code == "unknown-environment" for d in diagnostics):
        return 2  # a path that cannot be read, or an --env the policy does not define: usage
    errors, warnings = count(diagnostics)
    if errors or (args.strict and warnings):
        return 1
    return 0
