"""``attempt_worst_case`` over the compiled price rows (``plan.price_rows``) equals the plain
maximum over the models left."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyrouter.plan import Price, price_rows
from policyrouter.stages.budget import attempt_worst_case

rate = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False)
fee = st.tuples(st.sampled_from(["web_search_requests", "web_fetch_requests"]), rate, st.integers(0, 20))
price = st.one_of(st.none(), st.builds(Price, rate, rate, rate, rate, st.lists(fee, max_size=2).map(tuple)))


def _naive(chain: tuple[Any, ...], index: int, n_in: int, n_out: int) -> float:
    costs = [m.price.worst_case(n_in, n_out) for m in chain[index:] if m.price is not None]
    return max(costs, default=0.0)


@given(
    prices=st.lists(price, min_size=1, max_size=5),
    n_in=st.integers(min_value=0, max_value=200_000),
    n_out=st.integers(min_value=0, max_value=32_000),
)
def test_worst_case_is_the_dearest_model_left(prices: list[Price | None], n_in: int, n_out: int) -> None:
    chain: tuple[Any, ...] = tuple(SimpleNamespace(price=p) for p in prices)
    rows = price_rows(chain)
    for index in range(len(chain) + 1):
        assert attempt_worst_case(rows, index, n_in, n_out) == _naive(chain, index, n_in, n_out)


def test_the_router_reserves_attempt_worst_case_on_every_hop() -> None:
    """The engine (``engine/run.py``) charges each attempt's budgets in its admission: every
    attempt of a failing chain reserves exactly ``attempt_worst_case`` for its index."""
    from policyrouter import AllModelsFailed, ProviderError, ProviderRequest, ProviderResponse, Router
    from policyrouter.compile import compile_policy
    from policyrouter.policy.models import Policy
    from policyrouter.providers.mock import MockProvider
    from policyrouter.state.base import Admit, Admitted, BudgetCharge, ReserveResult
    from policyrouter.state.memory import MemoryState
    from policyrouter.tokens import count_messages

    class Recording(MemoryState):
        def __init__(self) -> None:
            super().__init__()
            self.amounts: list[float] = []

        def admit(self, a: Admit) -> Admitted:
            if a.charges is not None:
                assert len(a.charges) == 1  # one budget
                self.amounts.append(a.charges[0].amount)
            return super().admit(a)

        def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult:
            self.amounts.append(charges[0].amount)  # (an attempt that waited for its limits; none here)
            return super().budget_reserve(charges, wall, lease_s)

    def down(req: ProviderRequest) -> ProviderResponse:
        raise ProviderError("server_error", "down", status_code=500)

    doc = {
        "version": 1,
        "providers": {"p": {"kind": "mock"}},
        "models": {  # dearest first on input, then on output, then cheap
            "a": {"provider": "p", "model": "a-1", "pricing": {"input": 30.0, "output": 1.0}},
            "b": {"provider": "p", "model": "b-1", "pricing": {"input": 1.0, "output": 9.0, "cache_write": 2.0}},
            "c": {"provider": "p", "model": "c-1", "pricing": {"input": 0.5, "output": 0.5}},
        },
        "tiers": {"t": ["a", "b", "c"]},
        "retry_policies": {"once": {"max_attempts": 1}},
        "budgets": {"daily": {"scope": "global", "window": "day", "limit_usd": 100.0}},
        "tasks": {"s": {"tier": "t", "max_output_tokens": 300, "retry": "once"}},
    }
    plan = compile_policy(Policy.model_validate(doc))
    text = "word " * 200
    state = Recording()
    router = Router(plan, {"p": MockProvider("p", down)}, state)
    with pytest.raises(AllModelsFailed) as failed:
        router.complete("s", text)
    assert len([a for a in failed.value.attempts if a.outcome == "error"]) == 3
    n_in = count_messages(({"role": "user", "content": text},))
    rows = plan.tasks["s"].default.chain.price_rows
    assert state.amounts == [attempt_worst_case(rows, i, n_in, 300) for i in range(3)]
    assert len(set(state.amounts)) == 3  # each hop's worst case differs here
