"""``policyrouter explain PATH... --task TASK``: the plan a request would get; no call made."""

from __future__ import annotations

import argparse
import json
from typing import Any

from policyrouter.cli.common import add_env, add_format, add_metadata, add_paths, add_task, int_in


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="show the route, chain, limits and worst case a request would get",
        description="Show what a request to a task would get, without making a call: its route, fallback "
        "chain, limits, retries, breakers, budgets, guards, and the worst-case calls and cost.",
    )
    add_paths(p)
    add_task(p)
    add_env(p)
    p.add_argument(
        "--input-tokens",
        type=int_in(0),
        default=None,
        metavar="N",
        help="input size of the request, in tokens: picks the route (default 0)",
    )
    p.add_argument("--tenant", default=None, metavar="NAME", help="tenant of the request (tenant budgets)")
    add_metadata(p)
    add_format(p, "mermaid", help="output format: text (default), json, or mermaid (a flowchart of the chain)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.cli.common import check_task, load_router, metadata
    from policyrouter.explain import render_mermaid, render_text

    with load_router(args) as router:
        check_task(router, args.task)
        e = router.explain(
            args.task, input_tokens=args.input_tokens, metadata=metadata(args.metadata), tenant=args.tenant
        )
    if args.format == "json":
        print(json.dumps(e.to_dict(), indent=2, sort_keys=True))
    elif args.format == "mermaid":
        print(render_mermaid(e), end="")
    else:
        print(render_text(e), end="")
    return 0
