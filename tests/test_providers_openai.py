"""OpenAIProvider through the real ``openai`` SDK against MockLLMServer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.providers import OpenAIProvider, Provider
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.tokens import count_text
from policyrouter.types import ProviderRequest, Usage

SECRET = "sk-test-SECRET123"
KEY_ENV = "POLICYROUTER_TEST_OPENAI_KEY"
MODEL = "gpt-test-2025-01-01"


def make_provider(server: MockLLMServer, **kw: Any) -> OpenAIProvider:
    kw.setdefault("api_key_env", KEY_ENV)
    kw.setdefault("environ", {KEY_ENV: SECRET})
    return OpenAIProvider("oai", base_url=server.openai_base_url, **kw)


def make_request(**kw: Any) -> ProviderRequest:
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", ({"role": "user", "content": "Say hello to the world please"},))
    kw.setdefault("max_output_tokens", 64)
    return ProviderRequest(**kw)


def test_is_a_provider(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    assert isinstance(provider, Provider)
    assert (provider.name, provider.kind) == ("oai", "openai")


def test_complete_maps_request_and_response(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.set_reply(MODEL, text="Hello, world!", usage={"input": 21, "output": 4})
    provider = make_provider(mock_llm_server)

    response = provider.complete(make_request(system="Be brief.", temperature=0.2, stop=("\n\n",), timeout_s=5.0))

    assert response.text == "Hello, world!"
    assert response.usage == Usage(input_tokens=21, output_tokens=4)
    assert response.finish_reason == "stop"
    assert response.model == MODEL
    assert response.request_id == "req_mock_1"
    [recorded] = mock_llm_server.requests
    body = recorded.body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the world please"},
    ]
    assert "system" not in body
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body
    assert body["temperature"] == 0.2
    assert body["stop"] == ["\n\n"]
    provider.close()


def test_openai_compatible_sends_max_tokens(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, kind="openai_compatible")
    provider.complete(make_request())
    body = mock_llm_server.requests[0].body
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body
    assert "temperature" not in body and "stop" not in body
    provider.close()


def test_extra_is_merged_known_args_and_vendor_keys(mock_llm_server: MockLLMServer) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    provider = make_provider(mock_llm_server)
    provider.complete(make_request(extra={"tools": tools, "seed": 7, "vendor_flag": True}))
    body = mock_llm_server.requests[0].body
    assert body["tools"] == tools
    assert body["seed"] == 7
    assert body["vendor_flag"] is True  # unknown to the SDK: sent through extra_body
    provider.close()


def test_extra_request_options_are_options_and_extra_body_wins(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    extra = {
        "extra_headers": {"X-Team": "blue"},
        "extra_body": {"seed": 9, "vendor": 1},
        "seed": 7,
        "timeout": 5.0,
    }
    provider.complete(make_request(extra=extra))
    [recorded] = mock_llm_server.requests
    assert recorded.headers["x-team"] == "blue"
    assert recorded.body["seed"] == 9 and recorded.body["vendor"] == 1  # extra_body is merged last, as create() does
    assert not {"extra_headers", "extra_body", "timeout"} & set(recorded.body)
    provider.close()


def test_usage_keeps_prompt_tokens_and_reports_cached_subset(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.set_reply(MODEL, text="ok", usage={"input": 1200, "output": 9, "cached": 1024})
    provider = make_provider(mock_llm_server)
    usage = provider.complete(make_request()).usage
    assert usage == Usage(input_tokens=1200, output_tokens=9, cached_input_tokens=1024, cache_write_tokens=0)
    provider.close()


def test_tool_calls_are_normalized(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.set_reply(MODEL, tool_calls=[{"name": "lookup", "arguments": {"q": "weather"}}])
    provider = make_provider(mock_llm_server)
    response = provider.complete(make_request())
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    [call] = response.tool_calls
    assert call == {"id": "call_mock_1_0", "name": "lookup", "arguments": call["arguments"]}
    assert json.loads(call["arguments"]) == {"q": "weather"}
    provider.close()


# ---------------------------------------------------------------------------- errors

ERROR_CASES: list[tuple[Any, str, int | None, float | None]] = [
    (429, "rate_limited", 429, None),
    (Fault(status=429, retry_after_s=2), "rate_limited", 429, 2.0),
    (Fault(status=429, retry_after_ms=200), "rate_limited", 429, 0.2),
    (Fault(status=429, retry_after_s=7, retry_after_ms=250), "rate_limited", 429, 0.25),
    (Fault(status=529, retry_after_s=1.5), "overloaded", 529, 1.5),
    (503, "overloaded", 503, None),
    (500, "server_error", 500, None),
    (502, "server_error", 502, None),
    (409, "server_error", 409, None),
    (401, "auth", 401, None),
    (403, "auth", 403, None),
    (404, "not_found", 404, None),
    (400, "bad_request", 400, None),
    (422, "bad_request", 422, None),
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
    assert error.__cause__ is not None or kind == "content_filter"
    # SDK retries are off: every failure reached the server exactly once.
    assert len(mock_llm_server.requests_for(MODEL)) == 1
    provider.close()


def test_status_errors_carry_the_request_id(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, [429])
    provider = make_provider(mock_llm_server)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.request_id == "req_mock_1"
    provider.close()


def test_content_filter_error_carries_request_id_and_usage(mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script(MODEL, ["refusal"])
    mock_llm_server.set_reply(MODEL, usage={"input": 30, "output": 0})
    provider = make_provider(mock_llm_server)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.request_id == "req_mock_1"
    assert info.value.usage == Usage(input_tokens=30, output_tokens=0)
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
    mock_llm_server.script(MODEL, [Fault(status=429, retry_after_ms=200), Fault(kind="stall", seconds=5)])
    provider = make_provider(mock_llm_server)

    async def run() -> list[ProviderError]:
        errors = []
        for _ in range(2):
            with pytest.raises(ProviderError) as info:
                await provider.acomplete(make_request(timeout_s=0.3))
            errors.append(info.value)
        await provider.aclose()
        return errors

    rate_limited, timed_out = asyncio.run(run())
    assert (rate_limited.kind, rate_limited.retry_after_s, rate_limited.request_id) == (
        "rate_limited",
        0.2,
        "req_mock_1",
    )
    assert timed_out.kind == "timeout"
    assert len(mock_llm_server.requests_for(MODEL)) == 2


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


def test_async_client_survives_a_new_event_loop(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    first = asyncio.run(provider.acomplete(make_request()))
    second = asyncio.run(provider.acomplete(make_request()))  # the first loop is closed by now
    assert first.text == second.text


def test_aiohttp_transport(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, async_transport="aiohttp")

    async def run() -> list[str]:
        texts = [(await provider.acomplete(make_request())).text for _ in range(10)]
        await provider.aclose()
        return texts

    texts = asyncio.run(run())
    assert len(set(texts)) == 1
    assert mock_llm_server.connections_opened == 1


def test_close_then_call_again(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server)
    provider.complete(make_request())
    provider.close()
    provider.close()  # idempotent
    assert provider.complete(make_request()).text


# ---------------------------------------------------------------------------- secrets


def test_missing_key_env_var_is_a_configuration_error(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, environ={"UNRELATED": SECRET})
    with pytest.raises(ConfigurationError) as info:
        provider.complete(make_request())
    assert KEY_ENV in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigurationError):
        asyncio.run(provider.acomplete(make_request()))
    assert mock_llm_server.requests == []


def test_missing_organization_env_var_is_a_configuration_error(mock_llm_server: MockLLMServer) -> None:
    provider = make_provider(mock_llm_server, organization_env="POLICYROUTER_TEST_ORG")
    with pytest.raises(ConfigurationError, match="POLICYROUTER_TEST_ORG"):
        provider.complete(make_request())


def test_key_never_appears_in_repr_or_errors(mock_llm_server: MockLLMServer) -> None:
    leaky = f"Incorrect API key provided: {SECRET}. Find your key at ..."
    mock_llm_server.script(MODEL, [Fault(status=401, message=leaky), Fault(kind="reset")])
    provider = make_provider(mock_llm_server)
    assert SECRET not in repr(provider)
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            provider.complete(make_request())
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)
    assert SECRET not in repr(provider)
    assert mock_llm_server.requests[0].headers["authorization"] == "***"  # the key was sent
    provider.close()


def test_importing_providers_imports_no_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        import policyrouter.providers
        from policyrouter.policy.models import ProviderSpec
        from policyrouter.providers import create_provider

        for kind in ("openai", "anthropic", "openai_compatible", "mock"):
            spec = ProviderSpec(kind=kind, base_url="http://127.0.0.1:9/v1", api_key_env="NOPE")
            create_provider(kind, spec, environ={})
        loaded = sorted(m for m in ("openai", "anthropic", "httpx2") if m in sys.modules)
        print(",".join(loaded))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": "5", "completion_tokens": 7.0}, Usage(5, 7)),  # what the SDK's model accepts
        ({"prompt_tokens": 5, "completion_tokens": None}, "estimated"),  # not both counts: estimated
        ({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": "3"}}, Usage(5, 2, 3)),
        ({"prompt_tokens": "five", "completion_tokens": 2}, None),
        ({"prompt_tokens": 5.5, "completion_tokens": 2}, None),
        ({"prompt_tokens": [5], "completion_tokens": 2}, None),
    ],
)
def test_a_gateways_usage_is_read_as_counts_or_the_body_is_malformed(
    mock_llm_server: MockLLMServer, usage: dict[str, Any], expected: Usage | str | None
) -> None:
    """A body's usage is decoded from the JSON directly: counts a gateway sends as strings or
    whole floats are read as the SDK's model reads them; anything else is a typed ``malformed``
    error, never a count that breaks the cost arithmetic later."""
    provider = make_provider(mock_llm_server)
    body = {
        "id": "c1",
        "model": "gpt-mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": usage,
    }
    if expected == "estimated":
        got = provider._from_json(body, {}, make_request()).usage
        assert got.input_tokens > 0 and got.input_tokens != 5 and got.output_tokens == count_text("hi")
        return
    if expected is not None:
        assert provider._from_json(body, {}, make_request()).usage == expected
        return
    with pytest.raises(ProviderError) as err:
        provider._from_json(body, {}, make_request())
    assert err.value.kind == "server_error" and "TypeError" in str(err.value)  # how a malformed body is classed
