"""Token budgets (``limit_tokens``): reserved at counted input + max output before each attempt,
settled to the tokens the upstream billed, refused before anything is sent, on every backend,
across threads and processes; and what validate, explain, spend and status say about them."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from _state_kit import WALL, open_state

from policyrouter import BudgetExceeded, ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.cli.main import main
from policyrouter.compile import compile_policy
from policyrouter.policy.loader import validate_paths
from policyrouter.policy.models import Policy
from policyrouter.providers.mock import MockProvider
from policyrouter.spend import budget_usage
from policyrouter.state.base import StateBackend
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing.clock import FakeClock
from policyrouter.tokens import count_messages

MAX_IN, MAX_OUT = 1_000, 200
KEY = "daily#tokens|2026-01-01|*"  # the global token counter on FakeClock's first day
TEXT = "hello there"


def doc(budget: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {"p": {"kind": "mock"}},
        "models": {
            "main": {"provider": "p", "model": "main-1", "pricing": {"input": 2.0, "output": 8.0}},
            "cheap": {"provider": "p", "model": "cheap-1", "pricing": {"input": 0.1, "output": 0.4}},
        },
        "tiers": {"t": ["main"], "cheap": ["cheap"]},
        "budgets": {"daily": {"scope": "global", "window": "day", **budget}},
        "tasks": {"s": {"tier": "t", "max_input_tokens": MAX_IN, "max_output_tokens": MAX_OUT, **task}},
    }


def prompt_tokens(req: ProviderRequest) -> int:
    return count_messages(req.messages)


def exact(req: ProviderRequest) -> ProviderResponse:
    """Bills exactly what the attempt reserved: counted input + max output."""
    return ProviderResponse("ok", Usage(prompt_tokens(req), MAX_OUT), request_id="x")


PER_REQUEST = count_messages([{"role": "user", "content": TEXT}]) + MAX_OUT


def router(d: dict[str, Any], handler: Any = exact, state: StateBackend | None = None) -> Router:
    plan = compile_policy(Policy.model_validate(d))
    return Router(plan, {"p": MockProvider("p", handler)}, state, clock=FakeClock(wall_start=WALL))


# ---------------------------------------------------------------- reserve, refuse, settle


def test_an_attempt_reserves_its_counted_input_plus_max_output_and_settles_the_tokens_billed(
    state: StateBackend,
) -> None:
    seen: list[tuple[float, float]] = []

    def handler(req: ProviderRequest) -> ProviderResponse:
        seen.append(state.budget_used(KEY, WALL))
        return ProviderResponse("ok", Usage(input_tokens=300, output_tokens=40, cached_input_tokens=250))

    r = router(doc({"limit_tokens": 10_000}), handler, state)
    r.complete("s", TEXT)
    assert seen == [(0.0, float(PER_REQUEST))]
    assert state.budget_used(KEY, WALL) == (340.0, 0.0)  # cached input counts as input


def test_a_token_budget_refuses_before_sending_and_says_which_budget_and_how_many_tokens() -> None:
    sent: list[str] = []

    def handler(req: ProviderRequest) -> ProviderResponse:
        sent.append(req.model)
        return exact(req)

    r = router(doc({"limit_tokens": PER_REQUEST * 2 + PER_REQUEST // 2}), handler)
    r.complete("s", TEXT)
    r.complete("s", TEXT)
    with pytest.raises(BudgetExceeded) as info:
        r.complete("s", TEXT)
    assert len(sent) == 2
    e = info.value
    assert (e.budget, e.unit, e.requested, e.used, e.limit) == (
        "daily",
        "tokens",
        PER_REQUEST,
        2 * PER_REQUEST,
        PER_REQUEST * 2 + PER_REQUEST // 2,
    )
    assert f"worst case {PER_REQUEST:,} tokens does not fit ({2 * PER_REQUEST:,} of" in str(e)


@pytest.mark.parametrize(
    ("limits", "unit"),
    [
        ({"limit_usd": 100.0, "limit_tokens": PER_REQUEST - 1}, "tokens"),
        ({"limit_usd": 1e-6, "limit_tokens": 10_000}, "usd"),
    ],
)
def test_with_both_limits_either_one_refuses(limits: dict[str, float], unit: str) -> None:
    with pytest.raises(BudgetExceeded) as info:
        router(doc(limits)).complete("s", TEXT)
    assert info.value.unit == unit


def test_a_failed_attempt_that_billed_tokens_counts_them_and_the_fallback_reserves_again() -> None:
    from policyrouter import ProviderError

    calls: list[str] = []

    def handler(req: ProviderRequest) -> ProviderResponse:
        calls.append(req.model)
        if req.model == "main-1":
            raise ProviderError("content_filter", "refused", usage=Usage(120, 30))
        return ProviderResponse("ok", Usage(100, 10))

    d = doc({"limit_tokens": 10_000})
    d["tiers"]["t"] = ["main", "cheap"]
    state = MemoryState()
    router(d, handler, state).complete("s", TEXT)
    assert calls == ["main-1", "cheap-1"]
    assert state.budget_used(KEY, WALL) == (150.0 + 110.0, 0.0)


def test_cache_hits_cost_no_tokens() -> None:
    state = MemoryState()
    r = router(doc({"limit_tokens": 10_000}, temperature=0.0, cache={"ttl_s": 600}), state=state)
    first = r.complete("s", TEXT)
    again = r.complete("s", TEXT)
    assert (first.cache_hit, again.cache_hit) == (False, True)
    assert state.budget_used(KEY, WALL) == (float(PER_REQUEST), 0.0)


def test_past_the_soft_limit_in_tokens_the_budget_degrades() -> None:
    state = MemoryState()
    budget = {"limit_tokens": PER_REQUEST * 4, "soft_limit": 0.5, "on_soft_limit": {"degrade_to": "cheap"}}
    r = router(doc(budget), state=state)
    fired: list[dict[str, Any]] = []
    r.on("budget_soft_limit", fired.append)
    models = [r.complete("s", TEXT).model for _ in range(3)]
    assert models == ["main", "main", "cheap"]  # 2 of 4 requests' tokens spent: at the soft limit
    assert [{k: v for k, v in e.items() if k != "event"} for e in fired] == [
        {"budget": "daily", "key": KEY, "spent_tokens": 2.0 * PER_REQUEST, "limit_tokens": 4.0 * PER_REQUEST}
    ]


# ---------------------------------------------------------------- concurrency: threads and processes

LIMIT_REQUESTS = 12  # the budget holds this many requests' tokens


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_threads_racing_a_token_budget_through_the_router_never_overshoot(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state = open_state(backend, tmp_path, request)
    r = router(doc({"limit_tokens": PER_REQUEST * LIMIT_REQUESTS}), exact, state)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(4):
            try:
                r.complete("s", TEXT)
                outcomes.append("ok")
            except BudgetExceeded:
                outcomes.append("refused")

    pool = [threading.Thread(target=worker) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert (outcomes.count("ok"), outcomes.count("refused")) == (LIMIT_REQUESTS, 32 - LIMIT_REQUESTS)
    assert state.budget_used(KEY, WALL) == (float(PER_REQUEST * LIMIT_REQUESTS), 0.0)
    state.close()


def _process(kind: str, where: str, prefix: str, n: int, out: Any) -> None:
    from policyrouter.state.redis import RedisState

    state: StateBackend
    if kind == "sqlite":
        state = SqliteState(where)
    else:
        state = RedisState(where, key_prefix=prefix, clock=FakeClock(wall_start=WALL))
    r = router(doc({"limit_tokens": PER_REQUEST * LIMIT_REQUESTS}), exact, state)
    ok = 0
    for _ in range(n):
        try:
            r.complete("s", TEXT)
            ok += 1
        except BudgetExceeded:
            pass
    state.close()
    out.put(ok)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_processes_racing_a_token_budget_never_overshoot(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state = open_state(backend, tmp_path, request)
    if backend == "sqlite":
        where, prefix = str(tmp_path / "state.sqlite"), ""
    else:
        where, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(backend, where, prefix, 8, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sum(q.get(timeout=5) for _ in procs) == LIMIT_REQUESTS
    assert state.budget_used(KEY, WALL) == (float(PER_REQUEST * LIMIT_REQUESTS), 0.0)
    state.close()


# ---------------------------------------------------------------- validate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


POLICY = """\
version: 1
providers: {p: {kind: mock}}
models:
  m: {provider: p, model: m-1}
