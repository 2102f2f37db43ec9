"""Reasoning models end to end: the policy, validate, explain, both SDKs over HTTP to MockLLMServer,
and real recorded responses (``tests/recorded/``) read by the SDKs and by our adapters."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from policyrouter import BadRequest, PolicyError, Router
from policyrouter.policy.loader import validate_paths
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.openai_adapter import OpenAIProvider
from policyrouter.state.codec import result_from_json, result_to_json
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest, ProviderResponse, Reasoning, Result, Usage

RECORDED = Path(__file__).parent / "recorded"
KEY = "sk-test-SECRET-reasoning-0042"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
HI = ({"role": "user", "content": "How do I cross the street?"},)

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  o3:
    provider: openai
    model: o3-2025-04-16
    pricing: {{input: 2.0, output: 8.0}}
    context_window: 200000
    capabilities: [reasoning]
  gpt:
    provider: openai
    model: gpt-4.1-2025-04-14
    pricing: {{input: 2.0, output: 8.0}}
    context_window: 1000000
  sonnet:
    provider: anthropic
    model: claude-sonnet-4-20250514
    pricing: {{input: 3.0, output: 15.0}}
    context_window: 200000
    capabilities: [reasoning, tools]
  sonnet_low:
    provider: anthropic
    model: claude-sonnet-4-20250514-low
    pricing: {{input: 3.0, output: 15.0}}
    context_window: 200000
    capabilities: [reasoning]
    thinking: {{budget_tokens: 1024}}
tiers:
  openai_reasoning: [o3, gpt]
  claude: [sonnet]
  claude_low: [sonnet_low]
tasks:
  solve:
    tier: openai_reasoning
    temperature: 0.2
    max_output_tokens: 4000
    reasoning: {{effort: high}}
    routes:
      - name: hard
        when: {{metadata: {{difficulty: hard}}}}
        tier: claude
        thinking: {{budget_tokens: 3000}}
  think:
    tier: claude
    temperature: 0.3
    max_output_tokens: 6000
    thinking: {{effort: medium}}
  think_aloud:
    tier: claude
    max_output_tokens: 6000
    thinking: {{budget_tokens: 2048, stream: true, log_content: true}}
  think_cached:
    tier: claude
    max_output_tokens: 6000
    thinking: {{budget_tokens: 2048}}
    cache: {{ttl_s: 600, force: true}}
  low:
    tier: claude_low
    max_output_tokens: 2000
    thinking: {{effort: high}}
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path, policy: str = POLICY) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(policy.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    return Router.from_path(path, environ=ENV, clock=FakeClock(), rng=random.Random(3))


def sent(server: MockLLMServer, model: str) -> dict[str, Any]:
    """The body of the last request ``model`` received."""
    return server.requests_for(model)[-1].body


# --------------------------------------------------------------------- effort and budgets reach the wire


def test_openai_reasoning_model_gets_the_effort_and_no_temperature(server: MockLLMServer, tmp_path: Path) -> None:
    result = make_router(server, tmp_path).complete(task="solve", messages=list(HI))
    body = sent(server, "o3-2025-04-16")
    assert body["reasoning_effort"] == "high"
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == 4000  # the cap that includes the reasoning
    assert result.usage.reasoning_tokens == 256  # the mock's count for effort high, inside output
    visible = len(result.text.split())
    assert result.usage.output_tokens == visible + 256
    assert result.cost_usd == pytest.approx(result.usage.input_tokens * 2e-6 + result.usage.output_tokens * 8e-6)


def test_a_non_reasoning_fallback_keeps_the_temperature_and_gets_no_effort(
    server: MockLLMServer, tmp_path: Path
) -> None:
    server.script("o3-2025-04-16", [Fault(status=404)])
    result = make_router(server, tmp_path).complete(task="solve", messages=list(HI))
    assert result.model == "gpt"
    body = sent(server, "gpt-4.1-2025-04-14")
    assert body["temperature"] == 0.2 and "reasoning_effort" not in body
    assert result.usage.reasoning_tokens == 0


def test_anthropic_gets_the_thinking_budget_an_effort_stands_for(server: MockLLMServer, tmp_path: Path) -> None:
    result = make_router(server, tmp_path).complete(task="think", messages=list(HI))
    body = sent(server, "claude-sonnet-4-20250514")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}  # medium
    assert body["max_tokens"] == 6000 and "temperature" not in body
    assert "mock thinking" not in result.text and result.text.startswith("mock answer")
    assert result.thinking.startswith("mock thinking")
    assert result.thinking_blocks[0]["signature"].startswith("mocksig_")
    assert result.usage.reasoning_tokens > 0
    assert result.usage.reasoning_tokens < result.usage.output_tokens


def test_a_route_replaces_the_tasks_setting(server: MockLLMServer, tmp_path: Path) -> None:
    result = make_router(server, tmp_path).complete(task="solve", messages=list(HI), metadata={"difficulty": "hard"})
    assert result.route == "hard" and result.model == "sonnet"
    assert sent(server, "claude-sonnet-4-20250514")["thinking"]["budget_tokens"] == 3000


def test_a_model_replaces_the_tasks_setting(server: MockLLMServer, tmp_path: Path) -> None:
    make_router(server, tmp_path).complete(task="low", messages=list(HI))
    assert sent(server, "claude-sonnet-4-20250514-low")["thinking"]["budget_tokens"] == 1024


def test_a_callers_smaller_output_cap_fails_before_sending(server: MockLLMServer, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="thinking budget 4096 must be below max_output_tokens 1000"):
        make_router(server, tmp_path).complete(task="think", messages=list(HI), max_output_tokens=1000)
    assert server.requests == []


# --------------------------------------------------------------------- streams: thinking is never text


def test_streamed_thinking_is_dropped_unless_the_task_streams_it(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    chunks = list(router.stream(task="think", messages=list(HI)))
    assert {c.type for c in chunks} == {"text", "final"}
    text = "".join(c.text for c in chunks if c.type == "text")
    final = chunks[-1].result
    assert final is not None and text == final.text and "thinking" not in text
    assert final.usage.reasoning_tokens > 0 and final.thinking.startswith("mock thinking")


def test_streamed_thinking_chunks_come_first_and_apart(server: MockLLMServer, tmp_path: Path) -> None:
    chunks = list(make_router(server, tmp_path).stream(task="think_aloud", messages=list(HI)))
    kinds = [c.type for c in chunks]
    assert kinds.index("thinking") < kinds.index("text")
    assert max(i for i, k in enumerate(kinds) if k == "thinking") < kinds.index("text")
    thought = "".join(c.text for c in chunks if c.type == "thinking")
    final = chunks[-1].result
    assert final is not None and thought == final.thinking and thought not in final.text


def test_openai_streamed_usage_carries_reasoning_tokens(server: MockLLMServer, tmp_path: Path) -> None:
    chunks = list(make_router(server, tmp_path).stream(task="solve", messages=list(HI)))
    final = chunks[-1].result
    assert final is not None and final.usage.reasoning_tokens == 256
    assert sent(server, "o3-2025-04-16")["reasoning_effort"] == "high"


# --------------------------------------------------------------------- never logged or cached unless asked


def test_thinking_is_in_events_only_when_the_policy_says(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    events: list[dict[str, Any]] = []
    router.on("result", events.append)
    router.complete(task="think", messages=list(HI))
    router.complete(task="think_aloud", messages=list(HI))
    assert "thinking" not in events[0] and "mock thinking" not in json.dumps(events[0])
    assert events[0]["reasoning_tokens"] > 0
    assert events[1]["thinking"].startswith("mock thinking")


def test_thinking_is_never_cached(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    first = router.complete(task="think_cached", messages=list(HI))
    again = router.complete(task="think_cached", messages=list(HI))
    assert first.thinking_blocks and not first.cache_hit
    assert again.cache_hit and again.thinking_blocks == () and again.text == first.text
    assert again.usage.reasoning_tokens == first.usage.reasoning_tokens


def test_the_stored_answer_keeps_reasoning_tokens_and_drops_thinking() -> None:
    usage = Usage(10, 300, reasoning_tokens=250)
    blocks = ({"type": "thinking", "thinking": "secret plan", "signature": "sig"},)
    result = Result("hi", "m", "p", usage, 0.1, False, "default", (), 0.0, thinking_blocks=blocks)
    stored = result_to_json(result)
    assert "secret plan" not in stored
    assert result_from_json(stored).usage.reasoning_tokens == 250


# --------------------------------------------------------------------- tool use: signed thinking goes back


def test_a_tool_use_turn_continues_with_its_thinking_blocks(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply("claude-sonnet-4-20250514", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}])
    router = make_router(server, tmp_path)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    first = router.complete(task="think", messages=list(HI), tools=tools)
    assert first.tool_calls and first.thinking_blocks
    call = first.tool_calls[0]
    assistant = {
        "role": "assistant",
        "content": first.text,
        "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
    }
    answer = {"role": "tool", "tool_call_id": call["id"], "content": "found"}
    server.set_reply("claude-sonnet-4-20250514", text="done")
    with pytest.raises(
        BadRequest, match="Expected `thinking` or `redacted_thinking`"
    ):  # what the API says without them
        router.complete(task="think", messages=[*HI, assistant, answer], tools=tools)
    done = router.complete(
        task="think", messages=[*HI, {**assistant, "thinking_blocks": first.thinking_blocks}, answer], tools=tools
    )
    assert done.text == "done"
    turn = sent(server, "claude-sonnet-4-20250514")["messages"][1]["content"]
    assert turn[0] == first.thinking_blocks[0] and turn[1]["type"] == "tool_use"


def test_openai_drops_anthropic_thinking_blocks_from_history(server: MockLLMServer) -> None:
    provider = OpenAIProvider("p", base_url=server.openai_base_url, environ=ENV)
    blocks = ({"type": "thinking", "thinking": "t", "signature": "s"},)
    history = ({"role": "assistant", "content": "a", "thinking_blocks": blocks}, *HI)
    provider.complete(ProviderRequest(model="gpt-x", messages=history, max_output_tokens=100))
    assert sent(server, "gpt-x")["messages"][0] == {"role": "assistant", "content": "a"}


# --------------------------------------------------------------------- validate: before any request


def _diagnostics(tmp_path: Path, policy: str) -> dict[str, Any]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy.format(openai="http://127.0.0.1:1/v1", anthropic="http://127.0.0.1:1"))
    report = validate_paths(path)
    return {d.code: d for d in report.diagnostics}


def test_validate_warns_a_temperature_is_dropped(tmp_path: Path) -> None:
    found = _diagnostics(tmp_path, POLICY)
    path = tmp_path / "policy.yaml"
    dropped = [d for d in validate_paths(path).diagnostics if d.code == "temperature-dropped"]
    assert sorted(d.path for d in dropped) == ["tasks.solve.temperature", "tasks.think.temperature"]
    d = next(d for d in dropped if d.path == "tasks.solve.temperature")
    assert d.severity == "warning" and "`o3`" in d.message and "`gpt`" not in d.message
    assert d.location.line == POLICY.splitlines().index("    temperature: 0.2") + 1 and d.hint
    assert "reasoning-not-sent" in found  # gpt: a non-reasoning fallback of a reasoning task
    assert not [d for d in found.values() if d.severity == "error"]


THINK = "    max_output_tokens: 6000\n    thinking: {{effort: medium}}"


def think_with_output(tokens: int) -> str:
    """The policy with task `think`'s max_output_tokens changed (its budget stays medium: 4096)."""
    return POLICY.replace(THINK, THINK.replace("6000", str(tokens)))


