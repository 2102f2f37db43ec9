"""Time to first token: ``Router.stream`` / ``Router.astream`` vs the raw SDKs' streams.

    pip install -e '.[dev]'
    python bench/ttft.py [--n 1000] [--per-round 5] [--json results.json]

One ``MockLLMServer`` (in a subprocess by default, so its CPU does not share the
client's GIL) streams a 40-word answer over SSE. Every client makes ``N`` streamed
calls, interleaved round by round so machine noise hits all of them alike. Time to first
token is measured from the call to the first text delta in hand; the rest of the stream
is then drained (untimed for TTFT, timed for the total) so connections are pooled the
same way for every client.

Clients, each against the raw SDK call it wraps:

* raw ``openai.OpenAI`` stream (``stream_options.include_usage``, as the router sends)
  vs ``Router.stream`` on a one-model plan and on a production-like plan (2-model chain,
  retry policy, breaker, rate and concurrency limits, a global and a per-tenant budget:
  the reservation is held for the whole stream);
* raw ``anthropic.Anthropic`` stream vs ``Router.stream`` on a one-model plan;
* raw ``openai.AsyncOpenAI`` stream vs ``Router.astream`` (sequential, one event loop).

The target: policyrouter's p50 TTFT <= 1.05x the raw SDK's. Read the ratios, not the
microseconds: the absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _benchlib as bl

OPENAI_ID = "gpt-4.1-mini-2025-04-14"
FALLBACK_ID = "gpt-4.1-2025-04-14"
CLAUDE_ID = "claude-haiku-4-5-20251001"
PROMPT = "Summarize this ticket: the export button does nothing since the last update. " * 3
MAX_TOKENS = 256
TIMEOUT_S = 30.0
KEY_ENV = "BENCH_OPENAI_API_KEY"
AKEY_ENV = "BENCH_ANTHROPIC_API_KEY"
ENVIRON = {KEY_ENV: "sk-bench-not-a-real-key", AKEY_ENV: "sk-ant-bench-not-a-real-key"}
TTFT_TARGET = 1.05

Timed = Callable[[], tuple[float, float]]
"""One streamed call: ``(seconds to the first text delta, seconds to the end)``."""
ATimed = Callable[[], Awaitable[tuple[float, float]]]


def policy(base_url: str) -> str:
    prod_model = (
        "    context_window: 1047576\n    max_output_tokens: 32768\n"
        "    limits: {rpm: 10000000, tpm: 2000000000, concurrency: 256}\n    circuit_breaker: standard\n"
    )
    return f"""version: 1
providers:
  oai: {{kind: openai, api_key_env: {KEY_ENV}, base_url: '{base_url}/v1'}}
  ant: {{kind: anthropic, api_key_env: {AKEY_ENV}, base_url: '{base_url}'}}
models:
  mini: {{provider: oai, model: {OPENAI_ID}, pricing: {{input: 0.4, output: 1.6}}}}
  haiku: {{provider: ant, model: {CLAUDE_ID}, pricing: {{input: 1.0, output: 5.0}}}}
  mini-prod:
    provider: oai
    model: {OPENAI_ID}
    pricing: {{input: 0.4, output: 1.6}}
{prod_model}  big-prod:
    provider: oai
    model: {FALLBACK_ID}
    pricing: {{input: 2.0, output: 8.0}}
{prod_model}tiers:
  solo: [mini]
  claude: [haiku]
  prod: [mini-prod, big-prod]
retry_policies:
  standard: {{max_attempts: 3, backoff: {{initial_s: 0.5, multiplier: 2, max_s: 20, jitter: full}}}}
circuit_breakers:
  standard: {{failure_threshold: 5, window_s: 60, cooldown_s: 30}}
budgets:
  daily: {{scope: global, window: day, limit_usd: 100000, tasks: [full]}}
  per-tenant: {{scope: tenant, window: month, limit_usd: 10000, tasks: [full]}}
