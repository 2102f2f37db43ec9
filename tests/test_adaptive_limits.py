"""Limits learned from the provider's rate-limit headers (``limits: {adaptive: true}``).

Header parsing for each provider's spelling, the learning rules, every state backend, the
MockLLMServer's reported budget, the router end to end through both SDKs, and 4 processes
sharing a real Redis against a hidden limit.

Time is scaled in the cross-process test: the mock's hidden "60 rpm / 40k tpm" is 60
requests and 40,000 tokens per window of ``WINDOW_S`` seconds instead of 60 (the rules read
the resets the provider reports, never sooner than the policy's ``window_s: 3``), so 360
requests offered at 3x the limit take ~6 windows, seconds instead of 6 minutes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from policyrouter import Router
from policyrouter.providers.ratelimits import DEFAULT_RESET_S, parse_duration, parse_time, read_limits
from policyrouter.stages import adaptive
from policyrouter.state.base import Admit, Finish, StateBackend
from policyrouter.state.memory import MemoryState
from policyrouter.state.redis import RedisState
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing import MockLLMServer
from policyrouter.testing.mock_server._limits import duration
from policyrouter.types import LimitReading, ProviderLimits

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z


# ---------------------------------------------------------------- header parsing
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("500us", 0.0005),
        ("2.5", 2.5),
        (" 7s ", 7.0),
    ],
)
def test_durations_as_openai_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "1x", "-1s", "-3", "1s2", "ms20", "1 s"])
def test_a_duration_that_is_not_one_is_none(text: str) -> None:
    assert parse_duration(text) is None


def test_rfc3339_times_as_anthropic_writes_them() -> None:
    assert parse_time("2026-01-01T00:00:30Z") == WALL + 30
    assert parse_time("2026-01-01T00:00:30.5Z") == WALL + 30.5
    assert parse_time("2026-01-01T00:00:30.123456789Z") == pytest.approx(WALL + 30.123457)
    assert parse_time("2025-12-31T19:00:30-05:00") == WALL + 30
    assert parse_time("2026-01-01T00:00:30") is None  # no offset: which clock?
    assert parse_time("tomorrow") is None


def test_openai_headers() -> None:
    headers = httpx2.Headers(
        {
            "X-RateLimit-Limit-Requests": "500",
            "x-ratelimit-limit-tokens": "90000",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-remaining-tokens": "89950",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert read_limits(headers, WALL) == ProviderLimits(
        requests=LimitReading(500, 499, WALL + 0.12), tokens=LimitReading(90000, 89950, WALL + 360)
    )


def test_anthropic_headers_all_four_dimensions() -> None:
    headers: dict[str, str] = {}
    for i, infix in enumerate(("requests", "tokens", "input-tokens", "output-tokens")):
        headers[f"anthropic-ratelimit-{infix}-limit"] = str(1000 * (i + 1))
        headers[f"anthropic-ratelimit-{infix}-remaining"] = str(900 * (i + 1))
        headers[f"anthropic-ratelimit-{infix}-reset"] = f"2026-01-01T00:00:{10 + i:02d}Z"
    limits = read_limits(headers, WALL)
    assert limits == ProviderLimits(
        requests=LimitReading(1000, 900, WALL + 10),
        tokens=LimitReading(2000, 1800, WALL + 11),
        input_tokens=LimitReading(3000, 2700, WALL + 12),
        output_tokens=LimitReading(4000, 3600, WALL + 13),
    )


def test_azure_remaining_only_holds_for_a_minute() -> None:
    headers = {"x-ratelimit-remaining-requests": "9", "x-ratelimit-remaining-tokens": "1200"}
    assert read_limits(headers, WALL) == ProviderLimits(
        requests=LimitReading(None, 9, WALL + DEFAULT_RESET_S), tokens=LimitReading(None, 1200, WALL + DEFAULT_RESET_S)
    )


def test_unreadable_headers_say_nothing_and_never_raise() -> None:
    assert read_limits(None, WALL) is None
    assert read_limits({}, WALL) is None
    assert read_limits({"content-type": "application/json"}, WALL) is None
    bad = {
        "x-ratelimit-remaining-requests": "lots",
        "x-ratelimit-remaining-tokens": "-5",
        "anthropic-ratelimit-requests-remaining": "3.5",
    }
    assert read_limits(bad, WALL) is None
    # a readable count with an unreadable reset is read, full again a minute later
    odd = {
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "soon",
        "x-ratelimit-limit-requests": "?",
    }
    assert read_limits(odd, WALL) == ProviderLimits(requests=LimitReading(None, 3, WALL + DEFAULT_RESET_S))


def test_mock_durations_round_up_never_early() -> None:
    assert [duration(s) for s in (0.0, 0.0201, 0.999, 1.5, 59.9984, 360.0)] == [
        "0ms",
        "21ms",
        "999ms",
        "1.5s",
        "59.999s",
        "6m0s",
    ]
    assert parse_duration(duration(0.0201)) == pytest.approx(0.021)


# ---------------------------------------------------------------- the rules
ONE = adaptive.costs(100, 50)  # 1 request, 150 tokens, 100 input, 50 output
NONE_USED = (0, 0, 0, 0)


def _reqs(limit: int | None, remaining: int, reset_at: float) -> ProviderLimits:
    return ProviderLimits(requests=LimitReading(limit, remaining, reset_at))


def test_nothing_learned_holds_nothing() -> None:
    assert adaptive.hold(None, (10**6, 0, 0, 0), [], ONE, 0.05, WALL) == 0.0
    assert adaptive.estimate(None, NONE_USED, WALL) is None


def test_a_reading_teaches_the_limit_the_window_and_the_others_usage() -> None:
    # admitted at WALL when we had 3 attempts in the window (this one included); the provider
    # counted 5 (2 are someone else's) and is full again 60.2 s after our admission
    learned = adaptive.learn(None, _reqs(100, 95, WALL + 60.2), WALL, (3, 0, 0, 0), WALL + 0.2)
    assert learned.window_s == pytest.approx(60.2)  # the shortest admission-to-reset seen
    assert (learned.limit[0], learned.others[0], learned.others_until[0]) == (100, 2, WALL + 60.2)
    assert learned.limit[1:] == (None, None, None)  # tokens were not reported: not held
    # a reading of an attempt admitted earlier is not the newest word on the others' usage
    older = adaptive.learn(learned, _reqs(100, 90, WALL + 59), WALL - 1, (3, 0, 0, 0), WALL + 0.3)
    assert older.others[0] == 2 and older.window_s == pytest.approx(60.0)  # but a shorter window
    # nor is one about a window already over (but its limit and window count)
    stale = adaptive.learn(learned, _reqs(120, 0, WALL + 0.1), WALL + 0.05, (3, 0, 0, 0), WALL + 0.2)
    assert (stale.limit[0], stale.others[0]) == (120, 2)
    # no limit header (Azure): what was left plus what we held
    azure = adaptive.learn(None, _reqs(None, 40, WALL + 60), WALL, (7, 0, 0, 0), WALL)
    assert (azure.limit[0], azure.others[0]) == (47, 0)


def test_an_attempt_waits_for_the_log_to_free_its_cost() -> None:
    learned = adaptive.learn(None, _reqs(10, 9, WALL + 1.0), WALL, (1, 0, 0, 0), WALL)  # a 1 s window
    log = [(WALL + 0.1 * i, ONE) for i in range(9)]  # 9 of ours in the window; the reserve keeps 10 x 0.1 = 1
    assert adaptive.hold(learned, (8, 0, 0, 0), log[:8], ONE, 0.1, WALL + 0.85) == 0.0
    assert adaptive.hold(learned, (9, 0, 0, 0), log, ONE, 0.1, WALL + 0.9) == pytest.approx(0.1)  # the oldest leaves
    assert adaptive.hold(learned, (9, 0, 0, 0), log, ONE, 0.0, WALL + 0.9) == 0.0  # no reserve: the 10th fits


def test_the_others_usage_holds_until_its_reset() -> None:
    learned = adaptive.learn(None, _reqs(10, 0, WALL + 60), WALL, (1, 0, 0, 0), WALL)  # 9 are someone else's
    log = [(WALL, ONE)]
    assert adaptive.hold(learned, (1, 0, 0, 0), log, ONE, 0.0, WALL + 1) == pytest.approx(59.0)
    learned = adaptive.learn(learned, _reqs(10, 0, WALL + 30), WALL + 0.5, (1, 0, 0, 0), WALL + 1)  # newer word
    # the window is now 29.5 s (admission to reset): our one attempt leaves it before the others' expire
    assert adaptive.hold(learned, (1, 0, 0, 0), log, ONE, 0.0, WALL + 1) == pytest.approx(28.5)
    assert adaptive.hold(learned, (1, 0, 0, 0), [], ONE, 0.0, WALL + 1) == pytest.approx(29.0)  # without it
    assert adaptive.hold(learned, (1, 0, 0, 0), log, ONE, 0.0, WALL + 30) == 0.0
    assert adaptive.estimate(learned, (1, 0, 0, 0), WALL + 1) == _reqs(10, 0, WALL + 30)
    assert adaptive.estimate(learned, (0, 0, 0, 0), WALL + 31) == ProviderLimits(requests=LimitReading(10, 10, None))


def test_every_known_dimension_must_fit() -> None:
    reading = ProviderLimits(
        requests=LimitReading(100, 99, WALL + 60), output_tokens=LimitReading(1000, 950, WALL + 60)
    )
    learned = adaptive.learn(None, reading, WALL, ONE, WALL)
    assert adaptive.hold(learned, ONE, [(WALL, ONE)], ONE, 0.0, WALL) == 0.0
    # 950 output tokens of ours in the window: 50 more do not fit under 1000 x 0.01 kept back
    full = (19, 2850, 1900, 950)
    assert adaptive.hold(learned, full, [(WALL, full)], ONE, 0.01, WALL + 1) == pytest.approx(60 - 1)


# ---------------------------------------------------------------- every backend
@pytest.fixture(params=["memory", "sqlite", "redis"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    if request.param == "memory":
        s: StateBackend = MemoryState()
    elif request.param == "sqlite":
        s = SqliteState(tmp_path / "s.db")
    else:
        s = RedisState(request.getfixturevalue("redis_url"), key_prefix=request.getfixturevalue("redis_prefix"))
    yield s
    s.close()


def test_backends_log_learn_and_hold_alike(state: StateBackend) -> None:
    assert state.learned_get("m", WALL) is None
    assert state.learned_take("m", ONE, 0.1, WALL) == (0.0, ONE)  # nothing learned: logged, not held
    # its response: 8 left of 10, full again a second after its admission: 1 is someone else's
    reading = ProviderLimits(requests=LimitReading(10, 8, WALL + 1.0), tokens=LimitReading(40_000, 39_000, WALL + 1.0))
    state.learned_put("m", reading, WALL, ONE, WALL + 0.01)
    assert state.learned_get("m", WALL) == ProviderLimits(
        requests=LimitReading(10, 8, WALL + 1.0), tokens=LimitReading(40_000, 39_000, WALL + 1.0)
    )
    taken = [state.learned_take("m", ONE, 0.1, WALL + 0.5) for _ in range(8)]
    assert [w for w, _ in taken] == [0.0] * 7 + [pytest.approx(0.5)]  # 1 + 7 ours + 1 theirs; 1 kept back
    assert taken[6][1] == (8, 1200, 800, 400)  # our usage in the window, the 8th attempt included
    # a second after the first admission it has left the window, and the others' usage expired
    assert state.learned_take("m", ONE, 0.1, WALL + 1.0) == (0.0, (8, 1200, 800, 400))
    assert state.learned_get("m", WALL + 1.0) == ProviderLimits(
        requests=LimitReading(10, 2, None), tokens=LimitReading(40_000, 38_800, None)
    )


def test_admit_and_finish_carry_the_learned_limit(state: StateBackend) -> None:
    a = Admit(model="m", now=0.0, wall=WALL, lease_s=60, tokens=150, adaptive=0.0, output_tokens=50)
    first = state.admit(a)
    assert (first.stage, first.own) == ("ok", ONE)
    tight = ProviderLimits(requests=LimitReading(100, 2, WALL + 7))  # someone else used 97
    state.finish(Finish(model="m", now=0.0, wall=WALL, ok=True, limits=tight, admitted_at=WALL, own=ONE))
    assert [state.admit(a).stage for _ in range(3)] == ["ok", "ok", "learned"]
    held = state.admit(a)
    # behind the one already held, a window's share of the limit later (the window: 7 s, 100 requests)
    assert (held.stage, held.wait, held.own) == ("learned", pytest.approx(7.07), None)
    again = state.admit(replace(a, waited=True, wall=WALL + 7))  # the first one held, woken at its time
    assert again.stage == "ok"
    other = Admit(model="other", now=0.0, wall=WALL, lease_s=60, tokens=150, adaptive=0.0, output_tokens=50)
    assert state.admit(other).stage == "ok"  # per model
    plain = Admit(model="m", now=0.0, wall=WALL, lease_s=60, tokens=150)
    assert (state.admit(plain).stage, state.admit(plain).own) == ("ok", None)  # not adaptive: not held


# ---------------------------------------------------------------- the policy
def test_reserve_without_adaptive_is_a_warning_at_its_line(tmp_path: Path) -> None:
    from policyrouter.policy.loader import validate_paths

    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(kind="openai", base="http://127.0.0.1:9", limits="reserve: 0.1", state=""))
    assert [d.code for d in validate_paths([path]).diagnostics] == []
    path.write_text(path.read_text().replace("adaptive: true", "adaptive: false"))
    [d] = validate_paths([path]).diagnostics
    assert (d.code, d.severity, d.path) == ("reserve-without-adaptive", "warning", "models.m.limits.reserve")
    assert d.location is not None and d.location.line == 9
    path.write_text(path.read_text().replace("reserve: 0.1", "reserve: 1"))
    assert "reserve" in str([d.message for d in validate_paths([path]).diagnostics])  # a fraction below 1


# ---------------------------------------------------------------- the mock reports its budget
def test_mock_reports_remaining_in_openai_and_anthropic_headers() -> None:
    with MockLLMServer() as server:
        server.enforce_limits("m", rpm=2, tpm=1000, window_s=30, report_headers=True)
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
        )
        h = raw.headers
        assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("2", "1")
        assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == (
            "1000",
            "897",
        )  # 11 chars // 4 + 1, + 100
        assert 29 < (parse_duration(h["x-ratelimit-reset-requests"]) or 0) <= 30
        before = time.time()
        resp = httpx2.post(
            f"{server.anthropic_base_url}/v1/messages",
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert resp.status_code == 200
        assert resp.headers["anthropic-ratelimit-requests-remaining"] == "0"
        reset = parse_time(resp.headers["anthropic-ratelimit-requests-reset"]) or 0
        assert before + 29 < reset <= time.time() + 30.001
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
        assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert server.count_429 == 1


def test_mock_tpm_refuses_what_does_not_fit() -> None:
    with MockLLMServer() as server:
        server.enforce_limits("m", tpm=300, window_s=30)
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        msg = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(model="m", max_tokens=200, messages=msg)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", max_tokens=200, messages=msg)  # type: ignore[arg-type]
        assert 29 < float(caught.value.response.headers["retry-after"]) <= 30
        assert "x-ratelimit-remaining-tokens" not in caught.value.response.headers  # report_headers is off


# ---------------------------------------------------------------- the router, end to end
POLICY = """
version: 1
providers:
  up: {{kind: {kind}, api_key_env: K, base_url: "{base}"}}
