"""``python -m policyrouter.testing.mock_server``: serve on a fixed port until interrupted."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from policyrouter.testing.mock_server._server import MockLLMServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted: ``python -m policyrouter.testing.mock_server --port 8080``."""
    parser = argparse.ArgumentParser(
        prog="python -m policyrouter.testing.mock_server",
        description="Serve mock OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) endpoints.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = MockLLMServer(host=args.host, port=args.port)
    server.start()
    print(
        f"MockLLMServer on {server.url}: OpenAI base_url={server.openai_base_url}, "
        f"Anthropic base_url={server.anthropic_base_url}. Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
