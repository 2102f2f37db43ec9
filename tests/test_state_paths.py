"""A relative SQLite ``state.path`` is relative to the policy file that declares it, not the cwd."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from policyrouter import Router
from policyrouter.policy.loader import load_policy

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1000.0, output: 1000.0}, context_window: 10000}
tiers:
  t: [m]
budgets:
  daily: {scope: global, window: day, limit_usd: 0.2}
state: STATE
tasks:
  s: {tier: t, max_input_tokens: 20, max_output_tokens: 20}
"""


def write_policy(where: Path, state: str = "{backend: sqlite, path: state/budget.sqlite}") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    p = where / "policy.yaml"
    p.write_text(POLICY.replace("STATE", state))
    return p


def test_relative_path_is_beside_the_policy_file_whatever_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = write_policy(tmp_path / "repo" / "policies")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_policy(os.path.relpath(policy, elsewhere))
    assert loaded.state.path == str(tmp_path / "repo" / "policies" / "state" / "budget.sqlite")


def test_no_path_means_the_default_file_beside_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_policy(tmp_path / "p", "{backend: sqlite}")
    monkeypatch.chdir(tmp_path)
    assert load_policy("p/policy.yaml").state.path == str(tmp_path / "p" / "policyrouter-state.sqlite")


@pytest.mark.parametrize("written", [":memory:", "/var/lib/app/state.sqlite"])
def test_absolute_paths_and_memory_are_kept(tmp_path: Path, written: str) -> None:
    policy = write_policy(tmp_path, f"{{backend: sqlite, path: '{written}'}}")
    assert load_policy(policy).state.path == written


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    policy = write_policy(tmp_path / "p", "{backend: sqlite, path: ~/state.sqlite}")
    assert load_policy(policy).state.path == str(tmp_path / "home" / "state.sqlite")


def test_an_overlay_path_is_relative_to_the_file_that_sets_it(tmp_path: Path) -> None:
    base = write_policy(tmp_path / "base", "{backend: memory}")
    overlay = tmp_path / "deploy" / "prod.yaml"
    overlay.parent.mkdir()
    overlay.write_text("version: 1\nenvironments:\n  prod: {state: {backend: sqlite, path: prod.sqlite}}\n")
    assert load_policy([base, overlay], "prod").state.path == str(tmp_path / "deploy" / "prod.sqlite")
    assert load_policy([base, overlay]).state.backend == "memory"


def test_explain_shows_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_policy(tmp_path / "policies")
    monkeypatch.chdir(tmp_path)
    with Router.from_path("policies/policy.yaml") as router:
        e = router.explain(task="s", input_tokens=10)
    assert e.state == f"sqlite {tmp_path / 'policies' / 'state' / 'budget.sqlite'}"
    assert f"state     sqlite {tmp_path / 'policies' / 'state' / 'budget.sqlite'}" in str(e)


SPEND_UNTIL_REFUSED = textwrap.dedent(
    """
    import sys
    from policyrouter import Router
    from policyrouter.errors import BudgetExceeded

    served = 0
    with Router.from_path(sys.argv[1]) as router:
        for _ in range(1000):
            try:
                router.complete(task="s", input="hello there")
            except BudgetExceeded:
                break
            served += 1
    print(served)
    """
)


def serve(cwd: Path, policy: Path) -> int:
    """Requests a fresh process started in ``cwd`` serves before the budget refuses one."""
    out = subprocess.run(
        [sys.executable, "-c", SPEND_UNTIL_REFUSED, os.path.relpath(policy, cwd)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(out.stdout.strip())


def test_two_processes_started_in_different_directories_enforce_one_budget(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "repo" / "policies")
    first, second = tmp_path / "repo", tmp_path / "worker" / "bin"
    second.mkdir(parents=True)
    assert serve(first, policy) > 0  # the first process spends the day's budget
    assert serve(second, policy) == 0  # the second, started elsewhere, sees it spent
    assert (tmp_path / "repo" / "policies" / "state" / "budget.sqlite").is_file()
    assert not (first / "state").exists() and not (second / "state").exists()
