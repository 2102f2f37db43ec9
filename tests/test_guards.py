"""Input guards: detectors, Luhn, reversible redaction through the real SDKs, blocks, audit."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guard_corpus import MISSES, NEGATIVES, POSITIVES
from hypothesis import given
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion

from policyrouter import GuardBlocked, InputTooLong, Router
from policyrouter.explain import render_text
from policyrouter.policy.models import Guards, PatternRule, RedactSettings
from policyrouter.stages.guard import compile_guards, find_cards, find_emails, find_phones, luhn_ok
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123"}
MODEL = "gpt-mini-2025-01-01"

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
tiers:
  simple: [mini]
tasks:
  support:
    tier: simple
    max_output_tokens: 100
    temperature: 0
    cache: {{ttl_s: 600}}
    guards:
      max_chars: 400
      block:
        - {{name: api-key, regex: 'sk-[A-Za-z0-9-]{{10,}}'}}
      redact:
        reversible: true
        patterns:
          - {{name: employee-id, regex: 'EMP-\\d{{5}}'}}
  oneway:
    tier: simple
    max_output_tokens: 100
    guards:
      redact: {{}}
  strict:
    tier: simple
    max_output_tokens: 100
    guards:
      block:
        - {{name: api-key, regex: 'sk-[A-Za-z0-9-]{{10,}}'}}
        - {{name: shared-password, regex: '(?is)\\bpassword\\b.*\\bhunter2\\b'}}
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def make_router(server: MockLLMServer, tmp_path: Path, state: Any = None, clock: FakeClock | None = None) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url))
    return Router.from_path(path, environ=KEYS, clock=clock or FakeClock(), rng=random.Random(1), state=state)


def sent_user_text(server: MockLLMServer, index: int = -1) -> str:
    body = server.requests_for(MODEL)[index].body
    content: str = body["messages"][-1]["content"]
    return content


# ---------------------------------------------------------------------- detectors


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("4111111111111111", True),  # Visa test card
        ("5500005555555559", True),  # Mastercard test card
        ("378282246310005", True),  # Amex test card
        ("4111111111111112", False),
        ("1234567812345678", False),
        ("", False),
        ("4111-1111", False),
        ("٤١١١١١١١١١١١١١١١", False),  # Arabic-Indic digits are not card digits
    ],
)
def test_luhn(number: str, ok: bool) -> None:
    assert luhn_ok(number) is ok


@given(st.lists(st.integers(0, 9), min_size=12, max_size=18))
def test_luhn_check_digit_property(digits: list[int]) -> None:
    """Exactly one of the ten possible check digits makes a number pass."""
    body = "".join(map(str, digits))
    assert sum(luhn_ok(body + str(d)) for d in range(10)) == 1


def spans_text(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_cards_are_luhn_checked_and_may_be_grouped() -> None:
    text = "pay with 4111 1111 1111 1111 or 4111-1111-1111-1112, order 4111111111111111."
    assert spans_text(text, find_cards(text)) == ["4111 1111 1111 1111", "4111111111111111"]


def test_card_followed_by_more_digits_is_still_found() -> None:
    text = "card 4111 1111 1111 1111 12/27 cvc 123"
    assert spans_text(text, find_cards(text)) == ["4111 1111 1111 1111"]


@given(
    st.lists(st.integers(0, 9), min_size=15, max_size=15), st.sampled_from(["", " ", "-"]), st.text("ab .,", max_size=5)
)
def test_any_luhn_valid_card_is_found(body: list[int], sep: str, tail: str) -> None:
    digits = "".join(map(str, body))
    number = next(digits + str(d) for d in range(10) if luhn_ok(digits + str(d)))
    card = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    text = f"pay with {card}{tail} thanks"
    assert spans_text(text, find_cards(text)) == [card]


def test_emails() -> None:
    text = "write to Jane.Doe+tag@mail.example.co.uk, not to @handle or a@b"
    assert spans_text(text, find_emails(text)) == ["Jane.Doe+tag@mail.example.co.uk"]


def test_phones_and_what_is_not_a_phone() -> None:
    text = (
        "call +14155552671 or (555) 123-4567 or 06 12 34 56 78; "
        "order 123456789012, on 2025-01-31, from 192.168.100.200, ext 555-1234"
    )
    assert spans_text(text, find_phones(text)) == ["+14155552671", "(555) 123-4567", "06 12 34 56 78"]


def test_explain_shows_guards(server: MockLLMServer, tmp_path: Path, snapshot: SnapshotAssertion) -> None:
    router = make_router(server, tmp_path)
    e = router.explain("support")
    assert e.guards == {
        "redact": ["employee-id", "email", "card", "phone"],
        "reversible": True,
        "block": ["api-key"],
        "max_chars": 400,
    }
    assert render_text(e) == snapshot


# ---------------------------------------------------------------------- the corpus


def redacted_once(server: MockLLMServer, tmp_path: Path, text: str) -> str:
    """What the provider receives for ``text`` under the default detectors."""
    make_router(server, tmp_path).complete("oneway", text)
    return sent_user_text(server)


@pytest.mark.parametrize(("text", "value"), POSITIVES)
def test_corpus_positives_are_redacted(server: MockLLMServer, tmp_path: Path, text: str, value: str) -> None:
    sent = redacted_once(server, tmp_path, text)
    assert value not in sent and "[" in sent


@pytest.mark.parametrize(("text", "value"), MISSES)
def test_corpus_known_misses_stay_missed(server: MockLLMServer, tmp_path: Path, text: str, value: str) -> None:
    """Deliberate evasion out of reach (README); a detector that starts to catch one moves it to POSITIVES."""
    assert value in redacted_once(server, tmp_path, text)


@pytest.mark.parametrize("text", NEGATIVES)
def test_corpus_negatives_are_sent_unchanged(server: MockLLMServer, tmp_path: Path, text: str) -> None:
    assert redacted_once(server, tmp_path, text) == text


def test_corpus_numbers_match_the_readme() -> None:
    """The detection numbers the README states are this corpus's."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    caught, total = len(POSITIVES), len(POSITIVES) + len(MISSES)
    assert f"{caught} of {total} positives" in readme
    assert f"0 of {len(NEGATIVES)} negatives" in readme


