"""Tier strategies: the first model of each request's chain is drawn by the tier's strategy
(weighted, least_busy, lowest_latency, lowest_cost), health-aware, on a fake clock and a seeded rng."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from policyrouter import Router
from policyrouter.errors import AllModelsFailed, ProviderError
from policyrouter.providers.mock import MockProvider
from policyrouter.state.base import StateBackend
from policyrouter.state.memory import MemoryState
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest, ProviderResponse, Usage

PROVIDERS_MODELS = """
version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01, pricing: {input: 1.0, output: 4.0}, circuit_breaker: cb}
  b: {provider: p, model: b-2025-01-01, pricing: {input: 0.5, output: 2.0}}
  c: {provider: p, model: c-2025-01-01, pricing: {input: 3.0, output: 6.0}}
circuit_breakers:
  cb: {failure_threshold: 2, window_s: 60, cooldown_s: 600}
retry_policies:
  default: {max_attempts: 1}
tasks:
  s: {tier: t, max_output_tokens: 20}
"""


class Upstream:
    """Answers for every model, after that model's latency on the fake clock; ``down`` models fail."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.latency: dict[str, float] = {}
        self.down: set[str] = set()
        self.calls: Counter[str] = Counter()

    def __call__(self, req: ProviderRequest) -> ProviderResponse:
        name = req.model.split("-")[0]
        self.calls[name] += 1
        self.clock.sleep(self.latency.get(name, 0.01))
        if name in self.down:
            raise ProviderError("server_error", "down")
        return ProviderResponse(text="ok", usage=Usage(3, 2))


def make(tmp_path: Path, tier: str, state: StateBackend | None = None, seed: int = 7) -> tuple[Router, Upstream]:
    (tmp_path / "p.yaml").write_text(PROVIDERS_MODELS + "tiers:\n  t: " + tier + "\n")
    clock = FakeClock()
    up = Upstream(clock)
    router = Router.from_path(
        tmp_path / "p.yaml",
        state=state or MemoryState(),
        clock=clock,
        rng=random.Random(seed),
        providers={"p": MockProvider("p", up)},
    )
    return router, up


def served(router: Router, n: int) -> Counter[str]:
    return Counter(router.complete(task="s", input="hi").model for _ in range(n))


def test_weighted_70_30_within_two_percent_over_10000_requests(tmp_path: Path) -> None:
    router, _ = make(tmp_path, "{strategy: weighted, models: [{model: a, weight: 70}, {model: b, weight: 30}]}")
    got = served(router, 10_000)
    assert abs(got["a"] / 10_000 - 0.70) < 0.02
    assert got["a"] + got["b"] == 10_000


def test_the_same_seed_draws_the_same_sequence(tmp_path: Path) -> None:
    tier = "{strategy: weighted, models: [{model: a, weight: 1}, {model: b, weight: 1}]}"
    first, _ = make(tmp_path, tier, seed=3)
    again, _ = make(tmp_path, tier, seed=3)
    seq = [first.complete(task="s", input="x").model for _ in range(50)]
    assert seq == [again.complete(task="s", input="x").model for _ in range(50)]
    assert set(seq) == {"a", "b"}


def test_an_open_breaker_takes_a_model_out_of_the_draw(tmp_path: Path) -> None:
    router, up = make(tmp_path, "{strategy: weighted, models: [a, b, c]}")
    up.down.add("a")
    while up.calls["a"] < 2:  # two failures open a's breaker (each falls back and is answered)
        assert router.complete(task="s", input="hi").model in ("b", "c")
    up.down.clear()
    up.calls.clear()
    got = served(router, 2_000)
    assert up.calls["a"] == 0  # no call reaches it while open
    assert got["a"] == 0
    assert abs(got["b"] / 2_000 - 0.5) < 0.04  # its share is drawn again between the others


def test_the_chosen_model_falls_back_to_the_others_in_listed_order(tmp_path: Path) -> None:
    firsts = set()
    for seed in range(12):  # a fresh router each time: one failure opens no breaker
        router, up = make(tmp_path, "{strategy: weighted, models: [a, b, c]}", seed=seed)
        up.down.update({"a", "b", "c"})
        with pytest.raises(AllModelsFailed) as info:
            router.complete(task="s", input="hi")
        order = [at.model for at in info.value.attempts]
        firsts.add(order[0])
        assert order == [order[0], *[m for m in ("a", "b", "c") if m != order[0]]]
    assert firsts == {"a", "b", "c"}


