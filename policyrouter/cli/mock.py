"""``policyrouter mock``: a MockLLMServer for apps and scripts, until SIGINT or SIGTERM.

The first line printed is the server's URL (``http://127.0.0.1:PORT``), so a script can
start it with ``--port 0`` and read where it listens.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mock",
        help="serve mock OpenAI and Anthropic endpoints, with scripted replies and faults",
        description="Serve mock OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) endpoints "
        "until SIGINT or SIGTERM. The first line printed is the URL.",
    )
    from policyrouter.cli.common import add_format, int_in

    p.add_argument("--host", metavar="HOST", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int_in(0, 65535),
        metavar="PORT",
        default=8080,
        help="port to bind; 0 picks a free one (default: 8080)",
    )
    p.add_argument("--script", metavar="PATH", default=None, help="YAML file of replies, faults and limits per model")
    add_format(p, help="how the startup lines are printed: text, or json (one object: url, base URLs, script)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.cli.common import UsageError
    from policyrouter.testing.mock_server import MockScriptError, serve

    try:
        return serve(args.host, args.port, args.script, as_json=args.format == "json")
    except MockScriptError as exc:
        raise UsageError(str(exc)) from exc
