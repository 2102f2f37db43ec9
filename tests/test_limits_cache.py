"""Client-side rate limits against a server enforcing them; the response cache."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyrouter import AllModelsFailed, ProviderError, ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.compile import compile_policy
from policyrouter.policy.models import Policy
from policyrouter.providers.mock import MockProvider
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

RPM = 5


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[MockLLMServer]:
    with MockLLMServer(clock=clock.now) as s:
        yield s


def limited_router(server: MockLLMServer, tmp_path: Path, clock: FakeClock, on_limit: str) -> Router:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"""
version: 1
providers:
  oa: {{kind: openai, api_key_env: K, base_url: "{server.openai_base_url}"}}
models:
  m:
    provider: oa
    model: lim-2025-01-01
    limits: {{rpm: {RPM}, on_limit: {on_limit}, max_wait_s: 120}}
  spare: {{provider: oa, model: spare-2025-01-01}}
tiers:
  t: [m, spare]
tasks:
  s: {{tier: t, max_output_tokens: 20, deadline_s: 600, timeout_s: 5}}
"""
    )
    return Router.from_path(path, environ={"K": "sk-test-x"}, clock=clock, rng=random.Random(0))


def test_rpm_wait_keeps_server_429_at_zero(server: MockLLMServer, tmp_path: Path, clock: FakeClock) -> None:
    server.enforce_limits("lim-2025-01-01", rpm=RPM)
    router = limited_router(server, tmp_path, clock, "wait")
    results = [router.complete("s", f"q{i}") for i in range(RPM * 3)]
    assert server.count_429 == 0
    assert {r.model for r in results} == {"m"}
    assert len(server.requests_for("lim-2025-01-01")) == RPM * 3
    assert sum(clock.sleeps) >= 60  # the router waited (on the fake clock) for the window


def test_rpm_spill_moves_to_next_model(server: MockLLMServer, tmp_path: Path, clock: FakeClock) -> None:
    server.enforce_limits("lim-2025-01-01", rpm=RPM)
    router = limited_router(server, tmp_path, clock, "spill")
    models = [router.complete("s", f"q{i}").model for i in range(RPM * 2)]
    assert server.count_429 == 0
    assert models == ["m"] * RPM + ["spare"] * RPM
    assert clock.sleeps == []


def cache_policy(**cache: object) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "providers": {"p": {"kind": "mock"}},
            "models": {"m": {"provider": "p", "model": "m-1", "pricing": {"input": 1, "output": 1}}},
            "tiers": {"t": ["m"]},
            "tasks": {"s": {"tier": "t", "temperature": 0, "cache": {"ttl_s": 60, **cache}}},
        }
    )


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def __call__(self, req: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        if self.fail:
            raise ProviderError("server_error", "down", status_code=500)
        return ProviderResponse(f"answer {self.calls}", Usage(10, 5))


def cache_router(pol: Policy, handler: Counting, clock: FakeClock) -> Router:
    return Router(compile_policy(pol), {"p": MockProvider("p", handler)}, clock=clock)


def test_cache_hit_sends_nothing(clock: FakeClock) -> None:
    h = Counting()
    router = cache_router(cache_policy(), h, clock)
    first = router.complete("s", "same question")
    second = router.complete("s", "same question")
    assert h.calls == 1
    assert second.cache_hit and not first.cache_hit
    assert second.text == first.text and second.cost_usd == 0.0 and second.attempts == ()
    router.complete("s", "another question")
    assert h.calls == 2


def test_cache_is_namespaced_per_tenant(clock: FakeClock) -> None:
    h = Counting()
    router = cache_router(cache_policy(), h, clock)
    a = router.complete("s", "q", tenant="a")
    b = router.complete("s", "q", tenant="b")
    assert not b.cache_hit and a.text != b.text and h.calls == 2
    assert router.complete("s", "q", tenant="a").cache_hit


def test_cache_ttl_and_stale_if_error(clock: FakeClock) -> None:
    h = Counting()
    router = cache_router(cache_policy(stale_if_error_s=300), h, clock)
    fresh = router.complete("s", "q")
    clock.advance(61)  # expired
    h.fail = True
    stale = router.complete("s", "q")
    assert stale.cache_hit and stale.stale and stale.text == fresh.text
    clock.advance(400)  # beyond stale_if_error
    with pytest.raises(AllModelsFailed):
        router.complete("s", "q")


def test_no_cache_above_temperature_unless_forced(clock: FakeClock) -> None:
    h = Counting()
    router = cache_router(cache_policy(), h, clock)
    router.complete("s", "q", temperature=1.0)
    router.complete("s", "q", temperature=1.0)
    assert h.calls == 2
    router.complete("s", "q", temperature=1.0, cache=True)
    assert router.complete("s", "q", temperature=1.0, cache=True).cache_hit
    assert not router.complete("s", "q", cache=False).cache_hit


def test_cache_key_holds_no_secret() -> None:
    from policyrouter.stages.cache import cache_key

    pol = compile_policy(cache_policy())
    tp = pol.tasks["s"]
    assert tp.cache is not None
    key = cache_key(
        tp.cache, "s", tp.default.chain.upstreams, None, [{"role": "user", "content": "hi"}], 10, 0.0, "acme"
    )
    assert "sk-" not in key and len(key.split(":")[-1]) == 64


def test_plain_cache_hit_matches_the_full_path() -> None:
    """The same cache entry answers a plain request and one with messages= (the full path)."""
    handler = Counting()
    router = cache_router(cache_policy(), handler, FakeClock())
    first = router.complete("s", "hello", tenant="acme")
    plain = router.complete("s", "hello", tenant="acme")
    full = router.complete("s", messages=[{"role": "user", "content": "hello"}], tenant="acme")
    other_tenant = router.complete("s", "hello", tenant="beta")
    assert not first.cache_hit and plain.cache_hit and full.cache_hit and not other_tenant.cache_hit
    assert plain.text == full.text == first.text
    assert plain.route == full.route and plain.request_id != full.request_id
    assert handler.calls == 2  # the first request and the other tenant's


def test_a_cache_miss_asks_the_state_once(clock: FakeClock) -> None:
    """A miss on a cached task is one lookup (a remote state pays a round trip for each), and its
    input is counted once (a real tokenizer costs)."""
    from policyrouter.state.base import Admit, Admitted, CacheEntry
    from policyrouter.state.memory import MemoryState
    from policyrouter.tokens import count_text

    class CountingState(MemoryState):
        lookups = 0

        def admit(self, a: Admit) -> Admitted:  # the lookup rides on the first admission
            CountingState.lookups += a.cache_key is not None
            return super().admit(a)

        def cache_get(self, key: str) -> CacheEntry | None:
            CountingState.lookups += 1
            return super().cache_get(key)

    handler = Counting()
    counted: list[str] = []

    def counter(text: str) -> int:
        counted.append(text)
        return count_text(text)

    router = Router(
        compile_policy(cache_policy()),
        {"p": MockProvider("p", handler)},
        state=CountingState(),
        clock=clock,
        token_counter=counter,
    )
    router.complete("s", "a question")  # plain path: miss
    assert CountingState.lookups == 1 and counted == ["a question"]  # the input counted once, too
    router.complete("s", messages=[{"role": "user", "content": "another question"}])  # full path: miss
    assert CountingState.lookups == 2
    assert router.complete("s", "a question").cache_hit and CountingState.lookups == 3
