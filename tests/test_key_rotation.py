"""Key rotation: several keys per provider, spread by weight, a refused key set aside, no key shown.

Every call goes through the real openai / anthropic SDK over HTTP to MockLLMServer, which
revokes a key with ``revoke_key`` and logs a digest of the key each request carried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from policyrouter import AllModelsFailed, ConfigurationError, Router, RouterError
from policyrouter.engine._events import EVENTS
from policyrouter.errors import ProviderError
from policyrouter.metrics import PrometheusMetrics
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.anthropic_clouds import AnthropicBedrockProvider, AnthropicVertexProvider
from policyrouter.providers.azure import AzureOpenAIProvider
from policyrouter.providers.openai_adapter import OpenAIProvider
from policyrouter.testing import Fault, MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderRequest

KEYS = {
    "KEY_A": "sk-test-SECRET-alpha-111111",
    "KEY_B": "sk-test-SECRET-bravo-222222",
    "KEY_C": "sk-test-SECRET-charlie-3333",
}
MODEL = "gpt-mini-2025-01-01"

POLICY = """
version: 1
providers:
  openai:
    kind: openai
    base_url: "{url}"
    api_key_env: [KEY_A, KEY_B, KEY_C]
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 8000
    circuit_breaker: strict
tiers:
  solo: [mini]
retry_policies:
  default:
    max_attempts: 3
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
circuit_breakers:
  strict: {{failure_threshold: 1, window_s: 60, cooldown_s: 30}}
tasks:
  ask:
    tier: solo
    max_output_tokens: 50
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path, environ: dict[str, str] | None = None) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=server.openai_base_url))
    return Router.from_path(path, environ=KEYS if environ is None else environ, clock=FakeClock(), rng=random.Random(3))


def keys_used(server: MockLLMServer, keys: dict[str, str] = KEYS) -> dict[str, list[int]]:
    """Each variable's requests, as the statuses the server answered them with."""
    return {env: [r.status for r in server.requests_with_key(value)] for env, value in keys.items()}


def request(model: str = MODEL) -> ProviderRequest:
    return ProviderRequest(model=model, messages=({"role": "user", "content": "hi"},), max_output_tokens=20)


# ---------------------------------------------------------------------------- the rotation test


