"""Chaos: many requests, 30% injected faults, random latency; the books must balance.

    python bench/chaos.py [--n 10000] [--fault-rate 0.3] [--state memory|sqlite|redis] [--json PATH]

Half the requests run as ``Router.acomplete`` under ``asyncio`` (``--concurrency``
at a time), half as ``Router.complete`` from a thread pool, all through one router and
one state backend, against an in-process provider that sleeps a random 0-2 ms and
fails ``--fault-rate`` of its calls with a random error kind (some with ``retry-after``,
some having consumed tokens, the way a content filter bills). The policy has a 2-model
fallback chain, retries with (short) backoff, circuit breakers, a client-side
concurrency limit, a cache with stale-if-error, a global budget and a per-tenant budget
one tenant runs out of.

It asserts, and exits 1 on any violation:

- no untyped exception: every failure is a ``policyrouter.errors.RouterError``;
- attempts never exceed the policy: upstream calls per request <= the plan's worst
  case, and per model <= its retry policy's ``max_attempts``;
- the ledger's sum equals the sum of ``Result.cost_usd`` (plus the cost of failed
  requests' attempts, which the ledger records too), and each budget counter's spend
  equals the ledger's sum over the requests it covers;
- no reservation is left behind, no budget counter still holds a reserved amount,
  and no hard limit was exceeded;
- the provider saw exactly as many calls as the traces report.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _benchlib as bl

KINDS = (
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "content_filter",
    "auth",
    "not_found",
    "context_length",
    "bad_request",
)
TENANTS = ("acme", "globex", "initech", "poor")  # "poor" has a tiny budget
MAX_ATTEMPTS = 3

POLICY = """
version: 1
providers:
  chaos: {kind: mock}
models:
  main:
    provider: chaos
    model: gpt-4.1-mini-2025-04-14
    pricing: {input: 0.4, output: 1.6, cached_input: 0.1}
    context_window: 128000
    max_output_tokens: 4096
    limits: {concurrency: 48, on_limit: wait, max_wait_s: 5}
    circuit_breaker: default
  backup:
    provider: chaos
    model: claude-haiku-4-5-20251001
    pricing: {input: 1.0, output: 5.0}
    context_window: 200000
    max_output_tokens: 4096
    circuit_breaker: default
tiers:
  main: [main, backup]
retry_policies:
  default:
    max_attempts: %(max_attempts)d
    backoff: {initial_s: 0.001, multiplier: 2, max_s: 0.004, jitter: full}
    retry_on: [rate_limited, overloaded, server_error, timeout, connection]
    respect_retry_after: true
circuit_breakers:
  default: {failure_threshold: 100, window_s: 0.5, cooldown_s: 0.05}
budgets:
  daily: {scope: global, window: day, limit_usd: 1000000}
  per-tenant: {scope: tenant, window: month, limit_usd: 100}
  poor-tenant: {scope: tenant, window: month, limit_usd: 0.02}
tasks:
  answer:
    tier: main
    max_input_tokens: 2000
    on_input_overflow: truncate_middle
    max_output_tokens: 256
    temperature: 0.7
    timeout_s: 5
    deadline_s: 10
    budgets: [daily, per-tenant]
  lookup:
    tier: main
    max_input_tokens: 2000
    max_output_tokens: 128
    temperature: 0
    timeout_s: 5
    deadline_s: 10
    cache: {ttl_s: 0.2, stale_if_error_s: 60}
    budgets: [daily, poor-tenant]
