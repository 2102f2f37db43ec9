"""What the cache and the budget stage cost per request, on each state backend.

    python bench/state_speed.py [--n 20000] [--repeats 7] [--json results.json]

Measures the real stage operations, the way ``Router`` runs them (no network, the
in-process ``kind: mock`` provider):

- cache hit: a full ``Router.complete`` answered from the cache (input handling, the
  request hash, the lookup, the ``Result``), on memory and on SQLite state; and the
  backend's ``cache_get`` alone;
- budget check: one attempt's reservation and settlement through the state backend,
  exactly as ``execute.run`` does it for a model without a breaker or limits (worst case
  over the chain, the task's charge set for the request's scope, ``budget_hold`` then
  ``budget_settle``), on memory and on a SQLite file (WAL, one ``BEGIN IMMEDIATE``
  transaction each).

Variants run in interleaved blocks (order rotated every block); the median block is
reported, the best beside it. Read them beside ``MockProvider direct`` from
``bench/overhead.py``: the absolute microseconds depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _benchlib as bl

CACHE_HIT_TARGET_US = 15.0
BUDGET_MEMORY_TARGET_US = 5.0
BUDGET_SQLITE_TARGET_US = 200.0

PROMPT = "Summarize this ticket: the export button does nothing since the last update. " * 3

POLICY = """
version: 1
providers:
  offline: {kind: mock}
models:
  mini:
    provider: offline
    model: gpt-4.1-mini-2025-04-14
    pricing: {input: 0.4, output: 1.6}
  big:
    provider: offline
    model: gpt-4.1-2025-04-14
    pricing: {input: 2.0, output: 8.0}
tiers:
  solo: [mini]
  prod: [mini, big]
budgets:
  daily: {scope: global, window: day, limit_usd: 1000000000, tasks: [budgeted]}
  per-tenant: {scope: tenant, window: month, limit_usd: 1000000000, tasks: [budgeted]}
tasks:
  cached:
    tier: solo
    max_output_tokens: 64
    temperature: 0
    cache: {ttl_s: 86400}
  budgeted:
    tier: prod
    max_input_tokens: 100000
    max_output_tokens: 64
    temperature: 0.2
"""


def _router(tmp: Path, state: Any) -> Any:
    from policyrouter import Router

    d = tmp / f"policy-{id(state)}"
    d.mkdir()
    (d / "policy.yaml").write_text(POLICY)
    return Router.from_path(d, state=state)


def _cache_hit(router: Any) -> Callable[[], object]:
    first = router.complete("cached", PROMPT, tenant="acme")
    if first.cache_hit:
        raise RuntimeError("the first call should have missed the cache")

    def hit() -> object:
        return router.complete("cached", PROMPT, tenant="acme")

    again = hit()
    if not again.cache_hit or again.text != first.text:
        raise RuntimeError("the second call should have been a cache hit with the same answer")
    return hit


def _cache_get(router: Any) -> Callable[[], object]:
    _req, key = router._prepare(
        "cached", PROMPT, None, user=None, tenant="acme", metadata=None,
        temperature=None, max_output_tokens=None, cache=None, extra=None,
    )  # fmt: skip
    state = router.state
    if key is None or state.cache_get(key) is None:
        raise RuntimeError("no cache entry to read")
    return lambda: state.cache_get(key)


def _budget_check(router: Any) -> Callable[[], object]:
    """One attempt's reserve + settle, the calls ``execute.run`` makes for a task whose models
    have no breaker or limits, in its order: the worst case over the chain, the task's charge set
    for the request's scope, ``budget_hold`` (the reservation), then ``budget_settle``."""
    from policyrouter.execute import LEASE_MARGIN_S
    from policyrouter.tokens import count_messages

    tp = router.plan.tasks["budgeted"]
    if len(tp.budgets) != 2:
        raise RuntimeError("the budgeted task should have two budgets")
    model = tp.default.chain.models[0]
    if model.breaker is not None or model.limits is not None:
        raise RuntimeError("the budgeted task's first model should have no breaker or limits")
    rows = tp.default.chain.price_rows
    charge_sets = tp.charge_sets
    state = router.state
    wall_clock = time.time
    n_in = count_messages(({"role": "user", "content": PROMPT},))
    max_out = tp.max_output_tokens
    lease = tp.deadline_s + LEASE_MARGIN_S
    actual = model.price.worst_case(n_in, max_out) / 2

    def check() -> object:
        amount = 0.0
        for rate, out in rows[0]:  # attempt_worst_case, inlined as in execute.run
            worst = n_in * rate + max_out * out
            if worst > amount:
                amount = worst
        wall = wall_clock()
        rid = state.budget_hold(charge_sets.get("acme", "u-42", model.name, None, wall), amount, wall, lease)
        state.budget_settle(rid, actual, wall_clock())
        return rid

    check()
    return check