tiers: {t: [m]}
budgets:
  per-user-daily:
    scope: user
    window: day
%s
tasks:
  s: {tier: t, max_input_tokens: 8000, max_output_tokens: 1000}
"""


def diagnostics(tmp_path: Path, budget_lines: str) -> list[tuple[str, str, int | None, str]]:
    found = validate_paths(write(tmp_path, POLICY % budget_lines))
    return [(d.severity, d.code, d.location.line, d.hint or "") for d in found.diagnostics]


def test_a_token_budget_needs_no_pricing_and_validates_clean(tmp_path: Path) -> None:
    assert diagnostics(tmp_path, "    limit_tokens: 200000") == []


def test_a_limit_that_is_not_positive_is_an_error_at_its_line(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, "    limit_tokens: 0")
    assert [(s, c, line) for s, c, line, _hint in found] == [("error", "out-of-range", 10)]
    assert found[0][3].startswith("`limit_tokens`: Hard limit in tokens")


def test_a_budget_without_any_limit_is_an_error(tmp_path: Path) -> None:
    found = validate_paths(write(tmp_path, POLICY % "    timezone: UTC"))
    assert [(d.severity, d.location.line) for d in found.diagnostics] == [("error", 7)]
    assert "limit_tokens" in found.diagnostics[0].message


def test_a_token_budget_below_one_worst_case_request_is_a_warning_with_a_hint(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, "    limit_tokens: 5000")
    assert [(s, c, line) for s, c, line, _hint in found] == [("warning", "token-budget-below-request", 10)]
    assert "raise limit_tokens to at least 9,000" in found[0][3]


@pytest.mark.parametrize("task", ["max_input_tokens: 8000, max_output_tokens: 1000", "max_output_tokens: 1000"])
def test_a_token_budget_no_request_fits_is_an_error_with_or_without_an_input_cap(tmp_path: Path, task: str) -> None:
    text = (POLICY % "    limit_tokens: 1000").replace("max_input_tokens: 8000, max_output_tokens: 1000", task)
    found = validate_paths(write(tmp_path, text)).diagnostics
    never = [d for d in found if d.code == "token-budget-never-fits"]
    assert [(d.severity, d.location.line) for d in never] == [("error", 10)]
    assert "max_output_tokens alone (1,000) reaches the limit, so every request is refused" in never[0].message
    assert not [d for d in found if d.code == "token-budget-below-request"]


def test_a_soft_limit_outside_its_range_is_an_error_for_token_budgets_too(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, "    limit_tokens: 200000\n    soft_limit: 1.5\n    on_soft_limit: {degrade_to: t}")
    assert ("error", "soft-limit-range", 11) in [(s, c, line) for s, c, line, _hint in found]


def test_a_usd_budget_still_needs_prices(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, "    limit_usd: 5\n    limit_tokens: 200000")
    assert [c for _s, c, _line, _hint in found] == ["missing-pricing"]


# ---------------------------------------------------------------- explain, spend, status, policy tests


def test_explain_shows_the_token_budget_and_the_worst_case_in_tokens() -> None:
    r = router(doc({"limit_tokens": 50_000, "limit_usd": 2.0}))
    e = r.explain("s")
    assert e.budgets[0]["limit_tokens"] == 50_000
    assert (e.worst_case_attempt_tokens, e.worst_case_tokens) == (MAX_IN + MAX_OUT, 3 * (MAX_IN + MAX_OUT))
    text = str(e)
    assert "budget    daily: global/day $2 and 50,000 tokens" in text
    assert "reserves up to 1,200 (input + max output); a request uses at most 3,600" in text


def test_spend_and_status_show_tokens_used_reserved_and_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    state = SqliteState(path)
    r = router(doc({"limit_tokens": 10_000, "limit_usd": 5.0}), exact, state)
    r.complete("s", TEXT)
    [usage] = budget_usage(r.plan, state, WALL)
    assert (usage.spent_tokens, usage.reserved_tokens, usage.limit_tokens) == (PER_REQUEST, 0, 10_000)
    assert usage.percent == pytest.approx(100.0 * PER_REQUEST / 10_000)
    assert f"{PER_REQUEST:,} + 0 tokens of 10,000" in str(r.health(providers=False))
    state.close()


def test_the_spend_command_reports_token_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.sqlite"
    policy = tmp_path / "policy.yaml"  # JSON is YAML
    d = doc({"limit_tokens": 10_000})
    policy.write_text(json.dumps(d), encoding="utf-8")
    state = SqliteState(db)
    Router(compile_policy(Policy.model_validate(d)), {"p": MockProvider("p", exact)}, state).complete("s", TEXT)
    state.close()
    assert main(["spend", str(policy), "--state", f"sqlite:///{db}", "--format", "json"]) == 0
    [b] = json.loads(capsys.readouterr().out)["budgets"]
    assert (b["spent_tokens"], b["reserved_tokens"], b["limit_tokens"], b["limit_usd"]) == (
        PER_REQUEST,
        0,
        10_000,
        None,
    )
    assert main(["spend", str(policy), "--state", f"sqlite:///{db}"]) == 0
    assert f"{PER_REQUEST:,} tok" in capsys.readouterr().out


# ---------------------------------------------------------------- the README's sample


def readme_sample() -> str:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Token budgets\n", 1)[1].split("\n### ", 1)[0]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_per_user_daily_allowance_validates_clean_and_holds(tmp_path: Path) -> None:
    report = validate_paths(write(tmp_path, readme_sample()))
    assert report.diagnostics == ()
    plan = compile_policy(report.policies[None])

    def handler(req: ProviderRequest) -> ProviderResponse:
        return ProviderResponse("ok", Usage(prompt_tokens(req), 1_000))

    r = Router(plan, {"openai": MockProvider("openai", handler)}, clock=FakeClock(wall_start=WALL))
    assert "per-user-daily: user/day 200,000 tokens, soft 0.8 -> tiny" in str(r.explain("chat"))
    served = []
    with pytest.raises(BudgetExceeded) as info:
        for _ in range(300):
            served.append(r.complete("chat", "hi", user="u-42").model)
    per = count_messages([{"role": "user", "content": "hi"}]) + 1_000
    first_tiny = served.index("gpt-nano")
    assert set(served[:first_tiny]) == {"gpt-mini"} and set(served[first_tiny:]) == {"gpt-nano"}
    assert first_tiny == -(-160_000 // per)  # degraded once 80% of the 200k tokens were used
    assert len(served) == 200_000 // per
    assert (info.value.budget, info.value.unit) == ("per-user-daily", "tokens")
    assert r.complete("chat", "hi", user="u-7").model == "gpt-mini"  # another user's allowance is whole


def test_a_policy_test_fixture_starts_a_token_budget_spent(tmp_path: Path) -> None:
    from policyrouter.policytest import run_paths

    write(tmp_path, readme_sample())
    (tmp_path / "tokens.policytest.yaml").write_text(
        """