"""


class ChaosProvider:
    """A provider that waits a random 0-``max_latency_s`` and fails ``fault_rate`` of calls."""

    kind = "mock"

    def __init__(self, name: str, fault_rate: float, max_latency_s: float, seed: int) -> None:
        self.name = name
        self._fault_rate = fault_rate
        self._max_latency_s = max_latency_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.faults: Counter[str] = Counter()

    def _draw(self) -> tuple[float, str | None, float | None, float, int]:
        with self._lock:  # random.Random is not thread-safe for reproducibility
            self.calls += 1
            rng = self._rng
            latency = rng.random() * self._max_latency_s
            kind = rng.choice(KINDS) if rng.random() < self._fault_rate else None
            retry_after = rng.choice((None, None, 0.001, 0.003)) if kind == "rate_limited" else None
            if kind is not None:
                self.faults[kind] += 1
            return latency, kind, retry_after, rng.random(), rng.randint(1, 256)

    def _answer(self, request: Any, kind: str | None, retry_after: float | None, share: float, n_out: int) -> Any:
        from policyrouter.errors import ProviderError
        from policyrouter.tokens import count_messages
        from policyrouter.types import ProviderResponse, Usage

        # a real tokenizer counts no more than the router's (conservative) estimate
        estimate = count_messages(request.messages, request.system)
        n_in = max(1, int(estimate * (0.5 + share / 2)))
        if kind is not None:
            # a refusal is billed (the prompt was read); the others cost nothing
            usage = Usage(n_in, min(n_out, 20)) if kind == "content_filter" else None
            raise ProviderError(
                kind, f"chaos: injected {kind}", status_code=500, retry_after_s=retry_after, usage=usage
            )
        cached = n_in // 4 if n_in % 3 == 0 else 0
        return ProviderResponse(
            f"[{request.model}] ok",
            Usage(n_in, min(n_out, request.max_output_tokens), cached_input_tokens=cached),
            request_id=f"chaos-{n_in}-{n_out}",
        )

    def complete(self, request: Any) -> Any:
        latency, kind, retry_after, share, n_out = self._draw()
        time.sleep(latency)
        return self._answer(request, kind, retry_after, share, n_out)

    async def acomplete(self, request: Any) -> Any:
        latency, kind, retry_after, share, n_out = self._draw()
        await asyncio.sleep(latency)
        return self._answer(request, kind, retry_after, share, n_out)

    def stream(self, request: Any, *, read_timeout_s: float | None = None) -> Any:
        """Not streamed here: one final event carrying the whole answer."""
        from policyrouter.providers.base import StreamEvent

        yield StreamEvent(response=self.complete(request))

    async def astream(self, request: Any, *, read_timeout_s: float | None = None) -> Any:
        from policyrouter.providers.base import StreamEvent

        yield StreamEvent(response=await self.acomplete(request))

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        return None

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        return None

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Books:
    """What the callers saw, thread-safe."""

    def __init__(self, worst_calls: dict[str, int]) -> None:
        self.lock = threading.Lock()
        self.worst_calls = worst_calls
        self.outcomes: Counter[str] = Counter()
        self.result_cost = 0.0
        self.failed_cost = 0.0
        self.calls_seen = 0
        self.max_calls = 0
        self.by_tenant: Counter[str] = Counter()
        self.violations: list[str] = []
        self.stale = 0
        self.cache_hits = 0

    def _check_attempts(self, task: str, attempts: Any, who: str) -> int:
        calls = [a for a in attempts if a.outcome != "skipped"]
        per_model = Counter(a.model for a in calls)
        if len(calls) > self.worst_calls[task]:
            self.violations.append(f"{who}: {len(calls)} calls > worst case {self.worst_calls[task]}")
        for model, n in per_model.items():
            if n > MAX_ATTEMPTS:
                self.violations.append(f"{who}: {n} attempts on {model} > max_attempts {MAX_ATTEMPTS}")
        return len(calls)

    def ok(self, task: str, tenant: str, r: Any) -> None:
        with self.lock:
            n = self._check_attempts(task, r.attempts, f"result {r.request_id}")
            self.calls_seen += n
            self.max_calls = max(self.max_calls, n)
            self.result_cost += r.cost_usd
            self.by_tenant[tenant] += 1
            self.stale += r.stale
            self.cache_hits += r.cache_hit and not r.stale
            self.outcomes["stale" if r.stale else "cache hit" if r.cache_hit else "ok"] += 1
            if r.cache_hit and not r.stale and r.cost_usd != 0:
                self.violations.append(f"cache hit {r.request_id} billed {r.cost_usd}")

    def error(self, task: str, exc: BaseException) -> None:
        from policyrouter.errors import RouterError

        with self.lock:
            if not isinstance(exc, RouterError):
                self.outcomes[f"UNTYPED {type(exc).__name__}"] += 1
                self.violations.append(f"untyped exception {type(exc).__name__}: {exc!r}")
                return
            n = self._check_attempts(task, exc.attempts, f"{type(exc).__name__} {exc.request_id}")
            self.calls_seen += n
            self.max_calls = max(self.max_calls, n)
            self.failed_cost += sum(a.cost_usd for a in exc.attempts)
            self.outcomes[type(exc).__name__] += 1


def _request(i: int, rng: random.Random) -> tuple[str, str, str]:
    task = "lookup" if i % 4 == 0 else "answer"
    tenant = TENANTS[i % len(TENANTS)]
    # lookups repeat (cache hits, stale-if-error); answers are unique
    text = f"look up item {i % 50}" if task == "lookup" else f"question {i}: " + "word " * rng.randint(1, 400)
    return task, tenant, text


async def _run_async(router: Any, books: Books, indices: list[int], concurrency: int, seed: int) -> None:
    rng = random.Random(seed)
    queue = list(reversed([(i, *_request(i, rng)) for i in indices]))

    async def worker() -> None:
        while queue:
            _, task, tenant, text = queue.pop()
            try:
                r = await router.acomplete(task, text, tenant=tenant, user=f"u-{tenant}")
            except Exception as exc:
                books.error(task, exc)
            else:
                books.ok(task, tenant, r)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _run_threads(router: Any, books: Books, indices: list[int], threads: int, seed: int) -> None:
    rng = random.Random(seed)
    work = [(i, *_request(i, rng)) for i in indices]

    def one(item: tuple[int, str, str, str]) -> None:
        _, task, tenant, text = item
        try:
            r = router.complete(task, text, tenant=tenant, user=f"u-{tenant}")
        except Exception as exc:
            books.error(task, exc)
        else:
            books.ok(task, tenant, r)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, work))


def _state(kind: str, tmp: Path, stack: ExitStack) -> Any:
    """The state backend; ``redis`` starts a throwaway ``redis-server`` on loopback
    (``bench/redis_overhead.py``'s) for the run."""
    if kind == "redis":
        from redis_overhead import redis_server

        from policyrouter.state.redis import RedisState

        return RedisState(stack.enter_context(redis_server(appendonly=False)), key_prefix="chaos")
    if kind == "sqlite":
        from policyrouter.state.sqlite import SqliteState

        return SqliteState(tmp / "chaos.sqlite")
    from policyrouter.state.memory import MemoryState

    return MemoryState(ledger_max_rows=10_000_000)


def _slots_in_use(state: Any, model: str) -> int:
    if hasattr(state, "slots_in_use"):
        return int(state.slots_in_use(model))
    rows = state._read("SELECT n FROM slots WHERE model = ?", (model,))  # SqliteState has no accessor
    return int(rows[0][0]) if rows else 0


def run(n: int, fault_rate: float, concurrency: int, threads: int, state_kind: str, seed: int) -> dict[str, Any]:
    from policyrouter import Router

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="policyrouter-chaos-")))
        (tmp / "policy.yaml").write_text(POLICY % {"max_attempts": MAX_ATTEMPTS})
        provider = ChaosProvider("chaos", fault_rate, 0.002, seed)
        state = _state(state_kind, tmp, stack)
        router = Router.from_path(tmp / "policy.yaml", providers={"chaos": provider}, state=state)
        worst = {name: tp.worst_case.calls for name, tp in router.plan.tasks.items()}
        books = Books(worst)
        half = n // 2
        started = time.perf_counter()
        asyncio.run(_run_async(router, books, list(range(half)), concurrency, seed))
        t_async = time.perf_counter() - started
        _run_threads(router, books, list(range(half, n)), threads, seed + 1)
        elapsed = time.perf_counter() - started

        rows = state.ledger_rows()
        ledger_sum = math.fsum(r.cost_usd for r in rows)
        expected = books.result_cost + books.failed_cost
        if not math.isclose(ledger_sum, expected, rel_tol=1e-9, abs_tol=1e-12):
            books.violations.append(f"ledger sum {ledger_sum!r} != results + failed attempts {expected!r}")
        open_res = state.open_reservations()
        if open_res:
            books.violations.append(f"{open_res} reservations left behind")
        slots = {m: _slots_in_use(state, m) for m in router.plan.models}
        if any(slots.values()):
            books.violations.append(f"concurrency slots left held: {slots}")
        counters = state.budget_counters("")
        limits = {b.name: b.limit_usd for b in router.plan.budgets.values()}
        held = [(k, reserved) for k, _, reserved in counters if reserved > 1e-12]
        if held:
            books.violations.append(f"budget counters still hold reservations: {held[:3]}")
        for key, spent, _ in counters:
            limit = limits[key.split("|", 1)[0]]
            if spent > limit + 1e-9:
                books.violations.append(f"{key}: spent {spent} over the hard limit {limit}")
        daily = math.fsum(spent for key, spent, _ in counters if key.startswith("daily|"))
        if not math.isclose(daily, ledger_sum, rel_tol=1e-9, abs_tol=1e-12):
            books.violations.append(f"global budget spend {daily!r} != ledger sum {ledger_sum!r}")
        if provider.calls != books.calls_seen:
            books.violations.append(f"provider saw {provider.calls} calls, traces report {books.calls_seen}")
        router.close()
    return {
        "n": n,
        "fault_rate": fault_rate,
        "state": state_kind,
        "concurrency": concurrency,
        "threads": threads,
        "elapsed_s": elapsed,
        "async_s": t_async,
        "outcomes": dict(books.outcomes.most_common()),
        "upstream_calls": provider.calls,
        "faults_injected": dict(provider.faults.most_common()),
        "max_calls_per_request": books.max_calls,
        "worst_case_calls": worst,
        "ledger_rows": len(rows),
        "ledger_sum_usd": ledger_sum,
        "results_cost_usd": books.result_cost,
        "failed_attempts_cost_usd": books.failed_cost,
        "open_reservations": open_res,
        "slots_held": slots,
        "violations": books.violations,
    }


