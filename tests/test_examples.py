"""Every example policy validates cleanly, for the base and every environment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from policyrouter.diagnostics import Diagnostic
from policyrouter.errors import PolicyError
from policyrouter.policy.loader import load_policy, validate_paths

POLICIES = Path(__file__).resolve().parent.parent / "policies"
ENVS = [None, "dev", "prod", "offline", "test"]


def _shown(diagnostics: Sequence[Diagnostic]) -> str:
    return "\n".join(d.one_line() for d in diagnostics)


def test_directory_validates_with_no_errors_or_warnings() -> None:
    report = validate_paths([str(POLICIES)])
    assert report.diagnostics == (), _shown(report.diagnostics)
    assert set(report.policies) == set(ENVS)


@pytest.mark.parametrize("env", ENVS)
def test_each_environment_validates(env: str | None) -> None:
    report = validate_paths([str(POLICIES)], env=env, all_envs=False)
    assert report.diagnostics == (), _shown(report.diagnostics)
    assert env in report.policies


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_file_validates_alone(path: Path) -> None:
    report = validate_paths([str(path)])
    assert report.ok, _shown(report.diagnostics)


def test_offline_needs_no_keys_and_no_network() -> None:
    policy = load_policy(POLICIES, env="offline")
    assert {p.kind for p in policy.providers.values()} == {"mock"}
    assert all(p.api_key_env is None and p.base_url is None for p in policy.providers.values())


def test_production_providers_use_env_vars_for_keys() -> None:
    policy = load_policy(POLICIES, env="prod")
    assert {p.kind for p in policy.providers.values()} == {"openai", "anthropic", "openai_compatible"}
    assert all(p.api_key_env for p in policy.providers.values())


def test_dev_budgets_are_smaller() -> None:
    base, dev = load_policy(POLICIES), load_policy(POLICIES, env="dev")
    for name, budget in dev.budgets.items():
        assert budget.limit_usd < base.budgets[name].limit_usd


def test_unknown_environment_raises_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES, env="staging")
    assert [d.code for d in info.value.diagnostics] == ["unknown-environment"]