def _open(tmp: Path, backend: str) -> Any:
    if backend == "memory":
        from policyrouter.state.memory import MemoryState

        return MemoryState()
    from policyrouter.state.sqlite import SqliteState

    return SqliteState(tmp / "state.sqlite")


def run(n: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="policyrouter-state-bench-") as tmpdir:
        tmp = Path(tmpdir)
        mem = _router(tmp, _open(tmp, "memory"))
        sql = _router(tmp, _open(tmp, "sqlite"))
        fast = {
            "cache hit: Router.complete, memory": _cache_hit(mem),
            "cache hit: MemoryState.cache_get": _cache_get(mem),
            "budget check: reserve+settle, memory": _budget_check(mem),
        }
        # SQLite commits write the WAL: ~100x slower, so fewer calls per block.
        slow = {
            "cache hit: Router.complete, sqlite": _cache_hit(sql),
            "budget check: reserve+settle, sqlite": _budget_check(sql),
        }
        for fns, iters in ((fast, n), (slow, max(1, n // 20))):
            for fn in fns.values():
                for _ in range(max(1, iters // 10)):
                    fn()
        gc.collect()
        results = bl.interleaved_blocks(fast, n, repeats)
        results.update(bl.interleaved_blocks(slow, max(1, n // 20), repeats))
        leaked = {"memory": mem.state.open_reservations(), "sqlite": sql.state.open_reservations()}
        mem.close()
        sql.close()
    for name, r in results.items():
        r["target_us"] = _target(name)
    return {"n": n, "repeats": repeats, "results": results, "open_reservations_after": leaked}


def _target(name: str) -> float | None:
    if name == "cache hit: Router.complete, memory":
        return CACHE_HIT_TARGET_US
    if name == "budget check: reserve+settle, memory":
        return BUDGET_MEMORY_TARGET_US
    if name == "budget check: reserve+settle, sqlite":
        return BUDGET_SQLITE_TARGET_US
    return None


def _gated_value(name: str, r: dict[str, float]) -> float:
    """In-process operations are judged on CPU time (what the router itself spends; on a
    shared machine the wall clock also counts the time other processes held the core);
    SQLite on the wall clock, which includes its file I/O."""
    return r["median_us"] if "sqlite" in name else r["cpu_median_us"]


def render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="policyrouter cache and budget stages, per operation", title_justify="left")
    for col, just in (
        ("operation", "left"),
        ("wall, median", "right"),
        ("wall, best", "right"),
        ("CPU, median", "right"),
        ("target", "left"),
        ("", "left"),
    ):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for name, r in out["results"].items():
        target = r["target_us"]
        gated = _gated_value(name, r)
        table.add_row(
            name,
            bl.fmt(r["median_us"], 1, " µs"),
            bl.fmt(r["best_us"], 1, " µs"),
            bl.fmt(r["cpu_median_us"], 1, " µs"),
            f"<= {target:g} µs {'wall' if 'sqlite' in name else 'CPU'}" if target is not None else "",
            bl.verdict(gated <= target) if target is not None else "",
        )
    leaked = out["open_reservations_after"]
    table.add_row("open reservations after the run", f"{leaked['memory']} / {leaked['sqlite']}", "", "", "0 / 0", "")
    console = Console(width=max(120, Console().width))
    console.print(table)
    console.print(
        f"[dim]{bl.load_line(out['machine'])}; {out['n']} calls per block (sqlite: {max(1, out['n'] // 20)}), "
        f"{out['repeats']} blocks; elapsed {out['elapsed_s']:.0f} s[/dim]"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="calls per block (SQLite: n/20; default 20000)")
    p.add_argument("--repeats", type=int, default=7, help="blocks per variant (default 7)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    started = time.perf_counter()
    out = run(args.n, args.repeats)
    out["machine"] = bl.machine_info()
    out["elapsed_s"] = time.perf_counter() - started
    render(out)
    bl.write_json(args.json, out)
    leaked = out["open_reservations_after"]
    if leaked["memory"] or leaked["sqlite"]:
        raise SystemExit(f"reservations left behind: {leaked}")
    return out


if __name__ == "__main__":
    main()
