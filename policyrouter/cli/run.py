"""``policyrouter run``: one request through a policy, answer plus trace table."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policyrouter.cli.common import parse_metadata, read_input


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run one request through a policy and print the answer and its trace")
    p.add_argument("path", nargs="+", help="policy file(s) or directory")
    p.add_argument("--task", required=True)
    p.add_argument("--env", default=None, help="environment overlay (e.g. offline: mock provider, no key)")
    p.add_argument("--input", required=True, help="the input text, or @FILE (@- for stdin)")
    p.add_argument("--tenant", default=None)
    p.add_argument("--user", default=None)
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter import Router
    from policyrouter.errors import RouterError
    from policyrouter.policy.files import FileRefused

    try:
        text = read_input(args.input)
    except FileRefused as exc:
        print(f"policyrouter run: cannot read input: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"policyrouter run: cannot read input {args.input!r}: {exc}", file=sys.stderr)
        return 2
    router = Router.from_path(args.path if len(args.path) > 1 else args.path[0], env=args.env)
    try:
        result = router.complete(
            args.task, text, tenant=args.tenant, user=args.user, metadata=parse_metadata(args.metadata)
        )
    except RouterError as exc:
        if args.json:
            print(json.dumps({"error": exc.kind, "message": str(exc), "attempts": [a.to_dict() for a in exc.attempts]}))
        else:
            print(f"error[{exc.kind}]: {exc}", file=sys.stderr)
            if exc.attempts:  # refused before any call (unknown task, budget, guard): no trace to show
                _trace(exc.attempts, None)
        return 1
    finally:
        router.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(result.text)
    print()
    _trace(result.attempts, result)
    return 0


def _trace(attempts: Any, result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trace", title_justify="left")
    for col in ("#", "model", "provider", "outcome", "error", "latency", "request id"):
        table.add_column(col)
    for i, a in enumerate(attempts, 1):
        table.add_row(
            str(i),
            a.model,
            a.provider,
            a.outcome,
            a.error_kind or "",
            f"{a.latency_s * 1000:.1f} ms",
            a.request_id or "",
        )
    console = Console(stderr=result is None)
    console.print(table)
    if result is not None:
        u = result.usage
        console.print(
            f"route {result.route} · model {result.model} · tokens {u.input_tokens} in / {u.output_tokens} out · "
            f"cost ${result.cost_usd:.6f} · latency {result.latency_s * 1000:.1f} ms"
            + (" · cache hit" if result.cache_hit else ""),
            highlight=False,
        )
