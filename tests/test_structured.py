"""Structured outputs through the real SDKs to MockLLMServer: native modes (OpenAI
json_schema, Anthropic forced tool use), instructions for models without them,
validation, one bounded repair that shows the model its errors, fallback, then
InvalidOutput with the raw text and the errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _shapes_kit import PLAIN, PROVIDERS, UPSTREAM, make_router, other
from pydantic import BaseModel, ConfigDict

from policyrouter import InvalidOutput, InvalidRequest
from policyrouter.testing import Fault, MockLLMServer

VALID = '{"city": "Lyon", "population": 522250}'
WRONG_TYPE = '{"city": "Lyon", "population": "many"}'
NOT_JSON = "Lyon has about half a million people."


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    population: int


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.mark.parametrize("first", PROVIDERS)
def test_response_model_uses_the_native_mode(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=VALID)
    router = make_router(server, tmp_path)
    r = router.complete(f"extract_{first}_solo", "Biggest city near the Rhone?", response_model=City)
    assert r.parsed == City(city="Lyon", population=522250)
    assert json.loads(r.text) == {"city": "Lyon", "population": 522250}
    assert r.tool_calls == () and r.finish_reason == "stop"
    body = server.requests_for(UPSTREAM[first])[0].body
    schema = City.model_json_schema()
    if first == "gpt":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "City" and fmt["json_schema"]["schema"] == schema
        # pydantic's schema lists every field as required and forbids extras: strict-compatible
        assert fmt["json_schema"]["strict"] is True
    else:
        assert body["tools"] == [{"name": "City", "description": "Respond with the answer.", "input_schema": schema}]
        assert body["tool_choice"] == {"type": "tool", "name": "City"}


@pytest.mark.parametrize("first", PROVIDERS)
def test_task_response_schema_gives_parsed_dict(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM[first], text=VALID)
    router = make_router(server, tmp_path)
    r = router.complete(f"extract_{first}", "Biggest city near the Rhone?")
    assert r.parsed == {"city": "Lyon", "population": 522250}
    assert [(a.model, a.outcome) for a in r.attempts] == [(first, "ok")]


@pytest.mark.parametrize("first", PROVIDERS)
@pytest.mark.parametrize("bad", [NOT_JSON, WRONG_TYPE], ids=["not-json", "wrong-type"])
def test_invalid_output_is_repaired_once(server: MockLLMServer, tmp_path: Path, first: str, bad: str) -> None:
    server.script(UPSTREAM[first], [Fault(text=bad), Fault(text=VALID)])
    router = make_router(server, tmp_path)
    r = router.complete(f"extract_{first}", "Biggest city near the Rhone?")
    assert r.parsed == {"city": "Lyon", "population": 522250}
    assert [(a.model, a.error_kind) for a in r.attempts] == [(first, "invalid_output"), (first, None)]
    assert r.cost_usd == pytest.approx(sum(a.cost_usd for a in r.attempts)) and r.attempts[0].cost_usd > 0
    calls = server.requests_for(UPSTREAM[first])
    assert len(calls) == 2
    repair = json.dumps(calls[1].body["messages"])
    assert "does not match the required JSON Schema" in repair
    assert ("population" in repair) if bad == WRONG_TYPE else ("not valid JSON" in repair)


@pytest.mark.parametrize("first", PROVIDERS)
def test_still_invalid_after_repair_falls_back(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    second = other(first)
    server.set_reply(UPSTREAM[first], text=WRONG_TYPE)
    server.set_reply(UPSTREAM[second], text=VALID)
    router = make_router(server, tmp_path)
    r = router.complete(f"extract_{first}", "Biggest city near the Rhone?")
    assert r.model == second and r.parsed == {"city": "Lyon", "population": 522250}
    assert [(a.model, a.error_kind) for a in r.attempts] == [
        (first, "invalid_output"),
        (first, "invalid_output"),
        (second, None),
    ]


@pytest.mark.parametrize("first", PROVIDERS)
def test_invalid_everywhere_raises_invalid_output(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    server.set_reply(UPSTREAM["gpt"], text=NOT_JSON)
    server.set_reply(UPSTREAM["claude"], text=NOT_JSON)
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidOutput) as info:
        router.complete(f"extract_{first}", "Biggest city near the Rhone?")
    err = info.value
    assert err.kind == "invalid_output" and err.raw_text == NOT_JSON
    assert err.errors and err.errors[0].startswith("not valid JSON")
    assert [a.error_kind for a in err.attempts] == ["invalid_output"] * 4  # 1 + 1 repair, on both models
    assert len(server.requests) == 4
    assert router.plan.tasks[f"extract_{first}"].worst_case.calls == 4  # the plan counts repairs


def test_response_model_errors_name_the_fields(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(UPSTREAM["gpt"], text='{"city": 7}')
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidOutput) as info:
        router.complete("extract_gpt_solo", "x", response_model=City)
    assert sorted(e.split(":")[0] for e in info.value.errors) == ["city", "population"]
    assert info.value.raw_text == '{"city": 7}'
    assert len(server.requests) == 2  # one repair by default (no output: section on the task)


def test_model_without_json_capability_gets_instructions(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(PLAIN, text="```json\n" + VALID + "\n```")
    router = make_router(server, tmp_path)
    r = router.complete("extract_plain", "Biggest city near the Rhone?", response_model=City)
    assert r.parsed == City(city="Lyon", population=522250)
    body = server.requests_for(PLAIN)[0].body
    assert "response_format" not in body
    system = body["messages"][0]
    assert system["role"] == "system" and "JSON Schema" in system["content"] and '"population"' in system["content"]


@pytest.mark.parametrize("first", PROVIDERS)
def test_refusal_is_content_filter_and_falls_back(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    second = other(first)
    server.script(UPSTREAM[first], ["refusal"])
    server.set_reply(UPSTREAM[second], text=VALID)
    r = make_router(server, tmp_path).complete(f"extract_{first}", "x")
    assert [(a.model, a.error_kind) for a in r.attempts] == [(first, "content_filter"), (second, None)]
    assert r.parsed == {"city": "Lyon", "population": 522250}


def test_async_structured_output(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(UPSTREAM["claude"], [Fault(text=WRONG_TYPE), Fault(text=VALID)])
    router = make_router(server, tmp_path)
    r = asyncio.run(router.acomplete("extract_claude_solo", "x", response_model=City))
    assert r.parsed == City(city="Lyon", population=522250)
    assert [a.error_kind for a in r.attempts] == ["invalid_output", None]


def test_bad_response_model_is_invalid_request(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidRequest, match="response_model must be a pydantic BaseModel class"):
        router.complete("extract_gpt", "x", response_model=dict)
    assert server.requests == []


REF_POLICY = """version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{url}"}}
models:
  gpt: {{provider: openai, model: gpt-4.1-mini-2025-04-14, capabilities: [json_schema]}}
