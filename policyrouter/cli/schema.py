"""``policyrouter schema [--output PATH] [--check]``: write or check the JSON Schema.

Writes ``schemas/policy.schema.json`` (Draft 2020-12), generated from the policy
models. ``--check`` writes nothing and exits 1 when the file is missing or stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_OUTPUT", "register", "run"]

DEFAULT_OUTPUT = "schemas/policy.schema.json"
_MAX_SCHEMA_BYTES = 16 << 20  # the generated schema is far smaller; a larger file is stale anyway


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="write the policy JSON Schema (for editors and CI)",
        description="Generate the policy JSON Schema (Draft 2020-12) from the policy models.",
    )
    parser.add_argument(
        "--output",
        "-o",
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help=f"where to write it (default {DEFAULT_OUTPUT}; `-` for stdout)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the file is missing or differs from the models",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policyrouter.schema import render_schema

    text = render_schema()
    if args.output == "-":
        if args.check:
            print("policyrouter: error: --check needs a file, not `-`", file=sys.stderr)
            return 2
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.check:
        from policyrouter.policy.files import FileRefused, read_bytes

        try:
            current = read_bytes(path, max_bytes=_MAX_SCHEMA_BYTES).decode("utf-8", "replace")
        except FileRefused as exc:
            if exc.diagnostic.code == "file-not-found":
                print(f"{path}: missing; run `policyrouter schema` to generate it", file=sys.stderr)
                return 1
            print(f"policyrouter: error: {exc}", file=sys.stderr)
            return 2
        if current != text:
            print(f"{path}: stale; run `policyrouter schema` to regenerate it", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except OSError as exc:
        print(f"policyrouter: error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
