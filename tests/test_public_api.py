"""The public API: every name in ``policyrouter.__all__`` resolves, and a router built from those
names alone (``Router(plan, providers, state)``) runs, explains and reports its health."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

import policyrouter

POLICY = """\
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 2.0}}
tiers:
  t: [m]
circuit_breakers:
  default: {failure_threshold: 3, window_s: 60, cooldown_s: 30}
budgets:
  daily: {scope: global, window: day, limit_usd: 10}
tasks:
  s: {tier: t, max_input_tokens: 100, max_output_tokens: 20}
"""


@pytest.mark.parametrize("name", policyrouter.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(policyrouter, name) is not None


def test_a_router_from_public_names_only(tmp_path: Path, snapshot: SnapshotAssertion) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(POLICY))
    plan = policyrouter.compile_policy(policyrouter.load_policy(path), None)
    assert isinstance(plan, policyrouter.Plan)
    provider = policyrouter.MockProvider("p", lambda req: policyrouter.ProviderResponse("hi", policyrouter.Usage(3, 2)))
    state = policyrouter.MemoryState()
    router = policyrouter.Router(plan, {"p": provider}, state, clock=policyrouter.FakeClock())
    result = router.complete("s", "hello")
    assert result.text == "hi" and result.cost_usd == pytest.approx(7e-6)

    explained = router.explain("s", input_tokens=50)
    assert isinstance(explained, policyrouter.Explanation)
    assert str(explained) == snapshot(name="explain")

    health = router.health(providers=False)
    assert isinstance(health, policyrouter.HealthReport) and health.ok
    assert str(health) == snapshot(name="health")
