"""Conformance of the cloud kinds: ``anthropic_bedrock`` and ``anthropic_vertex`` through the
anthropic SDK's own ``AnthropicBedrock`` / ``AnthropicVertex`` clients, over HTTP to
MockLLMServer, with fake credentials (dummy AWS keys signed by botocore; a Vertex access token
or a google-auth credentials object that needs no refresh). Nothing leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policyrouter import Router
from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.providers import AnthropicBedrockProvider, AnthropicVertexProvider, Provider
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import OutputFormat, ProviderRequest, Usage

BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
TOKEN = "ya29.SECRET-vertex-access-token-0123456789"
BEDROCK_KEY = "ABSKSECRET-bedrock-api-key-0123456789"
AWS_SECRET = "wJalrXUtnFEMI-SECRET-EXAMPLEKEY"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials in the environment, and nothing else AWS could find (no files, no IMDS)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@dataclass
class Cloud:
    kind: str
    model: str
    provider: AnthropicProvider
    path: str
    stream_path: str


def bedrock(server: MockLLMServer, **kw: Any) -> AnthropicBedrockProvider:
    kw.setdefault("environ", {})
    kw.setdefault("region", "us-east-1")
    return AnthropicBedrockProvider("bedrock", base_url=server.bedrock_base_url, **kw)


def vertex(server: MockLLMServer, **kw: Any) -> AnthropicVertexProvider:
    if "credentials" not in kw:
        kw.setdefault("api_key_env", "VERTEX_TOKEN")
        kw.setdefault("environ", {"VERTEX_TOKEN": TOKEN})
    return AnthropicVertexProvider(
        "vertex", region="us-east5", project="my-project", base_url=server.vertex_base_url, **kw
    )


@pytest.fixture(params=["anthropic_bedrock", "anthropic_vertex"])
def cloud(request: pytest.FixtureRequest, server: MockLLMServer) -> Iterator[Cloud]:
    if request.param == "anthropic_bedrock":
        path = f"/model/{BEDROCK_MODEL}/invoke"
        c = Cloud(request.param, BEDROCK_MODEL, bedrock(server), path, path + "-with-response-stream")
    else:
        path = f"/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/{VERTEX_MODEL}"
        c = Cloud(request.param, VERTEX_MODEL, vertex(server), path + ":rawPredict", path + ":streamRawPredict")
    yield c
    c.provider.close()


def make_request(model: str, **kw: Any) -> ProviderRequest:
    kw.setdefault("messages", ({"role": "user", "content": "Say hello to the world please"},))
    kw.setdefault("max_output_tokens", 64)
    return ProviderRequest(model=model, **kw)


# --------------------------------------------------------------------------- plain, streamed


def test_is_a_provider_of_its_kind(cloud: Cloud) -> None:
    assert isinstance(cloud.provider, Provider)
    assert (cloud.provider.kind, cloud.provider.name) == (cloud.kind, cloud.kind.split("_")[1])


def test_complete_speaks_the_platform_protocol(cloud: Cloud, server: MockLLMServer) -> None:
    server.set_reply(cloud.model, text="Hello, world!", usage={"input": 21, "output": 4, "cached": 5})
    response = cloud.provider.complete(make_request(cloud.model, system="Be brief.", temperature=0.2))

    assert response.text == "Hello, world!"
    # the Messages usage, normalized as for kind anthropic: input is the whole prompt
    assert response.usage == Usage(input_tokens=26, output_tokens=4, cached_input_tokens=5)
    assert (response.finish_reason, response.model) == ("stop", cloud.model)
    [recorded] = server.requests
    assert (recorded.protocol, recorded.path, recorded.model) == (cloud.kind.split("_")[1], cloud.path, cloud.model)
    body = recorded.body
    assert "model" not in body and "stream" not in body  # the model is in the path
    assert isinstance(body["anthropic_version"], str)
    assert (body["system"], body["max_tokens"], body["temperature"]) == ("Be brief.", 64, 0.2)
    assert recorded.headers["authorization"] == "***"


def test_bedrock_signs_with_sigv4_and_vertex_sends_the_token(cloud: Cloud, server: MockLLMServer) -> None:
    cloud.provider.complete(make_request(cloud.model))
    headers = server.requests[0].headers
    if cloud.kind == "anthropic_bedrock":
        assert "x-amz-date" in headers  # SigV4: botocore signed the request with the dummy credentials
    else:
        assert "x-amz-date" not in headers


def test_async_complete(cloud: Cloud, server: MockLLMServer) -> None:
    server.set_reply(cloud.model, text="async hello", usage={"input": 3, "output": 2})

    async def run() -> Any:
        try:
            return await cloud.provider.acomplete(make_request(cloud.model))
        finally:
            await cloud.provider.aclose()

    response = asyncio.run(run())
    assert (response.text, response.usage) == ("async hello", Usage(3, 2))


def test_stream_yields_text_then_the_whole_response(cloud: Cloud, server: MockLLMServer) -> None:
    server.set_reply(cloud.model, text="one two three", usage={"input": 9, "output": 3, "cache_write": 4})
    events = list(cloud.provider.stream(make_request(cloud.model)))

    assert "".join(e.text for e in events if e.text) == "one two three"
    final = events[-1].response
    assert final is not None
    assert (final.text, final.finish_reason) == ("one two three", "stop")
    assert final.usage == Usage(input_tokens=13, output_tokens=3, cache_write_tokens=4)
    assert final.request_id == "req_mock_1"
    [recorded] = server.requests
    assert recorded.path == cloud.stream_path


def test_bedrock_stream_is_an_aws_event_stream(server: MockLLMServer) -> None:
    import urllib.request

    from policyrouter.testing.mock_server._bedrock import event_frame

    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()
    request = urllib.request.Request(
        f"{server.url}/model/{BEDROCK_MODEL}/invoke-with-response-stream", data=body, method="POST"
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.headers["content-type"] == "application/vnd.amazon.eventstream"
        raw = answer.read()
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(raw)  # botocore checks both CRCs of every frame
    frames = list(buffer)
    assert [f.headers[":event-type"] for f in frames] == ["chunk"] * len(frames)
    import base64

    events = [json.loads(base64.b64decode(json.loads(f.payload)["bytes"])) for f in frames]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0
    # the "empty message" test vector of the AWS event-stream format (awslabs/aws-c-event-stream)
    assert event_frame({}, b"").hex() == "000000100000000005c248eb7d98c8ff"


def test_async_stream(cloud: Cloud, server: MockLLMServer) -> None:
    server.set_reply(cloud.model, text="streamed async")

    async def run() -> list[Any]:
        try:
            return [e async for e in cloud.provider.astream(make_request(cloud.model))]
        finally:
            await cloud.provider.aclose()

    events = asyncio.run(run())
    assert "".join(e.text for e in events if e.text) == "streamed async"
    assert events[-1].response is not None and events[-1].response.text == "streamed async"


# --------------------------------------------------------------------------- tools, structured output

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("streamed", [False, True])
def test_tool_calls(cloud: Cloud, server: MockLLMServer, streamed: bool) -> None:
    server.set_reply(cloud.model, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    request = make_request(cloud.model, tools=(WEATHER,), tool_choice="required")
    if streamed:
        final = list(cloud.provider.stream(request))[-1].response
        assert final is not None
        response = final
    else:
        response = cloud.provider.complete(request)
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert (call["name"], json.loads(call["arguments"])) == ("get_weather", {"city": "Paris"})
    body = server.requests[0].body
    assert body["tools"][0]["name"] == "get_weather" and body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize("streamed", [False, True])
def test_structured_output_through_a_forced_tool(cloud: Cloud, server: MockLLMServer, streamed: bool) -> None:
    # Both clouds serve Claude's tool use; structured output is asked as one forced tool, as for kind anthropic.
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    request = make_request(cloud.model, output=OutputFormat(name="invoice", schema=schema))
    if streamed:
        final = list(cloud.provider.stream(request))[-1].response
        assert final is not None
        response = final
    else:
        response = cloud.provider.complete(request)
    assert isinstance(json.loads(response.text)["total"], (int, float))
    assert (response.finish_reason, response.tool_calls) == ("stop", ())
    assert server.requests[0].body["tool_choice"] == {"type": "tool", "name": "invoice"}


# --------------------------------------------------------------------------- errors

BEDROCK_ERRORS = [
    (Fault(status=429), "rate_limited"),  # ThrottlingException
    (Fault(status=429, error_type="ModelNotReadyException"), "overloaded"),
    (Fault(status=400, error_type="ServiceQuotaExceededException"), "rate_limited"),
    (Fault(status=503), "overloaded"),  # ServiceUnavailableException
    (Fault(status=500), "server_error"),  # InternalServerException
    (Fault(status=424), "server_error"),  # ModelErrorException
    (Fault(status=408), "timeout"),  # ModelTimeoutException
    (Fault(status=400), "bad_request"),  # ValidationException
    (Fault(kind="context_length"), "context_length"),  # ValidationException: "Input is too long ..."
    (Fault(status=403), "auth"),  # AccessDeniedException
    (Fault(status=403, error_type="UnrecognizedClientException"), "auth"),
    (Fault(status=404), "not_found"),  # ResourceNotFoundException
    (Fault(kind="refusal"), "content_filter"),
    (Fault(kind="malformed"), "server_error"),
    (Fault(kind="reset"), "connection"),
]
VERTEX_ERRORS = [
    (Fault(status=429), "rate_limited"),  # RESOURCE_EXHAUSTED: a quota
    (Fault(status=503, error_type="UNAVAILABLE"), "overloaded"),
    (Fault(status=529), "overloaded"),  # the model's overloaded_error, passed through
    (Fault(status=500), "server_error"),
    (Fault(status=400), "bad_request"),
    (Fault(status=400, error_type="FAILED_PRECONDITION"), "bad_request"),
    (Fault(kind="context_length"), "context_length"),
    (Fault(status=401), "auth"),  # UNAUTHENTICATED
    (Fault(status=403), "auth"),  # PERMISSION_DENIED
    (Fault(status=404), "not_found"),  # NOT_FOUND: the model is not offered in this region
    (Fault(kind="refusal"), "content_filter"),
    (Fault(kind="malformed"), "server_error"),
    (Fault(kind="reset"), "connection"),
]


@pytest.mark.parametrize(("fault", "kind"), BEDROCK_ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_bedrock_error_classes(server: MockLLMServer, fault: Fault, kind: str, streamed: bool) -> None:
    provider = bedrock(server)
    server.script(BEDROCK_MODEL, [fault])
    with pytest.raises(ProviderError) as info:
        request = make_request(BEDROCK_MODEL)
        list(provider.stream(request)) if streamed else provider.complete(request)
    assert info.value.kind == kind
    if fault.status is not None:
        assert info.value.status_code == fault.status
        assert info.value.request_id == "req_mock_1"  # x-amzn-RequestId


@pytest.mark.parametrize(("fault", "kind"), VERTEX_ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_vertex_error_classes(server: MockLLMServer, fault: Fault, kind: str, streamed: bool) -> None:
    provider = vertex(server)
    server.script(VERTEX_MODEL, [fault])
    with pytest.raises(ProviderError) as info:
        request = make_request(VERTEX_MODEL)
        list(provider.stream(request)) if streamed else provider.complete(request)
    assert info.value.kind == kind
    if fault.status is not None:
        assert info.value.status_code == fault.status


def test_vertex_quota_error_is_googles_shape(server: MockLLMServer) -> None:
    server.script(VERTEX_MODEL, [Fault(status=429, retry_after_s=7, message="Quota exceeded for base model")])
    with pytest.raises(ProviderError) as info:
        vertex(server).complete(make_request(VERTEX_MODEL))
    assert (info.value.kind, info.value.retry_after_s) == ("rate_limited", 7.0)
    assert "Quota exceeded for base model" in str(info.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "rate_limited"), (503, "overloaded"), (408, "timeout"), (424, "server_error"), (400, "bad_request")],
)
def test_bedrock_exception_frame_mid_stream(server: MockLLMServer, status: int, kind: str) -> None:
    # Bedrock ends a failing stream with an `exception` frame (:exception-type throttlingException, ...)
    from policyrouter.testing.mock_server._bedrock import BedrockWire

    wire = BedrockWire()
    frame = wire.error_event(status, {"message": "mid-stream failure"})
    ok = list(bedrock(server).stream(make_request(BEDROCK_MODEL)))[-1].response
    assert ok is not None
    server.reset()
    events = wire.events(1, BEDROCK_MODEL, _answer(BEDROCK_MODEL), {}, report_usage=True)
    raw = b"".join([*events[:2], frame])
    server.script(BEDROCK_MODEL, [Fault(kind="replay", raw_body=raw, content_type=wire.stream_content_type)])
    with pytest.raises(ProviderError) as info:
        list(bedrock(server).stream(make_request(BEDROCK_MODEL)))
    assert (info.value.kind, info.value.status_code) == (kind, status)


def _answer(model: str) -> Any:
    from policyrouter.testing.mock_server._answer import answer_for

    return answer_for(model, {"messages": [{"role": "user", "content": "hi"}]}, None, refusal=False)


def test_stream_error_event_is_classified(cloud: Cloud, server: MockLLMServer) -> None:
    server.script(cloud.model, [Fault(kind="stream_error", after_chunks=2)])
    with pytest.raises(ProviderError) as info:
        list(cloud.provider.stream(make_request(cloud.model)))
    assert (info.value.kind, info.value.status_code) == ("server_error", 500)


# --------------------------------------------------------------------------- credentials and secrets


def test_bedrock_api_key_is_a_bearer_token_and_never_shown(server: MockLLMServer) -> None:
    provider = bedrock(server, api_key_env="BEDROCK_KEY", environ={"BEDROCK_KEY": BEDROCK_KEY})
    server.script(BEDROCK_MODEL, [Fault(status=403, message=f"key {BEDROCK_KEY} is not allowed")])
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request(BEDROCK_MODEL))
    assert info.value.kind == "auth"
    assert BEDROCK_KEY not in str(info.value) and BEDROCK_KEY not in repr(provider)
    assert "x-amz-date" not in server.requests[0].headers  # a bearer token, not SigV4


def test_bedrock_default_api_key_variable_is_used_when_present(server: MockLLMServer) -> None:
    provider = bedrock(server, environ={"AWS_BEARER_TOKEN_BEDROCK": BEDROCK_KEY})
    provider.complete(make_request(BEDROCK_MODEL))
    assert "x-amz-date" not in server.requests[0].headers


def test_bedrock_named_api_key_variable_missing_is_a_configuration_error(server: MockLLMServer) -> None:
    with pytest.raises(ConfigurationError, match="BEDROCK_KEY"):
        bedrock(server, api_key_env="BEDROCK_KEY").complete(make_request(BEDROCK_MODEL))
    assert server.requests == []


def test_bedrock_without_aws_credentials_is_a_configuration_error(
    server: MockLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigurationError, match="no AWS credentials found"):
        bedrock(server).complete(make_request(BEDROCK_MODEL))
    assert server.requests == []


def test_bedrock_session_token_is_signed_and_never_recorded(
    server: MockLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "SECRET-session-token")
    # another region: the SDK caches one boto3 session per (credentials, region, profile)
    bedrock(server, region="eu-west-3").complete(make_request(BEDROCK_MODEL))
    assert server.requests[0].headers["x-amz-security-token"] == "***"


def test_bedrock_unknown_profile_is_a_configuration_error(server: MockLLMServer) -> None:
    with pytest.raises(ConfigurationError, match="AWS profile 'nope' not found"):
        bedrock(server, aws_profile="nope").complete(make_request(BEDROCK_MODEL))


def test_bedrock_profile_credentials(server: MockLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[team]\naws_access_key_id = AKIDTEAM\naws_secret_access_key = team-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    provider = bedrock(server, aws_profile="team")
    assert provider.complete(make_request(BEDROCK_MODEL)).text
    assert "x-amz-date" in server.requests[0].headers
    assert "team-secret" not in repr(provider)


def test_vertex_token_never_shown(server: MockLLMServer) -> None:
    provider = vertex(server)
    server.script(VERTEX_MODEL, [Fault(status=401, message=f"token {TOKEN} expired")])
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request(VERTEX_MODEL))
    assert info.value.kind == "auth"
    assert TOKEN not in str(info.value) and TOKEN not in repr(provider)


def test_vertex_with_a_credentials_object(server: MockLLMServer) -> None:
    from google.oauth2.credentials import Credentials

    provider = vertex(server, credentials=Credentials(token="ya29.from-credentials-object"))  # valid: no refresh
    assert provider.complete(make_request(VERTEX_MODEL)).text


def test_vertex_credentials_that_cannot_refresh_are_an_auth_error(server: MockLLMServer) -> None:
    from google.oauth2.credentials import Credentials

    provider = vertex(server, credentials=Credentials(token=None))  # no token, nothing to refresh it with
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request(VERTEX_MODEL))
    assert info.value.kind == "auth"
    assert server.requests == []


def test_vertex_without_default_credentials_is_a_configuration_error(
    server: MockLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    provider = vertex(server, api_key_env=None, environ={})
    with pytest.raises(ConfigurationError, match="no Google application default credentials"):
        provider.complete(make_request(VERTEX_MODEL))


@pytest.mark.parametrize(
    ("kind", "modules", "extra"),
    [("anthropic_bedrock", ("boto3",), "bedrock"), ("anthropic_vertex", ("google", "google.auth"), "vertex")],
)
def test_missing_extra_names_it(
    server: MockLLMServer, monkeypatch: pytest.MonkeyPatch, kind: str, modules: tuple[str, ...], extra: str
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    provider = bedrock(server) if kind == "anthropic_bedrock" else vertex(server, api_key_env=None, environ={})
    with pytest.raises(ConfigurationError, match=rf"pip install 'policyrouter\[{extra}\]'"):
        provider.complete(make_request(BEDROCK_MODEL if kind == "anthropic_bedrock" else VERTEX_MODEL))


# --------------------------------------------------------------------------- reachability


def test_warm_and_ping_spend_no_tokens(cloud: Cloud, server: MockLLMServer) -> None:
    cloud.provider.warm()
    cloud.provider.ping()
    asyncio.run(cloud.provider.awarm())
    assert all(r.protocol == "unknown" and r.body == {} for r in server.requests)  # a GET, no model call


def test_ping_raises_when_nothing_answers(server: MockLLMServer) -> None:
    provider = bedrock(server, api_key_env="BEDROCK_KEY", environ={"BEDROCK_KEY": BEDROCK_KEY})
    server.stop()
    with pytest.raises(ProviderError) as info:
        provider.ping(timeout_s=2)
    assert info.value.kind == "connection"


# --------------------------------------------------------------------------- the router, usage and cost

POLICY = """
version: 1
providers:
  bedrock: {{kind: anthropic_bedrock, region: us-east-1, base_url: "{url}"}}
  vertex:
    {{kind: anthropic_vertex, region: us-east5, project: my-project, api_key_env: VERTEX_TOKEN, base_url: "{url}/v1"}}
