"""``policyrouter schema [--print | -o PATH... [--check]]``: print, write or check the JSON Schema.

``--print`` writes the schema the package ships to stdout (for a policy repository of your
own: ``policyrouter schema --print > .policyrouter.schema.json``). Without it, writes
:func:`policyrouter.schema.render_schema` (Draft 2020-12, generated from the policy models)
to each ``--output`` (default ``schemas/policy.schema.json``); ``--check`` writes nothing
and exits 1 when a file is missing or stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from policyrouter.cli.common import UsageError, add_format

__all__ = ["DEFAULT_OUTPUT", "register", "run"]

DEFAULT_OUTPUT = "schemas/policy.schema.json"
_MAX_SCHEMA_BYTES = 16 << 20  # the generated schema is far smaller; a larger file is stale anyway


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print, write or check the policy JSON Schema (for editors and CI)",
        description="The policy JSON Schema (Draft 2020-12), generated from the policy models and shipped "
        "in the package. --print writes it to stdout; otherwise it is written to (or, with --check, "
        "compared with) each --output file.",
    )
    parser.add_argument(
        "--print",
        dest="print_schema",
        action="store_true",
        help="write the schema shipped in the package to stdout (e.g. > .policyrouter.schema.json)",
    )
    parser.add_argument(
        "--output",
        "-o",
        action="append",
        metavar="PATH",
        help=f"file to write or check (repeatable; default {DEFAULT_OUTPUT}; `-` for stdout)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if a file is missing or differs from the models",
    )
    add_format(parser, help="format of the report of what was written or checked: text (default) or json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from policyrouter.schema import packaged_schema, render_schema

    if args.print_schema:
        if args.output or args.check:
            raise UsageError("--print writes to stdout: it takes no --output and no --check")
        sys.stdout.write(packaged_schema())
        return 0
    text = render_schema()
    outputs = args.output or [DEFAULT_OUTPUT]
    if "-" in outputs:
        if args.check or len(outputs) > 1:
            raise UsageError("`-o -` (stdout) takes no --check and no other --output")
        sys.stdout.write(text)
        return 0
    results = [(path, _check(Path(path), text) if args.check else _write(Path(path), text)) for path in outputs]
    if args.format == "json":
        print(json.dumps({"files": [{"path": p, "status": s} for p, s in results]}, indent=2))
    else:
        for path, status in results:
            fix = f"; run `policyrouter schema -o {path}` to regenerate it" if status in ("missing", "stale") else ""
            print(f"{path}: {status}{fix}", file=sys.stderr if fix else sys.stdout)
    return 1 if any(status in ("missing", "stale") for _, status in results) else 0


def _check(path: Path, text: str) -> str:
    """``up to date``, ``stale`` or ``missing``; any other unreadable file is a ``UsageError``."""
    from policyrouter.policy.files import FileRefused, read_bytes

    try:
        current = read_bytes(path, max_bytes=_MAX_SCHEMA_BYTES).decode("utf-8", "replace")
    except FileRefused as exc:
        if exc.diagnostic.code == "file-not-found":
            return "missing"
        raise UsageError(str(exc)) from None
    return "up to date" if current == text else "stale"


def _write(path: Path, text: str) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return "written"
