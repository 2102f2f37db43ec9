"""Recorded real Azure OpenAI and Gemini (OpenAI-compatible endpoint) responses
(``tests/recorded/``, sources in its README), replayed byte for byte by MockLLMServer on the
protocol they were recorded on, read by the official SDK and by our adapters.

What the SDK parses on its own is the expectation our adapters and the router are held to.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from policyrouter import Router
from policyrouter.errors import ProviderError
from policyrouter.providers.azure import AzureOpenAIProvider
from policyrouter.providers.openai_adapter import OpenAIProvider
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest, ProviderResponse

RECORDED = Path(__file__).parent / "recorded"
KEY = "azure-recorded-key-0123456789"
ENV = {"AZURE_OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY}
HI = ({"role": "user", "content": "hi"},)
DEPLOYMENT = "gpt-4o"

POLICY = """
version: 1
providers:
  azure: {{kind: azure_openai, endpoint: "{endpoint}", api_version: "2024-10-21", api_key_env: AZURE_OPENAI_API_KEY}}
  gemini: {{kind: openai_compatible, base_url: "{openai}", api_key_env: GEMINI_API_KEY}}
models:
  azure-4o:
    provider: azure
    model: gpt-4o-2024-11-20
    deployment: gpt-4o
    pricing: {{input: 2.5, output: 10.0}}
  gemini-pro:
    provider: gemini
    model: gemini-2.5-pro-preview-05-06
    pricing: {{input: 1.25, output: 10.0}}
  backup:
    provider: gemini
    model: gemini-2.5-flash-2025-06-17
    pricing: {{input: 0.3, output: 2.5}}
tiers:
  azure_first: [azure-4o, backup]
  gemini_first: [gemini-pro]
tasks:
  ask_azure: {{tier: azure_first, max_output_tokens: 500, max_input_tokens: 4000}}
  ask_gemini: {{tier: gemini_first, max_output_tokens: 500, max_input_tokens: 4000}}
