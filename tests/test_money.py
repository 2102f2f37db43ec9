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

from policyrouter import AllModelsFailed, BudgetExceeded, RequestTimeout, Router, RouterError
from policyrouter.state.base import StateBackend
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.tokens import count_text
from policyrouter.types import Usage

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
  chat_gpt: {{tier: gpt, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: {timeout}{extra}}}
  chat_claude: {{tier: claude, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: {timeout}{extra}}}
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
    timeout: float = 5.0,
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
            timeout=timeout,
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


# --------------------------------------------------------------------------- 2. empty usage

PROMPT = "please answer this question " * 20
EMPTY_USAGE = {
    "gpt": [{}, {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}, {"total_tokens": 900}],
    "claude": [{}, {"input_tokens": None, "output_tokens": None}, {"output_tokens": 12}],
}
CASES = [(first, i) for first in EMPTY_USAGE for i in range(3)]


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("first", "case"), CASES)
def test_usage_without_both_counts_is_estimated_not_free(
    server: MockLLMServer, tmp_path: Path, first: str, case: int, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    server.script(UPSTREAM[first], [Fault(usage=EMPTY_USAGE[first][case])])
    router = router_for(server, tmp_path)
    estimated: list[dict[str, object]] = []
    router.on("usage_estimated", estimated.append)
    with caplog.at_level("WARNING", logger="policyrouter"):
        if mode == "complete":
            r = router.complete(f"chat_{first}", PROMPT)
        else:
            final = list(router.stream(f"chat_{first}", PROMPT))[-1].result
            assert final is not None
            r = final
    assert r.usage.input_tokens > 100 and r.usage.output_tokens == count_text(REPLY)
    assert r.usage.estimated and r.attempts[-1].billed_as == "estimate"
    assert [e["model"] for e in estimated] == [r.model]  # an event, not only a log line
    price_in, price_out = PRICE[first]
    assert r.cost_usd == pytest.approx((r.usage.input_tokens * price_in + r.usage.output_tokens * price_out) / 1e6)
    assert counters(router)[0] == pytest.approx(r.cost_usd)


# --------------------------------------------------------------------------- 3. negative and absurd counts

HOSTILE = {
    "gpt": [
        {"prompt_tokens": -10_000_000, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": -5},
        {"prompt_tokens": 10**15, "completion_tokens": 5},
        {"prompt_tokens": 2**70, "completion_tokens": 2**70},
        {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 50}},
    ],
    "claude": [
        {"input_tokens": -10_000_000, "output_tokens": 5},
        {"input_tokens": -5_000, "output_tokens": 3, "cache_read_input_tokens": 6_000},
        {"input_tokens": 10, "output_tokens": 10**15},
        {"input_tokens": 2**70, "output_tokens": 2**70},
        {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": -9},
    ],
}


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_negative_or_absurd_counts_are_a_malformed_body(
    server: MockLLMServer, tmp_path: Path, state: StateBackend, first: str
) -> None:
    server.set_reply(UPSTREAM[first], text=REPLY)
    router = router_for(server, tmp_path, state)
    for usage in HOSTILE[first]:
        server.script(UPSTREAM[first], [Fault(usage=usage)])
        with pytest.raises(AllModelsFailed) as info:
            router.complete(f"chat_{first}", PROMPT)
        (attempt,) = info.value.attempts
        assert attempt.error_kind == "server_error" and attempt.status_code == 200
        assert attempt.billed_as == "estimate"  # answered, so billed: at the estimate, never the counts
        assert 0 < attempt.cost_usd < estimate(first, 4000, REPLY)
    spent, reserved = counters(router)
    rows = router.state.ledger_rows()
    assert reserved == 0 and len(rows) == len(HOSTILE[first])
    assert all(0 < r.cost_usd < 0.01 for r in rows)
    assert 0 < spent == pytest.approx(sum(r.cost_usd for r in rows))


# --------------------------------------------------------------------------- 5. failed attempts burn tokens


@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_error_response_with_usage_is_billed(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    usage = (
        {"prompt_tokens": 3000, "completion_tokens": 150}
        if first == "gpt"
        else {"input_tokens": 3000, "output_tokens": 150}
    )
    server.script(UPSTREAM[first], [Fault(status=500, usage=usage)])
    router = router_for(server, tmp_path)
    with pytest.raises(AllModelsFailed) as info:
        router.complete(f"chat_{first}", PROMPT)
    (attempt,) = info.value.attempts
    price_in, price_out = PRICE[first]
    billed = (3000 * price_in + 150 * price_out) / 1e6
    assert attempt.cost_usd == pytest.approx(billed) and attempt.billed_as is None  # as reported
    assert counters(router) == (pytest.approx(billed), 0)
    assert [r.cost_usd for r in router.state.ledger_rows()] == [pytest.approx(billed)]


def test_no_choices_with_usage_is_billed(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(GPT, [Fault(kind="no_choices", usage={"prompt_tokens": 3000, "completion_tokens": 150})])
    router = router_for(server, tmp_path)
    with pytest.raises(AllModelsFailed) as info:
        router.complete("chat_gpt", PROMPT)
    (attempt,) = info.value.attempts
    assert attempt.error_kind == "server_error"
    assert attempt.cost_usd == pytest.approx((3000 * 0.40 + 150 * 1.60) / 1e6)


@pytest.mark.parametrize(("policy", "output"), [("estimate", 0), ("reserve", 200), ("zero", None)])
def test_timeout_is_charged_per_on_unknown_usage(
    server: MockLLMServer, tmp_path: Path, policy: str, output: int | None
) -> None:
    """The upstream may bill a call the client gave up on: the task says what to charge."""
    server.script(GPT, [Fault(kind="stall", seconds=5)])
    router = router_for(server, tmp_path, extra=f", on_unknown_usage: {policy}", timeout=0.3)
    with pytest.raises(RouterError) as info:
        router.complete("chat_gpt", PROMPT)
    assert isinstance(info.value, (AllModelsFailed, RequestTimeout))
    (attempt,) = info.value.attempts
    assert attempt.error_kind == "timeout" and attempt.billed_as == policy
    if output is None:
        assert attempt.cost_usd == 0 and attempt.usage == Usage()
    else:
        assert attempt.usage is not None and attempt.usage.output_tokens == output
        assert attempt.usage.input_tokens > 100
        assert attempt.cost_usd == pytest.approx((attempt.usage.input_tokens * 0.40 + output * 1.60) / 1e6)
    assert counters(router) == (pytest.approx(attempt.cost_usd), 0)
