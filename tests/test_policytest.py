"""`policyrouter test`: policy test files run offline through the compiled plan."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter.cli.main import main
from policyrouter.policy.loader import load_policy
from policyrouter.policytest import discover, load_test_file, run_paths

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

FAILING = """
policy: production.yaml
cases:
  - name: happy path
    request: {task: summarize, input_tokens: 1200, output_tokens: 100}
    expect: {model: gpt-mini, cost_usd: 0.00064}
  - name: wrong model after retries
    request: {task: summarize, input_tokens: 1200}
    script: {gpt-mini: [429, 500, 500]}
    expect: {model: gpt-mini, attempts: [{gpt-mini: rate_limited}, {gpt-mini: ok}]}
  - name: stale task name
    request: {task: sumarize}
  - name: stale script
    request: {task: classify, input_tokens: 300}
    script: {sonnet: [500]}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(POLICIES / "production.yaml", tmp_path / "production.yaml")
    (tmp_path / "prod.policytest.yaml").write_text(FAILING)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_shipped_policy_tests_pass() -> None:
    files = discover([POLICIES])
    assert files, "policies/ ships policy tests"
    report = run_paths(files)
    expected = sum(len(load_test_file(f).cases) for f in files)
    assert report.ok, [c.nodeid for c in report.cases if c.status != "passed"]
    assert report.passed == expected and report.failed == 0 and report.errors == 0


def test_policy_loader_skips_policy_tests() -> None:
    # policies/tests/ is below the top level and *.policytest.yaml is skipped: validate sees policy only
    policy = load_policy(POLICIES)
    assert "summarize" in policy.tasks
    assert main(["validate", str(POLICIES), "--all-envs"]) == 0


def test_text_output_shows_expected_vs_actual(
    workdir: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    code = main(["test", "."])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 passed, 2 failed, 1 error" in out
    assert out == snapshot


def test_json_output(workdir: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["test", ".", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {"passed": 1, "failed": 2, "errors": 1, "total": 4}
    assert data == snapshot


def test_junit_output(workdir: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["test", ".", "--format", "junit", "-o", "report.xml"]) == 1
    assert "1 passed, 2 failed, 1 error" in capsys.readouterr().out
    xml = (workdir / "report.xml").read_text()
    root = ET.fromstring(xml)
    assert root.get("tests") == "4" and root.get("failures") == "2" and root.get("errors") == "1"
    assert re.sub(r'time="[0-9.]+"', 'time="T"', xml) == snapshot


def test_select_runs_matching_cases_only(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", ".", "-k", "happy"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_invalid_test_file_reports_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(POLICIES / "production.yaml", tmp_path / "production.yaml")
    (tmp_path / "bad.policytest.yaml").write_text(
        "cases:\n  - name: x\n    request: {task: summarize}\n    script: {gpt-mini: [200]}\n    expekt: {}\n"
    )
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad.policytest.yaml:4:" in out and "not an HTTP error status" in out
    assert "bad.policytest.yaml:5:5" in out and "unknown key 'expekt'" in out


def test_no_test_files_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path)]) == 2
    assert "no policy test files" in capsys.readouterr().err


def test_budget_and_degrade_fixtures_change_the_outcome(workdir: Path) -> None:
    (workdir / "prod.policytest.yaml").write_text(
        """
policy: production.yaml
fixtures:
  nearly_spent: {budgets: {daily: {spent_usd: 199.9999}}}
cases:
  - name: the daily budget refuses a worst case that does not fit
    request: {task: summarize, input_tokens: 1200}
    given: [nearly_spent]
    expect: {error: {kind: budget_exceeded, budget: daily}, calls: 0, degraded: daily}
  - name: a half-open breaker lets one probe through
    request: {task: classify, input_tokens: 300}
    state: {breakers: {llama-70b: half_open}}
    expect: {model: llama-70b, attempts: [{llama-70b: ok}]}
"""
    )
    report = run_paths(["."])
    assert report.ok, [(c.name, c.problems, c.errors) for c in report.cases]
    assert report.passed == 2


def test_pytest_plugin_collects_policy_tests(pytester: pytest.Pytester) -> None:
    shutil.copy(POLICIES / "production.yaml", pytester.path / "production.yaml")
    (pytester.path / "prod.policytest.yaml").write_text(FAILING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "prod.policytest.yaml")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(["*model     expected  gpt-mini*", "*actual    haiku*", "*unknown task 'sumarize'*"])


def test_readme_example_passes(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### `policyrouter test", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shutil.copy(POLICIES / "production.yaml", tmp_path / "production.yaml")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "readme.policytest.yaml").write_text(example)
    report = run_paths([tmp_path])
    assert report.ok and report.passed == 2, [(c.name, c.problems, c.errors) for c in report.cases]
