"""The first request of a fresh process: what its attempt's latency counts, cold and warmed.

Each run is a new interpreter with a loopback ``MockLLMServer`` (no latency) and a one-model
OpenAI policy. Cold: the first request imports the SDK and builds the client before its
attempt starts (``Attempt.started_s``), so the attempt's ``latency_s`` is the call alone.
Warm: ``Router.from_path(..., warm=True)`` pays that (and the TCP connect) at startup.

    python bench/cold_start.py [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{url}"}}
models:
  gpt: {{provider: openai, model: gpt-mini-2025-01-01, pricing: {{input: 1.0, output: 2.0}}}}
tiers: {{t: [gpt]}}
tasks:
  ask: {{tier: t, max_output_tokens: 50}}
"""


def child(warm: bool) -> dict[str, float]:
    """One fresh process's first request (milliseconds)."""
    from policyrouter import Router
    from policyrouter.testing import MockLLMServer

    with MockLLMServer() as server, tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.yaml"
        path.write_text(POLICY.format(url=server.openai_base_url))
        t0 = time.perf_counter()
        router = Router.from_path(path, environ={"OPENAI_API_KEY": "sk-bench"}, warm=warm)
        built = time.perf_counter() - t0
        result = router.complete("ask", "hello there")
        attempt = result.attempts[0]
        router.close()
    return {
        "from_path_ms": built * 1000,
        "request_ms": result.latency_s * 1000,
        "attempt_started_ms": attempt.started_s * 1000,
        "attempt_latency_ms": attempt.latency_s * 1000,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="fresh processes per variant (default 5; medians shown)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--child", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child == "warm")))
        return
    results: dict[str, Any] = {}
    for variant in ("cold", "warm"):
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        results[variant] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"{'':6} {'from_path':>10} {'request':>10} {'attempt starts':>15} {'attempt latency':>16}  (ms, medians)")
    for variant, r in results.items():
        print(
            f"{variant:6} {r['from_path_ms']:10.1f} {r['request_ms']:10.1f} "
            f"{r['attempt_started_ms']:15.1f} {r['attempt_latency_ms']:16.1f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
