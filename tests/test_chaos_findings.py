"""Bugs `bench/chaos.py` found, pinned: a budget refusal must not keep a concurrency
slot, and a stale answer keeps the trace and the bill of the attempts behind it."""

from __future__ import annotations

import asyncio
import math

import pytest

from policyrouter import BudgetExceeded, ProviderError, ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.compile import compile_policy
from policyrouter.policy.models import Policy
from policyrouter.providers.mock import MockProvider
from policyrouter.state.memory import MemoryState
from policyrouter.testing.clock import FakeClock


def _policy(limit_usd: float, **task: object) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "providers": {"p": {"kind": "mock"}},
            "models": {
                "m": {
                    "provider": "p",
                    "model": "m-1",
                    "pricing": {"input": 1000, "output": 1000},
                    "limits": {"concurrency": 2, "on_limit": "wait", "max_wait_s": 1},
                }
            },
            "tiers": {"t": ["m"]},
            "budgets": {"b": {"scope": "global", "window": "day", "limit_usd": limit_usd}},
            "tasks": {"s": {"tier": "t", "max_input_tokens": 100, "max_output_tokens": 10, **task}},
        }
    )


def _ok(req: ProviderRequest) -> ProviderResponse:
    return ProviderResponse("ok", Usage(10, 5))


def test_budget_refusal_releases_the_concurrency_slot() -> None:
    state = MemoryState()
    router = Router(compile_policy(_policy(0.0001)), {"p": MockProvider("p", _ok)}, state, clock=FakeClock())
    for _ in range(5):  # more refusals than slots: a leak would make the 3rd one wait, then spill
        with pytest.raises(BudgetExceeded) as info:
            router.complete("s", "hello")
        assert not info.value.attempts  # nothing was sent
        assert state.slots_in_use("m") == 0
    assert state.open_reservations() == 0


def test_budget_refusal_releases_the_slot_in_async_use() -> None:
    state = MemoryState()
    router = Router(compile_policy(_policy(0.0001)), {"p": MockProvider("p", _ok)}, state, clock=FakeClock())

    async def many() -> list[BaseException | object]:
        return await asyncio.gather(*(router.acomplete("s", f"q{i}") for i in range(6)), return_exceptions=True)

    outcomes = asyncio.run(many())
    assert all(isinstance(o, BudgetExceeded) for o in outcomes)
    assert state.slots_in_use("m") == 0


def test_stale_answer_carries_the_failed_attempts_and_their_cost() -> None:
    clock = FakeClock()
    state = MemoryState()
    failing = {"on": False}

    def handler(req: ProviderRequest) -> ProviderResponse:
        if failing["on"]:  # a refusal that was billed: the prompt was read
            raise ProviderError("content_filter", "refused", usage=Usage(20, 3))
        return ProviderResponse("fresh answer", Usage(10, 5))

    pol = _policy(1000.0, temperature=0, cache={"ttl_s": 60, "stale_if_error_s": 600})
    router = Router(compile_policy(pol), {"p": MockProvider("p", handler)}, state, clock=clock)
    fresh = router.complete("s", "q")
    clock.advance(61)
    failing["on"] = True
    stale = router.complete("s", "q")
    assert stale.stale and stale.cache_hit and stale.text == fresh.text
    assert [(a.model, a.outcome, a.error_kind) for a in stale.attempts] == [("m", "error", "content_filter")]
    assert stale.cost_usd == pytest.approx((20 + 3) * 1000 / 1e6)
    ledger = math.fsum(r.cost_usd for r in state.ledger_rows())
    assert ledger == pytest.approx(fresh.cost_usd + stale.cost_usd)
