"""A budget refusal must not keep the model's concurrency slot (found by simulate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyrouter import BudgetExceeded, Router
from policyrouter.state.memory import MemoryState
from policyrouter.testing.clock import FakeClock

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  m:
    provider: p
    model: m-2025-01-01
    pricing: {input: 1.0, output: 2.0}
    context_window: 100000
    limits: {concurrency: 1, on_limit: spill}
tiers:
  t: [m]
budgets:
  tiny: {scope: tenant, window: day, limit_usd: 0.01}
tasks:
  s: {tier: t, max_input_tokens: 2000, max_output_tokens: 100}
"""


def test_budget_refusal_releases_the_concurrency_slot(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    state = MemoryState()
    router = Router.from_path(tmp_path / "p.yaml", state=state, clock=FakeClock())
    state.budget_add_spent("tiny|2026-01-01|broke", 0.01)  # FakeClock's wall starts on 2026-01-01
    for _ in range(3):
        with pytest.raises(BudgetExceeded):
            router.complete("s", "hello", tenant="broke")
        assert state.slots_in_use("m") == 0
    # the only slot is free, so another tenant is served rather than spilled
    assert router.complete("s", "hello", tenant="rich").model == "m"
