"""``policyrouter mock``: a MockLLMServer for apps and scripts, until SIGINT or SIGTERM.

The first line printed is the server's URL (``http://127.0.0.1:PORT``), so a script can
start it with ``--port 0`` and read where it listens.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mock",
        help="serve mock OpenAI and Anthropic endpoints, with scripted replies and faults",
        description="Serve mock OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) endpoints "
        "until SIGINT or SIGTERM. The first line printed is the URL.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default: 8080)")
    p.add_argument("--script", metavar="PATH", default=None, help="YAML file of replies, faults and limits per model")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from policyrouter.testing.mock_server import MockScriptError, serve

    try:
        return serve(args.host, args.port, args.script)
    except MockScriptError as exc:
        print(f"policyrouter mock: error: {exc}", file=sys.stderr)
        return 2
