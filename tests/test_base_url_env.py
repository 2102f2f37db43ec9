"""``base_url_env``: a provider's URL from the environment (a deployment's gateway, a test
server's random port), validated in the policy and read when the router is built."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from policyrouter import ConfigurationError, PolicyError, Router
from policyrouter.diagnostics import Location
from policyrouter.policy.loader import validate_paths
from policyrouter.schema import policy_json_schema
from policyrouter.testing import MockLLMServer

POLICY = """\
version: 1
providers:
  openai: {kind: openai, api_key_env: OPENAI_API_KEY, base_url_env: OPENAI_BASE_URL}
  claude: {kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url_env: ANTHROPIC_BASE_URL}
  gateway: {kind: openai_compatible, api_key_env: GATEWAY_API_KEY, base_url_env: GATEWAY_URL}
models:
  mini: {provider: openai, model: gpt-4.1-mini-2025-04-14, pricing: {input: 0.4, output: 1.6}}
  haiku: {provider: claude, model: claude-haiku-4-5-20251001, pricing: {input: 1, output: 5}}
  llama: {provider: gateway, model: llama-3.3-70b, pinned: true, pricing: {input: 1, output: 1}}
tiers: {main: [mini, haiku, llama]}
tasks:
  ask: {tier: main, max_output_tokens: 50, temperature: 0}
