"""Structured events: fields, what they never contain, log_content, hooks (sync and async)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policyrouter import AllModelsFailed, GuardBlocked, Router
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}
MINI, HAIKU = "gpt-mini-2025-01-01", "claude-haiku-20250101"
SECRET_PROMPT = "zebra-marker-7731 please help jane.doe@example.com with card 4111 1111 1111 1111"

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
    circuit_breaker: strict
  haiku:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
tiers:
  simple: [mini, haiku]
retry_policies:
  default:
    max_attempts: 3
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
circuit_breakers:
  strict: {{failure_threshold: 2, window_s: 60, cooldown_s: 30}}
budgets:
  small: {{scope: global, window: day, limit_usd: 0.01, soft_limit: 0.1, tasks: [budgeted]}}
tasks:
  plain:
    tier: simple
    max_output_tokens: 50
  guarded:
    tier: simple
    max_output_tokens: 50
    guards:
      block: [{{name: no-passwords, regex: 'password\\s*[:=]'}}]
      redact: {{reversible: true}}
  logged:
    tier: simple
    max_output_tokens: 50
    log_content: true
    guards:
      redact: {{reversible: true}}
  budgeted:
    tier: simple
    max_output_tokens: 50
  short:
    tier: simple
    max_input_tokens: 5
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.fixture
def router(server: MockLLMServer, tmp_path: Path) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    return Router.from_path(path, environ=KEYS, clock=FakeClock(), rng=random.Random(3))


def events(caplog: pytest.LogCaptureFixture, name: str | None = None) -> list[dict[str, Any]]:
    out = [r.policyrouter for r in caplog.records if hasattr(r, "policyrouter")]
    return [e for e in out if name is None or e["event"] == name]


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every message and payload policyrouter logged, as a formatter or JSON handler would see them
    (the SDKs' own DEBUG logs are theirs: they print request bodies)."""
    return "\n".join(
        r.getMessage() + json.dumps(getattr(r, "policyrouter", {}), default=str)
        for r in caplog.records
        if r.name.startswith("policyrouter")
    )


