"""Requests refused before anything is sent, reserved or billed: each malformed argument is an
``InvalidRequest`` naming it, through complete, acomplete, stream and astream, with the real SDKs
pointed at a MockLLMServer that must see no request, on a SQLite state that must hold no
reservation, no budget spend and no ledger row."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from policyrouter import InvalidRequest, Router
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing import MockLLMServer

KEYS = {"OPENAI_API_KEY": "sk-test-refused-1", "ANTHROPIC_API_KEY": "sk-ant-test-refused-2"}

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
  haiku:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
tiers:
  simple: [mini, haiku]
budgets:
  daily: {{scope: global, window: day, limit_usd: 10}}
tasks:
  summarize:
    tier: simple
    max_output_tokens: 100
    temperature: 0
    cache: {{ttl_s: 60}}
"""


class Invoice(BaseModel):
    total: float


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.fixture
def router(server: MockLLMServer, tmp_path: Path) -> Iterator[Router]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    r = Router.from_path(path, environ=KEYS, state=SqliteState(tmp_path / "state.sqlite"))
    yield r
    r.close()


def call(router: Router, mode: str, **kw: Any) -> None:
    """One request through ``mode``; a stream is read to its end."""
    if mode == "complete":
        router.complete("summarize", **kw)
    elif mode == "acomplete":
        asyncio.run(router.acomplete("summarize", **kw))
    elif mode == "stream":
        list(router.stream("summarize", **kw))
    else:

        async def consume() -> None:
            async for _ in router.astream("summarize", **kw):
                pass

        asyncio.run(consume())


MODES = ["complete", "acomplete", "stream", "astream"]

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"input": ""}, "input"),
    ({"input": "   \n\t "}, "input"),
    ({"input": 42}, "input"),
    ({}, "input"),
    ({"input": "x", "messages": [{"role": "user", "content": "y"}]}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
    ({"messages": [{"content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
    ({"messages": ["hi"]}, "messages"),
    ({"input": "x", "temperature": "hot"}, "temperature"),
    ({"input": "x", "temperature": 2.5}, "temperature"),
    ({"input": "x", "temperature": -0.1}, "temperature"),
    ({"input": "x", "temperature": float("nan")}, "temperature"),
    ({"input": "x", "temperature": True}, "temperature"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": -5}, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": "100"}, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": 10.0}, "max_output_tokens"),
    ({"input": "x", "max_output_tokens": 2**40}, "max_output_tokens"),
    ({"input": "x", "metadata": "gold"}, "metadata"),
    ({"input": "x", "metadata": {1: "gold"}}, "metadata"),
    ({"input": "x", "metadata": {"tier": ["gold"]}}, "metadata"),
    ({"input": "x", "tenant": 42}, "tenant"),
    ({"input": "x", "tenant": ""}, "tenant"),
    ({"input": "x", "user": b"u-1"}, "user"),
    ({"input": "x", "extra": [1]}, "extra"),
    ({"input": "x", "cache": "yes"}, "cache"),
]


def assert_nothing_happened(server: MockLLMServer, router: Router) -> None:
    state = router.state
    assert server.requests == []
    assert state.open_reservations() == 0  # type: ignore[attr-defined]
    assert state.ledger_rows() == []
    assert all(spent == 0 and reserved == 0 for _, spent, reserved in state.budget_counters(""))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kwargs", "argument"), REFUSED, ids=[repr(k)[:60] for k, _ in REFUSED])
def test_a_malformed_argument_is_refused_before_anything_is_sent(
    server: MockLLMServer, router: Router, mode: str, kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        call(router, mode, **kwargs)
    err = caught.value
    assert argument in err.arguments
    assert f"{argument}" in str(err) and err.task == "summarize" and err.attempts == ()
    assert_nothing_happened(server, router)


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_request_names_every_argument_at_fault(server: MockLLMServer, router: Router, mode: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        call(router, mode, input="", temperature="hot", metadata="gold")
    assert set(caught.value.arguments) == {"temperature", "metadata", "input"}
    assert_nothing_happened(server, router)


def test_a_refused_value_is_never_echoed(server: MockLLMServer, router: Router) -> None:
    secret = "jane.doe@example.com"
    for kwargs in (
        {"input": 7, "metadata": {"email": [secret]}},
        {"messages": [{"role": secret, "content": "x" * 100}]},
        {"input": "x", "tenant": secret.encode()},
    ):
        with pytest.raises(InvalidRequest) as caught:
            router.complete("summarize", **kwargs)
        assert secret not in str(caught.value) and "x" * 100 not in str(caught.value)
    assert_nothing_happened(server, router)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_stream_with_response_model_is_an_invalid_request(server: MockLLMServer, router: Router, mode: str) -> None:
    with pytest.raises(InvalidRequest, match="use complete") as caught:
        call(router, mode, input="x", response_model=Invoice)
    assert caught.value.arguments == ("response_model",)
    assert_nothing_happened(server, router)


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_task_says_did_you_mean(server: MockLLMServer, router: Router, mode: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown task 'sumarize'; did you mean 'summarize'") as caught:
        if mode in ("complete", "stream"):
            getattr(router, mode)("sumarize", "x")
        else:
            asyncio.run(router.acomplete("sumarize", "x"))
    assert caught.value.arguments == ("task",)
    with pytest.raises(InvalidRequest, match="task= must be a string"):
        router.complete(None, "x")  # type: ignore[arg-type]
    assert_nothing_happened(server, router)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        [
            {"role": "user", "content": "what is 2+2?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "4"},
        ],
    ],
)
def test_well_formed_messages_are_sent(server: MockLLMServer, router: Router, messages: list[dict[str, Any]]) -> None:
    result = router.complete("summarize", messages=messages, metadata={"tier": "gold", "n": 1, "ok": None})
    assert result.text and len(server.requests) == 1


def test_a_misspelt_role_gets_a_did_you_mean(server: MockLLMServer, router: Router) -> None:
    with pytest.raises(InvalidRequest, match=r"messages\[1\] has an unknown role \(did you mean 'assistant'\?\)"):
        messages = [{"role": "user", "content": "hi"}, {"role": "asistant", "content": "yo"}]
        router.complete("summarize", messages=messages)
    assert_nothing_happened(server, router)