models:
  m:
    provider: up
    model: lim-2025-01-01
    limits: {{adaptive: true, {limits}}}
  spare: {{provider: up, model: spare-2025-01-01}}
tiers:
  t: [m, spare]
{state}
tasks:
  s: {{tier: t, max_output_tokens: 20, timeout_s: 10, deadline_s: 120}}
"""


def _router(
    tmp_path: Path, base: str, *, kind: str = "openai", limits: str = "max_wait_s: 30", state: str = ""
) -> Router:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(kind=kind, base=base, limits=limits, state=state))
    return Router.from_path(path, environ={"K": "sk-test-adaptive"})


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_the_router_holds_before_the_providers_429(kind: str, tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=5, window_s=0.3, report_headers=True)
        base = server.openai_base_url if kind == "openai" else server.anthropic_base_url
        router = _router(tmp_path, base, kind=kind, limits="max_wait_s: 30, window_s: 0.3")
        seen: list[dict[str, Any]] = []
        router.on("limit_learned", seen.append)
        results = [router.complete("s", f"q{i}") for i in range(16)]
        assert server.count_429 == 0
        assert {r.model for r in results} == {"m"}
        assert len(seen) == 16 and seen[0]["limit_requests"] == 5 and seen[0]["remaining_requests"] == 4
        assert 0 < seen[0]["reset_requests_s"] <= 0.31
        assert "sk-test-adaptive" not in repr(seen)
        learned = router.state.learned_get("m", time.time())
        assert learned is not None and learned.requests is not None and learned.requests.limit == 5


def test_streamed_and_async_calls_learn_too(tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=3, window_s=0.3, report_headers=True)
        router = _router(tmp_path, server.openai_base_url, limits="max_wait_s: 30, window_s: 0.3")
        for i in range(4):
            assert "".join(c.text for c in router.stream("s", f"q{i}"))

        async def run() -> list[str]:
            return [(await router.acomplete("s", f"a{i}")).model for i in range(4)]

        assert asyncio.run(run()) == ["m"] * 4
        assert server.count_429 == 0
        assert router.state.learned_get("m", time.time()) is not None


def test_spill_moves_to_the_next_model_before_a_429(tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=3, window_s=60, report_headers=True)
        router = _router(tmp_path, server.openai_base_url, limits="on_limit: spill, reserve: 0")
        results = [router.complete("s", f"q{i}") for i in range(5)]
        assert [r.model for r in results] == ["m", "m", "m", "spare", "spare"]
        skipped = results[3].attempts[0]
        assert (skipped.outcome, skipped.error_kind) == ("skipped", "rate_limited")
        assert skipped.message == "the provider says little is left"
        assert server.count_429 == 0


def test_a_429_teaches_too(tmp_path: Path) -> None:
    """Another client used the budget: the first 429's headers hold everyone until the reset."""
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=2, window_s=60, report_headers=True)
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        for _ in range(2):
            client.chat.completions.create(
                model="lim-2025-01-01", max_tokens=1, messages=[{"role": "user", "content": "x"}]
            )
        no_retry = "retry_policies:\n  default: {max_attempts: 1}"  # the 429 falls back at once
        router = _router(tmp_path, server.openai_base_url, limits="on_limit: spill", state=no_retry)
        first = router.complete("s", "q")
        assert first.model == "spare" and first.attempts[0].error_kind == "rate_limited"
        assert server.count_429 == 1
        assert router.complete("s", "q2").model == "spare"
        assert server.count_429 == 1  # held by what the 429 said, not sent again


