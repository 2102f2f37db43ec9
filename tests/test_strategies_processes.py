"""least_busy across 4 processes sharing one Redis: calls in flight stay spread evenly
(real redis-server, spawned processes, the real openai SDK against MockLLMServer with latency)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from pathlib import Path
from typing import Any

from policyrouter import Router
from policyrouter.testing import Fault, MockLLMServer

PROCS, LOOPS, PER_LOOP, LATENCY_S = 4, 3, 20, 0.15
MODELS = ("x", "y", "z")

POLICY = """
version: 1
providers:
  up: {{kind: openai, api_key_env: K, base_url: "{base}"}}
models:
  x: {{provider: up, model: x-2025-01-01}}
  y: {{provider: up, model: y-2025-01-01}}
  z: {{provider: up, model: z-2025-01-01}}
tiers:
  t: {{strategy: least_busy, models: [x, y, z]}}
state: {{backend: redis, url_env: REDIS_URL, key_prefix: "{prefix}"}}
tasks:
  s: {{tier: t, max_output_tokens: 20, timeout_s: 10}}
"""


def _offer(path: str, url: str, start_at: float, out: Any) -> None:
    """``LOOPS`` callers, each sending ``PER_LOOP`` requests one after the other, from ``start_at``."""
    router = Router.from_path(path, environ={"K": "sk-test", "REDIS_URL": url})
    router.complete("s", "warm")  # the SDK imported and a connection open before the start

    async def loop(n: int) -> list[tuple[str, float, float]]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        calls = []
        for i in range(PER_LOOP):
            t0 = time.time()
            model = (await router.acomplete("s", f"question {n}.{i}")).model
            calls.append((model, t0, time.time()))
        return calls

    async def run() -> list[tuple[str, float, float]]:
        return [c for cs in await asyncio.gather(*(loop(n) for n in range(LOOPS))) for c in cs]

    try:
        out.put(asyncio.run(run()))
    finally:
        router.close()


def test_least_busy_keeps_in_flight_counts_within_one_across_4_processes(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    total = PROCS * LOOPS * PER_LOOP
    with MockLLMServer() as server:
        for m in MODELS:
            server.script(f"{m}-2025-01-01", [Fault(latency_s=LATENCY_S)] * (total + PROCS))
        path = tmp_path / "p.yaml"
        path.write_text(POLICY.format(base=server.openai_base_url, prefix=redis_prefix))
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 4.0  # after every process has started and warmed up
        procs = [ctx.Process(target=_offer, args=(str(path), redis_url, start_at, q)) for _ in range(PROCS)]
        for p in procs:
            p.start()
        calls = [c for _ in procs for c in q.get(timeout=120)]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    served = Counter(m for m, _, _ in calls)
    assert sum(served.values()) == total
    # each request's start sees the others in flight (started, not yet returned), per model; in the
    # steady state, while all 12 callers run (not while they start together or finish one by one)
    first_end = min(end for _, _, end in calls)
    ending = sorted(end for _, _, end in calls)[-LOOPS * PROCS]  # the first caller to finish
    spread = []
    for _, t, _ in calls:
        if not first_end < t < ending:
            continue
        counts = Counter(m for m, start, end in calls if start < t < end)
        spread.append(max(counts[m] for m in MODELS) - min(counts[m] for m in MODELS))
    within_one = sum(s <= 1 for s in spread) / len(spread)
    assert len(spread) >= total * 0.8
    assert within_one >= 0.95, Counter(spread)
    assert max(spread) <= 2, Counter(spread)
    assert all(abs(served[m] - total / 3) <= total * 0.05 for m in MODELS), served
