"""least_busy across 4 processes sharing one Redis: calls in flight stay spread evenly
(real redis-server, spawned processes, the real openai SDK against MockLLMServer with latency).

The counts are read from Redis while the processes run: what every process's draw reads. A
finished call lowers its model's count before its caller draws again, so a spread of 2 can be
seen for a moment; the test asks that 95% of the steady-state readings be within one."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

from policyrouter import Router
from policyrouter.state.redis import RedisState
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

    async def loop(n: int) -> list[str]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return [(await router.acomplete("s", f"question {n}.{i}")).model for i in range(PER_LOOP)]

    async def run() -> list[str]:
        return [m for ms in await asyncio.gather(*(loop(n) for n in range(LOOPS))) for m in ms]

    try:
        out.put(asyncio.run(run()))
    finally:
        router.close()


def test_least_busy_keeps_in_flight_counts_within_one_across_4_processes(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    total = PROCS * LOOPS * PER_LOOP
    shared = RedisState(redis_url, key_prefix=redis_prefix)
    samples: list[tuple[int, ...]] = []
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
        results: list[list[str]] = []
        while len(results) < PROCS:  # the shared in-flight counts, read from Redis as the processes run
            samples.append(tuple(load.in_flight for load in shared.loads(MODELS)))
            with contextlib.suppress(queue.Empty):
                results.append(q.get(timeout=0.002))
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    shared.close()
    served = Counter(m for r in results for m in r)
    assert sum(served.values()) == total
    assert all(abs(served[m] - total / 3) <= total * 0.05 for m in MODELS), served
    busy = [s for s in samples if sum(s) >= PROCS * LOOPS - 2]  # the steady state: (nearly) every caller in flight
    assert len(busy) >= 100
    spread = Counter(max(s) - min(s) for s in busy)
    assert spread[0] + spread[1] >= 0.95 * len(busy), spread
