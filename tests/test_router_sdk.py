"""The router end to end: real openai/anthropic SDKs over HTTP to MockLLMServer."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyrouter import (
    AllModelsFailed,
    BadRequest,
    CircuitOpen,
    ConfigurationError,
    InvalidRequest,
    RequestTimeout,
    Router,
)
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 8000
    circuit_breaker: strict
  haiku:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
    context_window: 200000
  big:
    provider: openai
    model: gpt-big-2025-01-01
    pricing: {{input: 5.0, output: 10.0}}
    context_window: 1000000
tiers:
  simple: [mini, haiku]
  solo: [mini]
  three: [mini, haiku, big]
retry_policies:
  default:
    max_attempts: 3
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
circuit_breakers:
  strict: {{failure_threshold: 3, window_s: 60, cooldown_s: 30}}
tasks:
  summarize:
    tier: simple
    system: "You summarize."
    max_output_tokens: 200
    timeout_s: 5
  solo:
    tier: solo
    max_output_tokens: 50
  three:
    tier: three
    max_output_tokens: 50
  burst:
    tier: solo
    max_output_tokens: 50
    timeout_s: 120
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path, clock: FakeClock | None = None, extra: str = "") -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url) + extra)
    return Router.from_path(path, environ=KEYS, clock=clock or FakeClock(), rng=random.Random(7))


def test_success_and_trace(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply("gpt-mini-2025-01-01", text="short summary", usage={"input": 1000, "output": 100})
    router = make_router(server, tmp_path)
    r = router.complete("summarize", "a long text")
    assert (r.text, r.model, r.provider, r.route) == ("short summary", "mini", "openai", "default")
    assert r.usage.input_tokens == 1000 and r.usage.output_tokens == 100
    assert r.cost_usd == pytest.approx(1000 * 1.0 / 1e6 + 100 * 2.0 / 1e6)
    assert [a.outcome for a in r.attempts] == ["ok"]
    assert r.attempts[0].request_id and r.attempts[0].request_id.startswith("req_mock_")
    body = server.requests_for("gpt-mini-2025-01-01")[0].body
    assert body["messages"][0] == {"role": "system", "content": "You summarize."}


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (429, "rate_limited"),
        (500, "server_error"),
        (503, "overloaded"),
        (Fault(kind="reset"), "connection"),
        (Fault(kind="malformed"), "server_error"),
    ],
)
def test_transient_errors_retry_on_same_model(
    server: MockLLMServer, tmp_path: Path, fault: int | Fault, kind: str
) -> None:
    server.script("gpt-mini-2025-01-01", [fault, "ok"])
    clock = FakeClock()
    r = make_router(server, tmp_path, clock).complete("summarize", "x")
    assert [(a.model, a.error_kind) for a in r.attempts] == [("mini", kind), ("mini", None)]
    assert clock.sleeps == [0.5]  # backoff, jitter none


@pytest.mark.parametrize(
    ("fault", "kind"),
    [(401, "auth"), (403, "auth"), (404, "not_found"), (Fault(kind="refusal"), "content_filter")],
)
def test_model_specific_errors_fall_back_at_once(
    server: MockLLMServer, tmp_path: Path, fault: int | Fault, kind: str
) -> None:
    server.script("gpt-mini-2025-01-01", [fault])
    r = make_router(server, tmp_path).complete("summarize", "x")
    assert [(a.model, a.error_kind) for a in r.attempts] == [("mini", kind), ("haiku", None)]
    assert r.provider == "anthropic"


def test_anthropic_529_overloaded_is_retried(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [500, 500, 500])
    server.script("claude-haiku-20250101", [529])
    r = make_router(server, tmp_path).complete("summarize", "x")
    assert [a.error_kind for a in r.attempts] == ["server_error"] * 3 + ["overloaded", None]
    assert r.model == "haiku"


def test_bad_request_reaches_server_once_and_fails_fast(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [400])
    router = make_router(server, tmp_path)
    with pytest.raises(BadRequest) as info:
        router.complete("summarize", "x")
    assert len(server.requests_for("gpt-mini-2025-01-01")) == 1
    assert server.requests_for("claude-haiku-20250101") == []
    assert info.value.kind == "bad_request"
    assert [a.error_kind for a in info.value.attempts] == ["bad_request"]


def test_context_length_skips_to_a_larger_window(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [Fault(status=400, kind="context_length")])
    r = make_router(server, tmp_path).complete("three", "x")
    assert [(a.model, a.error_kind) for a in r.attempts] == [("mini", "context_length"), ("haiku", None)]


def test_retry_after_is_honoured(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [Fault(status=429, retry_after_s=3), Fault(status=429, retry_after_ms=1500)])
    clock = FakeClock()
    r = make_router(server, tmp_path, clock).complete("summarize", "x")
    assert r.model == "mini"
    assert clock.sleeps == [3.0, 1.5]  # Retry-After beats the shorter backoff (0.5, 1.0)
    assert r.attempts[0].retry_after_s == 3.0


def test_retry_after_is_capped_by_max_s(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [Fault(status=429, retry_after_s=120)])
    clock = FakeClock()
    make_router(server, tmp_path, clock).complete("summarize", "x")
    assert clock.sleeps == [8.0]


def test_all_models_failed_carries_the_trace(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [500, 500, 500])
    server.script("claude-haiku-20250101", [503, 503, 503])
    with pytest.raises(AllModelsFailed) as info:
        make_router(server, tmp_path).complete("summarize", "x")
    err = info.value
    assert [(a.model, a.error_kind) for a in err.attempts] == [("mini", "server_error")] * 3 + [
        ("haiku", "overloaded")
    ] * 3
    assert "sk-test-SECRET" not in str(err) and "sk-ant-test-SECRET" not in repr(err)


def test_deadline_across_attempts(server: MockLLMServer, tmp_path: Path) -> None:
    """Real clock: each call stalls past its timeout; the request deadline stops the loop."""
    server.script("gpt-mini-2025-01-01", [Fault(kind="stall", seconds=5)] * 3)
    extra = "  slow:\n    tier: solo\n    timeout_s: 0.2\n    deadline_s: 0.5\n"
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url) + extra)
    router = Router.from_path(path, environ=KEYS, rng=random.Random(1))
    with pytest.raises(RequestTimeout) as info:
        router.complete("slow", "x")
    kinds = [a.error_kind for a in info.value.attempts]
    assert kinds and set(kinds) == {"timeout"}
    assert len(kinds) <= 3


def test_breaker_lifecycle_on_fake_clock(server: MockLLMServer, tmp_path: Path) -> None:
    clock = FakeClock()
    router = make_router(server, tmp_path, clock)
    server.script("gpt-mini-2025-01-01", [500, 500, 500])
    r = router.complete("summarize", "x")  # 3 failures open the breaker, haiku answers
    assert r.model == "haiku"
    assert router.state.breaker_get("mini").status == "open"
    before = len(server.requests_for("gpt-mini-2025-01-01"))
    r = router.complete("summarize", "x")  # open: mini skipped without a call
    assert [(a.model, a.outcome) for a in r.attempts] == [("mini", "skipped"), ("haiku", "ok")]
    assert len(server.requests_for("gpt-mini-2025-01-01")) == before
    with pytest.raises(CircuitOpen):
        router.complete("solo", "x")
    clock.advance(31)  # cooldown over: a single half-open probe
    r = router.complete("summarize", "x")
    assert r.model == "mini"
    assert router.state.breaker_get("mini").status == "closed"


def test_breaker_probe_failure_reopens(server: MockLLMServer, tmp_path: Path) -> None:
    clock = FakeClock()
    router = make_router(server, tmp_path, clock)
    server.script("gpt-mini-2025-01-01", [500, 500, 500, 500])
    router.complete("summarize", "x")
    clock.advance(31)
    r = router.complete("summarize", "x")  # probe fails: open again, no retry on mini
    assert [(a.model, a.outcome) for a in r.attempts] == [("mini", "error"), ("haiku", "ok")]
    assert router.state.breaker_get("mini").status == "open"


def test_concurrency_limit_is_held(server: MockLLMServer, tmp_path: Path) -> None:
    extra = "  limited:\n    tier: lim\n"
    policy = POLICY.replace(
        "  big:\n",
        "  lim:\n    provider: openai\n    model: gpt-lim-2025-01-01\n"
        "    limits: {{concurrency: 2, max_wait_s: 30}}\n  big:\n",
    ).replace("  three: [mini, haiku, big]", "  three: [mini, haiku, big]\n  lim: [lim]")
    path = tmp_path / "policy.yaml"
    path.write_text(policy.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url) + extra)
    server.enforce_limits("gpt-lim-2025-01-01", concurrency=2)
    server.set_reply("gpt-lim-2025-01-01", text="ok", latency_s=0.05)
    router = Router.from_path(path, environ=KEYS)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            router.complete("limited", "x")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.count_429 == 0
    assert len(server.requests_for("gpt-lim-2025-01-01")) == 8


def test_sequential_calls_share_one_connection(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    for _ in range(100):
        router.complete("solo", "x")
    assert server.connections_opened == 1

    async def many() -> None:
        for _ in range(100):
            await router.acomplete("solo", "x")
        await router.aclose()

    asyncio.run(many())
    assert server.connections_opened == 2  # one more for the async client


def test_complete_inside_a_running_loop(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)

    async def notebook_cell() -> str:
        return router.complete("solo", "x").text  # sync call from inside a loop

    assert asyncio.run(notebook_cell()).startswith("mock answer")


def test_thousand_concurrent_acomplete(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)

    async def burst() -> list[str]:
        results = await asyncio.gather(*(router.acomplete("burst", f"q{i}") for i in range(1000)))
        await router.aclose()
        return [r.model for r in results]

    models = asyncio.run(burst())
    assert len(models) == 1000 and set(models) == {"mini"}


def test_missing_key_is_a_configuration_error_naming_the_variable(server: MockLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    router = Router.from_path(path, environ={})  # loading needs no key
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        router.complete("solo", "x")


def test_unknown_task_and_bad_input_are_typed(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidRequest, match="did you mean 'summarize'"):
        router.complete("sumarize", "x")
    with pytest.raises(InvalidRequest):
        router.complete("summarize")
    with pytest.raises(InvalidRequest):
        router.complete("summarize", "x", messages=[{"role": "user", "content": "y"}])


def test_messages_and_anthropic_mapping(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-mini-2025-01-01", [401])
    router = make_router(server, tmp_path)
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "summarize this"},
    ]
    r = router.complete("summarize", messages=msgs)
    assert r.provider == "anthropic"
    body = server.requests_for("claude-haiku-20250101")[0].body
    assert body["max_tokens"] == 200
    assert "You summarize." in str(body["system"]) and "Be brief." in str(body["system"])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
