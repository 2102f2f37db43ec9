"""Azure OpenAI (kind ``azure_openai``) through the openai SDK's own ``AzureOpenAI`` clients,
talking HTTP to MockLLMServer's Azure protocol: plain, streamed, tools, structured output,
every error class, usage and cost, Entra ID, and the policy checks of its settings."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from policyrouter import AllModelsFailed, BadRequest, Router
from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.policy.loader import validate_paths
from policyrouter.providers.azure import AzureOpenAIProvider
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest

KEY = "azure-test-key-0123456789abcdef"
ENV = {"AZURE_OPENAI_API_KEY": KEY}
HI = ({"role": "user", "content": "hi"},)
DEPLOYMENT = "gpt4o-prod"

POLICY = """
version: 1
providers:
  azure:
    kind: azure_openai
    endpoint: "{endpoint}"
    api_version: "2024-10-21"
    api_key_env: AZURE_OPENAI_API_KEY
models:
  gpt4o:
    provider: azure
    model: gpt-4o-2024-11-20
    deployment: gpt4o-prod
    pricing: {{input: 2.5, output: 10.0}}
    context_window: 128000
    capabilities: [json_schema, tools]
  backup:
    provider: azure
    model: gpt-4o-mini-2024-07-18
    pricing: {{input: 0.15, output: 0.6}}
    context_window: 128000
tiers:
  main: [gpt4o, backup]
retry_policies:
  default:
    max_attempts: 2
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
tasks:
  ask: {{tier: main, max_output_tokens: 200, max_input_tokens: 4000}}
