"""Default answers that follow the request, on the offline ``mock`` provider and on
``MockLLMServer``: a forced tool gets a call whose arguments fit its schema, a structured
request gets JSON generated from its schema. Offline runs take the real paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pytest
from _shapes_kit import GPT, KEYS, PROVIDERS, make_router
from pydantic import BaseModel, Field

from policyrouter import Router
from policyrouter.providers.schema_example import example_for
from policyrouter.testing import MockLLMServer

POLICIES = Path(__file__).resolve().parent.parent / "policies"
ORDER = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 9},
        "express": {"type": "boolean"},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["sku", "quantity", "address"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 2}, "zip": {"type": "string", "maxLength": 5}},
            "required": ["city"],
        }
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
ORDER_TOOL = {"type": "function", "function": {"name": "place_order", "parameters": ORDER}}


class Address(BaseModel):
    city: str = Field(min_length=2)
    country: Literal["FR", "DE"] = "FR"


class Invoice(BaseModel):
    vendor: str
    total: float = Field(gt=0, lt=1)
    lines: list[str] = Field(min_length=2)
    billing: Address
    shipping: Address | None = None


def valid(instance: Any, schema: dict[str, Any]) -> bool:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return not list(jsonschema.Draft202012Validator(schema, format_checker=checker).iter_errors(instance))


# ------------------------------------------------------------------ the generator


@pytest.mark.parametrize(
    "schema",
    [
        ORDER,
        Invoice.model_json_schema(),
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2},
        {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5}, "maxItems": 3},
        {"allOf": [{"type": "object", "properties": {"a": {"const": 3}}, "required": ["a"]}, {"required": ["b"]}]},
        {"anyOf": [{"type": "null"}, {"type": "integer", "multipleOf": 7, "minimum": 10}]},
        {"type": ["null", "string"], "format": "date-time"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "format": "email", "maxLength": 40},
        {"type": "integer", "maximum": -3},
        {"type": "number", "minimum": 2.5, "maximum": 2.5},
        {"oneOf": [{"type": "object", "properties": {"kind": {"enum": ["x", "y"]}}, "required": ["kind"]}]},
        {  # a recursive tree: optional recursion is left out, so generation ends
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    },
                    "required": ["v"],
                }
            },
            "$ref": "#/$defs/node",
        },
    ],
)
def test_generated_instances_are_valid_and_deterministic(schema: dict[str, Any]) -> None:
    instance = example_for(schema)
    assert valid(instance, schema), instance
    assert example_for(schema) == instance


def test_generated_objects_fill_optional_properties_so_callers_see_them() -> None:
    invoice = Invoice.model_validate(example_for(Invoice.model_json_schema()))
    assert invoice.shipping is not None and len(invoice.lines) == 2 and 0 < invoice.total < 1


# ------------------------------------------------------------------ offline (kind: mock)


@pytest.fixture
def offline() -> Router:
    return Router.from_path(POLICIES, env="offline", environ={})


def test_offline_required_tool_choice_answers_a_call_of_the_first_tool(offline: Router) -> None:
    result = offline.complete("summarize", "weather in Lyon?", tools=[WEATHER, ORDER_TOOL], tool_choice="required")
    assert result.finish_reason == "tool_calls" and result.text == ""
    [call] = result.tool_calls
    assert call["name"] == "get_weather" and call["id"]
    assert valid(json.loads(call["arguments"]), WEATHER["function"]["parameters"])


def test_offline_named_tool_choice_calls_that_tool(offline: Router) -> None:
    choice = {"type": "function", "function": {"name": "place_order"}}
    result = offline.complete("summarize", "three widgets please", tools=[WEATHER, ORDER_TOOL], tool_choice=choice)
    [call] = result.tool_calls
    assert call["name"] == "place_order"
    assert valid(json.loads(call["arguments"]), ORDER)


def test_offline_auto_tool_choice_still_answers_text(offline: Router) -> None:
    result = offline.complete("summarize", "just chatting", tools=[WEATHER], tool_choice="auto")
    assert result.tool_calls == () and result.text.startswith("[gpt-4.1-mini-2025-04-14] just chatting")


def test_offline_stream_delivers_the_tool_call(offline: Router) -> None:
    chunks = list(offline.stream("chat", "weather?", tools=[WEATHER], tool_choice="required"))
    deltas = [c.tool_call for c in chunks if c.type == "tool_call"]
    assert [d["name"] for d in deltas if d] == ["get_weather"]
    final = chunks[-1].result
    assert final is not None and final.tool_calls[0]["name"] == "get_weather"


def test_offline_response_model_gets_a_valid_instance(offline: Router) -> None:
    result = offline.complete("summarize", "invoice from ACME", response_model=Invoice)
    assert isinstance(result.parsed, Invoice)
    assert [a.outcome for a in result.attempts] == ["ok"]  # valid at once: no repair turn


# ------------------------------------------------------------------ MockLLMServer, through the SDKs


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def test_server_openai_required_and_named_tool_choice(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
    messages: Any = [{"role": "user", "content": "order"}]
    for choice, name in (
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "place_order"}}, "place_order"),
    ):
        reply = client.chat.completions.create(
            model=GPT, messages=messages, tools=[WEATHER, ORDER_TOOL], tool_choice=choice
        )  # type: ignore[arg-type]
        assert reply.choices[0].finish_reason == "tool_calls"
        [call] = reply.choices[0].message.tool_calls or []
        assert call.function.name == name  # type: ignore[union-attr]
        schema = (WEATHER if name == "get_weather" else ORDER_TOOL)["function"]["parameters"]
        assert valid(json.loads(call.function.arguments), schema)  # type: ignore[union-attr]
    auto = client.chat.completions.create(model=GPT, messages=messages, tools=[WEATHER], tool_choice="auto")
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].message.content


def test_server_openai_response_format_json_schema_and_json_object(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
    messages: Any = [{"role": "user", "content": "an order"}]
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}}
    reply = client.chat.completions.create(model=GPT, messages=messages, response_format=fmt)
    assert valid(json.loads(reply.choices[0].message.content or ""), ORDER)
    loose = client.chat.completions.create(model=GPT, messages=messages, response_format={"type": "json_object"})
    assert json.loads(loose.choices[0].message.content or "") == {
        "answer": f"mock answer from {GPT} to a 2-word prompt"
    }


def test_server_anthropic_any_and_named_tool_choice(server: MockLLMServer) -> None:
    client = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="t", max_retries=0)
    tools: Any = [
        {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]},
        {"name": "place_order", "input_schema": ORDER},
    ]
    for choice, name in (({"type": "any"}, "get_weather"), ({"type": "tool", "name": "place_order"}, "place_order")):
        reply = client.messages.create(
            model="claude-x",
            max_tokens=100,
            messages=[{"role": "user", "content": "go"}],
            tools=tools,
            tool_choice=choice,
        )
        assert reply.stop_reason == "tool_use"
        [block] = [b for b in reply.content if b.type == "tool_use"]
        assert block.name == name
        assert valid(block.input, tools[0 if name == "get_weather" else 1]["input_schema"])


@pytest.mark.parametrize("first", PROVIDERS)
def test_router_tools_and_response_model_against_the_server(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    router = make_router(server, tmp_path, environ=KEYS)
    called = router.complete(f"chat_{first}", "weather?", tools=[WEATHER], tool_choice="required")
    assert [a.model for a in called.attempts] == [first]
    assert called.tool_calls[0]["name"] == "get_weather"
    assert valid(json.loads(called.tool_calls[0]["arguments"]), WEATHER["function"]["parameters"])
    parsed = router.complete(f"chat_{first}", "invoice from ACME", response_model=Invoice)
    assert isinstance(parsed.parsed, Invoice) and [a.outcome for a in parsed.attempts] == ["ok"]
