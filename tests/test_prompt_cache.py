"""Provider prompt caching as policy (issue 17): Anthropic breakpoints and OpenAI cache keys
through the real SDKs to MockLLMServer, per-TTL write prices, the ledger's savings, ``spend``."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policyrouter import BadRequest, Router
from policyrouter.cli.main import main
from policyrouter.plan import Price
from policyrouter.policy.loader import validate_paths
from policyrouter.spend import spend_report
from policyrouter.stages.prompt_cache import derived_key
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import Usage

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}
SONNET = "claude-sonnet-4-20250514"
HAIKU = "claude-3-5-haiku-20241022"
GPT = "gpt-4.1-mini-2025-04-14"

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  gateway: {{kind: openai_compatible, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  sonnet:
    provider: anthropic
    model: {sonnet}
    pricing: {{input: 3.0, output: 15.0, cached_input: 0.3}}
    context_window: 200000
  haiku:
    provider: anthropic
    model: {haiku}
    pricing: {{input: 1.0, output: 5.0, cached_input: 0.1}}
    context_window: 200000
  gpt:
    provider: openai
    model: {gpt}
    pricing: {{input: 0.4, output: 1.6, cached_input: 0.1}}
    context_window: 1000000
  compat:
    provider: gateway
    model: {gpt}
    pricing: {{input: 0.4, output: 1.6}}
    context_window: 1000000
tiers:
  claude: [sonnet]
  small: [haiku]
  gpt: [gpt]
  compat: [compat]
state: {{backend: sqlite, path: state.sqlite}}
tasks:
  support:
    tier: claude
    system: "{system}"
    max_output_tokens: 100
    prompt_cache: {{ttl: 1h, breakpoints: [tools, system, history]}}
  support_5m:
    tier: claude
    system: "{system}"
    max_output_tokens: 100
    prompt_cache: {{}}
  plain:
    tier: claude
    system: "{system}"
    max_output_tokens: 100
  small:
    tier: small
    system: "{system}"
    max_output_tokens: 100
    prompt_cache: {{}}
  chat_gpt:
    tier: gpt
    system: "{system}"
    max_output_tokens: 100
    prompt_cache: {{retention: 24h}}
  keyed:
    tier: gpt
    max_output_tokens: 100
    prompt_cache: {{key: support-v3}}
  compat:
    tier: compat
    max_output_tokens: 100
    prompt_cache: {{}}
"""
# ~1,700 counted tokens (3.5 characters each): over Sonnet's 1024, under Haiku's 2048
SYSTEM = "You answer questions about our product. " * 150


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer(clock=CLOCK.now) as s:
        yield s


CLOCK = FakeClock()


def make_router(
    server: MockLLMServer, tmp_path: Path, extra: str = "", system: str = SYSTEM, clock: FakeClock | None = None
) -> Router:
    path = tmp_path / "policy.yaml"
    text = POLICY.format(
        openai=server.openai_base_url,
        anthropic=server.anthropic_base_url,
        sonnet=SONNET,
        haiku=HAIKU,
        gpt=GPT,
        system=system,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + extra)
    if clock is None:  # the real clock: `policyrouter spend` reads the current window
        return Router.from_path(path, environ=KEYS, rng=random.Random(7))
    return Router.from_path(path, environ=KEYS, clock=clock, rng=random.Random(7))