def render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"chaos: {out['n']:,} requests, {out['fault_rate']:.0%} injected faults, {out['state']} state",
        title_justify="left",
    )
    table.add_column("check", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("", no_wrap=True)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in out["outcomes"].items())
    faults = ", ".join(f"{k} {v:,}" for k, v in out["faults_injected"].items())
    untyped = sum(v for k, v in out["outcomes"].items() if k.startswith("UNTYPED"))
    v = out["violations"]
    rows = [
        ("outcomes", outcomes, ""),
        (
            "upstream calls / faults injected",
            f"{out['upstream_calls']:,} / {sum(out['faults_injected'].values()):,}",
            "",
        ),
        ("faults by kind", faults, ""),
        ("untyped exceptions", str(untyped), bl.verdict(untyped == 0)),
        (
            "most upstream calls in one request (plan's worst case)",
            f"{out['max_calls_per_request']} ({', '.join(f'{k} {w}' for k, w in out['worst_case_calls'].items())})",
            bl.verdict(not any("calls >" in x or "attempts on" in x for x in v)),
        ),
        (
            "ledger sum = Σ Result.cost_usd + Σ failed attempts",
            f"${out['ledger_sum_usd']:.6f} = ${out['results_cost_usd']:.6f} + ${out['failed_attempts_cost_usd']:.6f}",
            bl.verdict(not any("ledger sum" in x or "global budget" in x for x in v)),
        ),
        ("ledger rows", f"{out['ledger_rows']:,}", ""),
        ("reservations left behind", str(out["open_reservations"]), bl.verdict(not any("reserv" in x for x in v))),
        (
            "concurrency slots left held",
            str(sum(out["slots_held"].values())),
            bl.verdict(not any("slots" in x for x in v)),
        ),
        ("hard limits held", "", bl.verdict(not any("over the hard limit" in x for x in v))),
        ("provider calls = calls in traces", "", bl.verdict(not any("provider saw" in x for x in v))),
        ("elapsed", f"{out['elapsed_s']:.1f} s ({out['n'] / out['elapsed_s']:,.0f} req/s)", ""),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(140, Console().width))
    console.print(table)
    for line in v[:20]:
        console.print(f"[red]violation:[/red] {line}")
    console.print(
        f"[dim]{bl.load_line(out['machine'])}; asyncio concurrency {out['concurrency']}, {out['threads']} threads[/dim]"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import logging

    # `auth` faults are logged at ERROR by design ("reported loudly"); thousands of them here
    logging.getLogger("policyrouter").setLevel(logging.CRITICAL)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="requests (half async, half threads; default 10000)")
    p.add_argument("--fault-rate", type=float, default=0.3, help="share of upstream calls that fail (default 0.3)")
    p.add_argument("--concurrency", type=int, default=64, help="asyncio concurrency (default 64)")
    p.add_argument("--threads", type=int, default=16, help="threads for the sync half (default 16)")
    p.add_argument(
        "--state", choices=("memory", "sqlite", "redis"), default="memory", help="state backend (default memory)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    out = run(args.n, args.fault_rate, args.concurrency, args.threads, args.state, args.seed)
    out["machine"] = bl.machine_info()
    render(out)
    bl.write_json(args.json, out)
    if out["violations"]:
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