tiers:
  t: [gpt]
tasks:
  extract:
    tier: t
    response_schema: {{$ref: {ref}}}
"""


def test_response_schema_ref_loads_the_file_beside_the_policy(server: MockLLMServer, tmp_path: Path) -> None:
    from _shapes_kit import KEYS

    from policyrouter import Router

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "city.schema.json").write_text(json.dumps(schema))
    (tmp_path / "policy.yaml").write_text(REF_POLICY.format(url=server.openai_base_url, ref="schemas/city.schema.json"))
    server.set_reply("gpt-4.1-mini-2025-04-14", text=VALID)
    router = Router.from_path(tmp_path, environ=KEYS)
    assert router.plan.tasks["extract"].response_schema == schema
    r = router.complete("extract", "x")
    assert r.parsed == {"city": "Lyon", "population": 522250}
    fmt = server.requests[0].body["response_format"]["json_schema"]
    assert fmt["schema"] == schema and fmt["strict"] is True


@pytest.mark.parametrize(
    ("ref", "content", "message"),
    [
        ("missing.json", None, "error[file-not-found]"),
        ("../outside.json", None, "relative path inside"),
        ("/etc/passwd", None, "relative path inside"),
        ("broken.json", "{not json", "broken.json:1:2: error[json-syntax]"),
        ("list.json", "[1, 2]", "does not hold a JSON Schema object"),
    ],
)
def test_bad_response_schema_ref_is_a_validation_error(
    tmp_path: Path, ref: str, content: str | None, message: str
) -> None:
    from policyrouter import PolicyError, load_policy

    if content is not None:
        (tmp_path / ref).write_text(content)
    (tmp_path / "policy.yaml").write_text(REF_POLICY.format(url="http://127.0.0.1:9/v1", ref=ref))
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)
    found = [d for d in info.value.diagnostics if d.code == "response-schema-invalid"]
    assert len(found) == 1 and message in found[0].message
    loc = found[0].location
    assert loc.file.endswith("policy.yaml") and loc.line == 11


def test_offline_mock_provider_answers_a_valid_instance() -> None:
    from policyrouter import Router

    policies = Path(__file__).resolve().parent.parent / "policies"
    router = Router.from_path(policies, env="offline", environ={})
    r = router.complete("extract_invoice", "Invoice 42 from ACME, total 12 EUR")
    assert r.parsed is not None and set(r.parsed) >= {"vendor", "invoice_number", "issue_date", "currency", "total"}
    assert r.parsed["currency"] == "MOC" and r.parsed["total"] == 0.0  # the schema's pattern and minimum hold
    assert r.parsed["line_items"] == [{"description": "mock", "quantity": 0.0, "amount": 0.0}]  # optional parts too
    assert [a.outcome for a in r.attempts] == ["ok"]
    city = router.complete("summarize", "Biggest city near the Rhone?", response_model=City)
    assert city.parsed == City(city="mock", population=0)