def test_a_model_without_adaptive_learns_nothing(tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=50, window_s=60, report_headers=True)
        path = tmp_path / "p.yaml"
        text = POLICY.format(kind="openai", base=server.openai_base_url, limits="max_wait_s: 1", state="")
        path.write_text(text.replace("adaptive: true", "adaptive: false"))
        router = Router.from_path(path, environ={"K": "sk-test"})
        router.complete("s", "q")
        assert router.state.learned_get("m", time.time()) is None


def test_explain_and_metrics_show_what_the_provider_said(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from policyrouter.explain import render_text
    from policyrouter.metrics import PrometheusMetrics

    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=50, tpm=9000, window_s=60, report_headers=True)
        router = _router(tmp_path, server.openai_base_url)
        before = router.explain("s")
        assert before.chain[0].limits is not None and before.chain[0].limits["adaptive"] is True
        assert before.chain[0].learned is None and before.chain[1].learned is None
        assert "limits adaptive (reserve 5%) on_limit wait" in render_text(before)
        registry = CollectorRegistry()
        PrometheusMetrics(registry).attach(router)
        router.complete("s", "q")
        router.complete("s", "q2")
        after = router.explain("s")
        assert after.chain[0].learned is not None
        assert after.chain[0].learned["requests"]["limit"] == 50
        assert after.chain[0].learned["requests"]["remaining"] == 48  # counted here and said by the provider alike
        assert "provider says left: requests 48/50, tokens" in render_text(after)
        value = registry.get_sample_value(
            "policyrouter_provider_limit_remaining", {"model": "m", "dimension": "requests"}
        )
        assert value == 48


