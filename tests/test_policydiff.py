"""`policyrouter diff`: semantic diff of two policy sets, on their compiled plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from syrupy.assertion import SnapshotAssertion

from policyrouter.cli.main import main
from policyrouter.policydiff import diff_policies

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = (ROOT / "policies" / "production.yaml").read_text()


@pytest.fixture
def sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "production.yaml").write_text(PRODUCTION)
    changed = (
        PRODUCTION.replace("limit_usd: 200", "limit_usd: 150")
        .replace("  simple: [gpt-mini, haiku]", "  simple: [haiku, gpt-mini]")
        .replace("pricing: {input: 0.40, output: 1.60, cached_input: 0.10}", "pricing: {input: 0.30, output: 1.20}")
        .replace("    max_output_tokens: 800\n", "    max_output_tokens: 1000\n")
        .replace("      daily: {limit_usd: 5}", "      daily: {limit_usd: 10}")
        .replace("        when: {input_tokens: {gt: 30000}}", "        when: {input_tokens: {gt: 20000}}")
    )
    assert changed.count("\n") == PRODUCTION.count("\n")
    (new / "production.yaml").write_text(changed)
    return "old", "new"


def test_identical_policies_have_no_changes(capsys: pytest.CaptureFixture[str]) -> None:
    policies = str(ROOT / "policies")
    assert main(["diff", policies, policies, "--exit-code"]) == 0
    assert "no semantic changes" in capsys.readouterr().out


def test_layout_is_not_a_change(tmp_path: Path) -> None:
    """The same policy split over two files, keys reordered: no semantic change."""
    data = yaml.safe_load(PRODUCTION)
    split = tmp_path / "split"
    split.mkdir()
    first = {"version": 1, **{k: data[k] for k in ("tasks", "budgets", "environments")}}
    second = {"version": 1, **{k: data[k] for k in reversed(list(data)) if k not in first}}
    (split / "a.yaml").write_text(yaml.safe_dump(first, sort_keys=True))
    (split / "b.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
    d = diff_policies(ROOT / "policies", split)
    assert d.empty, d.changes


def test_text_diff(sides: tuple[str, str], capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["diff", *sides]) == 0
    out = capsys.readouterr().out
    assert "~ limit: $200 per day (UTC) -> $150 per day (UTC)" in out
    assert "~ default chain: simple [gpt-mini, haiku] -> simple [haiku, gpt-mini]" in out
    assert "env dev:" in out and "$5 per day (UTC) -> $10 per day (UTC)" in out
    assert out == snapshot


def test_markdown_diff(sides: tuple[str, str], capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    assert main(["diff", *sides, "--format", "markdown", "--exit-code"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### Policy diff: `old` → `new`")
    assert out == snapshot


def test_added_and_removed_definitions(sides: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = sides
    text = Path(new, "production.yaml").read_text()
    task = "  translate:\n    tier: simple\n    max_input_tokens: 1000\n    max_output_tokens: 100\n"
    text = text.replace("  classify:\n", task + "  classify:\n")
    Path(new, "production.yaml").write_text(text)
    assert main(["diff", old, new, "--env", "offline", "--format", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    added = [c for c in changes if c["name"] == "translate"]
    assert added and added[0]["setting"] == "(all)" and added[0]["old"] is None and added[0]["env"] == "offline"
    assert {"setting": "default chain", "new": "simple [haiku, gpt-mini]"}.items() <= next(
        c for c in added if c["setting"] == "default chain"
    ).items()


def test_invalid_side_is_reported(sides: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    Path(sides[1], "production.yaml").write_text("version: 1\ntasks: {s: {tier: nope}}\n")
    assert main(["diff", *sides]) == 1
    assert "error" in capsys.readouterr().err
