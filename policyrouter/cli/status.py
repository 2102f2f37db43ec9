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
    p.add_argument("path", nargs="+", help="policy file(s) or directory")
    p.add_argument("--state", default=None, help="state URL: sqlite:///path.sqlite or redis://host:port/0")
    p.add_argument("--env", default=None)
    p.add_argument("--ping", action="store_true", help="reach each provider (GET /v1/models; needs its key)")
    p.add_argument("--format", choices=("text", "json"), default="text")
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
        print(render_text(report), end="")
    return 0 if report.ok else 1


def render_text(report: Any) -> str:
    lines = [f"status    {'ok' if report.ok else 'DEGRADED'}" + (f" (env {report.env})" if report.env else "")]
    lines += [f"  problem {p}" for p in report.problems]
    lines.append("breakers")
    if not report.breakers:
        lines.append("  (no model has a circuit breaker)")
    width = max((len(b.model) for b in report.breakers), default=0)
    for b in report.breakers:
        failures = f", {b.recent_failures} recent failure(s)" if b.recent_failures else ""
        lines.append(f"  {b.model:<{width}}  {b.status:<9} breaker {b.breaker}{failures}")
    lines.append("budgets")
    if not report.budgets:
        lines.append("  (no budgets)")
    for u in report.budgets:
        lines.append(
            f"  {u.budget} [{u.scope}/{u.window} {u.key}]  ${u.spent_usd:.6f} spent + ${u.reserved_usd:.6f} reserved"
            f" of ${u.limit_usd:g} ({u.percent:.1f}%)"
        )
    lines.append("providers")
    width = max((len(p.provider) for p in report.providers), default=0)
    for p in report.providers:
        detail = f" ({p.detail})" if p.detail else (" (--ping reaches it)" if p.status == "unchecked" else "")
        lines.append(f"  {p.provider:<{width}}  {p.kind:<17} {p.status}{detail}")
    return "\n".join(lines) + "\n"