def marks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """Where a request body carries ``cache_control``: (part, mark)."""
    found = [("tools", t["cache_control"]) for t in body.get("tools", ()) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        found += [("system", b["cache_control"]) for b in system if "cache_control" in b]
    for m in body["messages"]:
        if isinstance(m["content"], list):
            found += [(f"message:{m['role']}", b["cache_control"]) for b in m["content"] if "cache_control" in b]
    return found


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


# --------------------------------------------------------------------- Anthropic breakpoints


def test_breakpoints_reach_the_request_with_their_ttl_and_reads_follow_writes(
    server: MockLLMServer, tmp_path: Path
) -> None:
    router = make_router(server, tmp_path)
    first = router.complete("support", "How do I reset my password?")
    body = server.requests_for(SONNET)[0].body
    hour = {"type": "ephemeral", "ttl": "1h"}
    # tools: the task sends none, so two marks: the system prompt and the last message
    assert marks(body) == [("system", hour), ("message:user", hour)]
    assert body["system"][0]["text"] == SYSTEM
    u = first.usage
    assert u.cached_input_tokens == 0 and u.cache_write_tokens > 0
    assert u.cache_write_1h_tokens == u.cache_write_tokens  # every write has the 1-hour lifetime
    second = router.complete("support", "How do I reset my password?")
    v = second.usage
    assert v.cached_input_tokens == u.cache_write_tokens and v.cache_write_tokens == 0
    assert v.input_tokens == u.input_tokens  # the whole prompt, whatever part came from the cache
    # priced per lifetime: 1-hour writes at 2x input, reads at cached_input
    plain = u.input_tokens - u.cache_write_tokens
    assert first.cost_usd == pytest.approx((plain * 3.0 + u.cache_write_tokens * 6.0 + u.output_tokens * 15.0) / 1e6)
    plain = v.input_tokens - v.cached_input_tokens
    assert second.cost_usd == pytest.approx((plain * 3.0 + v.cached_input_tokens * 0.3 + v.output_tokens * 15.0) / 1e6)


def test_a_tool_definition_gets_the_first_mark_and_a_5m_task_writes_5m(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    result = router.complete("support_5m", "Look it up", tools=[TOOL])
    body = server.requests_for(SONNET)[0].body
    five = {"type": "ephemeral", "ttl": "5m"}
    # default breakpoints [tools, system]: the tools alone are under 1024 tokens, the system prefix is not
    assert marks(body) == [("system", five)]
    assert result.usage.cache_write_tokens > 0 and result.usage.cache_write_1h_tokens == 0
    u = result.usage
    plain = u.input_tokens - u.cache_write_tokens
    assert result.cost_usd == pytest.approx((plain * 3.0 + u.cache_write_tokens * 3.75 + u.output_tokens * 15.0) / 1e6)


def test_the_tools_mark_goes_on_the_last_tool_once_the_tools_are_long_enough(
    server: MockLLMServer, tmp_path: Path
) -> None:
    router = make_router(server, tmp_path)
    long_tool = {**TOOL, "function": {**TOOL["function"], "name": "search", "description": "d" * 5000}}
    router.complete("support", "find it", tools=[TOOL, long_tool])
    body = server.requests_for(SONNET)[0].body
    assert [t.get("cache_control") for t in body["tools"]] == [None, {"type": "ephemeral", "ttl": "1h"}]
    assert [where for where, _ in marks(body)] == ["tools", "system", "message:user"]


def test_no_mark_below_the_models_minimum_and_the_minimum_is_a_model_setting(
    server: MockLLMServer, tmp_path: Path
) -> None:
    router = make_router(server, tmp_path)
    router.complete("small", "hello")  # Haiku caches from 2048 tokens: ~1,700 are not enough
    assert marks(server.requests_for(HAIKU)[0].body) == []
    assert router.complete("support", "hi").usage.cache_write_tokens > 0  # Sonnet's 1024 are
    short = make_router(server, tmp_path / "short", system="Be brief.")
    short.complete("support", "hi")
    assert marks(server.requests_for(SONNET)[-1].body) == []
    lowered = tmp_path / "lowered"
    lowered.mkdir()
    policy = (
        (tmp_path / "policy.yaml")
        .read_text()
        .replace(
            "  haiku:\n    provider: anthropic\n",
            "  haiku:\n    provider: anthropic\n    prompt_cache_min_tokens: 1024\n",
        )
    )
    (lowered / "policy.yaml").write_text(policy)
    Router.from_path(lowered / "policy.yaml", environ=KEYS, clock=FakeClock()).complete("small", "hello")
    assert [where for where, _ in marks(server.requests_for(HAIKU)[-1].body)] == ["system"]


def test_marks_already_in_the_messages_count_toward_four(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    mine = {"type": "ephemeral"}
    history = [
        {"role": "user", "content": [{"type": "text", "text": "one", "cache_control": mine}]},
        {"role": "assistant", "content": [{"type": "text", "text": "two", "cache_control": mine}]},
        {"role": "user", "content": [{"type": "text", "text": "three", "cache_control": mine}]},
    ]
    result = router.complete("support", messages=history)
    body = server.requests_for(SONNET)[0].body
    assert len(marks(body)) == 4  # three of the caller's, and the system prompt's (history is not placed)
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert result.text
    assert history[2]["content"][0]["cache_control"] == mine  # the caller's messages are not modified


def test_the_mock_refuses_five_marks_as_the_api_does(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    mark = {"type": "ephemeral"}
    content = [{"type": "text", "text": str(i), "cache_control": mark} for i in range(5)]
    with pytest.raises(BadRequest) as caught:
        router.complete("plain", messages=[{"role": "user", "content": content}])
    assert caught.value.attempts[-1].status_code == 400
    assert "A maximum of 4 blocks with cache_control" in (caught.value.attempts[-1].message or "")


def test_a_cache_entry_expires_on_the_mocks_clock(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    assert router.complete("support_5m", "q").usage.cache_write_tokens > 0
    CLOCK.advance(299)
    assert router.complete("support_5m", "q").usage.cached_input_tokens > 0  # a read renews it
    CLOCK.advance(299)
    assert router.complete("support_5m", "q").usage.cached_input_tokens > 0
    CLOCK.advance(301)
    again = router.complete("support_5m", "q").usage
    assert again.cached_input_tokens == 0 and again.cache_write_tokens > 0


def test_streamed_usage_carries_the_writes_per_ttl(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    final = list(router.stream("support", "stream it"))[-1].result
    assert final is not None and final.usage.cache_write_1h_tokens == final.usage.cache_write_tokens > 0
    final = list(router.stream("support", "stream it"))[-1].result
    assert final is not None and final.usage.cached_input_tokens > 0 and final.usage.cache_write_tokens == 0


def test_a_task_without_prompt_cache_sends_no_mark(server: MockLLMServer, tmp_path: Path) -> None:
    make_router(server, tmp_path).complete("plain", "hello")
    body = server.requests_for(SONNET)[0].body
    assert marks(body) == [] and body["system"] == SYSTEM


def test_explain_shows_where_the_providers_may_cache_and_the_key(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    e = router.explain("support")
    assert e.prompt_cache == {
        "ttl": "1h",
        "breakpoints": ["tools", "system", "history"],
        "key": None,
        "retention": None,
        "marks": [{"model": "sonnet", "min_tokens": 1024}],
    }
    assert "provider cache ttl 1h at tools, system, history (cache_control: sonnet from 1,024 tokens)" in str(e)
    assert "key derived from task and tenant" in str(e)
    assert router.explain("plain").prompt_cache is None and "provider cache" not in str(router.explain("plain"))


# --------------------------------------------------------------------- OpenAI cache key


def test_openai_gets_a_cache_key_per_task_and_tenant_and_reports_cached_prefixes(
    server: MockLLMServer, tmp_path: Path
) -> None:
    router = make_router(server, tmp_path)
    first = router.complete("chat_gpt", "What is new?", tenant="acme")
    second = router.complete("chat_gpt", "What else is new?", tenant="acme")
    other = router.complete("chat_gpt", "What is new?", tenant="globex")
    assert other.usage.cached_input_tokens == 0  # another tenant's key is another cache
    bodies = [r.body for r in server.requests_for(GPT)]
    keys = [b["prompt_cache_key"] for b in bodies]
    assert keys[0] == keys[1] == derived_key("chat_gpt", "acme") != keys[2] == derived_key("chat_gpt", "globex")
    assert all("acme" not in key for key in keys)  # a digest: no tenant name travels
    assert [b["prompt_cache_retention"] for b in bodies] == ["24h"] * 3
    assert first.usage.cached_input_tokens == 0
    cached = second.usage.cached_input_tokens
    assert cached >= 1024 and (cached - 1024) % 128 == 0  # the shared prefix, in 128-token steps
    u = second.usage
    assert second.cost_usd == pytest.approx(
        ((u.input_tokens - cached) * 0.4 + cached * 0.1 + u.output_tokens * 1.6) / 1e6
    )


def test_a_given_key_is_sent_verbatim_and_compatible_servers_get_none(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    router.complete("keyed", "hi", tenant="acme")
    router.complete("compat", "hi", tenant="acme")
    keyed, compat = (r.body for r in server.requests_for(GPT))
    assert keyed["prompt_cache_key"] == "support-v3" and "prompt_cache_retention" not in keyed
    assert "prompt_cache_key" not in compat and "prompt_cache_retention" not in compat


def test_streamed_openai_request_carries_the_key(server: MockLLMServer, tmp_path: Path) -> None:
    list(make_router(server, tmp_path).stream("keyed", "hi"))
    body = server.requests_for(GPT)[0].body
    assert body["stream"] is True and body["prompt_cache_key"] == "support-v3"


# --------------------------------------------------------------------- our cache stays ours


def test_prompt_caching_does_not_change_our_cache_key(server: MockLLMServer, tmp_path: Path) -> None:
    """A router whose task asks for prompt caching and one whose task does not share one state file:
    the second is answered by the first's cache entry, so the exact-match key is the same."""
    extra = "    cache: {ttl_s: 3600, force: true}\n"
    with_pc = make_router(server, tmp_path, extra="")
    text = (tmp_path / "policy.yaml").read_text()
    text = text.replace("  support:\n    tier: claude\n", "  support:\n    tier: claude\n" + extra)
    (tmp_path / "policy.yaml").write_text(text)
    with_pc = Router.from_path(tmp_path / "policy.yaml", environ=KEYS, clock=FakeClock())
    assert not with_pc.complete("support", "same question").cache_hit
    without = tmp_path / "without"
    without.mkdir()
    (without / "policy.yaml").write_text(
        text.replace("    prompt_cache: {ttl: 1h, breakpoints: [tools, system, history]}\n", "").replace(
            "path: state.sqlite", f"path: {tmp_path / 'state.sqlite'}"
        )
    )
    other = Router.from_path(without / "policy.yaml", environ=KEYS, clock=FakeClock())
    assert other.complete("support", "same question").cache_hit
    assert len(server.requests_for(SONNET)) == 1


# --------------------------------------------------------------------- prices and the worst case


def test_price_bills_each_lifetime_and_the_saving_is_against_uncached_prices() -> None:
    price = Price(input=3e-6, output=15e-6, cached_input=0.3e-6, cache_write=3.75e-6, cache_write_1h=6e-6)
    usage = Usage(10_000, 100, 6_000, 3_000, cache_write_1h_tokens=1_000)
    expected = (1_000 * 3 + 6_000 * 0.3 + 2_000 * 3.75 + 1_000 * 6 + 100 * 15) / 1e6
    assert price.cost(usage) == pytest.approx(expected)
    # reads save 2.7 per 1M; writes cost 0.75 (5m) and 3 (1h) per 1M more than plain input
    assert price.prompt_cache_saving(usage) == pytest.approx((6_000 * 2.7 - 2_000 * 0.75 - 1_000 * 3) / 1e6)
    assert price.worst_case(1000, 0) == pytest.approx(1000 * 3.75e-6)  # no bound set: the 5m write price


def test_the_worst_case_counts_the_write_lifetime_tasks_ask_for(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    sonnet = router.plan.models["sonnet"].price
    haiku = router.plan.models["haiku"].price
    gpt = router.plan.models["gpt"].price
    assert sonnet is not None and haiku is not None and gpt is not None
    assert sonnet.cache_write == pytest.approx(3.75e-6) and sonnet.write_1h == pytest.approx(6e-6)  # defaults
    assert sonnet.dearest_input == pytest.approx(6e-6)  # `support` asks for 1h writes on it
    assert haiku.dearest_input == pytest.approx(1.25e-6)  # `small` asks for 5m writes
    assert gpt.cache_write == gpt.input and gpt.dearest_input == gpt.input  # OpenAI bills no write


def test_an_anthropic_model_no_caching_task_reaches_bounds_input_at_the_5m_write_price(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nproviders:\n  a: {kind: anthropic, api_key_env: K}\nmodels:\n"
        "  s: {provider: a, model: claude-sonnet-4-20250514, pricing: {input: 3.0, output: 15.0}}\n"
        "tiers:\n  t: [s]\ntasks:\n  x: {tier: t, max_input_tokens: 1000, max_output_tokens: 100}\n"
    )
    router = Router.from_path(path, environ={"K": "k"})
    explained = router.explain("x")
    per_call = (1000 * 3.75 + 100 * 15.0) / 1e6  # a caller's own cache_control mark writes at 1.25 x input
    assert explained.worst_case_cost_usd == pytest.approx(explained.worst_case_calls * per_call)
    price = router.plan.models["s"].price
    assert price is not None and price.cache_write == pytest.approx(3.75e-6)
    written = Usage(input_tokens=1000, output_tokens=100, cache_write_tokens=1000)  # every input token a write
    assert price.cost(written) <= price.worst_case(1000, 100) + 1e-12


# --------------------------------------------------------------------- ledger and spend


def test_ledger_rows_keep_reads_writes_and_both_savings_apart(server: MockLLMServer, tmp_path: Path) -> None:
    extra = "    cache: {ttl_s: 3600, force: true}\n"
    make_router(server, tmp_path)
    text = (tmp_path / "policy.yaml").read_text()
    (tmp_path / "policy.yaml").write_text(
        text.replace("  support:\n    tier: claude\n", "  support:\n    tier: claude\n" + extra)
    )
    clock = FakeClock()
    router = Router.from_path(tmp_path / "policy.yaml", environ=KEYS, clock=clock)
    wrote = router.complete("support", "first")
    read = router.complete("support", "second")
    hit = router.complete("support", "second")
    assert hit.cache_hit
    rows = {row.request_id: row for row in router.state.ledger_rows()}
    first, second, third = sorted(rows.values(), key=lambda r: r.ts)
    w, r = wrote.usage, read.usage
    assert (first.cached_input_tokens, first.cache_write_tokens) == (0, w.cache_write_tokens)
    assert first.prompt_cache_saved_usd == pytest.approx(-w.cache_write_tokens * 3.0 / 1e6)  # 1h writes: +1x input
    assert (second.cached_input_tokens, second.cache_write_tokens) == (r.cached_input_tokens, r.cache_write_tokens)
    assert second.prompt_cache_saved_usd == pytest.approx(
        r.cached_input_tokens * 2.7 / 1e6 - r.cache_write_tokens * 3.0 / 1e6
    )
    assert first.cache_saved_usd == second.cache_saved_usd == 0.0
    assert third.outcome == "cache_hit" and third.cache_saved_usd == pytest.approx(read.cost_usd)
    assert third.prompt_cache_saved_usd == 0.0

    report = spend_report(None, router.state, "task", "day", clock.wall())
    data = report.to_dict()
    assert data["prompt_cache"] == {
        "cached_input_tokens": r.cached_input_tokens,
        "cache_write_tokens": w.cache_write_tokens + r.cache_write_tokens,
        "saved_usd": pytest.approx(first.prompt_cache_saved_usd + second.prompt_cache_saved_usd),
    }
    assert data["cache_saved_usd"] == pytest.approx(read.cost_usd)
    router.close()


def test_spend_shows_prompt_cache_columns_and_both_savings(
    server: MockLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = make_router(server, tmp_path)
    for _ in range(3):
        router.complete("support", "same")
    router.close()
    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert main(["spend", "--state", state, "--by", "task", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt_cache"]["cached_input_tokens"] > 0 and data["prompt_cache"]["saved_usd"] > 0
    assert data["groups"][0]["prompt_cache_saved_usd"] == pytest.approx(data["prompt_cache"]["saved_usd"])
    assert main(["spend", "--state", state, "--by", "task"]) == 0
    out = capsys.readouterr().out
    assert "prompt cache read" in out and "prompt cache saved" in out
    assert "provider prompt cache saved $" in out and "against uncached prices" in out


def test_an_old_sqlite_ledger_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE ledger (ts REAL NOT NULL, request_id TEXT NOT NULL PRIMARY KEY, task TEXT, route TEXT, "
        "model TEXT, tenant TEXT, user TEXT, input_tokens INTEGER, output_tokens INTEGER, cached_input_tokens "
        "INTEGER, cost_usd REAL, provider_request_ids TEXT, outcome TEXT, attempts INTEGER, metadata TEXT)"
    )
    conn.execute(
        "INSERT INTO ledger VALUES (1.0, 'r1', 't', 'default', 'm', NULL, NULL, 10, 5, 2, 0.5, '', 'ok', 1, '{}')"
    )
    conn.commit()
    conn.close()
    state = SqliteState(path)
    (row,) = state.ledger_rows()
    assert (row.request_id, row.cached_input_tokens, row.cache_write_tokens, row.prompt_cache_saved_usd) == (
        "r1",
        2,
        0,
        0.0,
    )
    state.close()


# --------------------------------------------------------------------- validate


def _validate(tmp_path: Path, body: str) -> list[tuple[str, str]]:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nproviders:\n  a: {kind: anthropic, api_key_env: K}\n  o: {kind: openai, api_key_env: K}\n"
        "  m: {kind: mock}\nmodels:\n"
        "  s: {provider: a, model: claude-sonnet-4-20250514}\n"
        "  g: {provider: o, model: gpt-4.1-mini-2025-04-14}\n"
        "  k: {provider: m, model: mock-2025-01-01}\n"
        "tiers:\n  claude: [s]\n  gpt: [g]\n  offline: [k]\n" + body
    )
    return [(d.code, d.message) for d in validate_paths(path).diagnostics if d.code.startswith("prompt-cache")]


def test_validate_reports_idle_prompt_cache_settings(tmp_path: Path) -> None:
    assert (
        _validate(
            tmp_path, "tasks:\n  a: {tier: claude, prompt_cache: {ttl: 1h}}\n  b: {tier: gpt, prompt_cache: {}}\n"
        )
        == []
    )
    found = _validate(
        tmp_path,
        "tasks:\n  a: {tier: offline, prompt_cache: {}}\n"
        "  b: {tier: claude, prompt_cache: {breakpoints: [system, system], retention: 24h}}\n"
        "  c: {tier: gpt}\n",
    )
    codes = sorted(code for code, _ in found)
    assert codes == ["prompt-cache-no-effect", "prompt-cache-setting-ignored", "prompt-cache-setting-ignored"]


def test_validate_refuses_a_bad_ttl_and_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nproviders:\n  a: {kind: anthropic, api_key_env: K}\nmodels:\n"
        "  s: {provider: a, model: claude-sonnet-4-20250514}\ntiers:\n  claude: [s]\n"
        "tasks:\n  a: {tier: claude, prompt_cache: {ttl: 10m, key: 'has space'}}\n"
    )
    report = validate_paths(path)
    errors = [d for d in report.diagnostics if d.severity == "error"]
    assert [(d.path, d.location.line) for d in errors] == [
        ("tasks.a.prompt_cache.ttl", 9),
        ("tasks.a.prompt_cache.key", 9),
    ]


# --------------------------------------------------------------------- simulate


def _sim_policy(prompt_cache: str) -> Any:
    from policyrouter.compile import compile_policy
    from policyrouter.policy.models import Policy

    task: dict[str, Any] = {"tier": "t", "max_input_tokens": 8000, "max_output_tokens": 100}
    if prompt_cache:
        task["prompt_cache"] = {"ttl": prompt_cache}
    return compile_policy(
        Policy.model_validate(
            {
                "version": 1,
                "providers": {"a": {"kind": "anthropic", "api_key_env": "K"}},
                "models": {
                    "s": {
                        "provider": "a",
                        "model": SONNET,
                        "pricing": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
                        "context_window": 200000,
                    }
                },
                "tiers": {"t": ["s"]},
                "tasks": {"x": task},
            }
        )
    )


def test_simulate_replays_a_shared_prefix_as_reads_and_writes(tmp_path: Path) -> None:
    from policyrouter.simulate import read_traffic, simulate, write_traffic
    from policyrouter.simulate.traffic import TrafficRecord

    # four requests a minute apart, then one after a 10-minute gap: 5m entries expire in between
    times = [0, 60, 120, 180, 780]
    records = [TrafficRecord(1e9 + t, "x", 3500, 100, prefix="sys-v1", prefix_tokens=3000) for t in times]
    path = tmp_path / "traffic.jsonl"
    write_traffic(records, path)
    assert list(read_traffic(path)) == records  # the prefix fields survive the file
    none, five, hour = simulate(
        [("none", _sim_policy("")), ("5m", _sim_policy("5m")), ("1h", _sim_policy("1h"))], records
    )
    assert (none.prompt_cache_read_tokens, none.prompt_cache_write_tokens, none.prompt_cache_saved_usd) == (0, 0, 0.0)
    assert (five.prompt_cache_read_tokens, five.prompt_cache_write_tokens) == (3 * 3000, 2 * 3000)
    assert (hour.prompt_cache_read_tokens, hour.prompt_cache_write_tokens) == (4 * 3000, 3000)
    assert five.prompt_cache_saved_usd == pytest.approx((9000 * 2.7 - 6000 * 0.75) / 1e6)
    assert hour.prompt_cache_saved_usd == pytest.approx((12000 * 2.7 - 3000 * 3.0) / 1e6)
    assert none.cost_usd - five.cost_usd == pytest.approx(five.prompt_cache_saved_usd)
    assert five.to_dict()["prompt_cache"]["saved_usd"] == five.prompt_cache_saved_usd
