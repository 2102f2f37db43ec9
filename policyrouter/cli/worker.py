"""``policyrouter worker``: drain the policy's queues until SIGTERM/SIGINT, then drain gracefully."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policyrouter.cli.common import add_env, add_format, add_paths, load_router


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run queued jobs (router.submit) through the policy until SIGTERM",
        description="Take jobs from the policy's queues by priority (aging, tenant turns) and run each like "
        "`complete`. SIGTERM or Ctrl-C stops taking jobs; jobs in flight finish within --drain-s, the rest "
        "are handed back to the queue.",
    )
    add_paths(p)
    add_env(p)
    p.add_argument("--queues", metavar="NAME[,NAME]", default=None, help="queues to serve (default: all)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="jobs run at once (default: 4)")
    p.add_argument("--drain-s", type=float, default=30.0, metavar="S", help="drain deadline (default: 30)")
    add_format(p, help="how the summary printed on exit is written")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.cli.common import UsageError
    from policyrouter.worker import Worker

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    queues = [q for q in (args.queues or "").split(",") if q] or None
    with load_router(args) as router:
        worker = Worker(router, queues=queues, concurrency=args.concurrency, drain_s=args.drain_s)
        print(f"policyrouter worker {worker.name}: serving {', '.join(queues or sorted(router.plan.queues))}",
              file=sys.stderr)  # fmt: skip
        worker.run()
    if args.format == "json":
        print(json.dumps({"worker": worker.name, "processed": worker.processed}))
    else:
        print(f"policyrouter worker {worker.name}: stopped after {worker.processed} job(s)")
    return 0
