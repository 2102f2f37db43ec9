"""What real providers send: recorded responses (``tests/recorded/``, sources in its README)
replayed byte for byte by MockLLMServer, read by the official SDKs and by our adapters.

Each recording is first parsed by the official SDK on its own; what that gives (text,
refusal, usage, finish reason, the status an error event carries) is the expectation our
adapters and the router are held to.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from policyrouter import BadRequest, Router, StreamInterrupted
from policyrouter.errors import ProviderError, RouterError
from policyrouter.policy.loader import validate_paths
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.classify import kind_for_status
from policyrouter.providers.openai_adapter import OpenAIProvider
from policyrouter.stages.budget import attempt_worst_case
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest, ProviderResponse

RECORDED = Path(__file__).parent / "recorded"
KEY = "sk-test-SECRET-recorded-0042"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "MISTRAL_API_KEY": KEY}
HI = ({"role": "user", "content": "hi"},)
SEARCH_FEE = 0.01

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  mistral: {{kind: openai_compatible, api_key_env: MISTRAL_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  gpt:
    provider: openai
    model: gpt-4o-2024-08-06
    pricing: {{input: 2.5, output: 10.0}}
    context_window: 128000
  magistral:
    provider: mistral
    model: magistral-medium-2509
    pricing: {{input: 2.0, output: 5.0}}
    context_window: 128000
  claude:
    provider: anthropic
    model: claude-sonnet-4-20250514
    pricing:
      input: 3.0
      output: 15.0
      tool_fees: {{web_search_requests: {{usd_per_use: 0.01, max_uses: 5}}}}
    context_window: 200000
  backup:
    provider: openai
    model: gpt-backup-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 128000
tiers:
  gpt_first: [gpt, backup]
  magistral_first: [magistral, backup]
  claude_first: [claude, backup]
retry_policies:
  default:
    max_attempts: 3
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
budgets:
  daily: {{scope: global, window: day, limit_usd: 100}}
tasks:
  ask_gpt: {{tier: gpt_first, max_output_tokens: 1000, max_input_tokens: 4000}}
  ask_magistral: {{tier: magistral_first, max_output_tokens: 1000, max_input_tokens: 4000}}
  ask_claude: {{tier: claude_first, max_output_tokens: 1000, max_input_tokens: 4000}}
"""


class Location(BaseModel):
    city: str
    temperature: float


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def replay(name: str, body: bytes | None = None) -> Fault:
    """A fault answering with the recording ``name`` (or ``body``, a variant of it) as recorded."""
    stream = name.endswith(".sse")
    content_type = "text/event-stream; charset=utf-8" if stream else "application/json"
    return Fault(kind="replay", raw_body=recorded(name) if body is None else body, content_type=content_type)


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    return Router.from_path(path, environ=ENV, clock=FakeClock(), rng=random.Random(3))


def sdk_openai(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0)


def sdk_anthropic(server: MockLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=KEY, max_retries=0)


def ours(server: MockLLMServer, name: str) -> ProviderResponse:
    """The recording ``name`` read by our adapter, streamed or not as it was recorded."""
    if name.startswith("anthropic"):
        provider: Any = AnthropicProvider("p", base_url=server.anthropic_base_url, environ=ENV)
    else:
        provider = OpenAIProvider("p", base_url=server.openai_base_url, environ=ENV)
    server.script("m", [replay(name)])
    request = ProviderRequest(model="m", messages=HI, max_output_tokens=1000)
    if name.endswith(".sse"):
        final = list(provider.stream(request))[-1].response
        assert final is not None
        return final
    return provider.complete(request)