models:
  sonnet-bedrock:
    provider: bedrock
    model: {bedrock}
    pricing: {{input: 3.0, output: 15.0, cached_input: 0.3}}
  sonnet-vertex:
    provider: vertex
    model: "{vertex}"
    pricing: {{input: 3.3, output: 16.5}}
tiers:
  claude: [sonnet-bedrock, sonnet-vertex]
tasks:
  answer:
    tier: claude
    max_output_tokens: 100
"""


def test_router_costs_usage_and_falls_back_across_clouds(server: MockLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=server.url, bedrock=BEDROCK_MODEL, vertex=VERTEX_MODEL))
    router = Router.from_path(path, environ={"VERTEX_TOKEN": TOKEN}, clock=FakeClock())
    server.set_reply(BEDROCK_MODEL, text="from bedrock", usage={"input": 1000, "output": 100, "cached": 400})
    server.set_reply(VERTEX_MODEL, text="from vertex", usage={"input": 2000, "output": 10})

    r = router.complete("answer", "hello")
    assert (r.text, r.provider) == ("from bedrock", "bedrock")
    # 1,400 input tokens of which 400 cached reads: 1,000 at 3.0, 400 at 0.3, 100 output at 15.0
    assert r.cost_usd == pytest.approx((1000 * 3.0 + 400 * 0.3 + 100 * 15.0) / 1e6)

    server.script(BEDROCK_MODEL, [Fault(status=403, error_type="AccessDeniedException")])
    r = router.complete("answer", "hello")
    assert [(a.model, a.error_kind) for a in r.attempts] == [("sonnet-bedrock", "auth"), ("sonnet-vertex", None)]
    assert r.cost_usd == pytest.approx((2000 * 3.3 + 10 * 16.5) / 1e6)
    router.close()


@pytest.mark.parametrize("body", [{"error": None}, {"error": "throttled"}, "not json", None])
def test_a_stream_error_body_of_another_shape_names_no_platform_type(server: MockLLMServer, body: Any) -> None:
    from types import SimpleNamespace

    event = SimpleNamespace(response=None, body=body)  # an in-stream APIError carries no response
    assert bedrock(server)._platform_type(event) is None  # classified by its status, never an AttributeError
