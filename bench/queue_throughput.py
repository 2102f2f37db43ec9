"""Queue throughput: submit and dispatch jobs/s on SQLite and Redis, beside arq on the same Redis.

    pip install -e '.[dev,bench]'    # arq is in the bench extra; redis-server on PATH
    python bench/queue_throughput.py [--n 2000] [--concurrency 4] [--json results.json]

Each job is one request of a one-model task on the in-process ``kind: mock`` provider (0 ms):
what is measured is the queue and the router's own work (ledger, limits, state). Rows:

* ``submit``: ``router.submit`` one job after another, one thread.
* ``dispatch``: one ``Worker`` process with ``--concurrency`` threads draining the backlog
  (take with the ordering rule, lease, ``Router.complete``, store the result).
* ``complete``: the same requests through ``Router.complete`` directly, no queue, one
  thread. ``overhead`` is the time per job of ``Worker.run_one`` (take, run, store; one
  thread, a quarter of the backlog) minus the time per ``Router.complete``.
* ``arq``: ``enqueue_job`` of a no-op function, then an arq burst worker with
  ``max_jobs=--concurrency`` draining them, on the same redis-server. arq does no
  priorities, no fairness, no budgets or ledger: the goal is to match its throughput while
  doing all of that.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _benchlib import machine_info, write_json
from redis_overhead import redis_server

from policyrouter import Router, Worker

POLICY = """version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01, pricing: {input: 1.0, output: 2.0}}
tiers:
  t: [a]
budgets:
  daily: {scope: global, window: day, limit_usd: 1000000}
state: STATE
tasks:
  s: {tier: t, max_input_tokens: 1000, max_output_tokens: 20}
queues:
  q:
    tasks: [s]
    priority: {metadata: {customer_tier: {enterprise: 1, free: 5}}}
"""


def run_ours(policy: Path, env: dict[str, str], n: int, concurrency: int) -> dict[str, float]:
    seq = n // 4  # drained one by one on one thread, for the per-job overhead
    with Router.from_path(policy, environ=env) as router:
        t0 = time.perf_counter()
        for i in range(n):
            tier = ("enterprise", "free")[i % 2]
            router.submit("s", f"job {i}", tenant=f"t{i % 10}", metadata={"customer_tier": tier})
        submit_s = time.perf_counter() - t0
        jobs = router.jobs()
        view = jobs.views["q"]
        worker = Worker(router, concurrency=concurrency, poll_s=0.01)
        t0 = time.perf_counter()
        for _ in range(seq):
            worker.run_one()
        one_by_one_s = time.perf_counter() - t0
        thread = threading.Thread(target=worker.run)
        t0 = time.perf_counter()
        thread.start()
        while True:
            st = jobs.engine.stats(view, router.clock.wall())
            if st.queued == 0 and st.running == 0:
                break
            time.sleep(0.005)
        dispatch_s = time.perf_counter() - t0
        worker.stop()
        thread.join()
        t0 = time.perf_counter()
        for i in range(seq):
            router.complete("s", f"direct {i}", tenant=f"t{i % 10}")
        complete_s = time.perf_counter() - t0
    return {
        "submit_jobs_per_s": n / submit_s,
        "dispatch_jobs_per_s": (n - seq) / dispatch_s,
        "complete_per_s": seq / complete_s,
        "overhead_ms_per_job": (one_by_one_s - complete_s) / seq * 1000,
    }


async def _noop(ctx: dict[str, Any]) -> None:
    return None


async def _arq(url: str, n: int, concurrency: int) -> dict[str, float]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker as ArqWorker

    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    t0 = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("_noop")
    submit_s = time.perf_counter() - t0
    worker = ArqWorker(functions=[_noop], redis_settings=settings, burst=True, max_jobs=concurrency,
                       poll_delay=0.01, handle_signals=False, keep_result=3600)  # fmt: skip
    t0 = time.perf_counter()
    await worker.async_run()
    dispatch_s = time.perf_counter() - t0
    await worker.close()
    await pool.aclose()
    return {"submit_jobs_per_s": n / submit_s, "dispatch_jobs_per_s": n / dispatch_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out: dict[str, Any] = {"n": args.n, "concurrency": args.concurrency, "machine": machine_info()}
    with tempfile.TemporaryDirectory() as d, redis_server(False) as url:
        sqlite_policy = Path(d) / "sqlite.yaml"
        sqlite_policy.write_text(POLICY.replace("STATE", "{backend: sqlite, path: state.sqlite}"))
        redis_policy = Path(d) / "redis.yaml"
        redis_policy.write_text(POLICY.replace("STATE", "{backend: redis, url_env: REDIS_URL, key_prefix: bench}"))
        out["sqlite"] = run_ours(sqlite_policy, {}, args.n, args.concurrency)
        out["redis"] = run_ours(redis_policy, {"REDIS_URL": url}, args.n, args.concurrency)
        if importlib.util.find_spec("arq") is None:
            out["arq"] = "not installed (pip install -e '.[bench]')"
        else:
            out["arq"] = asyncio.run(_arq(url, args.n, args.concurrency))
    print(f"{args.n} jobs, concurrency {args.concurrency} (jobs/s; overhead: ms per job over Router.complete)")
    print(f"{'engine':<8} {'submit':>9} {'dispatch':>9} {'complete':>9} {'overhead':>9}")
    for name in ("sqlite", "redis", "arq"):
        r = out[name]
        if isinstance(r, str):
            print(f"{name:<8} {r}")
            continue
        comp = f"{r['complete_per_s']:9.0f}" if "complete_per_s" in r else f"{'-':>9}"
        over = f"{r['overhead_ms_per_job']:9.2f}" if "overhead_ms_per_job" in r else f"{'-':>9}"
        print(f"{name:<8} {r['submit_jobs_per_s']:9.0f} {r['dispatch_jobs_per_s']:9.0f} {comp} {over}")
    write_json(args.json, out)


if __name__ == "__main__":
    sys.exit(main())