def test_lowest_cost_takes_the_cheapest_worst_case_then_falls_back_in_order(tmp_path: Path) -> None:
    router, up = make(tmp_path, "{strategy: lowest_cost, models: [c, a, b]}")
    assert served(router, 20) == Counter({"b": 20})
    up.down.add("b")
    result = router.complete(task="s", input="hi")
    assert [at.model for at in result.attempts] == ["b", "c"]  # then the rest as listed


@pytest.mark.parametrize("state", ["memory", "sqlite", "redis"], indirect=True)
def test_lowest_latency_moves_away_from_a_slow_model_and_back(tmp_path: Path, state: StateBackend) -> None:
    router, up = make(tmp_path, "{strategy: lowest_latency, models: [a, b]}", state=state)
    up.latency = {"a": 0.010, "b": 0.020}
    warm = served(router, 100)
    assert warm["a"] > 80
    up.latency["a"] = 0.500  # a slows down
    after = [router.complete(task="s", input="hi").model for _ in range(50)]
    assert after[10:].count("a") <= 8  # away within 50 requests (a few draws explore)
    up.latency["a"] = 0.010  # a recovers
    back = [router.complete(task="s", input="hi").model for _ in range(500)]
    assert back[-100:].count("a") >= 80


@pytest.mark.parametrize("state", ["memory", "sqlite", "redis"], indirect=True)
def test_least_busy_draws_the_model_with_fewest_calls_in_flight(tmp_path: Path, state: StateBackend) -> None:
    router, _ = make(tmp_path, "{strategy: least_busy, models: [a, b, c]}", state=state)
    for _ in range(2):  # calls held elsewhere (another process): slots a and b in use
        assert state.slot_acquire("a", 10)
        assert state.slot_acquire("b", 10)
    assert state.slot_acquire("c", 10)
    assert [x.in_flight for x in state.loads(("a", "b", "c"))] == [2, 2, 1]
    assert served(router, 20) == Counter({"c": 20})
    assert [x.in_flight for x in state.loads(("a", "b", "c"))] == [2, 2, 1]  # each call's slot given back


def test_explain_shows_the_strategy(tmp_path: Path) -> None:
    router, _ = make(tmp_path, "{strategy: weighted, models: [{model: a, weight: 3}, b]}")
    text = str(router.explain(task="s", input_tokens=100))
    assert "weighted" in text


BAD_TIERS = """\
version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01, pricing: {input: 1.0, output: 4.0}}
  b: {provider: p, model: b-2025-01-01, pricing: {input: 0.5, output: 2.0}}
tiers:
  w:
    strategy: weighted
    models: [{model: a, weight: -1}, {model: b, weight: 0}]
  o:
    models: [{model: a, weight: 5}, b]
  x: {strategy: random, models: [a, b]}
  y: {strategy: least_busy, models: [a, bb, a]}
tasks:
  s: {tier: w, max_output_tokens: 20}
  t: {tier: o, max_output_tokens: 20}
  u: {tier: x, max_output_tokens: 20}
  v: {tier: y, max_output_tokens: 20}
"""


def test_validate_reports_every_tier_problem_at_its_line(tmp_path: Path) -> None:
    from policyrouter.policy.loader import validate_paths

    path = tmp_path / "bad.yaml"
    path.write_text(BAD_TIERS)
    report = validate_paths([str(path)])
    got = {(d.code, d.severity, d.location.line, d.location.col) for d in report.diagnostics}
    assert got == {
        ("out-of-range", "error", 10, 33),  # weight -1
        ("out-of-range", "error", 10, 57),  # weight 0
        ("tier-weight-unused", "warning", 12, 33),
        ("invalid-value", "error", 13, 17),  # unknown strategy
        ("unknown-reference", "error", 14, 41),
        ("duplicate-tier-member", "error", 14, 45),
    }
    assert all(d.hint for d in report.diagnostics)
    unknown = next(d for d in report.diagnostics if d.code == "invalid-value")
    assert "least_busy" in (unknown.hint or "")