BROKEN = {
    "thinking-budget-too-large": think_with_output(4096),
    "reasoning-unsupported": POLICY.replace("  openai_reasoning: [o3, gpt]", "  openai_reasoning: [gpt]"),
    "reasoning-on-a-model": POLICY.replace("    capabilities: [reasoning]\n    thinking:", "    thinking:"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_refuses_what_the_api_would(tmp_path: Path, case: str) -> None:
    code = "reasoning-unsupported" if case == "reasoning-on-a-model" else case
    d = _diagnostics(tmp_path, BROKEN[case])[code]
    assert d.severity == "error" and d.hint and d.location.line > 0


def test_thinking_budget_error_points_at_the_setting_and_says_the_fix(tmp_path: Path) -> None:
    broken = think_with_output(4000)
    d = _diagnostics(tmp_path, broken)["thinking-budget-too-large"]
    text = broken.format(openai="x", anthropic="x").splitlines()
    assert text[d.location.line - 1].strip().startswith("thinking:")
    assert "4096" in d.message and "max_output_tokens 4000" in d.message and "above 4096" in d.hint


def test_structured_output_with_thinking_is_refused(tmp_path: Path) -> None:
    broken = POLICY.replace("[reasoning, tools]", "[reasoning, tools, json_schema]")
    broken = broken.replace(THINK, THINK + "\n    response_schema: {{type: object}}")
    assert _diagnostics(tmp_path, broken)["thinking-forced-tool"].severity == "error"


@pytest.mark.parametrize("thinking", ["{{}}", "{{budget_tokens: 2048, effort: low}}", "{{budget_tokens: 512}}"])
def test_a_malformed_thinking_setting_is_a_schema_error(tmp_path: Path, thinking: str) -> None:
    broken = POLICY.replace(THINK, THINK.replace("{{effort: medium}}", thinking))
    path = tmp_path / "policy.yaml"
    path.write_text(broken.format(openai="http://127.0.0.1:1/v1", anthropic="http://127.0.0.1:1"))
    report = validate_paths(path)
    assert not report.ok and all(d.location.line > 0 for d in report.errors)


def test_an_invalid_policy_sends_nothing(server: MockLLMServer, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="thinking-budget-too-large"):
        make_router(server, tmp_path, think_with_output(4096))
    assert server.requests == []


# --------------------------------------------------------------------- explain


def test_explain_shows_effort_budget_and_the_unchanged_worst_case(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    text = str(router.explain(task="solve"))
    assert "reasoning o3 effort high" in text
    assert "inside max_output_tokens 4000, billed as output: the worst case is unchanged" in text
    assert "temperature 0.2 not sent to o3" in text
    assert "thinking budget 3,000 tokens" in str(router.explain(task="solve", metadata={"difficulty": "hard"}))
    aloud = router.explain(task="think_aloud")
    assert "streamed as `thinking` chunks; in events (redacted)" in str(aloud)
    assert aloud.to_dict()["reasoning"] == [
        {"model": "sonnet", "effort": None, "thinking_budget": 2048, "temperature_sent": False}
    ]
    assert server.requests == []


# --------------------------------------------------------------------- MockLLMServer refuses like the APIs


def test_mock_openai_reasoning_model_refuses_temperature_and_max_tokens(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="o4-mini", messages=list(HI), temperature=0)  # type: ignore[arg-type]
    assert info.value.param == "temperature" and info.value.code == "unsupported_value"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="o4-mini", messages=list(HI), max_tokens=10)  # type: ignore[arg-type]
    assert info.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4.1", messages=list(HI), reasoning_effort="low")  # type: ignore[arg-type]
    assert info.value.param == "reasoning_effort"
    server.set_reasoning("house-model")
    done = client.chat.completions.create(model="house-model", messages=list(HI), reasoning_effort="low")  # type: ignore[arg-type]
    assert done.usage is not None and done.usage.completion_tokens_details is not None
    assert done.usage.completion_tokens_details.reasoning_tokens == 16
    assert server.status_counts[400] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "`max_tokens` must be greater than"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 0.5}, "`temperature` may only"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "tool_choice": {"type": "any"}},
            "forces tool use",
        ),
    ],
)
def test_mock_anthropic_refuses_bad_thinking(server: MockLLMServer, extra: dict[str, Any], message: str) -> None:
    client = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=KEY, max_retries=0)
    tools = [{"name": "t", "input_schema": {"type": "object"}}] if "tool_choice" in extra else []
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.create(
            model="claude-x",
            max_tokens=2048,
            messages=list(HI),
            extra_body=extra,
            tools=tools,  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------- real recorded responses


def replay(name: str) -> Fault:
    content_type = "text/event-stream; charset=utf-8" if name.endswith(".sse") else "application/json"
    return Fault(kind="replay", raw_body=(RECORDED / name).read_bytes(), content_type=content_type)


def ours(server: MockLLMServer, name: str, kind: str = "openai") -> ProviderResponse:
    """The recording ``name`` read by our adapter, streamed or not as it was recorded."""
    provider: Any
    asked: Reasoning | None
    if name.startswith("anthropic"):
        provider = AnthropicProvider("p", base_url=server.anthropic_base_url, environ=ENV)
        asked = Reasoning(None, 1024)
    else:
        provider = OpenAIProvider("p", kind=kind, base_url=server.openai_base_url, environ=ENV)  # type: ignore[arg-type]
        server.set_reasoning("m", kind == "openai")  # what the mock refuses is checked before it replays
        asked = Reasoning("high", None) if kind == "openai" else None  # a gateway gets max_tokens, no effort
    server.script("m", [replay(name)])
    request = ProviderRequest(model="m", messages=HI, max_output_tokens=4096, reasoning=asked)
    if name.endswith(".sse"):
        events = list(provider.stream(request))
        assert not any(e.text and e.thinking for e in events)
        final = events[-1].response
        assert final is not None
        return final
    response: ProviderResponse = provider.complete(request)
    return response


def test_recorded_o3_mini_reasoning_tokens_match_the_sdk(server: MockLLMServer) -> None:
    server.script("m", [replay("openai_o3_mini_reasoning.json")])
    sdk = openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0)
    usage = sdk.chat.completions.create(model="m", messages=list(HI)).usage
    assert usage is not None and usage.completion_tokens_details is not None
    got = ours(server, "openai_o3_mini_reasoning.json")
    assert got.usage.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens == 64
    assert got.usage.output_tokens == usage.completion_tokens  # reasoning inside, not added again


