"""Speed of the policies-as-code tools: `simulate` on 1,000,000 records, `test` on 1,000 cases.

    python bench/policyops_speed.py [--records 1000000] [--cases 1000] [--json out.json]

Simulate: a generated one-day traffic file (four tasks of policies/production.yaml,
50 tenants, a third of the requests from enterprise customers) replayed through the
production policy with budgets scaled to that traffic (daily $4,000: the soft limit
degrades the evening; the degraded tier's rate limits then refuse part of the traffic
as `all_models_failed`). Reported: the time to read and parse the file alone (the floor
any replay pays), the replay of one policy through the router's one engine, and a replay
with --baseline (two plans, one pass over the file), as wall time and microseconds per
record. Policy tests: the shipped example cases repeated to 1,000 (unique names), run as
`policyrouter test` runs them (discovery, load, compile, run).
Goals: simulate 1M records < 120 s through the one engine; 1,000 policy test cases < 5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _benchlib import load_line, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
DAY = 1_772_409_600.0  # 2026-03-02T00:00:00Z

TASKS = {"summarize": (1500, 300), "classify": (400, 5), "chat": (2000, 400), "extract_invoice": (5000, 800)}


def bench_policy(tmp: Path) -> Path:
    text = (ROOT / "policies" / "production.yaml").read_text()
    text = text.replace("limit_usd: 200", "limit_usd: 4000").replace("limit_usd: 50", "limit_usd: 1000")
    d = tmp / "policy"
    d.mkdir()
    (d / "production.yaml").write_text(text)
    return d


def cheaper(tmp: Path, policy: Path) -> Path:
    text = (policy / "production.yaml").read_text()
    text = text.replace("  simple: [gpt-mini, haiku]", "  simple: [haiku, gpt-mini]")
    d = tmp / "candidate"
    d.mkdir()
    (d / "production.yaml").write_text(text)
    return d


CPU: dict[str, float] = {}


def timed(fn: object, name: str = "") -> tuple[float, object]:
    """Wall seconds (and CPU seconds of this process, kept in ``CPU[name]``)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()  # type: ignore[operator]
    wall = time.perf_counter() - t0
    if name:
        CPU[name] = time.process_time() - c0
    return wall, out


def policy_test_file(tmp: Path, n: int) -> Path:
    src = yaml.safe_load((ROOT / "policies" / "tests" / "production.policytest.yaml").read_text())
    cases = src["cases"]
    src["cases"] = [{**cases[i % len(cases)], "name": f"{cases[i % len(cases)]['name']} #{i}"} for i in range(n)]
    src["policy"] = str(ROOT / "policies")
    d = tmp / "tests"
    d.mkdir()
    path = d / "bench.policytest.yaml"
    path.write_text(yaml.safe_dump(src, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=1_000)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the two-policy replay")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import logging

    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy
    from policyrouter.policytest import run_paths
    from policyrouter.simulate import generate_traffic, read_traffic, simulate, write_traffic

    # the shipped tests script auth failures, which the router logs at ERROR by design
    logging.getLogger("policyrouter").addHandler(logging.NullHandler())
    info = machine_info()
    print(load_line(info))
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        policy = bench_policy(tmp)
        plan = compile_policy(load_policy(policy), None)
        traffic = tmp / "day.jsonl"
        tenants = [f"tenant-{i:02d}" for i in range(50)]
        meta = [None, None, {"customer_tier": "enterprise"}]
        t_gen, _ = timed(
            lambda: write_traffic(
                generate_traffic(args.records, start=DAY, tasks=TASKS, tenants=tenants, metadata=meta), traffic
            )
        )
        size_mb = traffic.stat().st_size / 1e6
        print(f"generated {args.records:,} records ({size_mb:.0f} MB) in {t_gen:.1f} s")

        t_read, n = timed(lambda: sum(1 for _ in read_traffic(traffic)), "read + parse only (floor)")
        rows.append(("read + parse only (floor)", t_read, f"{n:,} records"))
        t_sim, reports = timed(lambda: simulate([("production", plan)], read_traffic(traffic)), "simulate, one policy")
        r = reports[0]  # type: ignore[index]
        rows.append(
            (
                "simulate, one policy",
                t_sim,
                f"${r.cost_usd:,.0f}, {r.degraded:,} degraded, {r.rejected_total:,} rejected",
            )
        )
        if not args.skip_baseline:
            cand = compile_policy(load_policy(cheaper(tmp, policy)), None)
            t_both, both = timed(
                lambda: simulate([("production", plan), ("candidate", cand)], read_traffic(traffic)),
                "simulate --baseline (2 plans)",
            )
            rows.append(("simulate --baseline (2 plans)", t_both, f"candidate ${both[1].cost_usd:,.0f}"))  # type: ignore[index]

        tests = policy_test_file(tmp, args.cases)
        t_tests, report = timed(lambda: run_paths([tests]), "policy test run")
        rows.append(("policy test run", t_tests, f"{report.passed:,} passed, {report.failed} failed"))  # type: ignore[attr-defined]

    print()
    print(f"{'what':<32} {'wall s':>8} {'cpu s':>8} {'per item':>12}  notes")
    print("-" * 104)
    per = {
        "read + parse only (floor)": args.records,
        "simulate, one policy": args.records,
        "simulate --baseline (2 plans)": args.records,
        "policy test run": args.cases,
    }
    for name, secs, note in rows:
        print(f"{name:<32} {secs:>8.2f} {CPU[name]:>8.2f} {secs / per[name] * 1e6:>9.1f} us  {note}")
    sim = dict((name, secs) for name, secs, _ in rows)
    print()
    goal_sim = sim["simulate, one policy"] * 1_000_000 / args.records
    goal_test = sim["policy test run"] * 1_000 / args.cases
    cpu_sim = CPU["simulate, one policy"] * 1_000_000 / args.records
    ok_sim, ok_test = "ok" if goal_sim < 120 else "MISSED", "ok" if goal_test < 5 else "MISSED"
    print(f"simulate, 1,000,000 records: {goal_sim:.1f} s wall, {cpu_sim:.1f} s cpu (goal < 120 s): {ok_sim}")
    print(f"policy tests, 1,000 cases:   {goal_test:.2f} s wall (goal < 5 s): {ok_test}")
    print("(wall time on a loaded shared machine runs above cpu time; see the load line at the top)")
    print(f"simulate / parse floor: {sim['simulate, one policy'] / sim['read + parse only (floor)']:.1f}x")
    write_json(
        args.json,
        {
            "machine": info,
            "records": args.records,
            "cases": args.cases,
            "results": [{"name": n, "seconds": s, "cpu_seconds": CPU[n], "note": note} for n, s, note in rows],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
