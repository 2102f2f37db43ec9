"""``policyrouter status``: breakers, budgets and providers of a deployed policy.

The state read is ``--state URL``, else the policy's own (sqlite or redis), with the
policy's settings (a Redis ``key_prefix``). Memory state lives inside the serving process:
breakers and budgets are reported unknown, never a fresh process's empty state.

Exit 0 when healthy, 1 when a breaker is not closed, a budget is exhausted, a checked
provider did not answer or the state cannot be read from outside (so it works as a
readiness probe).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show breakers, budgets and provider reachability (no tokens spent)",
        description="Show the breakers and budgets of a deployment's state and, with --ping, "
        "whether each provider answers. Exit 1 when anything is unhealthy or unknown.",
    )
    p.add_argument("path", nargs="+", metavar="PATH", help="policy file(s) or directory")
    p.add_argument(
        "--state",
        metavar="URL",
        default=None,
        help="state to read: sqlite:///path.sqlite or redis://host:port/0 (default: the policy's state; "
        "a redis URL takes the policy's key_prefix unless it has ?key_prefix=)",
    )
    p.add_argument("--env", metavar="NAME", default=None, help="environment overlay of the policy")
    p.add_argument("--ping", action="store_true", help="reach each provider (GET /v1/models; needs its key)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import time

    from policyrouter import Router
    from policyrouter.health import check_health
    from policyrouter.policy.loader import load_policy
    from policyrouter.state.url import MEMORY_NOT_INSPECTABLE, open_inspected

    path = args.path if len(args.path) > 1 else args.path[0]
    settings = load_policy(path, args.env).state
    opened = open_inspected(args.state, settings)
    with Router.from_path(path, env=args.env, state=opened.state if opened is not None else None) as router:
        if opened is not None:
            report = router.health(providers=args.ping)
        else:  # the router's own memory state is this process's: not the deployment's
            report = check_health(
                router.plan, None, router.providers, time.time(), providers=args.ping, unknown=MEMORY_NOT_INSPECTABLE
            )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(str(report))
    return 0 if report.ok else 1