def test_recorded_deepseek_reasoner_stream_matches_the_sdk(server: MockLLMServer) -> None:
    server.script("m", [replay("deepseek_reasoner_stream.sse")])
    sdk = openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0)
    chunks = list(sdk.chat.completions.create(model="m", messages=list(HI), stream=True))
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    got = ours(server, "deepseek_reasoner_stream.sse", kind="openai_compatible")
    assert got.usage.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens == 198
    assert got.usage.output_tokens == usage.completion_tokens and got.text == text  # reasoning_content left out


def test_recorded_anthropic_thinking_matches_the_sdk(server: MockLLMServer) -> None:
    server.script("m", [replay("anthropic_thinking.json")])
    sdk = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=KEY, max_retries=0)
    message = sdk.messages.create(model="m", max_tokens=2048, messages=list(HI))
    got = ours(server, "anthropic_thinking.json")
    thinking = [b.model_dump(mode="json", exclude_none=True) for b in message.content if b.type == "thinking"]
    assert list(got.thinking_blocks) == thinking and thinking[0]["signature"]
    assert got.text == "".join(b.text for b in message.content if b.type == "text")
    assert got.usage.output_tokens == message.usage.output_tokens
    assert got.usage.reasoning_tokens == 0  # this recording reports no thinking_tokens


