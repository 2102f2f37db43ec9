"""``policyrouter explain``: the plan a request would get; no call made."""

from __future__ import annotations

import argparse
import json
from typing import Any

from policyrouter.cli.common import parse_metadata


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="show the route, chain, limits and worst case a request would get")
    p.add_argument("path", nargs="+", help="policy file(s) or directory")
    p.add_argument("--task", required=True)
    p.add_argument("--env", default=None)
    p.add_argument("--input-tokens", type=int, default=None)
    p.add_argument("--tenant", default=None)
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    p.add_argument("--format", choices=("text", "json", "mermaid"), default="text")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter import Router
    from policyrouter.explain import render_mermaid, render_text

    router = Router.from_path(args.path if len(args.path) > 1 else args.path[0], env=args.env)
    e = router.explain(
        args.task, input_tokens=args.input_tokens, metadata=parse_metadata(args.metadata), tenant=args.tenant
    )
    if args.format == "json":
        print(json.dumps(e.to_dict(), indent=2, sort_keys=True))
    elif args.format == "mermaid":
        print(render_mermaid(e), end="")
    else:
        print(render_text(e), end="")
    return 0
