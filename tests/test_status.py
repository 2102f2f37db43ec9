"""``router.health()`` and ``policyrouter status PATH --state URL`` against a real sqlite file."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter import Router
from policyrouter.cli.main import main
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}
MINI, HAIKU = "gpt-mini-2025-01-01", "claude-haiku-20250101"

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
  offline: {{kind: mock}}
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    circuit_breaker: strict
  haiku:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
    circuit_breaker: strict
tiers:
  simple: [mini, haiku]
retry_policies:
  default:
    max_attempts: 2
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
circuit_breakers:
  strict: {{failure_threshold: 2, window_s: 600, cooldown_s: 300}}
budgets:
  daily: {{scope: global, window: day, limit_usd: 0.01}}
  tenants: {{scope: tenant, window: month, limit_usd: 0.001}}
tasks:
  chat:
    tier: simple
    max_output_tokens: 50
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.fixture
def deployed(server: MockLLMServer, tmp_path: Path) -> tuple[Path, str]:
    """A policy and a sqlite state after some traffic: mini's breaker open, acme's budget spent."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    db = tmp_path / "state.sqlite"
    server.set_reply(MINI, text="m", usage={"input": 400, "output": 50})
    server.set_reply(HAIKU, text="h", usage={"input": 100, "output": 25})
    router = Router.from_path(policy, environ=KEYS, state=SqliteState(str(db)), rng=random.Random(2))
    router.complete("chat", "hi", tenant="acme")  # mini: $0.0005
    router.complete("chat", "hi", tenant="acme")  # mini: $0.0005 -> acme at its $0.001 limit
    server.script(MINI, [500, 500])
    router.complete("chat", "hi", tenant="globex")  # mini fails twice (breaker opens), haiku: $0.0003
    router.close()
    return policy, f"sqlite:///{db}"


def test_health_reports_breakers_budgets_and_providers(server: MockLLMServer, deployed: tuple[Path, str]) -> None:
    policy, state = deployed
    with Router.from_path(policy, environ=KEYS, state=SqliteState(state[len("sqlite:///") :])) as router:
        report = router.health()
    assert not report.ok
    assert report.problems == ("breaker of model 'mini' is open", "budget 'tenants' (acme) is exhausted")
    assert [(b.model, b.status) for b in report.breakers] == [("mini", "open"), ("haiku", "closed")]
    assert {(u.budget, u.key): round(u.spent_usd, 6) for u in report.budgets} == {
        ("daily", "*"): 0.0013,
        ("tenants", "acme"): 0.001,
        ("tenants", "globex"): 0.0003,
    }
    assert [(p.provider, p.status) for p in report.providers] == [
        ("openai", "ok"),
        ("anthropic", "ok"),
        ("offline", "ok"),
    ]
    models_calls = [r for r in server.requests if r.protocol == "models"]
    assert len(models_calls) == 2  # reachability costs no completion call
    assert all(r.protocol == "models" for r in server.requests[-2:])


def test_health_names_a_missing_key_without_calling(server: MockLLMServer, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    router = Router.from_path(policy, environ={"OPENAI_API_KEY": "sk-test-SECRET-1"}, clock=FakeClock())
    report = router.health()
    anthropic = next(p for p in report.providers if p.provider == "anthropic")
    assert anthropic.status == "misconfigured" and "ANTHROPIC_API_KEY" in anthropic.detail
    assert "SECRET" not in json.dumps(report.to_dict())
    assert router.health(providers=False).providers[0].status == "unchecked"


def test_status_cli_snapshot(
    deployed: tuple[Path, str], capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    policy, state = deployed
    assert main(["status", str(policy), "--state", state]) == 1  # degraded: exit 1
    assert capsys.readouterr().out == snapshot


def test_status_cli_json_and_healthy_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nproviders: {offline: {kind: mock}}\n"
        "models: {m: {provider: offline, model: m-2025-01-01, circuit_breaker: b}}\n"
        "circuit_breakers: {b: {failure_threshold: 3}}\n"
        "tiers: {t: [m]}\ntasks: {x: {tier: t}}\n"
    )
    db = tmp_path / "s.sqlite"
    SqliteState(db).close()  # a deployment's state file, nothing recorded yet
    assert main(["status", str(policy), "--state", f"sqlite:///{db}", "--ping", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["problems"] == []
    assert out["breakers"] == [{"model": "m", "breaker": "b", "status": "closed", "recent_failures": 0}]
    assert [(p["provider"], p["status"]) for p in out["providers"]] == [("offline", "ok")]