tasks:
  simple: {{tier: solo, max_output_tokens: {MAX_TOKENS}, timeout_s: {TIMEOUT_S}}}
  claude: {{tier: claude, max_output_tokens: {MAX_TOKENS}, timeout_s: {TIMEOUT_S}}}
  full:
    tier: prod
    max_output_tokens: {MAX_TOKENS}
    timeout_s: {TIMEOUT_S}
    max_input_tokens: 100000
    on_input_overflow: truncate_middle
    retry: standard
    stream: {{first_token_timeout_s: 10, idle_timeout_s: 10}}
"""


def _messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT}]


def sync_clients(base_url: str, router: Any) -> tuple[dict[str, Timed], list[Any]]:
    import anthropic
    import openai

    perf = time.perf_counter
    oai = openai.OpenAI(base_url=f"{base_url}/v1", api_key=ENVIRON[KEY_ENV], max_retries=0)
    ant = anthropic.Anthropic(base_url=base_url, api_key=ENVIRON[AKEY_ENV], max_retries=0)

    def raw_openai() -> tuple[float, float]:
        t0 = perf()
        first = 0.0
        stream = oai.chat.completions.create(
            model=OPENAI_ID,
            messages=_messages(),  # type: ignore[arg-type]
            max_completion_tokens=MAX_TOKENS,
            timeout=TIMEOUT_S,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = perf() - t0
        return first, perf() - t0

    def raw_anthropic() -> tuple[float, float]:
        t0 = perf()
        first = 0.0
        stream = ant.messages.create(
            model=CLAUDE_ID,
            messages=_messages(),
            max_tokens=MAX_TOKENS,
            timeout=TIMEOUT_S,
            stream=True,  # type: ignore[arg-type]
        )
        for event in stream:
            if not first and event.type == "content_block_delta":
                first = perf() - t0
        return first, perf() - t0

    def routed(task: str, **kw: Any) -> Timed:
        def call() -> tuple[float, float]:
            t0 = perf()
            first = 0.0
            for chunk in router.stream(task, PROMPT, **kw):
                if not first and chunk.type == "text":
                    first = perf() - t0
            return first, perf() - t0

        return call

    clients: dict[str, Timed] = {
        "raw openai.OpenAI": raw_openai,
        "policyrouter, 1-model plan": routed("simple"),
        "policyrouter, prod plan": routed("full", tenant="acme", user="u-42"),
        "raw anthropic.Anthropic": raw_anthropic,
        "policyrouter, anthropic model": routed("claude"),
    }
    for name, fn in clients.items():
        if fn()[0] <= 0:
            raise RuntimeError(f"{name}: no text delta from the mock server")
    return clients, [oai, ant]


BASELINE = {
    "policyrouter, 1-model plan": "raw openai.OpenAI",
    "policyrouter, prod plan": "raw openai.OpenAI",
    "policyrouter, anthropic model": "raw anthropic.Anthropic",
    "policyrouter astream, 1-model plan": "raw openai.AsyncOpenAI",
}


def run_rounds(calls: dict[str, Timed], n: int, per_round: int, warmup: int) -> dict[str, dict[str, Any]]:
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    gc.collect()
    ttft: dict[str, list[float]] = {name: [] for name in names}
    total: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    ptime = time.process_time
    for r in range(max(1, math.ceil(n / per_round))):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = calls[name]
            c0 = ptime()
            for _ in range(per_round):
                first, whole = fn()
                ttft[name].append(first)
                total[name].append(whole)
            cpu[name] += ptime() - c0
    return {
        name: {"ttft": bl.summarize(ttft[name]), "total": bl.summarize(total[name]), "cpu_us": cpu[name] / n * 1e6}
        for name in names
    }


async def async_results(base_url: str, router: Any, n: int, per_round: int, warmup: int) -> dict[str, dict[str, Any]]:
    import openai

    perf = time.perf_counter
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=ENVIRON[KEY_ENV], max_retries=0)

    async def raw() -> tuple[float, float]:
        t0 = perf()
        first = 0.0
        stream = await client.chat.completions.create(
            model=OPENAI_ID,
            messages=_messages(),  # type: ignore[arg-type]
            max_completion_tokens=MAX_TOKENS,
            timeout=TIMEOUT_S,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = perf() - t0
        return first, perf() - t0

    async def routed() -> tuple[float, float]:
        t0 = perf()
        first = 0.0
        async for chunk in router.astream("simple", PROMPT):
            if not first and chunk.type == "text":
                first = perf() - t0
        return first, perf() - t0

    calls: dict[str, ATimed] = {"raw openai.AsyncOpenAI": raw, "policyrouter astream, 1-model plan": routed}
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            await calls[name]()
    ttft: dict[str, list[float]] = {name: [] for name in names}
    total: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    ptime = time.process_time
    for r in range(max(1, math.ceil(n / per_round))):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            c0 = ptime()
            for _ in range(per_round):
                first, whole = await calls[name]()
                ttft[name].append(first)
                total[name].append(whole)
            cpu[name] += ptime() - c0
    await client.close()
    await router.aclose()
    return {
        name: {"ttft": bl.summarize(ttft[name]), "total": bl.summarize(total[name]), "cpu_us": cpu[name] / n * 1e6}
        for name in names
    }


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    for name, r in results.items():
        base = BASELINE.get(name)
        if base is not None and base in results:
            r["ttft_p50_ratio"] = r["ttft"]["p50_us"] / results[base]["ttft"]["p50_us"]
            r["total_p50_ratio"] = r["total"]["p50_us"] / results[base]["total"]["p50_us"]
            r["cpu_ratio"] = r["cpu_us"] / results[base]["cpu_us"]


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    fmt, ok = bl.fmt, bl.verdict
    table = Table(title="time to first token: policyrouter vs the raw SDK stream", title_justify="left")
    cols = ("client", "TTFT p50", "p90", "p99", "vs raw", "stream p50", "vs raw", "CPU/call", "vs raw", "target", "")
    for col in cols:
        table.add_column(col, justify="left" if col in ("client", "target", "") else "right", no_wrap=True)
    for section in ("sync", "async"):
        for name, r in results[section].items():
            ratio = r.get("ttft_p50_ratio")
            table.add_row(
                name,
                fmt(r["ttft"]["p50_us"], 0, " µs"),
                fmt(r["ttft"]["p90_us"], 0, " µs"),
                fmt(r["ttft"]["p99_us"], 0, " µs"),
                fmt(ratio, 3, "x"),
                fmt(r["total"]["p50_us"], 0, " µs"),
                fmt(r.get("total_p50_ratio"), 3, "x"),
                fmt(r["cpu_us"], 0, " µs"),
                fmt(r.get("cpu_ratio"), 2, "x"),
                f"TTFT p50 <= {TTFT_TARGET}x" if ratio is not None else "",
                ok(ratio <= TTFT_TARGET) if ratio is not None else "",
            )
        table.add_section()
    console = Console(width=190)
    console.print(table)
    console.print(
        f"{results['n']} streamed calls per client, server: {results['server']}; {bl.load_line(results['machine'])}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="streamed calls per client (default 1000)")
    p.add_argument("--per-round", type=int, default=5, help="calls per client per round (default 5)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up calls per client (default 50)")
    p.add_argument("--server", choices=("subprocess", "inprocess"), default="subprocess")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from policyrouter import Router

    args = parse_args(argv)
    results: dict[str, Any] = {"machine": bl.machine_info(), "server": args.server, "n": args.n}
    with tempfile.TemporaryDirectory(prefix="policyrouter-ttft-") as tmpdir, bl.mock_server(args.server) as base_url:
        path = Path(tmpdir) / "policy.yaml"
        path.write_text(policy(base_url))
        router = Router.from_path(path, environ=ENVIRON)
        clients, raw = sync_clients(base_url, router)
        results["sync"] = run_rounds(clients, args.n, args.per_round, args.warmup)
        for client in raw:
            client.close()
        router.close()
        arouter = Router.from_path(path, environ=ENVIRON)
        results["async"] = asyncio.run(async_results(base_url, arouter, args.n, args.per_round, args.warmup))
    add_ratios(results["sync"])
    add_ratios(results["async"])
    render(results)
    bl.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