def test_three_keys_one_revoked_mid_run_fails_nothing_and_shows_no_key(
    server: MockLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every log record, the events logger's included
    router = make_router(server, tmp_path)
    registry = CollectorRegistry()
    PrometheusMetrics(registry).attach(router)
    events: list[dict[str, Any]] = []
    for name in EVENTS:
        router.on(name, events.append)

    results = [router.complete("ask", f"question {i}") for i in range(12)]
    before = keys_used(server)
    assert all(statuses and set(statuses) == {200} for statuses in before.values())  # all three served

    server.revoke_key(KEYS["KEY_B"])
    results += [router.complete("ask", f"question {i}") for i in range(12, 40)]
    streamed = list(router.stream("ask", "a streamed question"))
    results.append(streamed[-1].result)  # type: ignore[arg-type]
    results.append(asyncio.run(router.acomplete("ask", "an async question")))

    # 0 failed requests, and the refusal was neither a retry nor a fallback nor a breaker failure
    assert all(r.text for r in results)
    assert all([a.outcome for a in r.attempts] == ["ok"] for r in results)
    assert router.state.breaker_get("mini").status == "closed"
    # the revoked key was used once more (its 401), then never again
    after = keys_used(server)
    assert after["KEY_B"][: len(before["KEY_B"])] == before["KEY_B"]
    assert after["KEY_B"][len(before["KEY_B"]) :] == [401]
    assert 401 not in after["KEY_A"] + after["KEY_C"]
    assert sum(len(statuses) for statuses in after.values()) == len(results) + 1  # one call per request, one 401
    set_aside = [e for e in events if e["event"] == "key_set_aside"]
    assert set_aside == [
        {"event": "key_set_aside", "provider": "openai", "key_env": "KEY_B", "status_code": 401, "keys_left": 2}
    ]
    metrics = generate_latest(registry).decode()
    assert 'policyrouter_keys_set_aside_total{key_env="KEY_B",provider="openai"} 1.0' in metrics

    # no key anywhere: events, results, traces, reprs, metrics, logs, the server's log
    server.script(MODEL, [Fault(status=400, message=f"echo {KEYS['KEY_A']}")])  # an upstream echoing a key
    with pytest.raises(RouterError) as failed:
        router.complete("ask", "a request that fails")
    errors = [str(failed.value), repr(failed.value), repr(failed.value.attempts)]
    outputs = [
        repr(events),
        repr(results),
        repr([r.to_dict() for r in results]),
        repr(router),
        repr(router.providers),
        metrics,
        caplog.text,
        repr([(rec.getMessage(), rec.__dict__) for rec in caplog.records]),
        repr(server.requests),
        *errors,
    ]
    for secret in KEYS.values():
        assert all(secret not in text for text in outputs)
    assert any("KEY_B" in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)


def test_a_key_revoked_under_concurrent_load_fails_no_request(server: MockLLMServer, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    router = make_router(server, tmp_path)
    set_aside: list[dict[str, Any]] = []
    router.on("key_set_aside", set_aside.append)

    def ask(i: int) -> str:
        if i == 40:
            server.revoke_key(KEYS["KEY_C"])
        return router.complete("ask", f"question {i}").text

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(ask, range(160)))
    assert len(texts) == 160 and all(texts)
    assert [e["key_env"] for e in set_aside] == ["KEY_C"]
    c = [r.status for r in server.requests_with_key(KEYS["KEY_C"])]
    refused = c.index(401)
    assert set(c[:refused]) == {200} and set(c[refused:]) == {401}  # once refused, only calls already picked
    assert len(c) - refused <= 8  # at most one in flight per thread when it was set aside


def test_every_key_revoked_fails_with_the_auth_kind(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    events: list[dict[str, Any]] = []
    router.on("key_set_aside", events.append)
    for key in KEYS.values():
        server.revoke_key(key)
    with pytest.raises(AllModelsFailed) as caught:
        router.complete("ask", "x")
    assert caught.value.kind == "all_models_failed"  # as with one refused key today: the chain's only model failed
    assert [(a.outcome, a.error_kind, a.status_code) for a in caught.value.attempts] == [("error", "auth", 401)]
    assert len(events) == 2  # two set aside; the last key is kept, its 401 is the request's error
    last = ({"KEY_A", "KEY_B", "KEY_C"} - {e["key_env"] for e in events}).pop()
    with pytest.raises(AllModelsFailed):
        router.complete("ask", "y")  # the next request asks with the last key only
    used = keys_used(server)
    assert len(used[last]) == 2 and all(len(statuses) == 1 for env, statuses in used.items() if env != last)
    for secret in KEYS.values():
        assert secret not in str(caught.value) and secret not in repr(caught.value.attempts)


# ---------------------------------------------------------------------------- weights


def _spread(server: MockLLMServer, seed: int, n: int) -> list[str]:
    """The variable each of ``n`` calls used, on a provider weighting A 3, B 1, C 0."""
    server.reset()
    env = KEYS
    provider = OpenAIProvider(
        "p",
        base_url=server.openai_base_url,
        api_key_env=[("KEY_A", 3), ("KEY_B", 1), ("KEY_C", 0)],
        environ=env,
        rng=random.Random(seed),
    )
    for _ in range(n):
        provider.complete(request())
    by_digest = {server.requests_with_key(value)[0].key_id: name for name, value in env.items() if name != "KEY_C"}
    assert not server.requests_with_key(KEYS["KEY_C"])  # drained: never used while the others serve
    provider.close()
    return [by_digest[r.key_id] for r in server.requests]


def test_weighted_spread_is_exact_on_a_seeded_rng(server: MockLLMServer) -> None:
    first = _spread(server, seed=11, n=400)
    assert _spread(server, seed=11, n=400) == first  # the same seed, the same keys
    counts = Counter(first)
    assert 270 <= counts["KEY_A"] <= 330 and counts["KEY_A"] + counts["KEY_B"] == 400  # 3:1 of 400
    assert _spread(server, seed=12, n=400) != first


def test_a_drained_key_serves_only_when_no_weighted_key_is_left(server: MockLLMServer) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    provider = OpenAIProvider(
        "p",
        base_url=server.openai_base_url,
        api_key_env=[("KEY_A", 1), ("KEY_B", 0), ("KEY_C", 0)],
        environ=KEYS,
        rng=random.Random(1),
        events=lambda name, payload: events.append((name, payload)),
    )
    for _ in range(5):
        provider.complete(request())
    assert [len(s) for s in keys_used(server).values()] == [5, 0, 0]
    server.revoke_key(KEYS["KEY_A"])
    for _ in range(5):
        provider.complete(request())
    assert keys_used(server) == {"KEY_A": [200] * 5 + [401], "KEY_B": [200] * 5, "KEY_C": []}  # in the order listed
    assert [(name, p["key_env"]) for name, p in events] == [("key_set_aside", "KEY_A")]


# ---------------------------------------------------------------------------- missing keys


def test_missing_keys_are_a_warning_while_one_is_present(
    server: MockLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router = make_router(server, tmp_path, environ={"KEY_B": KEYS["KEY_B"], "KEY_C": ""})
    missing: list[dict[str, Any]] = []
    router.on("key_missing", missing.append)
    assert router.complete("ask", "x").text
    assert router.complete("ask", "y").text
    assert [e["key_env"] for e in missing] == ["KEY_A", "KEY_C"]  # once, when the keys are first read
    assert {"KEY_A", "KEY_C"} <= {w for rec in caplog.records for w in rec.getMessage().split()}
    assert len(server.requests_with_key(KEYS["KEY_B"])) == 2


def test_no_key_present_is_a_configuration_error_naming_the_variables(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path, environ={"KEY_A": ""})
    with pytest.raises(ConfigurationError, match=r"KEY_A, KEY_B, KEY_C"):
        router.warm()
    provider = OpenAIProvider("p", base_url=server.openai_base_url, api_key_env=["ONLY"], environ={})
    with pytest.raises(ConfigurationError, match=r"ONLY \(the API key\) is not set"):
        provider.complete(request())
    assert not server.requests


# ---------------------------------------------------------------------------- anthropic, async, streams


def test_anthropic_async_and_streamed_calls_go_on_with_the_next_key(server: MockLLMServer) -> None:
    events: list[str] = []
    provider = AnthropicProvider(
        "claude",
        base_url=server.anthropic_base_url,
        api_key_env=["KEY_A", "KEY_B"],
        environ=KEYS,
        rng=random.Random(0),  # draws 0.84, 0.76, 0.42: B, B, then A (refused), B
        events=lambda name, payload: events.append(payload["key_env"]),
    )
    server.revoke_key(KEYS["KEY_A"])

    async def run() -> list[str]:
        texts = [(await provider.acomplete(request("claude-x"))).text for _ in range(4)]
        texts.append("".join([e.text or "" async for e in provider.astream(request("claude-x"))]))
        await provider.aclose()
        return texts

    assert all(asyncio.run(run()))
    streamed = [e for e in provider.stream(request("claude-x")) if e.response is not None]
    assert streamed and streamed[0].response is not None and streamed[0].response.text
    assert events == ["KEY_A"]
    assert keys_used(server)["KEY_A"] == [401]
    assert len(keys_used(server)["KEY_B"]) == 6
    provider.close()


def test_a_single_key_is_never_set_aside(server: MockLLMServer) -> None:
    provider = OpenAIProvider("p", base_url=server.openai_base_url, api_key_env="KEY_A", environ=KEYS)
    server.revoke_key(KEYS["KEY_A"])
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            provider.complete(request())
        assert (caught.value.kind, caught.value.status_code) == ("auth", 401)
    assert keys_used(server)["KEY_A"] == [401, 401]  # asked again: a provider-side outage heals


def test_other_errors_do_not_set_a_key_aside(server: MockLLMServer) -> None:
    provider = OpenAIProvider(
        "p", base_url=server.openai_base_url, api_key_env=["KEY_A", "KEY_B"], environ=KEYS, rng=random.Random(2)
    )
    server.script(MODEL, [402, 403, 429, 500])  # a 403 is a model's (no access to it), not the key's
    for _ in range(4):
        with pytest.raises(ProviderError):
            provider.complete(request())
    for _ in range(20):
        provider.complete(request())
    used = keys_used(server)
    assert 200 in used["KEY_A"] and 200 in used["KEY_B"]  # both keys still serve after the errors
    assert 401 not in used["KEY_A"] + used["KEY_B"]


# ---------------------------------------------------------------------------- validate

BAD_KEYS = """\
version: 1
providers:
  dup:
    kind: openai
    api_key_env: [KEY_A, KEY_B, {env: KEY_A, weight: 2}]
  empty:
    kind: anthropic
    api_key_env: []
  drained:
    kind: openai
    api_key_env: [{env: KEY_A, weight: 0}, {env: KEY_B, weight: 0}]
models:
  a: {provider: dup, model: gpt-4.1-mini-2025-04-14}
  b: {provider: empty, model: claude-sonnet-4-20250514}
  c: {provider: drained, model: gpt-4.1-mini-2025-04-14}
tiers: {t: [a, b, c]}
tasks:
  ask: {tier: t}
"""


def _diagnostics(tmp_path: Path, text: str) -> list[tuple[str, int, int, str, str]]:
    from policyrouter.errors import PolicyError
    from policyrouter.policy.loader import load_policy

    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [
        (d.code, d.location.line or 0, d.location.col or 0, d.message, d.hint)
        for d in caught.value.diagnostics
        if d.severity == "error"
    ]


def test_validate_reports_every_bad_key_list_with_its_line_and_a_hint(tmp_path: Path) -> None:
    found = _diagnostics(tmp_path, BAD_KEYS)
    assert [(code, line, col) for code, line, col, _, _ in found] == [
        ("duplicate-key-env", 5, 39),
        ("key-list-empty", 8, 18),
        ("all-keys-drained", 11, 18),
    ]
    assert "KEY_A twice" in found[0][3] and "weight" in found[0][4]
    assert "api_key_env: [EMPTY_API_KEY]" in found[1][4]
    assert "weight above 0" in found[2][4]


def test_validate_rejects_a_negative_weight(tmp_path: Path) -> None:
    text = BAD_KEYS.replace("{env: KEY_A, weight: 0}", "{env: KEY_A, weight: -1}")
    found = _diagnostics(tmp_path, text)
    negative = [(line, message, hint) for code, line, _, message, hint in found if code == "out-of-range"]
    assert len(negative) == 1 and negative[0][0] == 11
    assert "at least 0" in negative[0][1] and "drains" in negative[0][2]


@pytest.mark.parametrize(
    "entry",
    ["sk-proj-abcdefghijklmnopqrstuvwxyz012345", "{env: sk-ant-abcdefghijklmnopqrstuvwx0123}"],
)
def test_validate_finds_a_literal_key_in_any_entry(tmp_path: Path, entry: str) -> None:
    text = BAD_KEYS.replace("[KEY_A, KEY_B, {env: KEY_A, weight: 2}]", f"[KEY_A, {entry}]")
    found = _diagnostics(tmp_path, text)
    secrets = [(line, message) for code, line, _, message, _ in found if code == "literal-secret"]
    assert [line for line, _ in secrets] == [5]
    assert all("abcdefghijkl" not in message + hint for _, _, _, message, hint in found)


def test_a_valid_weighted_list_compiles_to_its_keys(tmp_path: Path) -> None:
    from policyrouter.policy.loader import load_policy

    text = BAD_KEYS.replace("[{env: KEY_A, weight: 0}, {env: KEY_B, weight: 0}]", "[{env: KEY_A, weight: 0}, KEY_B]")
    text = text.replace("[KEY_A, KEY_B, {env: KEY_A, weight: 2}]", "KEY_A")
    text = text.replace("api_key_env: []", "api_key_env: [K]")
    (tmp_path / "ok.yaml").write_text(text)
    policy = load_policy(tmp_path / "ok.yaml")
    keys = policy.providers["drained"].api_keys
    assert [(k.env, k.weight) for k in keys] == [("KEY_A", 0.0), ("KEY_B", 1.0)]
    assert [(k.env, k.weight) for k in policy.providers["dup"].api_keys] == [("KEY_A", 1.0)]


def test_a_weighted_list_serializes_without_a_warning(tmp_path: Path) -> None:
    """The plan's fingerprint dumps the policy: each entry keeps its branch of the key union."""
    import warnings

    from policyrouter.policy.loader import load_policy

    (tmp_path / "p.yaml").write_text(
        POLICY.format(url="http://127.0.0.1:1").replace("KEY_C]", "{env: KEY_C, weight: 0}]")
    )
    policy = load_policy(tmp_path / "p.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dumped = policy.model_dump(mode="json")
    assert dumped["providers"]["openai"]["api_key_env"] == ["KEY_A", "KEY_B", {"env": "KEY_C", "weight": 0.0}]


# ---------------------------------------------------------------------------- the cloud kinds

CLOUD_MODELS = {
    "azure_openai": "gpt4o-prod",  # a deployment
    "anthropic_bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic_vertex": "claude-sonnet-4-5@20250929",
}


def cloud_provider(kind: str, server: MockLLMServer, **kw: Any) -> Any:
    if kind == "azure_openai":
        return AzureOpenAIProvider("azure", endpoint=server.azure_endpoint, api_version="2024-10-21", **kw)
    if kind == "anthropic_bedrock":
        return AnthropicBedrockProvider("bedrock", region="us-east-1", base_url=server.bedrock_base_url, **kw)
    return AnthropicVertexProvider(
        "vertex", region="us-east5", project="my-project", base_url=server.vertex_base_url, **kw
    )


@pytest.mark.parametrize("kind", CLOUD_MODELS)
def test_cloud_kinds_rotate_their_keys_like_the_vendors_apis(server: MockLLMServer, kind: str) -> None:
    """Azure `api-key` keys, Bedrock API keys and Vertex access tokens: one key ring each."""
    set_aside: list[str] = []
    provider = cloud_provider(
        kind,
        server,
        api_key_env=["KEY_A", "KEY_B", "KEY_C"],
        environ=KEYS,
        rng=random.Random(3),
        events=lambda name, payload: set_aside.append(payload["key_env"]),
    )
    model = CLOUD_MODELS[kind]
    server.revoke_key(KEYS["KEY_B"])

    texts = [provider.complete(request(model)).text for _ in range(8)]
    streamed = [e.response for e in provider.stream(request(model)) if e.response is not None]
    texts.append(streamed[0].text if streamed and streamed[0] is not None else "")

    async def run() -> str:
        text = (await provider.acomplete(request(model))).text
        await provider.aclose()
        return text

    texts.append(asyncio.run(run()))
    assert all(texts)
    used = keys_used(server)
    assert used["KEY_B"] == [401]  # refused once, set aside, never sent again
    assert set(used["KEY_A"] + used["KEY_C"]) == {200} and len(used["KEY_A"] + used["KEY_C"]) == 10
    assert set_aside == ["KEY_B"]
    assert not any(secret in repr(provider) for secret in KEYS.values())
    provider.close()


def test_a_policy_key_list_reaches_the_azure_provider(server: MockLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  azure:
    kind: azure_openai
    endpoint: "{server.azure_endpoint}"
    api_version: "2024-10-21"
    api_key_env: [{{env: KEY_A, weight: 0}}, KEY_B]
models:
  gpt4o: {{provider: azure, model: gpt-4o-2024-11-20, deployment: gpt4o-prod}}
tiers: {{main: [gpt4o]}}
tasks: {{ask: {{tier: main, max_output_tokens: 50}}}}
"""
    )
    router = Router.from_path(path, environ=KEYS, clock=FakeClock(), rng=random.Random(3))
    set_aside: list[dict[str, Any]] = []
    router.on("key_set_aside", set_aside.append)
    assert router.complete("ask", "hi").text
    server.revoke_key(KEYS["KEY_B"])
    results = [router.complete("ask", "hi") for _ in range(3)]
    assert all([a.outcome for a in r.attempts] == ["ok"] for r in results)
    assert keys_used(server) == {"KEY_A": [200, 200, 200], "KEY_B": [200, 401], "KEY_C": []}
    assert [e["key_env"] for e in set_aside] == ["KEY_B"]
    router.close()


def test_keyless_credentials_read_no_key(server: MockLLMServer) -> None:
    """Entra ID and a Vertex credentials object send no key: nothing to read, nothing to rotate."""
    azure = cloud_provider("azure_openai", server, token_provider=lambda: "entra-token", environ={})
    assert azure.complete(request(CLOUD_MODELS["azure_openai"])).text
    [recorded] = server.requests
    assert "api-key" not in recorded.headers and recorded.headers["authorization"] == "***"
    azure.close()


# ---------------------------------------------------------------------------- the mock server


def test_mock_server_revokes_a_key_and_logs_only_its_digest(server: MockLLMServer) -> None:
    import anthropic
    import openai

    server.script(MODEL, [500])
    server.revoke_key("sk-revoked-0000")
    revoked = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-revoked-0000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        revoked.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        revoked.models.list()
    claude = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-revoked-0000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    fine = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-fine-1111", max_retries=0)
    with pytest.raises(openai.InternalServerError):  # the script was not consumed by the refusals
        fine.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert [r.status for r in server.requests_with_key("sk-revoked-0000")] == [401, 401, 401]
    assert [r.status for r in server.requests_with_key("sk-fine-1111")] == [500]
    assert "sk-revoked-0000" not in repr(server.requests)
    server.reset()
    assert fine.models.list() and revoked.models.list()  # reset forgets revoked keys
