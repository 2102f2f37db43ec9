"""A hard limit is a hard limit (issue 15, "Money"): abandoned streams, empty, negative or
absurd usage, tokens burned by failed attempts and repair turns are all billed, on every
state backend, through the real SDKs against ``MockLLMServer``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from _state_kit import WALL

from policyrouter import BudgetExceeded, Router
from policyrouter.state.base import StateBackend
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.tokens import count_text

KEYS = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}
GPT = "gpt-4.1-mini-2025-04-14"
CLAUDE = "claude-haiku-4-5-20251001"
UPSTREAM = {"gpt": GPT, "claude": CLAUDE}
PRICE = {"gpt": (0.40, 1.60), "claude": (1.00, 5.00)}  # USD per 1M input, output tokens
REPLY = "the quick brown fox jumps over the lazy dog " * 8

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  gpt:
    provider: openai
    model: {gpt}
    pricing: {{input: 0.40, output: 1.60}}
    context_window: 100000
  claude:
    provider: anthropic
    model: {claude}
    pricing: {{input: 1.00, output: 5.00}}
    context_window: 100000
tiers:
  gpt: [gpt]
  claude: [claude]
retry_policies:
  default: {{max_attempts: 1}}
budgets:
  daily: {{scope: global, window: day, limit_usd: {limit}}}
tasks:
  chat_gpt: {{tier: gpt, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: 5{extra}}}
  chat_claude: {{tier: claude, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: 5{extra}}}
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def router_for(
    server: MockLLMServer,
    tmp_path: Path,
    state: StateBackend | None = None,
    *,
    limit: float = 100.0,
    extra: str = "",
) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(
        POLICY.format(
            openai=server.openai_base_url,
            anthropic=server.anthropic_base_url,
            gpt=GPT,
            claude=CLAUDE,
            limit=limit,
            extra=extra,
        )
    )
    clock = FakeClock(wall_start=WALL)
    return Router.from_path(path, environ=KEYS, clock=clock, rng=random.Random(7), state=state)


def counters(router: Router) -> tuple[float, float]:
    """(spent, reserved) USD in the daily budget."""
    rows = router.state.budget_counters("daily")
    return sum(s for _, s, _ in rows), sum(r for _, _, r in rows)


def estimate(first: str, input_tokens: int, text: str) -> float:
    price_in, price_out = PRICE[first]
    return (input_tokens * price_in + count_text(text) * price_out) / 1e6


# --------------------------------------------------------------------------- 1. abandoned streams


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_abandoned_stream_is_billed_on_what_was_delivered(
    server: MockLLMServer, tmp_path: Path, state: StateBackend, first: str
) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    router = router_for(server, tmp_path, state)
    stream = router.stream(f"chat_{first}", "tell me a story")
    got = [next(stream).text for _ in range(3)]
    stream.close()  # the caller read three deltas and went away before the final chunk
    spent, reserved = counters(router)
    assert reserved == 0
    rows = router.state.ledger_rows()
    assert [r.outcome for r in rows] == ["abandoned"]
    (row,) = rows
    assert row.cost_usd == pytest.approx(spent) and spent > 0
    delivered_floor = estimate(first, 0, "".join(got))
    assert spent >= delivered_floor > 0  # never below what was delivered
    assert spent < estimate(first, 200, REPLY) + 1e-9  # no more than input + the whole reply


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_async_abandoned_stream_is_billed(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    router = router_for(server, tmp_path)
    got: list[str] = []

    async def run() -> None:
        stream = router.astream(f"chat_{first}", "tell me a story")
        async for chunk in stream:
            got.append(chunk.text)
            if len(got) == 2:
                break
        await stream.aclose()

    asyncio.run(run())
    spent, reserved = counters(router)
    assert reserved == 0 and spent >= estimate(first, 0, "".join(got)) > 0
    assert [r.outcome for r in router.state.ledger_rows()] == ["abandoned"]


def test_many_abandoned_streams_cannot_outspend_the_limit(server: MockLLMServer, tmp_path: Path) -> None:
    """The issue's attack: read every text delta, stop before the final chunk, on a tiny budget."""
    server.set_reply(GPT, text=REPLY)
    router = router_for(server, tmp_path, limit=0.01)
    refused = 0
    for _ in range(100):
        stream = router.stream("chat_gpt", "tell me a story")
        text = ""
        try:
            while text != REPLY:
                text += next(stream).text
        except BudgetExceeded:
            refused += 1
        stream.close()
    spent, reserved = counters(router)
    assert refused > 0 and reserved == 0
    assert 0.01 * 0.9 < spent <= 0.01
    assert sum(r.cost_usd for r in router.state.ledger_rows()) == pytest.approx(spent)