# ---------------------------------------------------------------------- round trips


def test_redaction_is_sent_and_restored_in_the_answer(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(MODEL, text="Dear [EMAIL_1], card [CARD_1] of [EMPLOYEE_ID_1] is blocked. [EMAIL_2] unknown.")
    router = make_router(server, tmp_path)
    prompt = "I am EMP-12345, mail jane@example.com or jane@example.com, card 4111 1111 1111 1111, tel +14155552671"
    r = router.complete("support", prompt)
    sent = sent_user_text(server)
    assert sent == "I am [EMPLOYEE_ID_1], mail [EMAIL_1] or [EMAIL_1], card [CARD_1], tel [PHONE_1]"
    for value in ("EMP-12345", "jane@example.com", "4111", "4155552671"):
        assert value not in json.dumps(server.requests_for(MODEL)[-1].body)
    # the caller gets its values back; a placeholder this request never issued stays as is
    assert r.text == "Dear jane@example.com, card 4111 1111 1111 1111 of EMP-12345 is blocked. [EMAIL_2] unknown."


def test_messages_are_guarded_including_caller_system_messages(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    router.complete(
        "oneway",
        messages=[
            {"role": "system", "content": "Customer: bob@example.org"},
            {"role": "user", "content": [{"type": "text", "text": "call me at +4915112345678"}]},
        ],
    )
    body = server.requests_for(MODEL)[-1].body
    assert body["messages"][0] == {"role": "system", "content": "Customer: [EMAIL]"}
    assert body["messages"][1]["content"] == [{"type": "text", "text": "call me at [PHONE]"}]


def test_every_text_bearing_field_is_redacted(server: MockLLMServer, tmp_path: Path) -> None:
    """Content parts of any text type, the ``name`` field, tool-call arguments (as JSON
    values: still valid JSON after), tool results; nothing else in a message changes."""
    router = make_router(server, tmp_path)
    arguments = json.dumps({"to": "carl@example.com", "card": "4111 1111 1111 1111", "n": 3})
    router.complete(
        "oneway",
        messages=[
            {"role": "user", "name": "bob@example.org", "content": [{"type": "input_text", "text": "ann@example.com"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "pay", "arguments": arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "paid; receipt to +14155552671"},
            {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "image_url", "image_url": {}}]},
        ],
    )
    sent = server.requests_for(MODEL)[-1].body["messages"]
    assert sent[0] == {"role": "user", "name": "[EMAIL]", "content": [{"type": "input_text", "text": "[EMAIL]"}]}
    (call,) = sent[1]["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_1", "pay")
    assert json.loads(call["function"]["arguments"]) == {"to": "[EMAIL]", "card": "[CARD]", "n": 3}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "paid; receipt to [PHONE]"}
    assert sent[3]["content"] == [{"type": "text", "text": "thanks"}, {"type": "image_url", "image_url": {}}]
    for value in ("carl@", "bob@", "ann@", "4111", "4155552671"):
        assert value not in json.dumps(sent)


def _call(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}],
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # a JSON key in tool-call arguments, as a JSON string or a mapping, and in tool_use input
        ("jane@example.com", _call(json.dumps({"jane@example.com": "x"}))),
        ("jane@example.com", _call({"jane@example.com": "x"})),
        (
            "jane@example.com",
            {"role": "assistant", "content": [{"type": "tool_use", "input": {"jane@example.com": 1}}]},
        ),
        # a card as a JSON number with a fraction or an exponent, even past a float's precision
        ("4111111111111111", _call('{"card": 4111111111111111.0}')),
        ("4111111111111111", _call('{"card": 4111111111111111e0}')),
        ("4111111111111111110", _call('{"card": 4111111111111111110.0}')),
        ("4111111111111111", _call({"card": 4111111111111111.0})),
        # an Anthropic document block with a plain-text source
        (
            "jane@example.com",
            {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "jane@example.com"}}]},
        ),
    ],
)
def test_keys_numbers_and_text_documents_are_redacted(value: str, message: dict[str, Any]) -> None:
    plan = compile_guards(Guards(redact=RedactSettings()))
    assert plan is not None
    _, (sent,) = plan.start().apply(None, [message])
    assert value not in json.dumps(sent) and "[" in json.dumps(sent)