"""


def replay(name: str, status: int | None = None) -> Fault:
    stream = name.endswith(".sse")
    content_type = "text/event-stream; charset=utf-8" if stream else "application/json"
    return Fault(kind="replay", raw_body=(RECORDED / name).read_bytes(), content_type=content_type, status=status)


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(endpoint=server.azure_endpoint, openai=server.openai_base_url))
    return Router.from_path(path, environ=ENV, clock=FakeClock(), rng=random.Random(3))


def sdk_azure(server: MockLLMServer) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=server.azure_endpoint, api_version="2024-10-21", api_key=KEY, max_retries=0
    )


def azure(server: MockLLMServer) -> AzureOpenAIProvider:
    return AzureOpenAIProvider("azure", endpoint=server.azure_endpoint, api_version="2024-10-21", environ=ENV)


def request() -> ProviderRequest:
    return ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=500)


def final(events: Iterator[object]) -> ProviderResponse:
    *_, last = events
    response = getattr(last, "response", None)
    assert isinstance(response, ProviderResponse)
    return response


# --------------------------------------------------------------------- Azure OpenAI


def test_azure_answer_matches_the_sdk(server: MockLLMServer) -> None:
    server.script(DEPLOYMENT, [replay("azure_text.json"), replay("azure_text.json")])
    sdk = sdk_azure(server).chat.completions.create(model=DEPLOYMENT, messages=list(HI))  # type: ignore[arg-type]
    got = azure(server).complete(request())
    assert sdk.usage is not None and sdk.choices[0].message.content
    assert (got.text, got.finish_reason, got.model) == (sdk.choices[0].message.content, "stop", sdk.model)
    assert (got.usage.input_tokens, got.usage.output_tokens) == (sdk.usage.prompt_tokens, sdk.usage.completion_tokens)
    assert got.request_id and got.request_id.startswith("req_mock_")  # Azure's apim-request-id


def test_azure_stream_matches_the_sdk(server: MockLLMServer) -> None:
    server.script(DEPLOYMENT, [replay("azure_stream.sse"), replay("azure_stream.sse")])
    chunks = sdk_azure(server).chat.completions.create(model=DEPLOYMENT, messages=list(HI), stream=True)  # type: ignore[call-overload]
    sdk_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    got = final(azure(server).stream(request()))
    assert sdk_text and (got.text, got.finish_reason) == (sdk_text, "stop")
    assert got.model == "gpt-4o-mini-2024-07-18"  # the prompt-filter chunk's empty model is not the answer's


def test_azure_prompt_filter_is_content_filter_naming_the_category(server: MockLLMServer) -> None:
    server.script(DEPLOYMENT, [replay("azure_content_filter_400.json", 400)] * 2)
    with pytest.raises(openai.BadRequestError) as sdk:
        sdk_azure(server).chat.completions.create(model=DEPLOYMENT, messages=list(HI))  # type: ignore[arg-type]
    assert sdk.value.code == "content_filter"
    with pytest.raises(ProviderError) as info:
        azure(server).complete(request())
    assert (info.value.kind, info.value.status_code) == ("content_filter", 400)
    assert "self_harm (medium)" in str(info.value) and "jailbreak" not in str(info.value)


def test_azure_prompt_filter_falls_back_through_the_router(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, [replay("azure_content_filter_400.json", 400)])
    result = make_router(server, tmp_path).complete(task="ask_azure", input="hi")
    assert [(a.model, a.error_kind) for a in result.attempts] == [("azure-4o", "content_filter"), ("backup", None)]
    assert result.attempts[0].cost_usd == 0.0


# --------------------------------------------------------------------- Gemini's usage


def test_gemini_output_is_total_minus_prompt_as_billed(server: MockLLMServer) -> None:
    server.script("m", [replay("gemini_thinking_usage.json"), replay("gemini_thinking_usage.json")])
    client = openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0)
    sdk = client.chat.completions.create(model="m", messages=list(HI))  # type: ignore[arg-type]
    assert sdk.usage is not None
    prompt, completion, total = sdk.usage.prompt_tokens, sdk.usage.completion_tokens, sdk.usage.total_tokens
    assert total > prompt + completion  # thinking tokens: in the total, not in completion_tokens
    provider = OpenAIProvider("gemini", kind="openai_compatible", base_url=server.openai_base_url, environ=ENV)
    got = provider.complete(ProviderRequest(model="m", messages=HI, max_output_tokens=500))
    assert (got.usage.input_tokens, got.usage.output_tokens) == (prompt, total - prompt)
    assert [c["name"] for c in got.tool_calls] == ["get_current_time"]


def test_gemini_cost_bills_the_thinking_tokens(server: MockLLMServer, tmp_path: Path) -> None:
    server.script("gemini-2.5-pro-preview-05-06", [replay("gemini_thinking_usage.json")])
    result = make_router(server, tmp_path).complete(task="ask_gemini", input="What is the current time?")
    usage = json.loads((RECORDED / "gemini_thinking_usage.json").read_bytes())["usage"]
    output = usage["total_tokens"] - usage["prompt_tokens"]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (usage["prompt_tokens"], output)
    assert result.cost_usd == pytest.approx((usage["prompt_tokens"] * 1.25 + output * 10.0) / 1e6)


@pytest.mark.parametrize(
    ("usage", "output"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, 5),  # OpenAI: total is the sum
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 12}, 5),  # a smaller total never lowers it
        ({"prompt_tokens": 10, "completion_tokens": 5}, 5),  # no total
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 40}, 30),  # hidden thinking: billed
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_output_tokens_follow_the_total_only_when_it_counts_more(
    server: MockLLMServer, usage: dict[str, int], output: int, stream: bool
) -> None:
    server.script("m", [Fault(usage=usage)])
    provider = OpenAIProvider("gemini", kind="openai_compatible", base_url=server.openai_base_url, environ=ENV)
    call = ProviderRequest(model="m", messages=HI, max_output_tokens=500)
    got = final(provider.stream(call)) if stream else provider.complete(call)
    assert (got.usage.input_tokens, got.usage.output_tokens) == (10, output)