fixtures:
  heavy_user: {budgets: {per-user-daily: {spent_tokens: 170000}}}
  broke_user: {budgets: {per-user-daily: {spent_tokens: 195000}}}
  wrong_unit: {budgets: {per-user-daily: {spent_usd: 1}}}
cases:
  - name: past 80% of the tokens the user is served by the tiny tier
    request: {task: chat, input_tokens: 500, user: u-42}
    given: [heavy_user]
    expect: {model: gpt-nano, degraded: per-user-daily}
  - name: a worst case that does not fit is refused, nothing sent
    request: {task: chat, input_tokens: 5000, user: u-42}
    given: [broke_user]
    expect: {error: {kind: budget_exceeded, budget: per-user-daily}, calls: 0, degraded: per-user-daily}
  - name: spent_usd on a token-only budget is a mistake in the test
    request: {task: chat, input_tokens: 500, user: u-42}
    given: [wrong_unit]
    expect: {model: gpt-mini}
""",
        encoding="utf-8",
    )
    report = run_paths([tmp_path])
    outcome = {c.name: (c.problems, c.errors) for c in report.cases}
    assert report.passed == 2, [(c.name, c.status, c.problems, c.errors) for c in report.cases]
    problems, errors = outcome["spent_usd on a token-only budget is a mistake in the test"]
    assert any("has no limit_usd" in p for p in [*problems, *errors]), (problems, errors)
