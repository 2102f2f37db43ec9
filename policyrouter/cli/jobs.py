"""``policyrouter jobs``: queues at a glance (depth, oldest wait, throughput), one job, dead letters.

The queue read is the one beside ``--state URL``, else beside the policy's state.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from policyrouter.cli.common import add_env, add_format, add_paths, policy_path


def register(sub: Any) -> None:
    p = sub.add_parser(
        "jobs",
        help="list queues, inspect a job, retry dead letters, purge",
        description="List the policy's queues (depth, running, dead letters, oldest wait, finished per minute), "
        "or act on one job or queue.",
    )
    add_paths(p)
    add_env(p)
    p.add_argument("--state", metavar="URL", default=None, help="sqlite:///path.sqlite or redis://host:port/0 "
                   "(default: the policy's state)")  # fmt: skip
    act = p.add_mutually_exclusive_group()
    act.add_argument("--show", metavar="JOB_ID", help="one job: status, position, result or error with its trace")
    act.add_argument("--dead", metavar="QUEUE", help="the dead letters of QUEUE")
    act.add_argument("--retry", metavar="JOB_ID", help="put a dead letter back in its queue")
    act.add_argument("--purge", metavar="QUEUE", help="drop QUEUE's waiting jobs and dead letters")
    add_format(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from policyrouter.cli.common import CliError, UsageError
    from policyrouter.clock import SYSTEM_CLOCK
    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy
    from policyrouter.queue.factory import create_queue, open_queue
    from policyrouter.queue.jobs import Jobs

    policy = load_policy(policy_path(args), args.env)
    plan = compile_policy(policy, args.env)
    engine = open_queue(args.state, policy.state) if args.state else create_queue(policy.state)
    jobs = Jobs(plan.queues, engine, SYSTEM_CLOCK)
    now = SYSTEM_CLOCK.wall()
    try:

        def view(name: str) -> Any:
            if name not in jobs.views:
                raise UsageError(f"unknown queue `{name}`", "queues: " + (", ".join(sorted(jobs.views)) or "none"))
            return jobs.views[name]

        out: Any
        if args.show:
            out = asdict(jobs.job(args.show))
        elif args.dead:
            out = [asdict(j) for j in engine.dead(view(args.dead))]
        elif args.retry:
            info = jobs.job(args.retry)
            if not engine.retry_dead(view(info.queue), args.retry, now):
                raise CliError(f"job {args.retry} is {info.status}, not a dead letter")
            out = {"retried": args.retry}
        elif args.purge:
            out = {"purged": engine.purge(view(args.purge), now)}
        else:
            out = [asdict(engine.stats(q, now)) for q in jobs.views.values()]
    finally:
        engine.close()
    if args.format == "json" or not isinstance(out, list) or args.dead:
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
        return 0
    print(f"{'queue':<20} {'queued':>8} {'running':>8} {'dead':>6} {'oldest wait':>12} {'done/min':>9}")
    for s in out:
        wait = "-" if s["oldest_wait_s"] is None else f"{s['oldest_wait_s']:.1f}s"
        print(f"{s['name']:<20} {s['queued']:>8} {s['running']:>8} {s['dead']:>6} {wait:>12} {s['per_minute']:>9.0f}")
    return 0
