"""The worst cases ``explain`` shows hold against an upstream at its worst: repair turns whose
prompts grow (each billed in full), and an upstream that bills more than the reservation
(spend passes a hard limit by at most the in-flight attempts' excess)."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from policyrouter import BudgetExceeded, InvalidOutput, MockProvider, ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.tokens import count_messages

REPAIRS = """\
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 4.0}, context_window: 100000}
tiers:
  t: [m]
retry_policies:
  default: {max_attempts: 2, backoff: {initial_s: 0.01, jitter: none}, retry_on: [server_error]}
tasks:
  x:
    tier: t
    max_input_tokens: 400
    max_output_tokens: 300
    output: {max_repairs: 3}
    response_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
"""


def honest_bill(text: str) -> Any:
    """An upstream that bills every input token it was sent and the whole output allowance."""

    def handler(req: ProviderRequest) -> ProviderResponse:
        return ProviderResponse(text, Usage(count_messages(req.messages, req.system), req.max_output_tokens))

    return handler


def test_repairs_with_growing_prompts_stay_within_the_shown_worst_case(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(REPAIRS)
    wrong = '{"n": "' + "no " * 400 + '"}'  # invalid, and long: each repair turn carries it back
    router = Router.from_path(tmp_path / "p.yaml", providers={"p": MockProvider("p", honest_bill(wrong))})
    shown = router.explain("x", input_tokens=400).worst_case_cost_usd
    assert shown is not None
    with pytest.raises(InvalidOutput) as failed:
        router.complete("x", "word " * 270)  # about the input limit
    spent = sum(a.cost_usd for a in failed.value.attempts)
    assert len(failed.value.attempts) == 4  # the first answer and three repairs
    assert spent <= shown  # the old worst case priced every repair at the first prompt: 0.4x of this spend


OVERBILL = """\
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 10.0}, context_window: 10000}
tiers:
  t: [m]
budgets:
  daily: {scope: global, window: day, limit_usd: LIMIT}
tasks:
  x: {tier: t, max_input_tokens: 100, max_output_tokens: 100}
"""


def overbilling(req: ProviderRequest) -> ProviderResponse:
    """Reports five times the output it was allowed (within the model's window, so believed)."""
    return ProviderResponse("ok", Usage(count_messages(req.messages, req.system), 5 * req.max_output_tokens))


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_an_overbilling_upstream_passes_the_limit_by_at_most_the_in_flight_excess(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    from _state_kit import open_state

    limit = 0.01
    (tmp_path / "p.yaml").write_text(OVERBILL.replace("LIMIT", str(limit)))
    state = open_state(backend, tmp_path, request, "overbill")
    router = Router.from_path(tmp_path / "p.yaml", state=state, providers={"p": MockProvider("p", overbilling)})
    excess = router.explain("x", input_tokens=100).max_excess_per_attempt_usd
    assert excess is not None and excess > 0
    answered = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(100):
            router.complete("x", "hello there")
            answered += 1
    spent = sum(row.cost_usd for row in state.ledger_rows())
    assert answered >= 1 and spent > limit  # it does pass the limit ...
    assert spent <= limit + excess  # ... by at most one attempt's excess: one request was in flight at a time


def test_concurrent_overbilling_is_bounded_by_the_attempts_in_flight(tmp_path: Path) -> None:
    from policyrouter import MemoryState

    limit, threads = 0.05, 8
    (tmp_path / "p.yaml").write_text(OVERBILL.replace("LIMIT", str(limit)))
    state = MemoryState()
    router = Router.from_path(tmp_path / "p.yaml", state=state, providers={"p": MockProvider("p", overbilling)})
    excess = router.explain("x", input_tokens=100).max_excess_per_attempt_usd
    assert excess is not None

    def worker() -> None:
        for _ in range(50):
            try:
                router.complete("x", "hello there")
            except BudgetExceeded:
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    spent = sum(row.cost_usd for row in state.ledger_rows())
    assert limit < spent <= limit + threads * excess


def test_explain_states_the_excess_bound(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(textwrap.dedent(OVERBILL.replace("LIMIT", "1")))
    router = Router.from_path(tmp_path / "p.yaml", providers={"p": MockProvider("p")})
    e = router.explain("x", input_tokens=100)
    # believed at most: (window + max output) tokens each of input and output; reserved at the
    # least: no input and 100 out (a shorter prompt reserves less, so it can overshoot more)
    believed = (10_000 + 100) * 1.0e-6 + (10_000 + 100) * 10.0e-6
    assert e.max_excess_per_attempt_usd == pytest.approx(believed - 100 * 10.0e-6)
    assert router.explain("x", input_tokens=5).max_excess_per_attempt_usd == e.max_excess_per_attempt_usd
    assert "beyond its reservation" in str(e)
