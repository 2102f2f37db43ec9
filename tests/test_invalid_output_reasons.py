"""``InvalidOutput`` says why. A structured answer cut at ``max_output_tokens`` (OpenAI
``finish_reason: length``, Anthropic ``stop_reason: max_tokens``) that does not parse is not
repaired on the same model (the repair would be cut too): the trace says ``truncated`` and the
chain falls back. Real SDKs against MockLLMServer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from _shapes_kit import PROVIDERS, UPSTREAM, make_router, other, reserved
from pydantic import BaseModel, ConfigDict

from policyrouter import InvalidOutput
from policyrouter.testing import Fault, MockLLMServer

VALID = '{"city": "Lyon", "population": 522250}'
CUT = '{"city": "Lyon", "popul'
WRONG_TYPE = '{"city": "Lyon", "population": "many"}'


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    population: int


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.mark.parametrize("mode", ["complete", "acomplete"])
@pytest.mark.parametrize("first", PROVIDERS)
def test_a_cut_answer_is_not_repaired_and_falls_back(
    server: MockLLMServer, tmp_path: Path, first: str, mode: str
) -> None:
    server.script(UPSTREAM[first], [Fault(kind="max_tokens", text=CUT)])
    server.set_reply(UPSTREAM[other(first)], text=VALID)
    router = make_router(server, tmp_path)
    ask = {"task": f"extract_{first}", "input": "Biggest city near the Rhone?"}
    r = router.complete(**ask) if mode == "complete" else asyncio.run(router.acomplete(**ask))  # type: ignore[arg-type]
    assert r.parsed == {"city": "Lyon", "population": 522250} and r.model == other(first)
    cut = r.attempts[0]
    assert (cut.model, cut.error_kind, cut.reason) == (first, "invalid_output", "truncated")
    assert cut.message is not None and "cut at max_output_tokens=200" in cut.message
    assert cut.to_dict()["reason"] == "truncated" and cut.cost_usd > 0  # billed all the same
    assert [(a.model, a.outcome) for a in r.attempts] == [(first, "error"), (other(first), "ok")]
    assert len(server.requests_for(UPSTREAM[first])) == 1  # no repair turn went to the model that was cut
    assert reserved(router) == 0


@pytest.mark.parametrize("first", PROVIDERS)
def test_every_answer_cut_is_an_invalid_output_that_says_so(server: MockLLMServer, tmp_path: Path, first: str) -> None:
    for model in PROVIDERS:
        server.script(UPSTREAM[model], [Fault(kind="max_tokens", text=CUT)])
    router = make_router(server, tmp_path)
    events: list[dict[str, object]] = []
    router.on("attempt", events.append)
    with pytest.raises(InvalidOutput) as caught:
        router.complete(f"extract_{first}", "Biggest city near the Rhone?", response_model=City)
    err = caught.value
    assert err.reason == "truncated" and err.raw_text == CUT and err.errors
    assert "cut at max_output_tokens=200" in str(err) and "raise max_output_tokens" in str(err)
    assert f"{first}: the answer was cut" in str(err) and f"{other(first)}: the answer was cut" in str(err)
    assert [(a.model, a.reason) for a in err.attempts] == [(first, "truncated"), (other(first), "truncated")]
    assert [e["reason"] for e in events] == ["truncated", "truncated"]
    assert all(len(server.requests_for(UPSTREAM[m])) == 1 for m in PROVIDERS)
    assert reserved(router) == 0


def test_an_answer_off_schema_is_still_repaired_and_the_error_says_so(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(UPSTREAM["gpt"], [Fault(text=WRONG_TYPE), Fault(text=WRONG_TYPE)])
    server.script(UPSTREAM["claude"], [Fault(text=WRONG_TYPE), Fault(kind="max_tokens", text=CUT)])
    router = make_router(server, tmp_path)
    with pytest.raises(InvalidOutput) as caught:
        router.complete("extract_gpt", "Biggest city near the Rhone?")
    err = caught.value
    assert [(a.model, a.reason) for a in err.attempts] == [
        ("gpt", "schema"),
        ("gpt", "schema"),
        ("claude", "schema"),
        ("claude", "truncated"),
    ]
    assert "gpt: the answer failed its schema after 1 repair(s)" in str(err)
    assert "claude: the answer was cut at max_output_tokens=200" in str(err)
    assert err.reason == "truncated"  # the last answer's


def test_a_cut_answer_that_parses_is_the_answer(server: MockLLMServer, tmp_path: Path) -> None:
    server.script(UPSTREAM["gpt"], [Fault(kind="max_tokens", text=VALID)])
    router = make_router(server, tmp_path)
    r = router.complete("extract_gpt", "Biggest city near the Rhone?")
    assert r.parsed == {"city": "Lyon", "population": 522250} and r.finish_reason == "length"
    assert [(a.model, a.reason) for a in r.attempts] == [("gpt", None)]
