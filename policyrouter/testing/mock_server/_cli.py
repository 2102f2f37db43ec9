"""Serve a mock server until SIGINT or SIGTERM: ``policyrouter mock`` and
``python -m policyrouter.testing.mock_server`` both run :func:`serve`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from policyrouter.testing.mock_server._script import MockScriptError
from policyrouter.testing.mock_server._server import MockLLMServer

__all__ = ["main", "serve"]


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    script: str | os.PathLike[str] | None = None,
    *,
    out: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """Start a :class:`MockLLMServer` (configured from ``script``), print its URL as the
    first line of ``out`` (stdout), then the base URLs for the SDKs (``as_json``: one JSON
    object with ``url``, ``openai_base_url``, ``anthropic_base_url``, ``script``, ``models``
    on the first line), and serve until SIGINT or SIGTERM. Port 0 picks a free port. Returns 0 once stopped; raises
    :class:`MockScriptError` for a bad script (before binding) and ``OSError`` when the
    address cannot be bound."""
    out = out if out is not None else sys.stdout
    server = MockLLMServer(host=host, port=port)
    loaded = server.load_script(script) if script is not None else None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            if as_json:
                startup = {
                    "url": server.url,
                    "openai_base_url": server.openai_base_url,
                    "anthropic_base_url": server.anthropic_base_url,
                    "script": str(loaded.file) if loaded is not None else None,
                    "models": list(loaded.models) if loaded is not None else [],
                }
                print(json.dumps(startup), file=out, flush=True)
            else:
                print(server.url, file=out)
                print(f"OpenAI base_url: {server.openai_base_url}", file=out)
                print(f"Anthropic base_url: {server.anthropic_base_url}", file=out)
                if loaded is not None:
                    print(f"script: {loaded.file} ({', '.join(loaded.models) or 'no models'})", file=out)
                print("serving until SIGINT (Ctrl-C) or SIGTERM", file=out, flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m policyrouter.testing.mock_server [--host H] [--port P] [--script FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m policyrouter.testing.mock_server",
        description="Serve mock OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) endpoints "
        "(the same as `policyrouter mock`).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default: 8080)")
    parser.add_argument("--script", metavar="PATH", default=None, help="YAML mock script of replies and faults")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: expected a whole number from 0 to 65535, got {args.port}")
    try:
        return serve(args.host, args.port, args.script)
    except MockScriptError as exc:
        print(exc, file=sys.stderr)
        return 2
