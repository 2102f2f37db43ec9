"""AnthropicProvider through the real ``anthropic`` SDK against MockLLMServer."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.providers import AnthropicProvider, Provider
from policyrouter.providers.anthropic_adapter import to_anthropic_messages
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.types import ProviderRequest, Usage

SECRET = "sk-ant-test-SECRET123"
KEY_ENV = "POLICYROUTER_TEST_ANTHROPIC_KEY"
MODEL = "claude-test-20250101"


def make_provider(server: MockLLMServer, **kw: Any) -> AnthropicProvider:
    kw.setdefault("api_key_env", KEY_ENV)
    kw.setdefault("environ", {KEY_ENV: SECRET})
    return AnthropicProvider("claude", base_url=server.anthropic_base_url, **kw)


def make_request(**kw: Any) -> ProviderRequest:
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", ({"role": "user", "content": "Say hello to the world please"},))
    kw.setdefault("max_output_tokens", 64)
    return ProviderRequest(**kw)


def test_is_a_provider(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    assert isinstance(provider, Provider)
    assert (provider.name, provider.kind) == ("claude", "anthropic")


def test_complete_maps_request_and_response(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.set_reply(MODEL, text="Hello, world!", usage={"input": 21, "output": 4})
    provider = make_provider(mock_llm_server)

    response = provider.complete(make_request(system="Be brief.", temperature=0.2, stop=("END",)))

    assert response.text == "Hello, world!"
    assert response.usage == Usage(input_tokens=21, output_tokens=4)
    assert response.finish_reason == "stop"
    assert response.model == MODEL
    assert response.request_id == "req_mock_1"
    [recorded] = mock_llm_server.requests
    body = recorded.body
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Say hello to the world please"}]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["stop_sequences"] == ["END"]
    assert "stop" not in body
    provider.close()


def test_max_tokens_always_sent_and_no_optional_params(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    provider.complete(make_request(max_output_tokens=5))
    body = mock_llm_server.requests[0].body
    assert body["max_tokens"] == 5
    assert not {"system", "temperature", "stop_sequences"} & body.keys()
    provider.close()


def test_large_max_tokens_without_timeout_is_sent(mock_llm_server: MockLLMServer) -> None:
    # The SDK refuses non-streaming calls it estimates over 10 minutes unless a timeout
    # is given; the adapter always passes one, so the policy's deadline decides.
    provider = make_provider(mock_llm_server)
    response = provider.complete(make_request(max_output_tokens=100_000, timeout_s=None))
    assert response.text
    assert mock_llm_server.requests[0].body["max_tokens"] == 100_000
    provider.close()


def test_openai_style_history_is_translated(mock_llm_server: MockLLMServer) -> None:
    messages = (
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "third"},
    )
    provider = make_provider(mock_llm_server)
    provider.complete(make_request(system="You are helpful.", messages=messages))
    body = mock_llm_server.requests[0].body
    assert body["system"] == "You are helpful.\n\nAnswer in French.\n\nBe terse."
    assert body["messages"] == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "a\n\nb"},
        {"role": "user", "content": "third"},
    ]
    roles = [m["role"] for m in body["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles))
    provider.close()


def test_usage_counts_cache_reads_and_writes_in_input(mock_llm_server: MockLLMServer) -> None:
    usage = {"input": 10, "output": 5, "cached": 100, "cache_write": 20}
    mock_llm_server.set_reply(MODEL, text="ok", usage=usage)
    provider = make_provider(mock_llm_server)
    assert provider.complete(make_request()).usage == Usage(
        input_tokens=130, output_tokens=5, cached_input_tokens=100, cache_write_tokens=20
    )
    provider.close()


def test_tool_use_blocks_are_normalized(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.set_reply(
        MODEL, text="Let me check.", tool_calls=[{"name": "lookup", "arguments": {"q": "weather"}}]
    )
    provider = make_provider(mock_llm_server)
    response = provider.complete(make_request())
    assert response.finish_reason == "tool_calls"
    assert response.text == "Let me check."
    [call] = response.tool_calls
    assert (call["id"], call["name"]) == ("toolu_mock_1_0", "lookup")
    assert json.loads(call["arguments"]) == {"q": "weather"}
    provider.close()


def test_extra_is_merged(mock_llm_server: MockLLMServer) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    provider = make_provider(mock_llm_server)
    provider.complete(make_request(extra={"tools": tools, "top_k": 5, "vendor_flag": 1}))
    body = mock_llm_server.requests[0].body
    assert body["tools"] == tools
    assert body["vendor_flag"] == 1
    assert body["top_k"] == 5
    provider.close()


# ---------------------------------------------------------------------------- errors

ERROR_CASES: list[tuple[Any, str, int | None, float | None]] = [
    (429, "rate_limited", 429, None),
    (Fault(status=429, retry_after_s=2), "rate_limited", 429, 2.0),
    (Fault(status=429, retry_after_ms=200), "rate_limited", 429, 0.2),
    (Fault(status=529, retry_after_s=1.5), "overloaded", 529, 1.5),
    (529, "overloaded", 529, None),
    (503, "overloaded", 503, None),
    (500, "server_error", 500, None),
    (504, "server_error", 504, None),
    (401, "auth", 401, None),
    (403, "auth", 403, None),
    (404, "not_found", 404, None),
    (400, "bad_request", 400, None),
    (413, "context_length", 413, None),
    (Fault(status=400, kind="context_length"), "context_length", 400, None),
    (Fault(kind="reset"), "connection", None, None),
    (Fault(kind="malformed"), "server_error", 200, None),
    (Fault(kind="refusal"), "content_filter", 200, None),
]


@pytest.mark.parametrize(("entry", "kind", "status", "retry_after"), ERROR_CASES, ids=repr)
def test_error_kinds(
    mock_llm_server: MockLLMServer, entry: Any, kind: str, status: int | None, retry_after: float | None
) -> None:
    mock_llm_server.script(MODEL, [entry])
    provider = make_provider(mock_llm_server)

    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())

    error = info.value
    assert error.kind == kind
    assert error.status_code == status
    assert error.retry_after_s == retry_after
    # SDK retries are off: every failure reached the server exactly once.
    assert len(mock_llm_server.requests_for(MODEL)) == 1
    provider.close()


def test_status_errors_carry_the_request_id(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, [529])
    provider = make_provider(mock_llm_server)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.request_id == "req_mock_1"
    provider.close()


def test_refusal_carries_request_id_and_usage(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, ["refusal"])
    mock_llm_server.set_reply(MODEL, usage={"input": 30, "output": 2})
    provider = make_provider(mock_llm_server)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.request_id == "req_mock_1"
    assert info.value.usage == Usage(input_tokens=30, output_tokens=2)
    provider.close()


def test_stall_past_the_request_timeout_is_a_timeout(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, [Fault(kind="stall", seconds=5)])
    provider = make_provider(mock_llm_server)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request(timeout_s=0.3))
    assert info.value.kind == "timeout"
    assert len(mock_llm_server.requests_for(MODEL)) == 1
    provider.close()


def test_async_errors_are_classified_the_same(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, [Fault(status=529, retry_after_s=1.5), "reset", "refusal"])
    provider = make_provider(mock_llm_server)

    async def run() -> list[str]:
        kinds = []
        for _ in range(3):
            with pytest.raises(ProviderError) as info:
                await provider.acomplete(make_request())
            kinds.append(info.value.kind)
        await provider.aclose()
        return kinds

    assert asyncio.run(run()) == ["overloaded", "connection", "content_filter"]
    assert len(mock_llm_server.requests_for(MODEL)) == 3


# ---------------------------------------------------------------------------- clients


def test_sync_client_is_lazy_and_reused(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    assert mock_llm_server.connections_opened == 0
    for _ in range(100):
        provider.complete(make_request())
    assert len(mock_llm_server.requests) == 100
    assert mock_llm_server.connections_opened == 1
    provider.close()


def test_async_client_is_reused_within_a_loop(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)

    async def run() -> None:
        for _ in range(100):
            await provider.acomplete(make_request())
        await provider.aclose()

    asyncio.run(run())
    assert len(mock_llm_server.requests) == 100
    assert mock_llm_server.connections_opened == 1


def test_aiohttp_transport(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, async_transport="aiohttp")

    async def run() -> str:
        text = ""
        for _ in range(10):
            text = (await provider.acomplete(make_request())).text
        await provider.aclose()
        return text

    assert asyncio.run(run())
    assert mock_llm_server.connections_opened == 1


# ---------------------------------------------------------------------------- secrets


def test_missing_key_env_var_is_a_configuration_error(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, environ={"UNRELATED": SECRET})
    with pytest.raises(ConfigurationError) as info:
        provider.complete(make_request())
    assert KEY_ENV in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigurationError, match=KEY_ENV):
        asyncio.run(provider.acomplete(make_request()))
    assert mock_llm_server.requests == []


def test_default_key_env_var_is_anthropic_api_key() -> None:
    provider = AnthropicProvider("claude", environ={})
    assert provider.api_key_env == "ANTHROPIC_API_KEY"
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        provider.complete(make_request())


def test_key_never_appears_in_repr_or_errors(mock_llm_server: MockLLMServer) -> None:
    leaky = f"invalid x-api-key: {SECRET}"
    mock_llm_server.script(MODEL, [Fault(status=401, message=leaky), Fault(status=400, message=leaky)])
    provider = make_provider(mock_llm_server)
    assert SECRET not in repr(provider)
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            provider.complete(make_request())
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)
    provider.close()


# ---------------------------------------------------------------------------- message mapping


def test_to_anthropic_messages_translates_tool_history() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    system, out = to_anthropic_messages(messages)
    assert system is None
    assert out == [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "Paris"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    assert messages[1]["content"] is None  # input untouched


def test_to_anthropic_messages_accepts_normalized_tool_calls_and_content_parts() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "ok", "tool_calls": [{"id": "t1", "name": "f", "arguments": ""}]},
    ]
    system, out = to_anthropic_messages(messages, "Base.")
    assert system == "Base.\n\nBe terse."
    assert out == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
    ]


def test_invalid_tool_call_arguments_are_a_bad_request() -> None:
    provider = AnthropicProvider("claude", environ={KEY_ENV: SECRET}, api_key_env=KEY_ENV)
    bad = {"role": "assistant", "content": "", "tool_calls": [{"id": "t", "name": "f", "arguments": "{nope"}]}
    with pytest.raises(ProviderError) as info:
        provider._params(make_request(messages=({"role": "user", "content": "x"}, bad)))
    assert info.value.kind == "bad_request"
