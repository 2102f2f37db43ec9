"""``policyrouter status``: breakers, budgets and providers of a deployed policy.

Exit 0 when healthy, 1 when a breaker is not closed, a budget is exhausted or a
checked provider did not answer (so it works as a readiness probe).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show breakers, budgets and provider reachability (no tokens spent)")
    p.add_argument("path", nargs="+", metavar="PATH", help="policy file or directory")
    p.add_argument("--state", default=None, metavar="URL", help="sqlite:///path.sqlite or redis://host:port/0")
    p.add_argument("--env", default=None, metavar="NAME", help="environment overlay to apply")
    p.add_argument("--ping", action="store_true", help="reach each provider (GET /v1/models; needs its key)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter import Router
    from policyrouter.state.url import open_state

    state = open_state(args.state) if args.state else None
    with Router.from_path(args.path if len(args.path) > 1 else args.path[0], env=args.env, state=state) as router:
        report = router.health(providers=args.ping)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(str(report), end="")
    return 0 if report.ok else 1