def test_attempt_and_result_events_carry_the_trace(
    server: MockLLMServer, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(MINI, [429, 500, 500])  # retry, then the breaker (2 failures) opens: fall back
    server.set_reply(HAIKU, text="fine", usage={"input": 1000, "output": 100})
    caplog.set_level(logging.INFO, logger="policyrouter.events")
    r = router.complete("plain", "hello", user="u-1", tenant="acme")

    attempts = events(caplog, "attempt")
    assert [(a["attempt"], a["model"], a["outcome"], a["error_kind"], a["status_code"]) for a in attempts] == [
        (1, "mini", "error", "rate_limited", 429),
        (2, "mini", "error", "server_error", 500),
        (3, "haiku", "ok", None, None),
    ]
    assert all(a["request_id"] == r.request_id and a["task"] == "plain" for a in attempts)
    assert all(str(a["provider_request_id"]).startswith("req_mock_") for a in attempts)
    assert attempts[1]["started_s"] == pytest.approx(0.5)  # after the 0.5 s backoff on the fake clock
    assert (attempts[2]["input_tokens"], attempts[2]["output_tokens"]) == (1000, 100)
    assert attempts[2]["cost_usd"] == pytest.approx(1000 * 2e-6 + 100 * 4e-6)

    (result,) = events(caplog, "result")
    expected = {
        "event": "result",
        "request_id": r.request_id,
        "task": "plain",
        "route": "default",
        "outcome": "ok",
        "model": "haiku",
        "provider": "anthropic",
        "tenant": "acme",
        "user": "u-1",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cached_input_tokens": 0,
        "cache_hit": False,
        "stale": False,
        "retries": 1,
        "fallbacks": [{"from": "mini", "to": "haiku", "reason": "server_error"}],
        "degraded_by": None,
        "budget_status": "ok",
        "guards": None,
        "finish_reason": "stop",
    }
    assert {k: result[k] for k in expected} == expected
    assert result["cost_usd"] == pytest.approx(r.cost_usd)
    assert [a["error_kind"] for a in result["attempts"]] == ["rate_limited", "server_error", None]
    assert "text" not in result and "completion" not in result and "messages" not in result
    (opened,) = events(caplog, "breaker_open")
    assert opened == {
        "event": "breaker_open",
        "request_id": r.request_id,
        "task": "plain",
        "model": "mini",
        "breaker": "strict",
        "error_kind": "server_error",
        "reason": "failure_threshold",
    }


def test_events_never_contain_prompt_answer_key_or_redacted_values(
    server: MockLLMServer, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_reply(MINI, text="zebra-answer-9912 for [EMAIL_1]")
    caplog.set_level(logging.DEBUG, logger="policyrouter")  # everything policyrouter logs, at any level
    r = router.complete("guarded", SECRET_PROMPT)
    assert r.text == "zebra-answer-9912 for jane.doe@example.com"
    server.script(MINI, [401, 401, 401])
    server.script(HAIKU, [500, 500, 500])
    with pytest.raises(AllModelsFailed):
        router.complete("guarded", SECRET_PROMPT)
    with pytest.raises(GuardBlocked):
        router.complete("guarded", "password: hunter2 " + SECRET_PROMPT)

    assert [e["outcome"] for e in events(caplog) if e["event"] in ("result", "error")] == [
        "ok",
        "all_models_failed",
        "guard_blocked",
    ]
    ok, failed, blocked = (e for e in events(caplog) if e["event"] in ("result", "error"))
    assert ok["guards"] == {"redacted": {"card": 1, "email": 1}, "blocked": None, "max_chars_exceeded": False}
    assert blocked["rule"] == "no-passwords" and blocked["guards"]["blocked"] == "no-passwords"
    assert failed["error"] == "AllModelsFailed" and failed["fallbacks"][0]["reason"] == "auth"
    logged = everything_logged(caplog)
    for forbidden in (
        "zebra-marker-7731",  # the prompt
        "zebra-answer-9912",  # the completion
        "jane.doe@example.com",  # a redacted value
        "4111",
        "hunter2",  # what a block rule matched
        KEYS["OPENAI_API_KEY"],
        KEYS["ANTHROPIC_API_KEY"],
        "SECRET",
    ):
        assert forbidden not in logged, forbidden


def test_log_content_opts_in_after_redaction(
    server: MockLLMServer, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_reply(MINI, text="Hi [EMAIL_1], also reach me at bob@example.org")
    caplog.set_level(logging.INFO, logger="policyrouter.events")
    r = router.complete("logged", SECRET_PROMPT)
    assert r.text == "Hi jane.doe@example.com, also reach me at bob@example.org"
    (result,) = events(caplog, "result")
    assert result["messages"] == [
        {"role": "user", "content": "zebra-marker-7731 please help [EMAIL_1] with card [CARD_1]"}
    ]
    assert result["completion"] == "Hi [EMAIL_1], also reach me at [EMAIL]"
    logged = everything_logged(caplog)
    assert "jane.doe@example.com" not in logged and "bob@example.org" not in logged and "4111" not in logged


def test_no_logging_and_no_hooks_builds_no_events(server: MockLLMServer, router: Router) -> None:
    logging.getLogger("policyrouter.events").setLevel(logging.WARNING)
    try:
        assert not router.events.active("result")
        assert router.complete("plain", "hi").model == "mini"
    finally:
        logging.getLogger("policyrouter.events").setLevel(logging.NOTSET)


def test_sync_hooks_and_a_raising_hook_does_not_fail_the_request(
    server: MockLLMServer, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str]] = []
    router.on("attempt", lambda e: seen.append(("attempt", e["model"])))
    router.on("result", lambda e: seen.append(("result", e["outcome"])))

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    router.on("result", broken)
    r = router.complete("plain", "hi")
    assert r.model == "mini"
    assert seen == [("attempt", "mini"), ("result", "ok")]
    (record,) = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert "result hook" in record.getMessage() and record.exc_info is not None
    with pytest.raises(ValueError, match="unknown event"):
        router.on("results", print)


def test_async_hooks_under_acomplete_and_under_complete(server: MockLLMServer, router: Router) -> None:
    seen: list[str] = []

    async def hook(event: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(event["request_id"])

    router.on("result", hook)
    r1 = router.complete("plain", "sync caller")  # no loop running: the hook runs before complete returns
    assert seen == [r1.request_id]

    async def main() -> str:
        r = await router.acomplete("plain", "async caller")
        for _ in range(10):  # the hook was scheduled on this loop; let it run
            if len(seen) == 2:
                break
            await asyncio.sleep(0)
        await router.aclose()
        return str(r.request_id)

    r2 = asyncio.run(main())
    assert seen == [r1.request_id, r2]


def test_budget_soft_limit_fires_once(server: MockLLMServer, router: Router) -> None:
    server.set_reply(MINI, text="ok", usage={"input": 1000, "output": 100})  # $0.0012 each; soft limit at $0.001
    fired: list[dict[str, Any]] = []
    router.on("budget_soft_limit", fired.append)
    for _ in range(3):
        router.complete("budgeted", "hi")
    assert len(fired) == 1
    assert fired[0]["budget"] == "small" and fired[0]["limit_usd"] == 0.01
    assert fired[0]["spent_usd"] == pytest.approx(0.0012)


def test_json_formatter_gets_every_field(server: MockLLMServer, router: Router) -> None:
    """What a JSON log handler does with ``record.policyrouter`` (structlog's stdlib bridge alike)."""

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps({"logger": record.name, "msg": record.getMessage(), **record.policyrouter})

    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("policyrouter.events")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        r = router.complete("plain", "hi", tenant="acme")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    parsed = [json.loads(line) for line in lines]
    assert [p["event"] for p in parsed] == ["attempt", "result"]
    assert parsed[1]["msg"] == f"policyrouter.result request_id={r.request_id} task=plain outcome=ok"
    assert parsed[1]["tenant"] == "acme" and parsed[1]["model"] == "mini"


def test_input_refused_before_any_call_still_gets_an_error_event(server: MockLLMServer, router: Router) -> None:
    from policyrouter import InputTooLong

    seen: list[dict[str, Any]] = []
    router.on("error", seen.append)
    with pytest.raises(InputTooLong):
        router.complete("short", SECRET_PROMPT, tenant="acme")
    (event,) = seen
    assert (event["task"], event["outcome"], event["error"], event["tenant"]) == (
        "short",
        "input_too_long",
        "InputTooLong",
        "acme",
    )
    assert event["attempts"] == [] and event["cost_usd"] == 0
    assert "zebra" not in json.dumps(event) and server.requests == []