"""
SECRET_URL = "http://user:hunter2@127.0.0.1:9/v1"


def write_policy(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_requests_go_to_the_urls_named_by_the_environment(tmp_path: Path, mock_llm_server: MockLLMServer) -> None:
    mock_llm_server.script("gpt-4.1-mini-2025-04-14", [401])  # auth: falls back at once
    mock_llm_server.script("claude-haiku-4-5-20251001", [401])
    environ = {
        "OPENAI_API_KEY": "k1",
        "ANTHROPIC_API_KEY": "k2",
        "GATEWAY_API_KEY": "k3",
        "OPENAI_BASE_URL": mock_llm_server.openai_base_url,
        "ANTHROPIC_BASE_URL": mock_llm_server.anthropic_base_url,
        "GATEWAY_URL": mock_llm_server.openai_base_url,
    }
    router = Router.from_path(write_policy(tmp_path), environ=environ)
    result = router.complete("ask", "hello there")
    assert result.model == "llama"
    assert [r.protocol for r in mock_llm_server.requests] == ["openai", "anthropic", "openai"]
    assert [r.model for r in mock_llm_server.requests] == [
        "gpt-4.1-mini-2025-04-14",
        "claude-haiku-4-5-20251001",
        "llama-3.3-70b",
    ]


@pytest.mark.parametrize("missing", ["OPENAI_BASE_URL", "GATEWAY_URL", "ANTHROPIC_BASE_URL"])
def test_a_missing_variable_fails_the_build_naming_it(tmp_path: Path, missing: str) -> None:
    environ = {"OPENAI_BASE_URL": SECRET_URL, "ANTHROPIC_BASE_URL": SECRET_URL, "GATEWAY_URL": SECRET_URL}
    environ[missing] = ""
    with pytest.raises(ConfigurationError) as info:
        Router.from_path(write_policy(tmp_path), environ=environ)
    assert missing in str(info.value) and "base URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_value_that_is_not_a_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    environ = {"ANTHROPIC_BASE_URL": SECRET_URL, "GATEWAY_URL": SECRET_URL}
    environ["OPENAI_BASE_URL"] = "sk-live-abcdef0123456789"
    with pytest.raises(ConfigurationError) as info:
        Router.from_path(write_policy(tmp_path), environ=environ)
    assert "OPENAI_BASE_URL" in str(info.value) and "http" in str(info.value)
    assert "sk-live" not in str(info.value)


def test_both_base_urls_is_an_error_at_the_line_with_a_hint(tmp_path: Path) -> None:
    text = POLICY.replace(
        "base_url_env: OPENAI_BASE_URL}", "base_url_env: OPENAI_BASE_URL, base_url: 'http://127.0.0.1:1/v1'}"
    )
    path = write_policy(tmp_path, text)
    report = validate_paths([str(path)])
    found = [d for d in report.diagnostics if d.code == "base-url-conflict"]
    assert len(found) == 1
    assert found[0].location == Location(str(path), 3, text.splitlines()[2].index("base_url_env") + 1)
    assert found[0].path == "providers.openai.base_url_env"
    assert "base_url: null" in found[0].hint
    with pytest.raises(PolicyError):
        Router.from_path(path, environ={})


def test_an_overlay_switches_a_literal_url_to_a_variable_with_base_url_null(tmp_path: Path) -> None:
    text = POLICY.replace("base_url_env: GATEWAY_URL}", "base_url: 'https://gw.example/v1'}") + (
        "environments:\n"
        "  ci:\n"
        "    providers:\n"
        "      gateway: {base_url: null, base_url_env: GATEWAY_URL}\n"
        "  broken:\n"
        "    providers:\n"
        "      gateway: {base_url_env: GATEWAY_URL}\n"
    )
    path = write_policy(tmp_path, text)
    report = validate_paths([str(path)], all_envs=True)
    conflicts = [d for d in report.diagnostics if d.code == "base-url-conflict"]
    assert [(d.env, d.location.line) for d in conflicts] == [("broken", 19)]
    assert report.policies["ci"].providers["gateway"].base_url is None
    assert report.policies[None].providers["gateway"].base_url == "https://gw.example/v1"


def test_openai_compatible_accepts_base_url_env_instead_of_base_url(tmp_path: Path) -> None:
    assert validate_paths([str(write_policy(tmp_path))]).ok
    text = POLICY.replace(", base_url_env: GATEWAY_URL}", "}")
    report = validate_paths([str(write_policy(tmp_path, text))])
    [problem] = [d for d in report.diagnostics if d.severity == "error"]
    assert problem.message == "provider kind `openai_compatible` requires `base_url` or `base_url_env`"


def test_base_url_env_must_be_a_variable_name_not_a_url(tmp_path: Path) -> None:
    text = POLICY.replace("base_url_env: OPENAI_BASE_URL", "base_url_env: 'https://api.openai.com/v1'")
    report = validate_paths([str(write_policy(tmp_path, text))])
    [problem] = [d for d in report.diagnostics if d.severity == "error"]
    assert (problem.code, problem.path) == ("invalid-format", "providers.openai.base_url_env")
    assert "name* of an environment variable" in problem.hint


def test_the_schema_agrees_one_base_url_and_compatible_needs_one() -> None:
    validator = jsonschema.Draft202012Validator(policy_json_schema())

    def errors(provider: dict[str, str]) -> list[str]:
        return [e.message for e in validator.iter_errors({"version": 1, "providers": {"p": provider}})]

    assert errors({"kind": "openai_compatible", "base_url_env": "GW_URL", "api_key_env": "K"}) == []
    assert errors({"kind": "openai", "base_url_env": "U", "base_url": "https://x"})
    assert errors({"kind": "openai_compatible", "api_key_env": "K"})
    assert json.dumps(policy_json_schema()).count("base_url_env") >= 2


def test_the_shipped_test_environment_points_every_provider_at_variables() -> None:
    policies = Path(__file__).resolve().parent.parent / "policies"
    report = validate_paths([str(policies)], env="test")
    assert report.ok
    providers = report.policies["test"].providers
    assert {name: (p.base_url, p.base_url_env) for name, p in providers.items()} == {
        "openai": (None, "OPENAI_BASE_URL"),
        "anthropic": (None, "ANTHROPIC_BASE_URL"),
        "gateway": (None, "GATEWAY_BASE_URL"),
    }


def test_a_plain_http_url_to_a_remote_host_is_warned_without_its_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remote = "http://user:hunter2@gateway.example.com:8080/v1"
    environ = {"OPENAI_BASE_URL": SECRET_URL, "ANTHROPIC_BASE_URL": "https://api.example.com", "GATEWAY_URL": remote}
    with caplog.at_level("WARNING", logger="policyrouter"):
        Router.from_path(write_policy(tmp_path), environ=environ).close()
    warned = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warned) == 1  # the local test server (127.0.0.1) and https are fine
    assert "'gateway.example.com'" in warned[0] and "GATEWAY_URL" in warned[0]
    assert "hunter2" not in caplog.text and "user:" not in caplog.text
