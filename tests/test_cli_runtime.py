"""CLI commands of the runtime: run, explain, spend (rendered output as snapshots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
POLICIES = str(ROOT / "policies")

SMALL = """
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 2.0}, context_window: 10000}
  n: {provider: p, model: n-2025-01-01, pricing: {input: 3.0, output: 6.0}, context_window: 100000}
tiers:
  t: [m, n]
  long: [n]
retry_policies:
  default: {max_attempts: 3}
budgets:
  daily: {scope: global, window: day, limit_usd: 5}
  tenants: {scope: tenant, window: month, limit_usd: 1}
state: {backend: sqlite, path: STATE}
tasks:
  s:
    tier: t
    max_input_tokens: 2000
    max_output_tokens: 100
    max_total_attempts: 4
    routes:
      - {name: long, when: {input_tokens: {gt: 1000}}, tier: long}
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(SMALL.replace("STATE", str(tmp_path / "state.sqlite")))
    return p


def test_run_offline_main_job(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", POLICIES, "--env", "offline", "--task", "summarize", "--input", "hello world", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["provider"] in {"openai", "anthropic", "gateway"} and out["attempts"][0]["outcome"] == "ok"
    assert out["cost_usd"] > 0


def test_run_text_prints_answer_and_trace(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(small), "--task", "s", "--input", "hello there"]) == 0
    out = capsys.readouterr().out
    assert "hello there" in out and "trace" in out and "cost $" in out


def test_run_unknown_task_is_one_line_error(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(small), "--task", "nope", "--input", "x"]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'nope'" in err and "Traceback" not in err


def test_explain_text(small: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["explain", str(small), "--task", "s", "--input-tokens", "500"]) == 0
    assert capsys.readouterr().out.replace(str(small.parent), "<policy dir>") == snapshot


def test_explain_route_and_worst_case(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(small), "--task", "s", "--input-tokens", "1500", "--format", "json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["route"] == "long" and [s["model"] for s in e["chain"]] == ["n"]
    assert e["worst_case_calls"] == 3
    assert e["worst_case_cost_usd"] == pytest.approx(3 * (2000 * 3.0 + 100 * 6.0) / 1e6)


def test_explain_caps_by_max_total_attempts(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(small), "--task", "s", "--format", "json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert (e["worst_case_calls"], e["worst_case_calls_uncapped"]) == (4, 6)
    # the four dearest calls: 3 on n, 1 on m
    assert e["worst_case_cost_usd"] == pytest.approx((3 * (2000 * 3 + 100 * 6) + (2000 * 1 + 100 * 2)) / 1e6)


def test_explain_mermaid(small: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["explain", str(small), "--task", "s", "--format", "mermaid"]) == 0
    assert capsys.readouterr().out == snapshot


def test_spend_reports_budgets_and_groups(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for tenant in ("acme", "acme", "globex"):
        assert main(["run", str(small), "--task", "s", "--input", "hi", "--tenant", tenant, "--json"]) == 0
    capsys.readouterr()
    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert main(["spend", str(small), "--state", state, "--by", "tenant", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    groups = {g["key"]: g for g in out["groups"]}
    assert groups["acme"]["requests"] == 2 and groups["globex"]["requests"] == 1
    daily = [b for b in out["budgets"] if b["budget"] == "daily"]
    assert len(daily) == 1 and daily[0]["spent_usd"] == pytest.approx(sum(g["cost_usd"] for g in groups.values()))
    tenants = {b["key"]: b for b in out["budgets"] if b["budget"] == "tenants"}
    assert set(tenants) == {"acme", "globex"}
    assert main(["spend", str(small), "--state", state, "--by", "tenant"]) == 0
    text = capsys.readouterr().out
    assert "budgets" in text and "acme" in text and "%" in text


def test_spend_on_a_missing_state_file_is_an_error_not_an_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "state.sqlite"
    code = main(["spend", "policies/", "--state", f"sqlite:///{missing}"])
    err = capsys.readouterr().err
    assert code == 1 and "no state file" in err and str(missing) in err
    assert not missing.parent.exists()  # nothing was created
