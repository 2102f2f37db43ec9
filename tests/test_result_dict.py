"""``Result.to_dict`` (what ``policyrouter run --json`` prints) keeps structured output and tool calls."""

from __future__ import annotations

import json

from pydantic import BaseModel

from policyrouter import Result, Usage


class Invoice(BaseModel):
    total: float
    currency: str


def test_to_dict_carries_parsed_tool_calls_and_request_id() -> None:
    call = {"id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'}
    r = Result(
        text="",
        model="mini",
        provider="openai",
        usage=Usage(10, 2),
        cost_usd=0.5,
        cache_hit=False,
        route="default",
        attempts=(),
        latency_s=0.01,
        task="extract",
        request_id="pr-1",
        parsed=Invoice(total=12.5, currency="EUR"),
        tool_calls=(call,),
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["parsed"] == {"total": 12.5, "currency": "EUR"}
    assert d["tool_calls"] == [call]
    assert d["request_id"] == "pr-1"
    assert d["usage"] == {
        "input_tokens": 10,
        "output_tokens": 2,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cache_write_1h_tokens": 0,
    }