"""


class City(BaseModel):
    city: str
    population: int


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path, policy: str = POLICY) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(policy.format(endpoint=server.azure_endpoint))
    return Router.from_path(path, environ=ENV, clock=FakeClock(), rng=random.Random(3))


def provider(server: MockLLMServer, **kwargs: object) -> AzureOpenAIProvider:
    return AzureOpenAIProvider("azure", endpoint=server.azure_endpoint, api_version="2024-10-21", environ=ENV, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the wire


def test_plain_call_goes_to_the_deployment_with_the_api_key_and_version(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(DEPLOYMENT, text="Paris.", usage={"input": 1000, "output": 100})
    result = make_router(server, tmp_path).complete(task="ask", input="capital of France?")
    assert (result.text, result.model) == ("Paris.", "gpt4o")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1000, 100)
    assert result.cost_usd == pytest.approx((1000 * 2.5 + 100 * 10.0) / 1e6)
    [request] = server.requests_for(DEPLOYMENT)
    assert (request.protocol, request.path) == ("azure", f"/openai/deployments/{DEPLOYMENT}/chat/completions")
    assert request.headers["api-key"] == "***" and "authorization" not in request.headers
    assert request.body["max_completion_tokens"] == 200
    assert result.attempts[0].request_id and result.attempts[0].request_id.startswith("req_mock_")  # apim-request-id


def test_the_model_id_is_the_deployment_when_none_is_named(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, [500, 500])
    result = make_router(server, tmp_path).complete(task="ask", input="hi")
    assert [a.error_kind for a in result.attempts] == ["server_error", "server_error", None]
    assert len(server.requests_for("gpt-4o-mini-2024-07-18")) == 1


def test_streamed_answer_and_its_usage(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(DEPLOYMENT, text="one two three", usage={"input": 50, "output": 3})
    router = make_router(server, tmp_path)
    chunks = list(router.stream(task="ask", input="count"))
    assert "".join(c.text for c in chunks if c.text) == "one two three"
    result = chunks[-1].result
    assert result is not None and (result.usage.input_tokens, result.usage.output_tokens) == (50, 3)
    assert result.cost_usd == pytest.approx((50 * 2.5 + 3 * 10.0) / 1e6)
    assert server.requests_for(DEPLOYMENT)[0].body["stream_options"] == {"include_usage": True}


def test_async_call(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(DEPLOYMENT, text="async hello")
    router = make_router(server, tmp_path)
    assert asyncio.run(router.acomplete(task="ask", input="hi")).text == "async hello"


def test_tool_call(server: MockLLMServer, tmp_path: Path) -> None:
    tool = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    server.set_reply(DEPLOYMENT, tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    result = make_router(server, tmp_path).complete(task="ask", input="weather?", tools=[tool])
    assert [(c["name"], json.loads(c["arguments"])) for c in result.tool_calls] == [("weather", {"city": "Oslo"})]
    assert server.requests_for(DEPLOYMENT)[0].body["tools"] == [tool]


def test_structured_output(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(DEPLOYMENT, text='{"city": "Oslo", "population": 709000}')
    result = make_router(server, tmp_path).complete(task="ask", input="biggest city?", response_model=City)
    assert result.parsed == City(city="Oslo", population=709000)
    assert server.requests_for(DEPLOYMENT)[0].body["response_format"]["type"] == "json_schema"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "rate_limited"),
        (500, "server_error"),
        (503, "overloaded"),
        (401, "auth"),
        (403, "auth"),
        (404, "not_found"),
    ],
)
def test_error_statuses_are_classified(server: MockLLMServer, status: int, kind: str) -> None:
    server.script(DEPLOYMENT, [status])
    with pytest.raises(ProviderError) as info:
        provider(server).complete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10))
    assert (info.value.kind, info.value.status_code) == (kind, status)
    assert KEY not in str(info.value)


def test_rate_limit_waits_what_retry_after_ms_says(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, [Fault(status=429, retry_after_ms=1500, retry_after_s=2)])
    result = make_router(server, tmp_path).complete(task="ask", input="hi")
    assert [(a.error_kind, a.retry_after_s) for a in result.attempts] == [("rate_limited", 1.5), (None, None)]


def test_a_filtered_prompt_is_content_filter_naming_the_category(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, ["content_filter"])
    result = make_router(server, tmp_path).complete(task="ask", input="hi")
    first, second = result.attempts
    assert (first.model, first.error_kind, first.status_code) == ("gpt4o", "content_filter", 400)
    assert first.message is not None and "violence (high)" in first.message
    assert (second.model, second.error_kind) == ("backup", None)  # not retried on the same deployment


@pytest.mark.parametrize("stream", [False, True])
def test_a_filtered_answer_is_content_filter_and_billed(server: MockLLMServer, stream: bool) -> None:
    server.script(DEPLOYMENT, ["refusal"])
    request = ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10)
    p = provider(server)
    with pytest.raises(ProviderError) as info:
        list(p.stream(request)) if stream else p.complete(request)
    assert info.value.kind == "content_filter" and "filtered: violence (high)" in str(info.value)
    assert info.value.usage is not None


@pytest.mark.parametrize(("entry", "kind"), [("context_length", "context_length"), (400, "bad_request")])
def test_context_length_and_bad_request(server: MockLLMServer, entry: str | int, kind: str) -> None:
    server.script(DEPLOYMENT, [entry])
    with pytest.raises(ProviderError) as info:
        provider(server).complete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10))
    assert (info.value.kind, info.value.status_code) == (kind, 400)


def test_bad_request_fails_fast(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, [400])
    with pytest.raises(BadRequest) as info:
        make_router(server, tmp_path).complete(task="ask", input="hi")
    assert [a.error_kind for a in info.value.attempts] == ["bad_request"]


def test_timeout_and_connection_reset(server: MockLLMServer) -> None:
    server.script(DEPLOYMENT, [Fault(kind="stall", seconds=5), "reset"])
    request = ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10, timeout_s=0.2)
    p = provider(server)
    kinds = []
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            p.complete(request)
        kinds.append(info.value.kind)
    assert kinds == ["timeout", "connection"]


def test_every_model_failing_keeps_the_trace(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(DEPLOYMENT, [503, 503])
    server.script("gpt-4o-mini-2024-07-18", [503, 503])
    with pytest.raises(AllModelsFailed) as info:
        make_router(server, tmp_path).complete(task="ask", input="hi")
    assert [a.error_kind for a in info.value.attempts] == ["overloaded"] * 4


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {"api-key": "k"}, 404),
        ("?api-version=2024-10-21", {}, 401),
        ("?api-version=2024-10-21", {"api-key": "k"}, 200),
    ],
)
def test_the_mock_refuses_what_azure_refuses(
    server: MockLLMServer, query: str, headers: dict[str, str], status: int
) -> None:
    url = f"{server.azure_endpoint}/openai/deployments/{DEPLOYMENT}/chat/completions{query}"
    body = json.dumps({"messages": list(HI)}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            got = response.status
    except urllib.error.HTTPError as exc:
        got = exc.code
        assert set(json.loads(exc.read())["error"]) == {"code", "message"}
    assert got == status


def test_ping_lists_the_resources_models(server: MockLLMServer) -> None:
    provider(server).ping()
    assert server.requests[-1].path == "/openai/models"


# ------------------------------------------------------------------ auth


def test_entra_id_token_is_sent_as_bearer_never_as_api_key(server: MockLLMServer) -> None:
    tokens: list[str] = []

    def token() -> str:
        tokens.append("t")
        return "entra-token-abcdef0123456789"

    p = provider(server, token_provider=token)
    p.complete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10))
    asyncio.run(p.acomplete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10)))
    headers = [r.headers for r in server.requests_for(DEPLOYMENT)]
    assert all(h["authorization"] == "***" and "api-key" not in h for h in headers) and len(headers) == 2
    assert len(tokens) == 2 and "entra-token" not in repr(p)


def test_entra_id_without_the_extra_names_it(server: MockLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if azure-identity were not installed
    p = provider(server, auth="entra_id")
    with pytest.raises(ConfigurationError, match=r"policyrouter\[azure\]"):
        p.complete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10))
    assert server.requests == []


def test_entra_id_builds_azure_identitys_credential_without_a_call(server: MockLLMServer) -> None:
    p = provider(server, auth="entra_id")
    p.warm(connect=False)  # builds the client over DefaultAzureCredential; asks for no token
    assert p.auth == "entra_id" and server.requests == []


def test_a_missing_key_names_the_variable(server: MockLLMServer) -> None:
    p = AzureOpenAIProvider("azure", endpoint=server.azure_endpoint, api_version="2024-10-21", environ={})
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_KEY"):
        p.complete(ProviderRequest(model=DEPLOYMENT, messages=HI, max_output_tokens=10))


def test_endpoint_env_is_read_when_the_router_is_built(server: MockLLMServer, tmp_path: Path) -> None:
    policy = POLICY.replace('endpoint: "{endpoint}"', "endpoint_env: AZURE_OPENAI_ENDPOINT")
    path = tmp_path / "policy.yaml"
    path.write_text(policy.format())
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        Router.from_path(path, environ=ENV)
    router = Router.from_path(path, environ={**ENV, "AZURE_OPENAI_ENDPOINT": server.azure_endpoint})
    assert router.complete(task="ask", input="hi").text


# ------------------------------------------------------------------ validate


def _diagnostics(tmp_path: Path, policy: str) -> list[tuple[str, str, int]]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return [(d.severity, d.code, d.location.line or 0) for d in validate_paths([path]).diagnostics]


def _line(policy: str, text: str) -> int:
    return next(i for i, line in enumerate(policy.splitlines(), 1) if text in line)


def test_validate_reports_missing_endpoint_and_api_version_where_the_provider_is(tmp_path: Path) -> None:
    policy = POLICY.format(endpoint="https://x.openai.azure.com")
    policy = policy.replace('    endpoint: "https://x.openai.azure.com"\n', "").replace(
        '    api_version: "2024-10-21"\n', ""
    )
    found = _diagnostics(tmp_path, policy)
    line = _line(policy, "  azure:")
    assert [d for d in found if d[0] == "error"] == [("error", "provider-missing-setting", line)] * 2


def test_validate_reports_conflicts_and_ignored_settings(tmp_path: Path) -> None:
    policy = POLICY.format(endpoint="https://x.openai.azure.com").replace(
        "    api_key_env: AZURE_OPENAI_API_KEY\n",
        "    api_key_env: AZURE_OPENAI_API_KEY\n    endpoint_env: AZURE_ENDPOINT\n    base_url: https://gw.example/v1\n"
        "  oai: {kind: openai, api_key_env: OPENAI_API_KEY, api_version: '2024-10-21'}\n",
    )
    policy = policy.replace("  backup:\n    provider: azure", "  backup:\n    provider: oai\n    deployment: mini")
    found = set(_diagnostics(tmp_path, policy))
    assert ("error", "endpoint-conflict", _line(policy, "endpoint_env:")) in found
    assert ("error", "endpoint-conflict", _line(policy, "base_url:")) in found
    assert ("warning", "provider-setting-ignored", _line(policy, "oai:")) in found  # api_version on openai
    assert ("warning", "provider-setting-ignored", _line(policy, "deployment: mini")) in found


def test_validate_wants_a_key_or_entra_id(tmp_path: Path) -> None:
    base = POLICY.format(endpoint="https://x.openai.azure.com")
    keyless = base.replace("    api_key_env: AZURE_OPENAI_API_KEY\n", "")
    assert ("error", "provider-no-key", _line(keyless, "  azure:")) in _diagnostics(tmp_path, keyless)
    entra = keyless.replace('    api_version: "2024-10-21"\n', '    api_version: "2024-10-21"\n    auth: entra_id\n')
    assert not [d for d in _diagnostics(tmp_path, entra) if d[0] == "error"]
    both = base.replace('    api_version: "2024-10-21"\n', '    api_version: "2024-10-21"\n    auth: entra_id\n')
    assert ("warning", "provider-setting-ignored", _line(both, "api_key_env:")) in _diagnostics(tmp_path, both)


def test_a_complete_policy_validates_clean(tmp_path: Path) -> None:
    assert _diagnostics(tmp_path, POLICY.format(endpoint="https://x.openai.azure.com")) == []