def test_a_strategy_does_not_grow_the_worst_case(tmp_path: Path) -> None:
    """The worst case already takes the dearest model at every step: drawing the first is no worse."""
    worst = []
    for tier in ("[a, b, c]", "{strategy: weighted, models: [{model: b, weight: 9}, a, c]}"):
        policy = PROVIDERS_MODELS.replace("max_output_tokens: 20}", "max_output_tokens: 20, max_input_tokens: 1000}")
        (tmp_path / "p.yaml").write_text(policy + "tiers:\n  t: " + tier + "\n")
        e = Router.from_path(tmp_path / "p.yaml").explain(task="s", input_tokens=1000)
        worst.append((e.worst_case_calls, e.worst_case_cost_usd, e.worst_case_tokens))
    assert worst[0] == worst[1]
    every_model_once = (1000 * 3.0 + 20 * 6.0) + (1000 * 1.0 + 20 * 4.0) + (1000 * 0.5 + 20 * 2.0)
    assert worst[1] == (3, pytest.approx(every_model_once / 1e6), 3 * 1020)


def test_a_model_at_its_limits_is_left_out_of_the_draw_and_waited_for_only_as_a_fallback(tmp_path: Path) -> None:
    policy = PROVIDERS_MODELS.replace(
        "  b: {provider: p,", "  b: {limits: {concurrency: 1, on_limit: wait, max_wait_s: 2}, provider: p,"
    ).replace("  c: {provider: p,", "  c: {limits: {concurrency: 1, on_limit: wait, max_wait_s: 2}, provider: p,")
    (tmp_path / "p.yaml").write_text(policy + "tiers:\n  t: {strategy: weighted, models: [b, c]}\n")
    state, clock = MemoryState(), FakeClock()
    up = Upstream(clock)
    router = Router.from_path(
        tmp_path / "p.yaml", state=state, clock=clock, rng=random.Random(1), providers={"p": MockProvider("p", up)}
    )
    assert state.slot_acquire("b", 1)  # b's one slot is held elsewhere
    assert served(router, 50) == Counter({"c": 50})  # b is never waited for while c is free
    assert state.slot_acquire("c", 1)  # now both are busy: after the draw, each is waited for in order
    t0 = clock.now()
    with pytest.raises(AllModelsFailed) as info:
        router.complete(task="s", input="hi")
    skipped = [a.model for a in info.value.attempts if a.outcome == "skipped"]
    assert sorted(skipped[:2]) == ["b", "c"]  # left out of the draw
    assert skipped[2:] == ["b", "c"]  # then waited for, as listed, up to max_wait_s each
    assert up.calls["b"] == 0
    assert clock.now() - t0 == pytest.approx(4.0, abs=0.01)  # waited max_wait_s on each


def test_a_least_busy_retry_is_a_plain_attempt_when_another_caller_took_a_slot(tmp_path: Path) -> None:
    """The draw's slot cap holds only while drawing: the drawn model's retries count as retries."""
    text = PROVIDERS_MODELS.replace("{max_attempts: 1}", "{max_attempts: 2}") + "tiers:\n  t: "
    (tmp_path / "p.yaml").write_text(text + "{strategy: least_busy, models: [b, c]}\n")
    state = MemoryState()
    assert state.slot_acquire("c", 10)  # c is busier: b is drawn, with a cap of one slot
    calls: list[str] = []

    def upstream(req: ProviderRequest) -> ProviderResponse:
        name = req.model.split("-")[0]
        calls.append(name)
        if name == "b" and len(calls) == 1:
            assert state.slot_acquire("b", 10)  # another process starts a call on b meanwhile
        if name == "b":
            raise ProviderError("server_error", "down")
        return ProviderResponse(text="ok", usage=Usage(3, 2))

    router = Router.from_path(
        tmp_path / "p.yaml", state=state, clock=FakeClock(), providers={"p": MockProvider("p", upstream)}
    )
    assert router.complete(task="s", input="hi").model == "c"
    assert calls == ["b", "b", "c"]  # max_attempts 2 on b, then the fallback