# ---------------------------------------------------------------- 4 processes, one Redis, a hidden limit
HIDDEN_RPM, HIDDEN_TPM, WINDOW_S = 60, 40_000, 3.0  # a 3 s window: the pace holds on a busy 2-core CI host
OFFERED, PROCS = 360, 4


def _offer(path: str, url: str, n: int, start_at: float, interval: float, out: Any) -> None:
    """Offer ``n`` requests, one every ``interval`` seconds from ``start_at`` (wall clock)."""
    router = Router.from_path(path, environ={"K": "sk-test", "REDIS_URL": url})
    router.complete("s", "warm")  # the SDK imported and a connection open before the clock starts

    async def one(i: int) -> str:
        await asyncio.sleep(max(0.0, start_at + i * interval - time.time()))
        return (await router.acomplete("s", f"question {i}")).model

    async def run() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    out.put(asyncio.run(run()))


def test_4_processes_hold_a_hidden_limit_they_learn_from_headers(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    state = f'state: {{backend: redis, url_env: REDIS_URL, key_prefix: "{redis_prefix}"}}'
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=HIDDEN_RPM, tpm=HIDDEN_TPM, window_s=WINDOW_S, report_headers=True)
        path = tmp_path / "p.yaml"
        limits = "max_wait_s: 60, reserve: 0.02, window_s: 3"  # the hidden window; the key is not shared
        path.write_text(POLICY.format(kind="openai", base=server.openai_base_url, limits=limits, state=state))
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        per = OFFERED // PROCS
        interval = PROCS * WINDOW_S / (3 * HIDDEN_RPM)  # together: 3x the hidden limit
        start_at = time.time() + 8.0  # after every worker has started and warmed up
        procs = [
            ctx.Process(target=_offer, args=(str(path), redis_url, per, start_at, interval, q)) for _ in range(PROCS)
        ]
        for p in procs:
            p.start()
        models = [m for _ in procs for m in q.get(timeout=120)]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    assert server.count_429 == 0
    assert models == ["m"] * OFFERED
    times = sorted(r.received_at for r in server.requests_for("lim-2025-01-01") if "question" in str(r.body))
    assert len(times) == OFFERED
    per_window = (len(times) - 1) / (times[-1] - times[0]) * WINDOW_S
    assert HIDDEN_RPM * 0.9 <= per_window <= HIDDEN_RPM * 1.1, per_window


def test_a_token_buckets_short_reset_is_not_taken_as_the_window() -> None:
    """OpenAI's 'reset' is when the limit is full again; a token bucket reports seconds. The window
    learned is at least the policy's ``window_s`` (a minute), so a burst cannot pass the limit."""
    reading = ProviderLimits(requests=LimitReading(limit=60, remaining=59, reset_at=WALL + 1.0))
    assert adaptive.learn(None, reading, WALL, ONE, WALL).window_s == pytest.approx(1.0)  # taken raw
    learned = adaptive.learn(None, adaptive.floored(reading, WALL, 60.0), WALL, ONE, WALL)
    assert learned.window_s == pytest.approx(60.0)
    later = ProviderLimits(requests=LimitReading(limit=60, remaining=10, reset_at=WALL + 90.0))
    assert adaptive.floored(later, WALL, 60.0) == later  # a reset past the window is kept
