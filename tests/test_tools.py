"""Tool calls: OpenAI function tools passed through, translated for Anthropic, and the
calls normalized so both providers give the same ``Result.tool_calls``, whole or streamed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _shapes_kit import PROVIDERS, UPSTREAM, make_router

from policyrouter import InvalidRequest, Result, Router, StreamChunk
from policyrouter.testing import MockLLMServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CALLS = [
    {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "c"}},
    {"name": "get_time", "arguments": {}},
]


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        for upstream in UPSTREAM.values():
            s.set_reply(upstream, tool_calls=CALLS)
        yield s


def normalized(calls: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(c["name"], json.loads(c["arguments"])) for c in calls]


def assemble(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    """Tool calls rebuilt from tool_call deltas, the way a caller would."""
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        if c.type == "tool_call":
            assert c.tool_call is not None
            delta = c.tool_call
            slot = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
            slot["id"] = slot["id"] or delta.get("id")
            slot["name"] = slot["name"] or delta.get("name")
            slot["arguments"] += delta.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def complete(router: Router, task: str, **kw: Any) -> Result:
    return router.complete(task, "Weather in Lyon, and the time?", tools=[WEATHER, TIME], **kw)


@pytest.mark.parametrize("first", PROVIDERS)
def test_tools_reach_each_provider_in_its_format(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    complete(make_router(server, tmp_path), f"chat_{first}", tool_choice="required")
    body = server.requests_for(UPSTREAM[first])[0].body
    if first == "gpt":
        assert body["tools"] == [WEATHER, TIME]  # passed through, strict included
        assert body["tool_choice"] == "required"
    else:
        assert body["tools"] == [
            {
                "name": "get_weather",
                "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
                "description": "Current weather of a city.",
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ]
        assert body["tool_choice"] == {"type": "any"}


def test_tool_calls_are_equal_across_providers(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    gpt = complete(router, "chat_gpt")
    claude = complete(router, "chat_claude")
    assert (gpt.model, claude.model) == ("gpt", "claude")
    assert normalized(gpt.tool_calls) == normalized(claude.tool_calls) == [(c["name"], c["arguments"]) for c in CALLS]
    assert [set(c) for c in gpt.tool_calls] == [set(c) for c in claude.tool_calls] == [{"id", "name", "arguments"}] * 2
    assert gpt.tool_calls[0]["id"] and claude.tool_calls[0]["id"]
    assert gpt.finish_reason == claude.finish_reason == "tool_calls"
    assert gpt.text == claude.text == ""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streamed_tool_calls_are_equal_across_providers_and_to_complete(
    server: MockLLMServer, tmp_path: Path, mode: str
) -> None:
    router = make_router(server, tmp_path)

    def stream(task: str) -> list[StreamChunk]:
        if mode == "sync":
            return list(router.stream(task, "Weather in Lyon?", tools=[WEATHER, TIME]))

        async def run() -> list[StreamChunk]:
            return [c async for c in router.astream(task, "Weather in Lyon?", tools=[WEATHER, TIME])]

        return asyncio.run(run())

    results = {}
    for first in PROVIDERS:
        chunks = stream(f"chat_{first}")
        final = chunks[-1].result
        assert final is not None and final.model == first and final.finish_reason == "tool_calls"
        deltas = assemble(chunks)
        assert normalized(deltas) == normalized(final.tool_calls)
        assert [d["id"] for d in deltas] == [c["id"] for c in final.tool_calls]
        whole = complete(router, f"chat_{first}")
        assert normalized(final.tool_calls) == normalized(whole.tool_calls)
        assert final.tool_calls[0]["arguments"] == whole.tool_calls[0]["arguments"]  # same JSON text
        results[first] = normalized(final.tool_calls)
    assert results["gpt"] == results["claude"]


def test_tool_history_round_trips_to_anthropic(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    first = complete(router, "chat_claude")
    call = first.tool_calls[0]
    fn = {"name": call["name"], "arguments": call["arguments"]}
    history = [
        {"role": "user", "content": "Weather in Lyon?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": call["id"], "type": "function", "function": fn}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "12C, light rain"},
    ]
    server.set_reply(UPSTREAM["claude"], text="It is 12C with light rain in Lyon.")
    r = router.complete("chat_claude", messages=history, tools=[WEATHER])
    assert r.text == "It is 12C with light rain in Lyon." and r.tool_calls == ()
    sent = server.requests_for(UPSTREAM["claude"])[-1].body["messages"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": call["id"],
        "name": "get_weather",
        "input": {"city": "Lyon", "unit": "c"},
    }
    assert sent[2]["content"][0]["type"] == "tool_result" and sent[2]["content"][0]["tool_use_id"] == call["id"]


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ({"type": "function"}, None, "must be a list"),
        ([{"name": "get_weather"}], None, "expected"),
        ([{"type": "function", "function": {"name": ""}}], None, "non-empty string"),
        ([WEATHER, WEATHER], None, "duplicate tool name"),
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
        (None, "auto", "tool_choice= needs tools="),
    ],
)
def test_bad_tools_are_invalid_requests(
    server: MockLLMServer, tmp_path: Path, tools: Any, choice: Any, message: str
) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidRequest, match=message):
        router.complete("chat_gpt", "x", tools=tools, tool_choice=choice)
    with pytest.raises(InvalidRequest, match=message):
        router.stream("chat_claude", "x", tools=tools, tool_choice=choice)
    assert server.requests == []
