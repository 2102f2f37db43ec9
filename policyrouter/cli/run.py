"""``policyrouter run PATH... --task TASK --input TEXT``: one request through a policy, the
answer plus its trace. The trace names what served each attempt: the provider and its kind
(``openai (kind mock)`` in an offline environment), and an answer from the mock says so."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from policyrouter.cli.common import add_env, add_format, add_metadata, add_paths, add_task

MOCK_NOTE = "this answer is the offline mock provider's (kind mock), not a model's"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run one request through a policy and print the answer and its trace",
        description="Send one request through the policy (routes, guards, budgets, retries, fallback) and "
        "print the answer and the trace of its attempts. Exit 0 answered, 1 the request failed, 2 usage.",
    )
    add_paths(p)
    add_task(p)
    add_env(p)
    p.add_argument("--input", required=True, metavar="TEXT", help="the input text, or @FILE (@- for stdin)")
    p.add_argument("--tenant", default=None, metavar="NAME", help="tenant of the request (tenant budgets, cache)")
    p.add_argument("--user", default=None, metavar="NAME", help="user of the request (user budgets, ledger)")
    add_metadata(p)
    add_format(p)
    p.add_argument("--json", dest="json_alias", action="store_true", help=argparse.SUPPRESS)  # deprecated
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.cli.common import CliError, check_task, load_router, metadata, read_input
    from policyrouter.errors import RouterError

    if args.json_alias:
        print("policyrouter run: warning: --json is deprecated; use --format json", file=sys.stderr)
        args.format = "json"
    text = read_input(args.input)
    with load_router(args) as router:
        check_task(router, args.task)
        kinds = {name: spec.kind for name, spec in router.plan.providers.items()}
        try:
            result = router.complete(
                args.task, text, tenant=args.tenant, user=args.user, metadata=metadata(args.metadata)
            )
        except RouterError as exc:
            attempts = [_attempt(a.to_dict(), kinds) for a in exc.attempts]
            if args.format == "json":
                print(json.dumps({"error": exc.kind, "message": str(exc), "attempts": attempts}, indent=2))
            elif attempts:  # refused before any call (budget, guard): no trace to show
                _trace(attempts, stderr=True)
            raise CliError(f"{exc.kind}: {str(exc).splitlines()[0]}") from None
    out = result.to_dict()
    out["attempts"] = [_attempt(a, kinds) for a in out["attempts"]]
    out["provider_kind"] = kinds.get(result.provider)
    mock = out["provider_kind"] == "mock"
    if args.format == "json":
        if mock:
            out["note"] = MOCK_NOTE
        print(json.dumps(out, indent=2))
        return 0
    print(result.text)
    print()
    _trace(out["attempts"], stderr=False)
    u = result.usage
    served = _served(result.provider, out["provider_kind"])
    line = (
        f"route {result.route} · model {result.model} · provider {served} · tokens {u.input_tokens} in / "
        f"{u.output_tokens} out · cost ${result.cost_usd:.6f} · latency {result.latency_s * 1000:.1f} ms"
    )
    print(line + (" · cache hit" if result.cache_hit else ""))
    if mock:
        print(f"note: {MOCK_NOTE}")
    return 0


def _attempt(attempt: Mapping[str, Any], kinds: Mapping[str, str]) -> dict[str, Any]:
    """An attempt's dict with the kind of the provider that served it."""
    return {**attempt, "provider_kind": kinds.get(attempt["provider"])}


def _served(provider: str, kind: str | None) -> str:
    """``openai (kind mock)``: the provider's name and what it is in this environment."""
    return f"{provider} (kind {kind})" if kind else provider


def _trace(attempts: Sequence[Mapping[str, Any]], *, stderr: bool) -> None:
    from rich.table import Table

    from policyrouter.cli.common import console

    table = Table(title="trace", title_justify="left")
    for col in ("#", "model", "provider", "outcome", "error", "latency", "request id"):
        table.add_column(col)
    for i, a in enumerate(attempts, 1):
        table.add_row(
            str(i),
            a["model"],
            _served(a["provider"], a["provider_kind"]),
            a["outcome"],
            a["error_kind"] or "",
            f"{a['latency_s'] * 1000:.1f} ms",
            a["request_id"] or "",
        )
    console(stderr=stderr).print(table)
