"""The router's own CPU on the SDK path: ``Router.complete`` minus the openai adapter alone.

    python bench/adapter_overhead.py [--blocks 60] [--calls 50] [--json results.json]

One ``MockLLMServer`` in a subprocess, one ``Router`` on ``bench/overhead.py``'s HTTP
policy. In each block the three clients run ``--calls`` calls back to back, their order
reversed every other block: the raw ``openai.OpenAI`` ``chat.completions.create``, the
router's ``OpenAIProvider.complete`` called directly (the same provider object, so the
same client and connection pool), and ``Router.complete`` on the 1-model and prod plans.
Printed: the median over blocks of each block's CPU difference (this thread's CPU time),
paired within the block so machine noise hits both sides alike. The difference includes
what only shows up in situ (the larger code path competes for caches), so it is larger
than ``overhead.py``'s in-process figure on the mock provider.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _benchlib as bl
import overhead as ob


def measure(blocks: int, calls: int, server: str) -> dict[str, Any]:
    import openai

    from policyrouter import ProviderRequest

    with bl.mock_server(server) as base_url, tempfile.TemporaryDirectory() as tmp:
        router = ob._router(ob.http_policy(base_url), Path(tmp), "http")
        provider = router.providers["bench"]
        raw = openai.OpenAI(base_url=f"{base_url}/v1", api_key=ob.ENVIRON[ob.KEY_ENV], max_retries=0)
        messages = ({"role": "user", "content": ob.PROMPT},)

        def raw_call() -> object:
            return raw.chat.completions.create(
                model=ob.MODEL_ID,
                messages=ob._messages(),  # type: ignore[arg-type]
                max_completion_tokens=ob.MAX_TOKENS,
                temperature=ob.TEMPERATURE,
                timeout=ob.TIMEOUT_S,
            )

        def adapter() -> object:
            request = ProviderRequest(ob.MODEL_ID, messages, ob.MAX_TOKENS, None, ob.TEMPERATURE, ob.TIMEOUT_S)
            return provider.complete(request)

        fns: dict[str, Callable[[], object]] = {
            "raw openai SDK": raw_call,
            "adapter": adapter,
            "1-model plan": lambda: router.complete("simple", ob.PROMPT),
            "prod plan": lambda: router.complete("full", ob.PROMPT, tenant="acme", user="u-42"),
        }
        for fn in fns.values():
            for _ in range(max(2, calls)):
                fn()
        cpu: dict[str, list[float]] = {name: [] for name in fns}
        names = list(fns)
        for b in range(blocks):
            for name in names if b % 2 else reversed(names):
                c0 = time.thread_time()
                for _ in range(calls):
                    fns[name]()
                cpu[name].append((time.thread_time() - c0) / calls * 1e6)
        raw.close()
        router.close()
    over: dict[str, float] = {}
    for name in ("raw openai SDK", "1-model plan", "prod plan"):
        over[name] = statistics.median([mine - base for mine, base in zip(cpu[name], cpu["adapter"], strict=True)])
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {"blocks": blocks, "calls": calls, "cpu_us": medians, "over_adapter_us": over}


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CPU per call on the SDK path, vs the openai adapter alone", title_justify="left")
    for col in ("client", "CPU/call", "minus the adapter (paired median)"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for name, value in results["cpu_us"].items():
        over = results["over_adapter_us"].get(name)
        table.add_row(name, bl.fmt(value, 1, " µs"), "" if over is None else bl.fmt(over, 1, " µs"))
    console = Console(width=120)
    console.print(table)
    console.print(bl.load_line(results["machine"]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=60, help="paired blocks (default 60)")
    p.add_argument("--calls", type=int, default=50, help="calls per client per block (default 50)")
    p.add_argument("--server", choices=("subprocess", "inprocess"), default="subprocess")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    results = measure(args.blocks, args.calls, args.server)
    results["machine"] = bl.machine_info()
    render(results)
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
