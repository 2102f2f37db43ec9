"""Semantic checks (policyrouter.policy.checks), one behaviour per test.

Policies are written as YAML text so diagnostics carry real ``line:col`` positions;
``_check`` loads one with the safe YAML loader and runs ``check_policy`` on it.
"""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import pytest
import yaml

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy import checks
from policyrouter.policy.checks import CHECKS, CODES, check_policy, scan_secrets
from policyrouter.policy.models import Policy
from policyrouter.policy.source import SourceMap
from policyrouter.policy.yamlsrc import load_yaml

BASE: dict[str, Any] = {
    "version": 1,
    "providers": {
        "openai": {"kind": "openai", "api_key_env": "OPENAI_API_KEY"},
        "anthropic": {"kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
    },
    "models": {
        "mini": {
            "provider": "openai",
            "model": "gpt-4.1-mini-2025-04-14",
            "pricing": {"input": 0.4, "output": 1.6},
            "context_window": 1047576,
            "max_output_tokens": 32768,
        },
        "haiku": {
            "provider": "anthropic",
            "model": "claude-haiku-4-5-20251001",
            "pricing": {"input": 1.0, "output": 5.0},
            "context_window": 200000,
            "max_output_tokens": 64000,
        },
        "sonnet": {
            "provider": "anthropic",
            "model": "claude-sonnet-4-5-20250929",
            "pricing": {"input": 3.0, "output": 15.0},
            "context_window": 200000,
            "max_output_tokens": 64000,
        },
    },
    "tiers": {"simple": ["mini", "haiku"], "complex": ["sonnet", "mini"]},
    "retry_policies": {"default": {"max_attempts": 3}},
    "circuit_breakers": {"default": {"failure_threshold": 5}},
    "budgets": {
        "daily": {
            "scope": "global",
            "window": "day",
            "limit_usd": 100,
            "soft_limit": 0.8,
            "on_soft_limit": {"degrade_to": "simple"},
        }
    },
    "tasks": {
        "summarize": {
            "tier": "simple",
            "max_input_tokens": 8000,
            "max_output_tokens": 500,
            "temperature": 0.2,
            "cache": {"ttl_s": 60},
            "routes": [{"when": {"metadata": {"customer_tier": "enterprise"}}, "tier": "complex"}],
        }
    },
}


def _check(text: str, env: str | None = None) -> list[Diagnostic]:
    doc = load_yaml(text.encode(), "policy.yaml")
    assert doc.data is not None, doc.diagnostics
    source = SourceMap(doc.values, doc.keys, {"policy.yaml": doc.lines}, "policy.yaml")
    return check_policy(Policy.model_validate(doc.data), source, env)


def _run(data: dict[str, Any]) -> list[Diagnostic]:
    return _check(yaml.safe_dump(data, sort_keys=False))


def _policy(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes: ``_policy(**{"tasks.summarize.tier": "x"})``; None deletes."""
    data = copy.deepcopy(BASE)
    for dotted_path, value in changes.items():
        *parents, last = dotted_path.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def _codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def _only(diags: list[Diagnostic], code: str) -> Diagnostic:
    found = [d for d in diags if d.code == code]
    assert len(found) == 1, (code, [d.one_line() for d in diags])
    return found[0]


def test_base_policy_is_clean() -> None:
    assert _run(BASE) == []


# --------------------------------------------------------------------------- references


def test_unknown_tier_points_at_the_value_with_did_you_mean() -> None:
    text = yaml.safe_dump(_policy(**{"tasks.summarize.tier": "smiple"}), sort_keys=False)
    d = _only(_check(text), "unknown-reference")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "tier: smiple" in s)
    assert (d.severity, d.location.line, d.path) == ("error", line, "tasks.summarize.tier")
    assert d.location.col == text.splitlines()[line - 1].index("smiple") + 1
    assert "`smiple`" in d.message and d.hint == "did you mean `simple`?"


@pytest.mark.parametrize(
    ("change", "path", "what"),
    [
        ({"models.mini.provider": "opnai"}, "models.mini.provider", "provider"),
        ({"tiers.simple": ["mini", "haiku-4"]}, "tiers.simple[1]", "model"),
        ({"tasks.summarize.retry": "defualt"}, "tasks.summarize.retry", "retry policy"),
        ({"models.mini.circuit_breaker": "defalt"}, "models.mini.circuit_breaker", "circuit breaker"),
        ({"tasks.summarize.budgets": ["daly"]}, "tasks.summarize.budgets[0]", "budget"),
        ({"budgets.daily.tasks": ["sumarize"]}, "budgets.daily.tasks[0]", "task"),
        ({"budgets.daily.on_soft_limit": {"degrade_to": "simpel"}}, "budgets.daily.on_soft_limit.degrade_to", "tier"),
    ],
)
def test_unknown_references(change: dict[str, Any], path: str, what: str) -> None:
    diags = [d for d in _run(_policy(**change)) if d.code == "unknown-reference"]
    assert [d.path for d in diags] == [path]
    assert f"unknown {what} " in diags[0].message
    assert diags[0].hint.startswith("did you mean")


def test_route_tier_reference() -> None:
    data = _policy()
    data["tasks"]["summarize"]["routes"][0]["tier"] = "complx"
    d = _only(_run(data), "unknown-reference")
    assert d.path == "tasks.summarize.routes[0].tier" and d.hint == "did you mean `complex`?"


def test_unknown_reference_without_close_match_lists_names() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.tier": "zzzzzz"})), "unknown-reference")
    assert d.hint == "defined tiers: `complex`, `simple`"


def test_unknown_reference_when_nothing_is_defined() -> None:
    data = _policy(**{"tasks.summarize.retry": "standard"})
    data["retry_policies"] = {}
    d = _only(_run(data), "unknown-reference")
    assert "no retry policy is defined" in d.hint


# --------------------------------------------------------------------------- tiers


def test_empty_tier_and_duplicate_member() -> None:
    data = _policy(**{"tiers.simple": ["mini", "haiku", "mini"]})
    data["tiers"]["spare"] = []
    data["tasks"]["other"] = {"tier": "spare", "max_input_tokens": 100, "max_output_tokens": 10}
    diags = _run(data)
    assert _only(diags, "duplicate-tier-member").path == "tiers.simple[2]"
    assert _only(diags, "empty-tier").path == "tiers.spare"


def test_unused_definitions_are_warnings() -> None:
    data = _policy()
    data["tiers"]["spare"] = ["mini"]
    data["models"]["unused"] = dict(BASE["models"]["mini"])
    data["providers"]["gw"] = {"kind": "openai_compatible", "base_url": "https://gw/v1", "api_key_env": "GW"}
    data["retry_policies"]["patient"] = {"max_attempts": 5}
    data["circuit_breakers"]["strict"] = {"failure_threshold": 1}
    diags = [d for d in _run(data) if d.code == "unused-definition"]
    assert {d.path for d in diags} == {
        "tiers.spare",
        "models.unused",
        "providers.gw",
        "retry_policies.patient",
        "circuit_breakers.strict",
    }
    assert all(d.severity == "warning" for d in diags)


def test_default_retry_policy_and_breaker_count_as_used() -> None:
    assert "unused-definition" not in _codes(_run(BASE))


# --------------------------------------------------------------------------- providers


def test_provider_without_key() -> None:
    d = _only(_run(_policy(**{"providers.openai": {"kind": "openai"}})), "provider-no-key")
    assert d.severity == "error" and d.path == "providers.openai"
    assert "api_key_env" in d.hint


def test_mock_provider_needs_no_key() -> None:
    data = _policy(**{"providers.openai": {"kind": "mock"}, "providers.anthropic": {"kind": "mock"}})
    assert _run(data) == []


def test_mock_settings_on_real_provider() -> None:
    data = _policy(**{"providers.openai.mock": {"reply": "hi"}})
    d = _only(_run(data), "provider-setting-ignored")
    assert d.path == "providers.openai.mock" and d.severity == "warning"


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://gw.example.com/v1", True),
        ("http://localhost:8080/v1", False),
        ("http://127.0.0.1:8000", False),
        ("https://gw.example.com/v1", False),
    ],
)
def test_insecure_base_url(url: str, warns: bool) -> None:
    data = _policy(**{"providers.openai.base_url": url})
    assert ("insecure-base-url" in _codes(_run(data))) is warns


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("provider", "model_id", "pinned", "warns"),
    [
        ("openai", "gpt-4.1-mini", None, True),
        ("openai", "gpt-4o", None, True),
        ("openai", "gpt-4.1-mini-2025-04-14", None, False),
        ("openai", "gpt-3.5-turbo-0125", None, False),
        ("openai", "o3-2025-04-16", None, False),
        ("anthropic", "claude-sonnet-4-5", None, True),
        ("anthropic", "claude-3-5-sonnet-latest", None, True),
        ("anthropic", "claude-3-5-sonnet-latest", True, True),
        ("anthropic", "claude-sonnet-4-5-20250929", None, False),
        ("openai", "gpt-4.1-mini", True, False),
    ],
)
def test_unpinned_model(provider: str, model_id: str, pinned: bool | None, warns: bool) -> None:
    data = _policy(**{"models.mini.model": model_id, "models.mini.provider": provider})
    if pinned is not None:
        data["models"]["mini"]["pinned"] = pinned
    diags = [d for d in _run(data) if d.code == "unpinned-model"]
    assert bool(diags) is warns
    if warns:
        assert diags[0].path == "models.mini.model" and diags[0].severity == "warning"


def test_unpinned_gateway_model_asks_for_pinned_true() -> None:
    data = _policy()
    data["providers"]["gw"] = {"kind": "openai_compatible", "base_url": "https://gw/v1", "api_key_env": "GW"}
    data["models"]["mini"].update(provider="gw", model="meta-llama/Llama-3.3-70B-Instruct-Turbo")
    d = _only(_run(data), "unpinned-model")
    assert "cannot tell" in d.message and "pinned: true" in d.hint
    data["models"]["mini"]["pinned"] = True
    assert "unpinned-model" not in _codes(_run(data))


def test_mock_models_are_never_unpinned() -> None:
    data = _policy(**{"providers.openai": {"kind": "mock"}, "models.mini.model": "gpt-4o"})
    assert "unpinned-model" not in _codes(_run(data))


def test_model_provider_mismatch() -> None:
    data = _policy(**{"models.haiku.provider": "openai"})
    d = _only(_run(data), "model-provider-mismatch")
    assert d.path == "models.haiku.provider"


# --------------------------------------------------------------------------- state, retries


def test_redis_state_needs_url_env_and_ignored_settings_warn() -> None:
    diags = _run(_policy(state={"backend": "redis", "path": "x.db"}))
    assert _only(diags, "state-no-url").severity == "error"
    assert _only(diags, "state-setting-ignored").path == "state.path"


def test_retry_non_transient_and_inverted_backoff() -> None:
    rp = {"max_attempts": 2, "retry_on": ["timeout", "bad_request"], "backoff": {"initial_s": 50, "max_s": 10}}
    diags = _run(_policy(**{"retry_policies.default": rp}))
    assert _only(diags, "retry-non-transient").path == "retry_policies.default.retry_on[1]"
    assert _only(diags, "backoff-inverted").path == "retry_policies.default.backoff.initial_s"


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_soft_limit_outside_open_interval(value: float) -> None:
    d = _only(_run(_policy(**{"budgets.daily.soft_limit": value})), "soft-limit-range")
    assert d.path == "budgets.daily.soft_limit" and d.severity == "error"


def test_on_soft_limit_without_soft_limit_and_vice_versa() -> None:
    diags = _run(_policy(**{"budgets.daily.soft_limit": None}))
    assert _only(diags, "soft-limit-action-unused").severity == "error"
    diags = _run(_policy(**{"budgets.daily.on_soft_limit": None}))
    assert _only(diags, "soft-limit-no-action").severity == "warning"


def test_budget_key_timezone_and_coverage() -> None:
    budget = {"scope": "user", "window": "day", "limit_usd": 10, "key": "x", "timezone": "Mars/Olympus"}
    data = _policy(**{"budgets.daily": budget, "tasks.summarize.budgets": []})
    diags = _run(data)
    assert _only(diags, "budget-key-ignored").path == "budgets.daily.key"
    assert _only(diags, "invalid-timezone").path == "budgets.daily.timezone"
    assert _only(diags, "budget-covers-nothing").path == "budgets.daily"


def test_valid_timezone_is_accepted() -> None:
    assert _run(_policy(**{"budgets.daily.timezone": "Europe/Berlin"})) == []


def test_budget_below_one_request() -> None:
    diags = _run(_policy(**{"budgets.daily.limit_usd": 0.01}))
    d = _only(diags, "budget-below-request")
    # worst case: 8000 in + 500 out on sonnet (3.00 / 15.00 per 1M) = 0.0315
    assert d.path == "budgets.daily.limit_usd" and "$0.0315" in d.message and "`sonnet`" in d.message


def test_budget_that_fits_one_request_is_fine() -> None:
    assert "budget-below-request" not in _codes(_run(_policy(**{"budgets.daily.limit_usd": 0.04})))


def test_budget_without_max_input_warns_unbounded() -> None:
    diags = _run(_policy(**{"tasks.summarize.max_input_tokens": None, "budgets.daily.limit_usd": 0.0001}))
    d = _only(diags, "budget-unbounded-input")
    assert d.path == "tasks.summarize" and "budget-below-request" not in _codes(diags)


def test_missing_pricing_under_budget() -> None:
    d = _only(_run(_policy(**{"models.haiku.pricing": None})), "missing-pricing")
    assert d.path == "models.haiku" and d.severity == "error"


def test_missing_pricing_without_budget_is_fine() -> None:
    data = _policy(**{"models.haiku.pricing": None})
    data["budgets"] = {}
    assert _run(data) == []


def test_task_opting_out_of_budgets_needs_no_pricing() -> None:
    data = _policy(**{"models.haiku.pricing": None, "tasks.summarize.budgets": []})
    assert "missing-pricing" not in _codes(_run(data))


def test_degrade_to_not_cheaper() -> None:
    data = _policy(**{"budgets.daily.on_soft_limit": {"degrade_to": "complex"}})
    d = _only(_run(data), "degrade-not-cheaper")
    assert d.path == "budgets.daily.on_soft_limit.degrade_to" and d.severity == "warning"


# --------------------------------------------------------------------------- capacity


def test_context_overflow_names_the_smallest_window() -> None:
    diags = _run(_policy(**{"tasks.summarize.max_input_tokens": 199000, "tasks.summarize.max_output_tokens": 2000}))
    d = _only(diags, "context-overflow")
    assert d.path == "tasks.summarize.max_input_tokens" and "200000" in d.message


def test_context_overflow_through_degrade_to() -> None:
    data = _policy()
    data["models"]["small"] = dict(BASE["models"]["mini"], context_window=4000)
    data["tiers"]["cheap"] = ["small"]
    data["tiers"]["simple"] = ["sonnet"]
    data["budgets"]["daily"]["on_soft_limit"] = {"degrade_to": "cheap"}
    d = _only(_run(data), "context-overflow")
    assert "`small`" in d.message and "tier `cheap`" in d.message


def test_output_over_model_limit() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.max_output_tokens": 40000})), "output-over-model-limit")
    assert d.path == "tasks.summarize.max_output_tokens" and "`mini`" in d.message


def test_tpm_below_one_request() -> None:
    d = _only(_run(_policy(**{"models.haiku.limits": {"tpm": 5000}})), "tpm-below-request")
    assert "`haiku`" in d.message


# --------------------------------------------------------------------------- tasks and routes


def test_cache_nondeterministic() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.temperature": 0.9})), "cache-nondeterministic")
    assert d.path == "tasks.summarize.cache"
    forced = _policy(**{"tasks.summarize.temperature": 0.9, "tasks.summarize.cache": {"ttl_s": 5, "force": True}})
    assert "cache-nondeterministic" not in _codes(_run(forced))


def test_cache_without_temperature_warns() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.temperature": None})), "cache-nondeterministic")
    assert "unset" in d.message


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ({"input_tokens": {"gt": 5000, "lt": 4000}}, "empty"),
        ({"input_tokens": {"gt": 5, "lt": 6}}, "empty"),
        ({"input_tokens": {"gte": 9000}}, "max_input_tokens is 8000"),
        ({"tenant": []}, "tenant list is empty"),
    ],
)
def test_route_never_matches(when: dict[str, Any], why: str) -> None:
    data = _policy()
    data["tasks"]["summarize"]["routes"] = [{"when": when, "tier": "complex"}]
    d = _only(_run(data), "route-never-matches")
    assert d.path == "tasks.summarize.routes[0].when" and why in d.message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {"metadata": {"a": 1}}),
        ({"metadata": {"a": "x"}}, {"metadata": {"a": "x"}}),
        ({"input_tokens": {"gt": 1000}}, {"input_tokens": {"gt": 2000}}),
        ({"metadata": {"a": ["x", "y"]}}, {"metadata": {"a": "x"}, "tenant": ["t"]}),
        ({"tenant": ["a", "b"]}, {"tenant": ["a"]}),
    ],
)
def test_route_shadowed(first: dict[str, Any], second: dict[str, Any]) -> None:
    data = _policy()
    data["tasks"]["summarize"]["routes"] = [
        {"name": "first", "when": first, "tier": "complex"},
        {"name": "second", "when": second, "tier": "complex"},
    ]
    d = _only(_run(data), "route-shadowed")
    assert d.path == "tasks.summarize.routes[1].when" and "`first`" in d.message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"input_tokens": {"gt": 2000}}, {"input_tokens": {"gt": 1000}}),
        ({"metadata": {"a": "x"}}, {"metadata": {"a": "y"}}),
        ({"metadata": {"a": 1}}, {"metadata": {"a": True}}),
        ({"metadata": {"a": "x"}}, {"tenant": ["t"]}),
    ],
)
def test_route_not_shadowed(first: dict[str, Any], second: dict[str, Any]) -> None:
    data = _policy()
    data["tasks"]["summarize"]["routes"] = [{"when": first, "tier": "complex"}, {"when": second, "tier": "complex"}]
    assert _run(data) == []


def test_deadline_and_ignored_overflow_setting() -> None:
    data = _policy(**{"tasks.summarize.deadline_s": 5, "tasks.summarize.timeout_s": 30})
    assert _only(_run(data), "deadline-below-timeout").path == "tasks.summarize.deadline_s"
    data = _policy(**{"tasks.summarize.on_input_overflow": "truncate_end"})
    data["budgets"] = {}
    data["tasks"]["summarize"].pop("max_input_tokens")
    assert _only(_run(data), "task-setting-ignored").path == "tasks.summarize.on_input_overflow"


def test_retry_storm_and_its_cap() -> None:
    data = _policy(**{"retry_policies.default.max_attempts": 6})  # 6 x 2 models = 12
    d = _only(_run(data), "retry-storm")
    assert "12 upstream calls" in d.message and d.path == "tasks.summarize"
    data["tasks"]["summarize"]["max_total_attempts"] = 6
    assert "retry-storm" not in _codes(_run(data))


def test_unreachable_fallback() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.max_total_attempts": 1})), "unreachable-fallback")
    assert d.path == "tasks.summarize.max_total_attempts"


def test_response_schema_structure() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "strnig"}}, "required": "a"}
    diags = [d for d in _run(_policy(**{"tasks.summarize.response_schema": schema})) if d.severity == "error"]
    assert {d.path for d in diags} == {
        "tasks.summarize.response_schema.properties.a.type",
        "tasks.summarize.response_schema.required",
    }


def test_capability_missing() -> None:
    data = _policy(**{"tasks.summarize.response_schema": {"type": "object"}})
    data["models"]["haiku"]["capabilities"] = ["tools"]
    assert _only(_run(data), "capability-missing").severity == "warning"


# --------------------------------------------------------------------------- secrets

SECRETS = {
    "openai": ("sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4", "an OpenAI API key"),
    "openai-project": ("sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2", "an OpenAI project API key"),
    "anthropic": ("sk-ant-api03-" + "Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8", "an Anthropic API key"),
    "aws": ("AKIA" + "IOSFODNN7EXAMPLE", "an AWS access key id"),
    "bearer": ("Bearer " + "eyJhbGciOi.J9x2kQ", "a bearer token"),
    "url": ("https://admin:" + "hunter2@db.example.com/", "a URL with an embedded password"),
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_literal_secret_in_a_header_never_echoed(name: str) -> None:
    secret, what = SECRETS[name]
    data = _policy(**{"providers.openai.headers": {"X-Trace": secret}})
    d = _only(_run(data), "literal-secret")
    assert d.severity == "error" and what in d.message and d.path == "providers.openai.headers.X-Trace"
    assert "api_key_env" in d.hint
    for text in (d.message, d.hint, d.path):
        assert secret not in text and secret[-8:] not in text


def test_secret_in_base_url_credentials() -> None:
    data = _policy(**{"providers.openai.base_url": "https://user:pa55word@proxy.example.com/v1"})
    assert "embedded password" in _only(_run(data), "literal-secret").message


@pytest.mark.parametrize("key", ["Authorization", "x-api-key", "token"])
def test_credential_named_header_with_any_literal_value(key: str) -> None:
    d = _only(_run(_policy(**{"providers.openai.headers": {key: "abc"}})), "literal-secret")
    assert f"`{key}`" in d.message and "abc" not in d.message


def test_scan_secrets_on_raw_data_finds_unknown_fields_and_comments() -> None:
    key = "sk-" + "proj-" + "k3y" * 10
    text = (
        "version: 1\n"
        "providers:\n"
        "  openai:\n"
        "    kind: openai\n"
        "    api_key: not-an-env-reference-123\n"
        f"    # old key: {key}\n"
        "    apiKey: ${OPENAI_API_KEY}\n"
        "    gw_secret: Zq8kW3xP0vN7mB2cR5tY9uL1\n"
        "tasks: {risk-assessment-classification-v2: {tier: x}}\n"
    )
    doc = load_yaml(text.encode(), "p.yaml")
    source = SourceMap(doc.values, doc.keys, {"p.yaml": doc.lines}, "p.yaml")
    diags = scan_secrets(doc.data, source)
    assert [(d.location.line, d.location.col) for d in diags] == [(5, 14), (6, 16), (8, 16)]
    assert "credential under `api_key`" in diags[0].message
    assert "OpenAI project API key" in diags[1].message
    assert "high-entropy" in diags[2].message
    for d in diags:
        assert key not in d.message and "not-an-env" not in d.message


def test_scan_secrets_survives_self_referencing_data() -> None:
    loop: list[Any] = ["x"]
    loop.append(loop)
    assert scan_secrets({"a": loop}, SourceMap()) == []


def test_model_ids_and_names_are_not_secrets() -> None:
    data = _policy()
    data["tasks"]["task-risk-assessment-classification-v2"] = data["tasks"].pop("summarize")
    data["tasks"]["task-risk-assessment-classification-v2"]["system"] = "Use Bearer tokens wisely; see https://x.io/a:b"
    assert _run(data) == []


# --------------------------------------------------------------------------- driver


def test_env_is_stamped_and_output_sorted() -> None:
    data = _policy(**{"tasks.summarize.tier": "smiple", "providers.openai": {"kind": "openai"}})
    diags = _check(yaml.safe_dump(data, sort_keys=False), env="prod")
    assert diags and all(d.env == "prod" for d in diags)
    assert diags == sorted(diags, key=Diagnostic.sort_key)


def test_a_crashing_check_becomes_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: Any) -> list[Diagnostic]:
        raise KeyError("bug")

    monkeypatch.setattr(checks, "CHECKS", (("boom", boom), *CHECKS))
    diags = _run(_policy(**{"tasks.summarize.tier": "smiple"}))
    assert _codes(diags).count("internal-check-error") == 1
    assert "unknown-reference" in _codes(diags)  # the other checks still ran


def test_codes_table_is_complete() -> None:
    doc = checks.__doc__ or ""
    table = set(re.findall(r"^([a-z]+(?:-[a-z]+)+)\s+(?:error|warning)\s", doc, re.MULTILINE))
    assert table == set(CODES)
    for code, (severity, _meaning) in CODES.items():
        assert re.search(rf"^{code}\s+{severity}\s", doc, re.MULTILINE), code


def test_every_emitted_code_is_documented_with_its_severity() -> None:
    data = _policy(
        **{
            "tasks.summarize.tier": "smiple",
            "providers.openai": {"kind": "openai", "mock": {"reply": "x"}},
            "budgets.daily.soft_limit": 2,
            "tasks.summarize.temperature": 1.0,
        }
    )
    for d in _run(data):
        assert CODES[d.code][0] == d.severity


# --------------------------------------------------------------------------- guards


def test_invalid_guard_regex() -> None:
    guards = {
        "block": [{"name": "ok", "regex": "(?i)ignore previous"}, {"name": "bad", "regex": "([a-z"}],
        "redact": {"patterns": [{"name": "ticket", "regex": "TICKET-\\d+("}]},
    }
    diags = [d for d in _run(_policy(**{"tasks.summarize.guards": guards})) if d.code == "invalid-regex"]
    assert [d.path for d in diags] == [
        "tasks.summarize.guards.block[1].regex",
        "tasks.summarize.guards.redact.patterns[0].regex",
    ]
    assert "`bad`" in diags[0].message and "position" in diags[0].message


def test_log_content_without_redaction() -> None:
    d = _only(_run(_policy(**{"tasks.summarize.log_content": True})), "log-content-unredacted")
    assert d.path == "tasks.summarize.log_content"
    redacted = _policy(**{"tasks.summarize.log_content": True, "tasks.summarize.guards": {"redact": {}}})
    assert _run(redacted) == []


def test_readme_documents_every_check_code() -> None:
    from pathlib import Path

    from policyrouter.policy.checks import CODES

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [code for code in CODES if code != "internal-check-error" and f"`{code}`" not in readme]
    assert missing == []


def test_schema_errors_do_not_hide_semantic_problems(tmp_path: pathlib.Path) -> None:
    """One run reports every problem: a schema error in one definition does not stop the
    reference and chain checks on the others, and names set aside are not 'unknown'."""
    from policyrouter.policy.loader import validate_paths

    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "providers:\n"
        "  openai: {kind: openai, api_key_env: OPENAI_API_KEY}\n"
        "models:\n"
        "  mini:\n"
        "    provider: openai\n"
        "    model: gpt-4.1-mini-2025-04-14\n"
        "    pricing: {input: -1, output: 1.6}\n"  # schema error: mini is set aside
        "  big:\n"
        "    provider: openai\n"
        "    model: gpt-4.1-2025-04-14\n"
        "    pricing: {input: 2, output: 8}\n"
        "tiers:\n"
        "  simple: [mini, big, big]\n"  # duplicate member (mini: set aside, not unknown)
        "  empty: []\n"
        "tasks:\n"
        "  summarize: {tier: simpel, max_output_tokens: 100}\n"  # unknown tier
    )
    report = validate_paths([str(path)])
    got = {(d.code, d.location.line) for d in report.diagnostics}
    assert ("out-of-range", 8) in got
    assert ("duplicate-tier-member", 14) in got
    assert ("empty-tier", 15) in got
    assert ("unknown-reference", 17) in got
    assert not any(d.code == "unknown-reference" and "`mini`" in d.message for d in report.diagnostics)
    assert not any(d.code == "unused-definition" for d in report.diagnostics)


def test_a_name_set_aside_in_one_section_does_not_hide_the_same_name_missing_in_another(
    tmp_path: pathlib.Path,
) -> None:
    """Setting aside model `fast` (a schema error) must not silence "unknown tier `fast`":
    a set-aside name is excused only where it is referenced as what it was."""
    from policyrouter.policy.loader import validate_paths

    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "providers:\n"
        "  openai: {kind: openai, api_key_env: OPENAI_API_KEY}\n"
        "models:\n"
        "  fast: {provider: openai, model: gpt-4o-mini-2024-07-18, pricing: {input: lots, output: 1}}\n"
        "  good: {provider: openai, model: gpt-4o-2024-08-06, pricing: {input: 1, output: 1}}\n"
        "tiers:\n"
        "  main: [good, fast]\n"  # the model set aside: not reported
        "tasks:\n"
        "  s: {tier: fast, max_output_tokens: 20}\n"  # no tier `fast`: reported
    )
    report = validate_paths([str(path)])
    unknown = [(d.location.line, d.message) for d in report.diagnostics if d.code == "unknown-reference"]
    assert unknown == [(10, "task `s` refers to unknown tier `fast`")]
