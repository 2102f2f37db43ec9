"""The CLI's conventions, across every command: help, metavars, --format, one error style,
exit 2 for usage errors, "did you mean", tables that are never cut, --progress, the shipped
schema, what served a request, and ``python -m policyrouter``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyrouter.cli.main import build_parser, main
from policyrouter.schema import packaged_schema, render_schema

REPO = Path(__file__).resolve().parent.parent
POLICIES = str(REPO / "policies")
COMMANDS = build_parser().commands

LONG = "a-model-name-long-enough-to-be-cut-by-an-eighty-column-table-2025-01-01"
POLICY = f"""
version: 1
providers:
  openai: {{kind: mock}}
models:
  m: {{provider: openai, model: {LONG}, pricing: {{input: 1.0, output: 2.0}}, context_window: 10000}}
tiers:
  t: [m]
tasks:
  summarize: {{tier: t, max_input_tokens: 2000, max_output_tokens: 100}}
environments:
  offline: {{}}
"""


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def _options_without_help(text: str) -> list[str]:
    """Option lines of an argparse help text that have no help after them."""
    lines = text.split("\n")
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
        if not m or m.group(2):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not re.match(r"^ {6,}\S", following):
            missing.append(m.group(1))
    return missing


def test_every_command_is_listed_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^    {command}\s+\S", top, re.M), f"`{command}` has no help line"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    text = _help(capsys, command)
    assert _options_without_help(text) == []
    assert "--format {text,json" in text, "every command offers --format text|json"


@pytest.mark.parametrize("command", ["validate", "explain", "run", "status", "simulate", "spend"])
def test_policy_paths_are_spelt_path(capsys: pytest.CaptureFixture[str], command: str) -> None:
    usage = _help(capsys, command).split("\n\n")[0]
    assert re.search(r"\bPATH\b", usage) and not re.search(r"\b(path|paths|FILE\(S\))\b", usage)


def test_run_json_is_a_hidden_deprecated_alias(policy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--json" not in _help(capsys, "run")
    code, out, err = _run(capsys, "run", policy, "--task", "summarize", "--input", "hi", "--json")
    assert code == 0 and json.loads(out)["model"] == "m"
    assert err == "policyrouter run: warning: --json is deprecated; use --format json\n"


@pytest.mark.parametrize("command", ["run", "explain"])
def test_metadata_without_equals_is_a_usage_error(
    policy: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, policy, "--task", "summarize", "--metadata", "tier"] + (
        ["--input", "x"] if command == "run" else []
    )
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.endswith(f"policyrouter {command}: error: argument --metadata: expected KEY=VALUE, got 'tier'\n")


@pytest.mark.parametrize("command", ["run", "explain"])
def test_unknown_task_is_a_usage_error_with_did_you_mean(
    policy: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, policy, "--task", "sumarize"] + (["--input", "x"] if command == "run" else [])
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert (
        err == f"policyrouter {command}: error: --task: unknown task `sumarize`\n  = hint: did you mean `summarize`?\n"
    )


@pytest.mark.parametrize("command", ["run", "explain", "status", "validate"])
def test_unknown_environment_is_a_usage_error_with_did_you_mean(
    policy: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, policy, "--env", "ofline"]
    argv += {"run": ["--task", "summarize", "--input", "x"], "explain": ["--task", "summarize"]}.get(command, [])
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert "did you mean `offline`?" in out + err and "Traceback" not in out + err


def test_unknown_command_is_a_usage_error_with_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "valdate", "policies/")
    assert code == 2 and "policyrouter: error: unknown command `valdate` (did you mean `validate`?)" in err


def test_errors_of_a_command_use_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "test", str(tmp_path))
    assert code == 2 and err.startswith("policyrouter test: error: no policy test files")
    code, _, err = _run(capsys, "schema", "--print", "--check")
    assert code == 2 and err.startswith("policyrouter schema: error: --print writes to stdout")
    code, _, err = _run(capsys, "run", POLICIES, "--task", "summarize", "--input", f"@{tmp_path / 'none.txt'}")
    assert code == 2 and err.startswith("policyrouter run: error: --input:")


def test_run_offline_says_the_mock_answered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "run", POLICIES, "--env", "offline", "--task", "summarize", "--input", "hello")
    assert code == 0
    assert "openai (kind mock)" in out
    assert "note: this answer is the offline mock provider's (kind mock), not a model's" in out
    code, out, _ = _run(
        capsys, "run", POLICIES, "--env", "offline", "--task", "summarize", "--input", "hello", "--format", "json"
    )
    result = json.loads(out)
    assert (result["provider"], result["provider_kind"]) == ("openai", "mock")
    assert result["attempts"][0]["provider_kind"] == "mock" and "mock" in result["note"]


def test_tables_are_not_cut_when_stdout_is_not_a_terminal(
    policy: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow CI runner: still nothing is cut
    code, out, _ = _run(capsys, "run", policy, "--task", "summarize", "--input", "hello")
    assert code == 0
    assert f"[{LONG}] hello" in out  # the answer
    table = out[out.index("trace") :]
    assert "…" not in table and "mock-1" in table and "openai (kind mock)" in table


def test_progress_forces_a_bar_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str) -> None:
    traffic = tmp_path / "day.jsonl"
    traffic.write_text(json.dumps({"ts": 1_767_225_600, "task": "summarize", "input_tokens": 10}) + "\n")
    args = ["simulate", policy, "--traffic", str(traffic), "--format", "json"]
    code, plain_out, plain_err = _run(capsys, *args)
    assert code == 0 and plain_err == ""  # stderr is not a terminal: no bar by default
    code, out, err = _run(capsys, *args, "--progress")
    assert code == 0 and out == plain_out and "simulating" in err


def test_schema_print_is_the_packaged_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "schema", "--print")
    assert code == 0 and out == packaged_schema()
    assert json.loads(out)["title"] == "policyrouter policy"


def test_packaged_schema_is_current_and_equals_the_repository_copy() -> None:
    fix = "run `policyrouter schema -o schemas/policy.schema.json -o policyrouter/policy.schema.json`"
    assert packaged_schema() == render_schema(), f"policyrouter/policy.schema.json is stale: {fix}"
    assert (REPO / "schemas" / "policy.schema.json").read_text(encoding="utf-8") == render_schema(), fix


def test_schema_check_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "s.json")
    code, out, _ = _run(capsys, "schema", "-o", target, "--check", "--format", "json")
    assert code == 1 and json.loads(out) == {"files": [{"path": target, "status": "missing"}]}


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "policyrouter", "validate", "policies/", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_simulate_keeps_table_as_a_hidden_spelling_of_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    traffic = tmp_path / "day.jsonl"
    traffic.write_text(json.dumps({"ts": 1_767_225_600, "task": "summarize", "input_tokens": 10}) + "\n")
    args = ["simulate", policy, "--traffic", str(traffic)]
    assert _run(capsys, *args, "--format", "table")[:2] == _run(capsys, *args, "--format", "text")[:2]
    assert "table" not in _help(capsys, "simulate").split("--format", 1)[1].split("\n")[0]


def test_diff_env_defined_by_neither_side_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", POLICIES, POLICIES, "--env", "prdo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("policyrouter diff: error: --env: unknown environment `prdo`")
    assert "did you mean `prod`?" in err
    assert main(["diff", POLICIES, POLICIES, "--env", "prod"]) == 0  # a defined one still diffs


@pytest.mark.parametrize(
    "argv",
    [
        ["mock", "--port", "99999"],
        ["mock", "--port", "-1"],
        ["explain", POLICIES, "--task", "summarize", "--input-tokens", "-5"],
        ["explain", POLICIES, "--task", "summarize", "--input-tokens", "many"],
    ],
)
def test_a_number_out_of_range_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "expected a whole number" in err and "Traceback" not in err