def test_recorded_anthropic_thinking_stream_matches_the_sdk(server: MockLLMServer) -> None:
    server.script("m", [replay("anthropic_thinking_stream.sse")])
    sdk = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=KEY, max_retries=0)
    with sdk.messages.stream(model="m", max_tokens=2048, messages=list(HI)) as stream:
        message = stream.get_final_message()
    got = ours(server, "anthropic_thinking_stream.sse")
    block = next(b for b in message.content if b.type == "thinking")
    assert got.thinking_blocks == ({"type": "thinking", "thinking": block.thinking, "signature": block.signature},)
    assert got.text == "".join(b.text for b in message.content if b.type == "text")
    assert block.thinking[:40] not in got.text
    assert got.usage.output_tokens == message.usage.output_tokens == 282


def test_async_calls_carry_reasoning_alike(server: MockLLMServer, tmp_path: Path) -> None:
    import asyncio

    router = make_router(server, tmp_path)

    async def run() -> tuple[Result, list[Any]]:
        result = await router.acomplete(task="solve", messages=list(HI))
        chunks = [c async for c in router.astream(task="think_aloud", messages=list(HI))]
        return result, chunks

    result, chunks = asyncio.run(run())
    assert result.usage.reasoning_tokens == 256 and sent(server, "o3-2025-04-16")["reasoning_effort"] == "high"
    thought = "".join(c.text for c in chunks if c.type == "thinking")
    assert thought.startswith("mock thinking") and thought not in chunks[-1].result.text


@pytest.mark.parametrize(
    "provider",
    [
        "{{kind: anthropic_bedrock, region: us-east-1}}",
        "{{kind: anthropic_vertex, region: us-east5, project: my-project-1}}",
    ],
)
def test_the_clouds_anthropic_models_get_the_same_thinking_checks(tmp_path: Path, provider: str) -> None:
    anthropic = '  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}'
    assert anthropic in POLICY
    broken = think_with_output(4096).replace(anthropic, f"  anthropic: {provider}")
    found = _diagnostics(tmp_path, broken)
    assert found["thinking-budget-too-large"].severity == "error"  # Bedrock and Vertex refuse it like Anthropic
