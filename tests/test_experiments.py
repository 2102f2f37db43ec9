"""Experiments: sticky stable assignment, the split, the kill switch and window, the variant on
every record, feedback, the report against a hand-computed ledger, validate, policy tests."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import pytest

from policyrouter import Router
from policyrouter.cli.main import main
from policyrouter.clock import FakeClock
from policyrouter.compile import compile_policy
from policyrouter.errors import InvalidRequest, PolicyError
from policyrouter.experiments import experiment_report
from policyrouter.policy.loader import load_policy
from policyrouter.state.base import StateBackend
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState
from policyrouter.types import FeedbackRow, LedgerRow

MID_2026 = 1_780_272_000.0  # 2026-06-01T00:00:00Z, inside the experiment's window
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
END = 1_798_761_600.0  # 2027-01-01T00:00:00Z

POLICY = """\
version: 1
providers:
  offline: {kind: mock}
models:
  big: {provider: offline, model: big-2025-01-01, pricing: {input: 3, output: 15}}
  small: {provider: offline, model: small-2025-01-01, pricing: {input: 0.4, output: 1.6}}
tiers:
  complex: [big]
  simple: [small]
tasks:
  summarize:
    tier: complex
    max_output_tokens: 300
    experiments:
      cheaper:
        sticky: user
        start: 2026-01-01T00:00:00Z
        end: 2027-01-01T00:00:00Z
        enabled: true
        variants:
          current: {weight: 70}
          cheap: {weight: 30, tier: simple, max_output_tokens: 200}
environments:
  killed:
    tasks: {summarize: {experiments: {cheaper: {enabled: false}}}}
