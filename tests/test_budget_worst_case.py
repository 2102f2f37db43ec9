"""``attempt_worst_case`` over the compiled price rows (``plan.price_rows``) equals the plain
maximum over the models left."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from policyrouter.plan import Price, price_rows
from policyrouter.stages.budget import attempt_worst_case

rate = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False)
price = st.one_of(st.none(), st.builds(Price, rate, rate, rate, rate))


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