def text_blocks(content: Any) -> str:
    """What a reader of the SDK's parsed content takes as the answer: the text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(block["text"] for block in content if block["type"] == "text")


# --------------------------------------------------------------------- the SDK's reading


def test_plain_answer_matches_the_sdk(server: MockLLMServer) -> None:
    server.script("m", [replay("openai_text.json")])
    sdk = sdk_openai(server).chat.completions.create(model="m", messages=list(HI))
    got = ours(server, "openai_text.json")
    assert sdk.usage is not None and sdk.choices[0].message.content
    assert (got.text, got.finish_reason) == (sdk.choices[0].message.content, sdk.choices[0].finish_reason)
    assert (got.usage.input_tokens, got.usage.output_tokens) == (sdk.usage.prompt_tokens, sdk.usage.completion_tokens)


def test_refusal_is_content_filter_with_the_sdks_refusal_text(server: MockLLMServer) -> None:
    server.script("m", [replay("openai_refusal.json")])
    sdk = sdk_openai(server).chat.completions.create(model="m", messages=list(HI))
    message = sdk.choices[0].message
    assert sdk.choices[0].finish_reason == "stop" and message.content is None and message.refusal
    with pytest.raises(ProviderError) as info:
        ours(server, "openai_refusal.json")
    assert info.value.kind == "content_filter" and message.refusal in str(info.value)
    assert sdk.usage is not None and info.value.usage is not None  # billed: the refusal's tokens
    assert (info.value.usage.input_tokens, info.value.usage.output_tokens) == (
        sdk.usage.prompt_tokens,
        sdk.usage.completion_tokens,
    )


def test_streamed_refusal_is_content_filter_with_the_joined_fragments(server: MockLLMServer) -> None:
    server.script("m", [replay("openai_refusal_stream.sse")])
    with sdk_openai(server).chat.completions.stream(model="m", messages=list(HI)) as stream:
        final = stream.get_final_completion()
    refusal = final.choices[0].message.refusal
    assert refusal and final.choices[0].finish_reason == "stop" and final.usage is not None
    with pytest.raises(ProviderError) as info:
        ours(server, "openai_refusal_stream.sse")
    assert info.value.kind == "content_filter" and refusal in str(info.value)
    usage = info.value.usage
    assert (usage.input_tokens, usage.output_tokens) == (final.usage.prompt_tokens, final.usage.completion_tokens)


def test_list_content_takes_the_text_blocks(server: MockLLMServer) -> None:
    server.script("m", [replay("mistral_thinking.json")])
    sdk = sdk_openai(server).chat.completions.create(model="m", messages=list(HI))
    content: Any = sdk.choices[0].message.content
    assert isinstance(content, list) and {b["type"] for b in content} == {"thinking", "text"}
    got = ours(server, "mistral_thinking.json")
    assert got.text == text_blocks(content) and "**Analogizing crossing a river**" not in got.text
    assert sdk.usage is not None and got.usage.output_tokens == sdk.usage.completion_tokens


def test_streamed_list_content_takes_the_text_blocks(server: MockLLMServer) -> None:
    server.script("m", [replay("mistral_thinking_stream.sse")])
    chunks = list(sdk_openai(server).chat.completions.create(model="m", messages=list(HI), stream=True))
    deltas: list[Any] = [c.choices[0].delta.content for c in chunks if c.choices]
    assert any(isinstance(d, list) for d in deltas) and any(isinstance(d, str) and d for d in deltas)
    got = ours(server, "mistral_thinking_stream.sse")
    assert got.text == "".join(text_blocks(d) for d in deltas)
    assert got.text.startswith("To cross the street safely") and "Okay, the user" not in got.text
    usage = chunks[-1].usage
    assert (got.usage.input_tokens, got.usage.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)


@pytest.mark.parametrize("name", ["anthropic_web_search.json", "anthropic_web_search_stream.sse"])
def test_web_search_uses_are_counted_as_the_sdk_reads_them(server: MockLLMServer, name: str) -> None:
    server.script("m", [replay(name)])
    client = sdk_anthropic(server)
    params: Any = {"model": "m", "max_tokens": 1000, "messages": list(HI)}
    if name.endswith(".sse"):
        with client.messages.stream(**params) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**params)
    searches = message.usage.server_tool_use.web_search_requests
    assert searches >= 1
    got = ours(server, name)
    assert got.usage.tool_uses == (("web_search_requests", searches),)
    assert got.text == "".join(b.text for b in message.content if b.type == "text")
    usage = message.usage
    assert (got.usage.input_tokens, got.usage.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert got.finish_reason == "stop" and message.stop_reason == "end_turn"


@pytest.mark.parametrize("name", ["groq_stream_error_400.sse", "openrouter_stream_error_400.sse"])
def test_stream_error_event_is_classified_by_its_status(server: MockLLMServer, name: str) -> None:
    server.script("m", [replay(name)])
    with pytest.raises(openai.APIError) as sdk_error:
        list(sdk_openai(server).chat.completions.create(model="m", messages=list(HI), stream=True))
    body: Any = sdk_error.value.body
    status = body.get("status_code") or body.get("code")
    assert status == 400
    with pytest.raises(ProviderError) as info:
        ours(server, name)
    assert (info.value.kind, info.value.status_code) == (kind_for_status(status), 400) == ("bad_request", 400)


# --------------------------------------------------------------------- through the router


def test_refusal_with_response_model_falls_back_without_a_repair_turn(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-4o-2024-08-06", [replay("openai_refusal.json")])
    server.set_reply("gpt-backup-2025-01-01", text='{"city": "Paris", "temperature": 21.5}')
    r = make_router(server, tmp_path).complete("ask_gpt", "weather?", response_model=Location)
    assert r.parsed == Location(city="Paris", temperature=21.5) and r.model == "backup"
    assert len(server.requests_for("gpt-4o-2024-08-06")) == 1  # no repair turn sent to the refusing model
    refused = r.attempts[0]
    assert (refused.model, refused.error_kind) == ("gpt", "content_filter")
    assert refused.message is not None and "I'm very sorry, but I can't assist with that." in refused.message
    assert refused.cost_usd == pytest.approx((79 * 2.5 + 12 * 10.0) / 1e6)  # the refusal is billed


def test_refusal_through_extra_is_not_an_empty_answer(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-4o-2024-08-06", [replay("openai_refusal.json")])
    server.set_reply("gpt-backup-2025-01-01", text="from the backup")
    r = make_router(server, tmp_path).complete(
        "ask_gpt", "weather?", extra={"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}
    )
    assert (r.text, r.model) == ("from the backup", "backup")
    assert [a.error_kind for a in r.attempts] == ["content_filter", None]


def test_streamed_refusal_falls_back(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gpt-4o-2024-08-06", [replay("openai_refusal_stream.sse")])
    server.set_reply("gpt-backup-2025-01-01", text="from the backup")
    chunks = list(make_router(server, tmp_path).stream("ask_gpt", "weather?"))
    result = chunks[-1].result
    assert result is not None and (result.text, result.model) == ("from the backup", "backup")
    assert "".join(c.text for c in chunks if c.type == "text") == "from the backup"
    refused = result.attempts[0]
    assert refused.error_kind == "content_filter" and refused.message is not None
    assert "I'm sorry, I can't assist with that request." in refused.message


def test_refusal_text_in_the_trace_never_carries_a_key(server: MockLLMServer, tmp_path: Path) -> None:
    body = json.loads(recorded("openai_refusal.json"))
    body["choices"][0]["message"]["refusal"] = f"I can't use {KEY} nor sk-proj-abcdefghijklmnop1234 here."
    server.script("gpt-4o-2024-08-06", [replay("openai_refusal.json", json.dumps(body).encode())])
    server.set_reply("gpt-backup-2025-01-01", text="ok")
    r = make_router(server, tmp_path).complete("ask_gpt", "weather?")
    message = r.attempts[0].message
    assert message is not None and "I can't use *** nor *** here." in message
    assert KEY not in repr(r) and "sk-proj-abcdefghijklmnop1234" not in repr(r)


def test_list_content_through_the_router(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("magistral-medium-2509", [replay("mistral_thinking.json"), replay("mistral_thinking_stream.sse")])
    router = make_router(server, tmp_path)
    whole = router.complete("ask_magistral", "cross a river?")
    assert isinstance(whole.text, str) and whole.text.startswith("Crossing a river is quite different")
    chunks = list(router.stream("ask_magistral", "cross the street?"))
    texts = [c.text for c in chunks if c.type == "text"]
    assert all(isinstance(t, str) for t in texts)
    result = chunks[-1].result
    assert result is not None and result.model == "magistral" and "".join(texts) == result.text
    assert result.text.startswith("To cross the street safely")


@pytest.mark.parametrize(
    "content",
    [42, {"type": "text", "text": "x"}, ["plain"], [{"text": "no type"}], [{"type": "text", "text": 7}]],
    ids=["number", "object", "bare-string-item", "untyped-block", "text-not-a-string"],
)
def test_unexpected_content_shape_is_a_server_error_that_falls_back(
    server: MockLLMServer, tmp_path: Path, content: Any
) -> None:
    body = json.loads(recorded("mistral_thinking.json"))
    body["choices"][0]["message"]["content"] = content
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunk["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    server.script(
        "magistral-medium-2509",
        [replay("mistral_thinking.json", json.dumps(body).encode())] * 3
        + [replay("mistral_thinking_stream.sse", stream)] * 3,
    )
    server.set_reply("gpt-backup-2025-01-01", text="from the backup")
    router = make_router(server, tmp_path)
    whole = router.complete("ask_magistral", "x")
    chunks = list(router.stream("ask_magistral", "x"))
    for result in (whole, chunks[-1].result):
        assert result is not None and (result.text, result.model) == ("from the backup", "backup")
        assert [a.error_kind for a in result.attempts] == ["server_error"] * 3 + [None]


@pytest.mark.parametrize(
    ("name", "error"),
    [("openrouter_stream_error_400.sse", BadRequest), ("groq_stream_error_400.sse", StreamInterrupted)],
    ids=["before-any-text", "after-text"],  # groq's stream delivered "maybe" before its error
)
def test_stream_error_event_with_status_400_is_not_retried(
    server: MockLLMServer, tmp_path: Path, name: str, error: type[RouterError]
) -> None:
    server.script("gpt-4o-2024-08-06", [replay(name)])
    with pytest.raises(error) as info:
        list(make_router(server, tmp_path).stream("ask_gpt", "x"))
    assert len(server.requests_for("gpt-4o-2024-08-06")) == 1  # not retried, not fallen back
    assert [(a.error_kind, a.status_code) for a in info.value.attempts] == [("bad_request", 400)]


def test_anthropic_overloaded_error_event_is_overloaded(server: MockLLMServer, tmp_path: Path) -> None:
    # the recorded stream cut after its first event by the error Anthropic documents for overload
    first = recorded("anthropic_web_search_stream.sse").split(b"\n\n", 1)[0]
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    server.script("claude-sonnet-4-20250514", [replay("anthropic_web_search_stream.sse", first + b"\n\n" + error)])
    server.set_reply("claude-sonnet-4-20250514", text="second try")
    chunks = list(make_router(server, tmp_path).stream("ask_claude", "x"))
    result = chunks[-1].result
    assert result is not None and result.text == "second try"
    assert [(a.error_kind, a.status_code) for a in result.attempts] == [("overloaded", 529), (None, None)]


# --------------------------------------------------------------------- server tool fees


@pytest.mark.parametrize(
    ("name", "searches"), [("anthropic_web_search.json", 1), ("anthropic_web_search_stream.sse", 2)]
)
def test_web_search_fees_are_in_cost_and_ledger(
    server: MockLLMServer, tmp_path: Path, name: str, searches: int
) -> None:
    server.script("claude-sonnet-4-20250514", [replay(name)])
    router = make_router(server, tmp_path)
    if name.endswith(".sse"):
        result = list(router.stream("ask_claude", "weather?"))[-1].result
    else:
        result = router.complete("ask_claude", "weather?")
    assert result is not None and result.usage.tool_uses == (("web_search_requests", searches),)
    tokens = (result.usage.input_tokens * 3.0 + result.usage.output_tokens * 15.0) / 1e6
    assert result.cost_usd == pytest.approx(tokens + searches * SEARCH_FEE)
    assert sum(row.cost_usd for row in router.state.ledger_rows()) == pytest.approx(result.cost_usd)


def test_explain_counts_tool_fees_at_their_cap(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    claude = router.explain("ask_claude")
    # per call: 4000 input + 1000 output at the model's price, plus 5 searches at $0.01 (claude)
    # (input at the 5-minute cache-write price, 1.25 x 3.0: any Anthropic call may carry a cache_control mark)
    claude_call, backup_call = (4000 * 3.75 + 1000 * 15.0) / 1e6 + 5 * SEARCH_FEE, (4000 * 1.0 + 1000 * 2.0) / 1e6
    assert claude.worst_case_cost_usd == pytest.approx(3 * claude_call + 3 * backup_call)
    # a budget reserves the fees at their cap with the tokens, so they are not overbill
    chain = router.plan.tasks["ask_claude"].default.chain
    assert attempt_worst_case(chain.price_rows, 0, 4000, 1000) == pytest.approx(claude_call)
    assert attempt_worst_case(chain.price_rows, 1, 4000, 1000) == pytest.approx(backup_call)
    claude_model, price = chain.models[0], chain.models[0].price
    assert price is not None
    bound = claude_model.usage_bound(1000)  # the fees cancel out: reserved, and at most max_uses billed
    assert claude_model.max_excess(4000, 1000) == pytest.approx(
        price.worst_case(bound, bound) - price.worst_case(4000, 1000)
    )


@pytest.mark.parametrize(
    ("fees", "named"),
    [
        ("{web_serch_requests: {usd_per_use: 0.01, max_uses: 5}}", "web_search_requests"),
        ("{web_search_requests: {usd_per_use: -0.01, max_uses: 5}}", "usd_per_use"),
        ("{web_search_requests: {usd_per_use: 0.01}}", "max_uses"),
        ("{web_search_requests: {usd_per_use: 0.01, max_uses: 0}}", "max_uses"),
    ],
)
def test_bad_tool_fees_are_reported_where_they_are(tmp_path: Path, fees: str, named: str) -> None:
    text = POLICY.format(openai="http://127.0.0.1:1/v1", anthropic="http://127.0.0.1:1")
    text = text.replace("tool_fees: {web_search_requests: {usd_per_use: 0.01, max_uses: 5}}", f"tool_fees: {fees}")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    report = validate_paths([path])
    errors = [d for d in report.diagnostics if d.severity == "error"]
    assert errors and all(d.path.startswith("models.claude.pricing.tool_fees") for d in errors), errors
    line = text.splitlines().index(next(x for x in text.splitlines() if "tool_fees:" in x)) + 1
    assert {d.location.line for d in errors} == {line} and any(named in d.path + d.message for d in errors)


def test_a_stored_answer_keeps_its_tool_uses() -> None:
    from policyrouter.state.codec import result_from_json, result_to_json
    from policyrouter.types import Result, Usage

    usage = Usage(10, 5, tool_uses=(("web_fetch_requests", 1), ("web_search_requests", 2)))
    stored = result_from_json(result_to_json(Result("hi", "m", "p", usage, 0.1, False, "r", (), 0.1, "t")))
    assert stored.usage == usage and stored.usage.tool_uses == usage.tool_uses
    older = json.loads(result_to_json(Result("hi", "m", "p", Usage(1, 2), 0.1, False, "r", (), 0.1, "t")))
    del older["usage"]["tool_uses"]  # an entry cached before tool fees existed
    assert result_from_json(json.dumps(older)).usage == Usage(1, 2)


# --------------------------------------------------------------------- provider prompt caching


@pytest.mark.parametrize("name", ["openai_cache_write.json", "openai_cache_read.json"])
def test_openai_cache_reads_and_writes_match_the_sdk(server: MockLLMServer, name: str) -> None:
    server.script("m", [replay(name)])
    sdk = sdk_openai(server).chat.completions.create(model="m", messages=list(HI))
    details = sdk.usage.prompt_tokens_details if sdk.usage is not None else None
    assert sdk.usage is not None and details is not None
    assert (details.cached_tokens or 0) + (details.cache_write_tokens or 0) == 4012  # one or the other
    got = ours(server, name).usage
    assert (got.input_tokens, got.output_tokens) == (sdk.usage.prompt_tokens, sdk.usage.completion_tokens)
    assert (got.cached_input_tokens, got.cache_write_tokens) == (details.cached_tokens, details.cache_write_tokens)


def test_anthropic_cache_read_and_5m_write_match_the_sdk(server: MockLLMServer) -> None:
    name = "anthropic_cache_read_write.json"
    server.script("m", [replay(name)])
    sdk = sdk_anthropic(server).messages.create(model="m", max_tokens=1000, messages=list(HI)).usage
    assert sdk.cache_creation is not None and sdk.cache_read_input_tokens and sdk.cache_creation_input_tokens
    got = ours(server, name).usage
    assert got.input_tokens == sdk.input_tokens + sdk.cache_read_input_tokens + sdk.cache_creation_input_tokens
    assert (got.cached_input_tokens, got.cache_write_tokens) == (
        sdk.cache_read_input_tokens,
        sdk.cache_creation_input_tokens,
    )
    assert got.cache_write_1h_tokens == sdk.cache_creation.ephemeral_1h_input_tokens == 0


def test_anthropic_streamed_1h_write_matches_the_sdk_and_is_priced_at_the_1h_rate(
    server: MockLLMServer, tmp_path: Path
) -> None:
    name = "anthropic_cache_write_1h_stream.sse"
    server.script("m", [replay(name)])
    with sdk_anthropic(server).messages.stream(model="m", max_tokens=1000, messages=list(HI)) as stream:
        sdk = stream.get_final_message().usage
    assert sdk.cache_creation is not None and sdk.cache_creation.ephemeral_1h_input_tokens == 3913
    got = ours(server, name).usage
    assert (got.cache_write_tokens, got.cache_write_1h_tokens) == (
        sdk.cache_creation_input_tokens,
        sdk.cache_creation.ephemeral_1h_input_tokens,
    )
    server.script("claude-sonnet-4-20250514", [replay(name)])
    result = list(make_router(server, tmp_path).stream("ask_claude", "which framework?"))[-1].result
    assert result is not None and result.usage.cache_write_1h_tokens == 3913
    # 13 plain input tokens at $3, 3,913 written for an hour at 2 x $3, 4 output tokens at $15 (per 1M)
    assert result.cost_usd == pytest.approx((13 * 3.0 + 3913 * 6.0 + 4 * 15.0) / 1e6)