@pytest.mark.parametrize(
    ("rule", "messages"),
    [
        # a rule that spans the conversation: neither message matches alone
        (
            "shared-password",
            [
                {"role": "user", "content": "my password is in the next message"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "hunter2"},
            ],
        ),
        # a blocked value in a tool call's arguments, in a name, behind a zero-width space
        (
            "api-key",
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"k": "sk-abcdef0123456"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "done"},
            ],
        ),
        ("api-key", [{"role": "user", "name": "sk-abcdef0123456", "content": "hi"}]),
        ("api-key", [{"role": "user", "content": "key: sk-\u200babcdef0123456"}]),
        (
            "api-key",
            [{"role": "user", "content": [{"type": "input_text", "text": "ｓｋ－ａｂｃｄｅｆ０１２３４５６"}]}],  # noqa: RUF001
        ),
    ],
)
def test_block_rules_see_the_whole_conversation(
    server: MockLLMServer, tmp_path: Path, rule: str, messages: list[dict[str, Any]]
) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(GuardBlocked) as info:
        router.complete("strict", messages=messages)
    assert info.value.rule == rule
    assert server.requests == []


def test_not_reversible_keeps_placeholders_in_the_answer(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(MODEL, text="Wrote to [EMAIL].")
    r = make_router(server, tmp_path).complete("oneway", "mail ann@example.com")
    assert sent_user_text(server) == "mail [EMAIL]"
    assert r.text == "Wrote to [EMAIL]."


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_cached_answer_is_restored_with_each_requests_own_values(
    server: MockLLMServer, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two callers whose prompts redact alike share a cache entry, never each other's PII; on
    Redis the hit comes from the lookup folded into the first admission."""
    server.set_reply(MODEL, text="Hello [EMAIL_1]")
    clock = FakeClock()
    state = None
    if backend == "redis":
        from policyrouter.state.redis import RedisState

        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        state = RedisState(url, key_prefix=prefix, clock=clock)
    router = make_router(server, tmp_path, state, clock)
    first = router.complete("support", "I am ann@example.com")
    second = router.complete("support", "I am bob@example.com")
    assert len(server.requests_for(MODEL)) == 1 and second.cache_hit
    assert (first.text, second.text) == ("Hello ann@example.com", "Hello bob@example.com")
    audit = [(row.outcome, row.cost_usd > 0, json.loads(row.metadata)) for row in router.state.ledger_rows()]
    assert audit == [("ok", True, {"guards": "redact:email=1"}), ("cache_hit", False, {"guards": "redact:email=1"})]


def test_failed_guarded_request_is_audited(server: MockLLMServer, tmp_path: Path) -> None:
    from policyrouter import AllModelsFailed

    server.script(MODEL, [401])
    router = make_router(server, tmp_path)
    with pytest.raises(AllModelsFailed):
        router.complete("support", "I am EMP-55555", user="u-9")
    (row,) = router.state.ledger_rows()
    assert (row.outcome, row.user, row.attempts, row.cost_usd) == ("all_models_failed", "u-9", 1, 0.0)
    assert json.loads(row.metadata) == {"guards": "redact:employee-id=1"}


# ---------------------------------------------------------------------- refusals and audit


def test_blocked_pattern_raises_typed_error_and_sends_nothing(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(GuardBlocked) as info:
        router.complete("support", "here is my key sk-live-abcdefghijklmnop please debug")
    assert info.value.rule == "api-key" and info.value.kind == "guard_blocked" and info.value.task == "support"
    assert "sk-live" not in str(info.value) and "sk-live" not in repr(info.value)
    assert server.requests == []
    row = router.state.ledger_rows()[-1]
    assert (row.task, row.outcome, row.cost_usd, row.attempts) == ("support", "guard_blocked", 0.0, 0)
    assert json.loads(row.metadata) == {"guards": "block:api-key"}


def test_max_chars_is_input_too_long(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    with pytest.raises(InputTooLong, match="max_chars=400"):
        router.complete("support", messages=[{"role": "user", "content": "a" * 300}] * 2)
    assert server.requests == []
    assert router.complete("support", "a" * 400).text  # exactly at the limit passes


def test_audit_row_per_request_names_guard_actions(server: MockLLMServer, tmp_path: Path) -> None:
    router = make_router(server, tmp_path)
    r = router.complete("support", "x@example.com, y@example.com, EMP-00001", user="u-1", tenant="acme")
    row = router.state.ledger_rows()[-1]
    assert (row.request_id, row.user, row.tenant, row.model, row.outcome) == (r.request_id, "u-1", "acme", "mini", "ok")
    assert row.cost_usd == pytest.approx(r.cost_usd)
    assert json.loads(row.metadata) == {"guards": "redact:email=2,redact:employee-id=1"}
    assert "example.com" not in repr(row)


def test_compile_guards_returns_none_when_nothing_is_guarded() -> None:
    assert compile_guards(None) is None
    assert compile_guards(Guards()) is None
    plan = compile_guards(Guards(redact=RedactSettings(emails=False, phones=False, cards=False, patterns=[])))
    assert plan is None
    custom = compile_guards(Guards(redact=RedactSettings(patterns=[PatternRule(name="x", regex="a+")])))
    assert custom is not None and custom.describe()["redact"] == ["x", "email", "card", "phone"]


def test_acomplete_redacts_and_restores_too(server: MockLLMServer, tmp_path: Path) -> None:
    import asyncio

    server.set_reply(MODEL, text="ok [EMAIL_1]")
    router = make_router(server, tmp_path)

    async def go() -> str:
        r = await router.acomplete("support", "from zed@example.net")
        await router.aclose()
        return r.text

    assert asyncio.run(go()) == "ok zed@example.net"
    assert sent_user_text(server) == "from [EMAIL_1]"


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_stream_restorer_restores_placeholders_split_anywhere(cuts: list[int]) -> None:
    from policyrouter.policy.models import Guards
    from policyrouter.stages.guard import compile_guards, stream_restorer

    plan = compile_guards(Guards.model_validate({"redact": {"reversible": True}}))
    assert plan is not None
    run = plan.start()
    run.apply("mail ann@example.com and bob@example.org", None)
    answer = "To [EMAIL_1] [x] and [EMAIL_2]; [EMAIL_9] stays, [EMA"
    points = sorted({min(c, len(answer)) for c in cuts})
    deltas = [answer[a:b] for a, b in zip([0, *points], [*points, len(answer)], strict=True)]
    restorer = stream_restorer(run)
    assert restorer is not None
    streamed = "".join(restorer.feed(d) for d in deltas) + restorer.flush()
    assert streamed == run.restore(answer)
    assert "ann@example.com" in streamed and "bob@example.org" in streamed and "[EMAIL_9]" in streamed


def test_stream_restores_placeholders_in_text_deltas(server: MockLLMServer, tmp_path: Path) -> None:
    server.set_reply(MODEL, text="Dear [EMAIL_1], your card [CARD_1] is blocked.")
    router = make_router(server, tmp_path)
    chunks = list(router.stream("support", "I am ann@example.com, card 4111 1111 1111 1111"))
    text = "".join(c.text for c in chunks if c.type == "text")
    final = chunks[-1].result
    assert final is not None
    assert text == final.text == "Dear ann@example.com, your card 4111 1111 1111 1111 is blocked."
    assert "ann@example.com" not in json.dumps(server.requests_for(MODEL)[-1].body)