"""


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def _router(path: Path, state: StateBackend | None = None, wall: float = MID_2026, env: str | None = None) -> Router:
    return Router.from_path(path, env=env, state=state, clock=FakeClock(wall_start=wall))


def _variants(router: Router, users: range) -> list[str | None]:
    return [router.complete(task="summarize", input="hello", user=f"u-{i}").variant for i in users]


def test_same_user_same_variant_across_processes_and_reloads(policy_path: Path) -> None:
    router = _router(policy_path)
    here = _variants(router, range(300))
    assert set(here) == {"current", "cheap"}
    assert _variants(router, range(300)) == here  # again in this process
    assert router.reload().ok
    assert _variants(router, range(300)) == here  # after a reload
    script = (
        "import json, sys\n"
        "from policyrouter import Router\n"
        "from policyrouter.clock import FakeClock\n"
        f"r = Router.from_path(sys.argv[1], clock=FakeClock(wall_start={MID_2026}))\n"
        "print(json.dumps([r.complete(task='summarize', input='hi', user=f'u-{i}').variant for i in range(300)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another process, another str hash
    out = subprocess.run(
        [sys.executable, "-c", script, str(policy_path)], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == here


def test_split_within_two_percent_over_10000_users(policy_path: Path) -> None:
    router = _router(policy_path)
    exp = router.plan.tasks["summarize"].experiment
    assert exp is not None
    picks = [exp.assign(f"user-{i}", None, MID_2026) for i in range(10_000)]
    cheap = sum(1 for v in picks if v is not None and v.name == "cheap")
    assert abs(cheap / 10_000 - 0.30) < 0.02
    # the router serves what the assignment says: the cheap arm runs on the simple tier
    served = [router.complete(task="summarize", input="x", user=f"user-{i}") for i in range(200)]
    for result, pick in zip(served, picks[:200], strict=True):
        assert pick is not None and result.variant == pick.name
        assert result.model == ("small" if pick.name == "cheap" else "big")
        assert result.experiment == "cheaper"


def test_kill_switch_stops_new_assignments_at_once(policy_path: Path) -> None:
    router = _router(policy_path)
    users = [f"u-{i}" for i in range(100)]
    cheap_users = [u for u in users if router.complete(task="summarize", input="x", user=u).variant == "cheap"]
    assert cheap_users
    policy_path.write_text(POLICY.replace("enabled: true", "enabled: false"), encoding="utf-8")
    assert router.reload().ok
    for u in cheap_users:  # the very next request: control, in no experiment
        r = router.complete(task="summarize", input="x", user=u)
        assert (r.variant, r.experiment, r.model) == (None, None, "big")
    policy_path.write_text(POLICY, encoding="utf-8")
    killed = _router(policy_path, env="killed")  # the environment overlay kills it too
    assert {killed.complete(task="summarize", input="x", user=u).variant for u in cheap_users} == {None}


def test_window_and_missing_sticky_key_serve_control_unrecorded(policy_path: Path) -> None:
    for wall in (START - 1, END, END + 86_400):
        router = _router(policy_path, wall=wall)
        assert {
            r.variant for r in (router.complete(task="summarize", input="x", user=f"u-{i}") for i in range(50))
        } == {None}
    router = _router(policy_path, wall=START)  # start is inclusive
    assert router.complete(task="summarize", input="x", user="u-1").variant is not None
    no_user = router.complete(task="summarize", input="x")
    assert (no_user.variant, no_user.model) == (None, "big")


def test_variant_on_ledger_events_and_feedback(policy_path: Path, state: StateBackend) -> None:
    router = _router(policy_path, state=state)
    events: list[dict[str, object]] = []
    router.on("result", events.append)
    router.on("attempt", events.append)
    router.on("feedback", events.append)
    r = router.complete(task="summarize", input="hello", user="u-3")
    assert r.variant in ("current", "cheap") and r.to_dict()["variant"] == r.variant
    assert all(e["variant"] == r.variant and e["experiment"] == "cheaper" for e in events)
    (row,) = [x for x in state.ledger_rows() if x.request_id == r.request_id]
    assert (row.experiment, row.variant, row.fallbacks) == ("cheaper", r.variant, 0)
    assert row.latency_s >= 0
    router.feedback(r.request_id, score=0.5)
    router.feedback(r.request_id, score=1, label="thumbs_up")  # the last one counts
    assert [(f.request_id, f.score, f.label) for f in state.feedback_rows()] == [(r.request_id, 1.0, "thumbs_up")]
    assert events[-1] == {"event": "feedback", "request_id": r.request_id, "score": 1.0, "label": "thumbs_up"}
    plain = router.complete(task="summarize", input="hello")  # not enrolled: no row without budgets or cost
    assert plain.variant is None


@pytest.mark.parametrize(
    ("kwargs", "arguments"),
    [
        ({"request_id": "r", "score": None, "label": None}, ("score",)),
        ({"request_id": "", "score": 1.0}, ("request_id",)),
        ({"request_id": "r", "score": float("nan")}, ("score",)),
        ({"request_id": "r", "score": True}, ("score",)),
        ({"request_id": "r", "label": "x" * 129}, ("label",)),
    ],
)
def test_feedback_refuses_bad_arguments(policy_path: Path, kwargs: dict[str, object], arguments: tuple[str]) -> None:
    router = _router(policy_path)
    with pytest.raises(InvalidRequest) as info:
        router.feedback(**kwargs)  # type: ignore[arg-type]
    assert info.value.arguments == arguments
    assert router.state.feedback_rows() == []


def test_sqlite_ledger_of_an_older_layout_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE ledger (ts REAL NOT NULL, request_id TEXT NOT NULL PRIMARY KEY, task TEXT, route TEXT, "
        "model TEXT, tenant TEXT, user TEXT, input_tokens INTEGER, output_tokens INTEGER, "
        "cached_input_tokens INTEGER, cost_usd REAL, provider_request_ids TEXT, outcome TEXT, "
        "attempts INTEGER, metadata TEXT)"
    )
    conn.execute(
        "INSERT INTO ledger VALUES (1.0, 'old', 't', 'default', 'm', NULL, NULL, 1, 2, 0, 0.5, '', 'ok', 1, '{}')"
    )
    conn.commit()
    conn.close()
    state = SqliteState(path)
    try:
        new = LedgerRow(2.0, "new", "t", "default", "m", None, "u", 1, 2, 0, 0.25, "", "ok", 1, "{}")
        state.ledger_append(replace(new, experiment="e", variant="v", latency_s=1.5))
        old, added = state.ledger_rows()
        assert (old.experiment, old.variant, old.latency_s, old.fallbacks) == (None, None, 0.0, 0)
        assert (added.experiment, added.variant, added.latency_s) == ("e", "v", 1.5)
    finally:
        state.close()


def _row(i: int, variant: str, cost: float, latency: float, outcome: str = "ok", fallbacks: int = 0) -> LedgerRow:
    return LedgerRow(
        ts=MID_2026 + i,
        request_id=f"{variant}-{i}",
        task="summarize",
        route="default",
        model="m",
        tenant=None,
        user=f"u{i}",
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cost_usd=cost,
        provider_request_ids="",
        outcome=outcome,
        attempts=1,
        experiment="cheaper",
        variant=variant,
        latency_s=latency,
        fallbacks=fallbacks,
    )


def test_report_matches_a_hand_computed_ledger(policy_path: Path) -> None:
    """40 requests per arm. current: cost 0.01 (even i) / 0.03 (odd i), latency i/10, 4 errors, 2
    fallbacks, scores 1 on i % 4 == 0 else 0. cheap: cost 0.002 each, latency i/20, 10 errors,
    scores all 1 on the first 30 only."""
    state = MemoryState()
    for i in range(40):
        state.ledger_append(
            _row(
                i, "current", 0.01 if i % 2 == 0 else 0.03, i / 10, "server_error" if i < 4 else "ok", int(i in (5, 6))
            )
        )
        state.feedback_put(FeedbackRow(MID_2026, f"current-{i}", 1.0 if i % 4 == 0 else 0.0, None))
        state.ledger_append(_row(i, "cheap", 0.002, i / 20, "rate_limited" if i < 10 else "ok"))
        if i < 30:
            state.feedback_put(FeedbackRow(MID_2026, f"cheap-{i}", 1.0, None))
    state.ledger_append(_foreign())
    exp = compile_policy(load_policy(policy_path)).tasks["summarize"].experiment
    assert exp is not None
    report = experiment_report("summarize", exp, state)
    cur, cheap = report.variants
    assert (cur.variant, cur.requests, cur.errors, cur.fallbacks) == ("current", 40, 4, 2)
    assert math.isclose(cur.cost_per_request, (20 * 0.01 + 20 * 0.03) / 40)
    # latencies 0.0 .. 3.9: inclusive percentiles, p50 = 1.95, p95 = 0.95 * 39 / 10 = 3.705
    assert math.isclose(cur.p50_latency_s or 0, 1.95) and math.isclose(cur.p95_latency_s or 0, 3.705)
    assert (cur.error_rate, cur.fallback_rate) == (0.1, 0.05)
    assert (cur.scores, cur.score_mean) == (40, 0.25)
    sd = math.sqrt(10 * 0.75**2 + 30 * 0.25**2) / math.sqrt(39)  # sample sd of ten 1s and thirty 0s
    z95 = NormalDist().inv_cdf(0.975)
    lo, hi = cur.score_ci95 or (0, 0)
    assert math.isclose(lo, 0.25 - z95 * sd / math.sqrt(40)) and math.isclose(hi, 0.25 + z95 * sd / math.sqrt(40))
    assert (cheap.requests, cheap.errors, cheap.scores, cheap.score_mean, cheap.score_ci95) == (
        40,
        10,
        30,
        1.0,
        (1.0, 1.0),
    )
    assert math.isclose(cheap.cost_per_request, 0.002)
    assert math.isclose(cheap.p95_latency_s or 0, 0.95 * 39 / 20)
    by_metric = {c.metric: c for c in report.comparisons}
    # cost: current sd = sqrt(40/39) * 0.01 (half 0.01, half 0.03), cheap sd 0
    cost = by_metric["cost_per_request"]
    z = (0.002 - 0.02) / math.sqrt((0.01**2 * 40 / 39) / 40)
    assert math.isclose(cost.difference or 0, -0.018)
    assert math.isclose(cost.p_value or 0, 2 * (1 - NormalDist().cdf(abs(z))), abs_tol=1e-12)
    assert cost.verdict == "significant"
    score = by_metric["score"]
    assert math.isclose(score.difference or 0, 0.75) and score.verdict == "significant"
    err = by_metric["error_rate"]
    pooled = 14 / 80
    z = (0.25 - 0.1) / math.sqrt(pooled * (1 - pooled) * (2 / 40))
    assert math.isclose(err.p_value or 0, 2 * (1 - NormalDist().cdf(z)))
    assert err.verdict == "not significant"  # z = 1.76: p = 0.078


def _foreign() -> LedgerRow:
    """A row of another experiment: the report never counts it."""
    return replace(_row(99, "current", 5.0, 9.0), experiment="other")


def test_report_says_too_few_samples_below_the_minimum(policy_path: Path) -> None:
    state = MemoryState()
    for i in range(5):
        state.ledger_append(_row(i, "current", 0.01, 0.1))
        state.ledger_append(_row(i, "cheap", 0.001, 0.1))
    exp = compile_policy(load_policy(policy_path)).tasks["summarize"].experiment
    assert exp is not None
    report = experiment_report("summarize", exp, state)
    assert {c.verdict for c in report.comparisons} == {"too few samples"}
    assert all(c.p_value is None for c in report.comparisons)


def test_report_and_spend_by_variant_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    db = tmp_path / "state.sqlite"
    window = "        start: 2026-01-01T00:00:00Z\n        end: 2027-01-01T00:00:00Z\n"
    path.write_text(POLICY.replace(window, "") + f"state: {{backend: sqlite, path: {db}}}\n", encoding="utf-8")
    router = Router.from_path(path)  # the real clock: an experiment with no window
    results = [router.complete(task="summarize", input="hello", user=f"u-{i}") for i in range(60)]
    router.close()
    assert main(["experiment", "report", str(path), "--task", "summarize", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    counts = {v["variant"]: v["requests"] for v in out["variants"]}
    assert counts == {v: sum(1 for r in results if r.variant == v) for v in ("current", "cheap")}
    assert main(["spend", str(path), "--by", "variant", "--format", "json"]) == 0
    groups = {g["key"]: g["requests"] for g in json.loads(capsys.readouterr().out)["groups"]}
    assert groups == {f"cheaper/{v}": n for v, n in counts.items()}
    assert main(["experiment", "report", str(path), "--task", "sumarize"]) == 2
    assert "did you mean" in capsys.readouterr().err


def _diagnostics(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [f"{d.code}@{d.location.line}:{d.path}" for d in info.value.diagnostics]


def test_validate_flags_every_experiment_problem_at_once(tmp_path: Path) -> None:
    bad = POLICY.replace("end: 2027-01-01T00:00:00Z", "end: 2025-01-01T00:00:00Z").replace(
        "tier: simple, max_output_tokens: 200", "tier: simpel"
    )
    bad = bad.replace("        enabled: true\n", "        enabled: true\n        control: curent\n")
    bad = bad.replace(
        "environments:",
        "      second:\n        variants:\n          a: {weight: 1}\n          b: {weight: 1}\nenvironments:",
    )
    found = _diagnostics(tmp_path, bad)
    codes = sorted(d.split("@")[0] for d in found)
    assert codes == [
        "experiment-conflict",
        "experiment-window-empty",
        "unknown-reference",
        "unknown-reference",
        "unused-definition",  # tier simple: only the misspelt variant meant it
    ], found
    assert any(d.startswith("unknown-reference@") and d.endswith("variants.cheap.tier") for d in found)
    assert "experiment-window-empty@18:tasks.summarize.experiments.cheaper.end" in found
    assert "experiment-conflict@24:tasks.summarize.experiments.second" in found
    assert "unknown-reference@20:tasks.summarize.experiments.cheaper.control" in found


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("weight: 30", "weight: 0", "weight"),
        ("sticky: user", "sticky: session", "sticky"),
        ("start: 2026-01-01T00:00:00Z", "start: 2026-01-01T00:00:00", "start"),
    ],
)
def test_schema_refuses_bad_weights_sticky_keys_and_zoneless_times(
    tmp_path: Path, old: str, new: str, needle: str
) -> None:
    found = _diagnostics(tmp_path, POLICY.replace(old, new))
    assert len(found) == 1 and needle in found[0], found


def test_policy_test_pins_and_expects_a_variant(policy_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = policy_path.with_name("exp.policytest.yaml")
    test.write_text(
        "policy: policy.yaml\n"
        "cases:\n"
        "  - name: pinned cheap\n"
        "    request: {task: summarize, user: u-1, variant: cheap}\n"
        "    expect: {variant: cheap, tier: simple, model: small}\n"
        "  - name: no user, not enrolled\n"
        "    request: {task: summarize}\n"
        "    expect: {variant: null, model: big}\n",
        encoding="utf-8",
    )
    assert main(["test", str(test)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    test.write_text(test.read_text().replace("variant: cheap}", "variant: chep}"), encoding="utf-8")
    assert main(["test", str(test)]) == 1
    assert "has no variant 'chep'" in capsys.readouterr().out


def test_simulate_assigns_variants_like_the_router(policy_path: Path) -> None:
    from policyrouter.simulate.engine import Simulator
    from policyrouter.simulate.traffic import TrafficRecord

    plan = compile_policy(load_policy(policy_path))
    sim = Simulator(plan)
    router = _router(policy_path)
    for i in range(100):
        sim.feed(TrafficRecord(ts=MID_2026 + i, task="summarize", input_tokens=100, output_tokens=50, user=f"u-{i}"))
    want: dict[str, int] = {}
    for i in range(100):
        v = router.complete(task="summarize", input="x", user=f"u-{i}").variant
        want[f"cheaper/{v}"] = want.get(f"cheaper/{v}", 0) + 1
    assert {k: g.requests for k, g in sim.report.by_variant.items()} == want


def test_a_streamed_answer_carries_its_variant(policy_path: Path) -> None:
    router = _router(policy_path)
    final = [c for c in router.stream(task="summarize", input="hello", user="u-3") if c.type == "final"]
    assert final[0].result is not None
    assert final[0].result.variant == router.complete(task="summarize", input="hello", user="u-3").variant
    assert final[0].result.variant is not None
