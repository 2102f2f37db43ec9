"""MockProvider, the factory, and the SDK-free pieces of providers/ (classification,
lazy shared clients)."""

from __future__ import annotations

import asyncio
import email.utils
import threading
from typing import Any

import pytest

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.policy.models import ProviderSpec
from policyrouter.providers import (
    AnthropicProvider,
    MockProvider,
    OpenAIProvider,
    Provider,
    create_provider,
)
from policyrouter.providers.base import LoopLocal, Shared, aiohttp_client, read_secret
from policyrouter.providers.classify import (
    ANTHROPIC_STOP_REASONS,
    OPENAI_FINISH_REASONS,
    PROVIDER_ERROR_KINDS,
    STATUS_KINDS,
    is_context_length,
    kind_for_status,
    normalize_finish_reason,
    parse_retry_after,
    redact,
    request_id_from,
    status_error,
)
from policyrouter.types import ProviderRequest, ProviderResponse, Usage


def make_request(text: str = "one two three", **kw: Any) -> ProviderRequest:
    kw.setdefault("model", "m1")
    kw.setdefault("messages", ({"role": "user", "content": text},))
    kw.setdefault("max_output_tokens", 100)
    return ProviderRequest(**kw)


# ---------------------------------------------------------------------------- MockProvider


def test_default_answer_is_deterministic_and_derived_from_the_input() -> None:
    provider = MockProvider("offline")
    long = " ".join(f"w{i}" for i in range(40))
    request = make_request(long, system="sys prompt")
    first, second = provider.complete(request), provider.complete(request)
    assert first.text == second.text == "[m1] " + " ".join(f"w{i}" for i in range(12))
    assert first.model == "m1"
    assert first.finish_reason == "stop"
    assert (first.request_id, second.request_id) == ("mock-1", "mock-2")
    assert provider.calls == 2
    # ceil(chars / 4) per non-empty message: system 10 chars -> 3, user len(long) chars
    assert first.usage == Usage(input_tokens=3 + -(-len(long) // 4), output_tokens=-(-len(first.text) // 4))


def test_default_answer_uses_the_last_user_message_and_counts_every_message() -> None:
    messages = (
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        {"role": "assistant", "content": ""},
    )
    response = MockProvider().complete(make_request(messages=messages))
    assert response.text == "[m1] second question"
    assert response.usage.input_tokens == 4 + 1 + 4  # "a" counts as 1, "" counts 0


def test_fixed_reply_and_output_cap() -> None:
    provider = MockProvider(reply="x" * 100)
    assert provider.complete(make_request()).usage.output_tokens == 25
    capped = provider.complete(make_request(max_output_tokens=10))
    assert capped.usage.output_tokens == 10
    assert capped.text == "x" * 40
    assert capped.finish_reason == "length"


def test_handler_answers_and_may_raise_provider_errors() -> None:
    seen: list[ProviderRequest] = []

    def handler(request: ProviderRequest) -> ProviderResponse:
        seen.append(request)
        if len(seen) == 1:
            raise ProviderError("rate_limited", "slow down", status_code=429, retry_after_s=1.0)
        return ProviderResponse(text="hi", usage=Usage(3, 1))

    provider = MockProvider("m", handler)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.kind == "rate_limited"
    assert provider.complete(make_request()).text == "hi"
    assert len(seen) == 2


def test_async_handler_is_awaited_by_acomplete_only() -> None:
    async def handler(request: ProviderRequest) -> ProviderResponse:
        return ProviderResponse(text=f"async {request.model}", usage=Usage())

    provider = MockProvider("m", handler)
    assert asyncio.run(provider.acomplete(make_request())).text == "async m1"
    with pytest.raises(TypeError, match="acomplete"):
        provider.complete(make_request())


def test_sync_handler_works_in_acomplete() -> None:
    provider = MockProvider("m", lambda r: ProviderResponse(text="sync", usage=Usage()))
    assert asyncio.run(provider.acomplete(make_request())).text == "sync"


def test_latency_sleeps_through_the_injected_sleep() -> None:
    slept: list[float] = []
    provider = MockProvider(latency_s=0.25, sleep=slept.append)
    provider.complete(make_request())
    provider.complete(make_request())
    assert slept == [0.25, 0.25]
    MockProvider(sleep=slept.append).complete(make_request())
    assert slept == [0.25, 0.25]  # no latency, no sleep call


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    async def asleep(self, seconds: float) -> None:
        self.t += seconds


def test_latency_uses_the_clock_sync_and_async() -> None:
    clock = FakeClock()
    provider = MockProvider(latency_s=1.5, clock=clock)
    provider.complete(make_request())
    asyncio.run(provider.acomplete(make_request()))
    assert clock.t == 3.0


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError):
        MockProvider(latency_s=-1)


def test_mock_is_a_provider_and_close_is_a_noop() -> None:
    provider = MockProvider()
    assert isinstance(provider, Provider)
    provider.close()
    asyncio.run(provider.aclose())
    assert provider.kind == "mock"


# ---------------------------------------------------------------------------- factory


def test_factory_builds_each_kind_without_creating_clients() -> None:
    env = {"K": "sk-test-SECRET123"}
    openai_p = create_provider("o", ProviderSpec(kind="openai", api_key_env="K"), environ=env)
    compat = create_provider(
        "gw",
        ProviderSpec(kind="openai_compatible", base_url="https://gw.example/v1", api_key_env="K"),
        environ=env,
    )
    claude = create_provider(
        "a", ProviderSpec(kind="anthropic", api_key_env="K", async_transport="aiohttp"), environ=env
    )
    mock = create_provider("m", ProviderSpec.model_validate({"kind": "mock", "mock": {"reply": "fixed"}}))

    assert isinstance(openai_p, OpenAIProvider) and openai_p.kind == "openai"
    assert isinstance(compat, OpenAIProvider) and compat.kind == "openai_compatible"
    assert compat.base_url == "https://gw.example/v1"
    assert isinstance(claude, AnthropicProvider) and claude.async_transport == "aiohttp"
    assert isinstance(mock, MockProvider)
    assert mock.complete(make_request()).text == "fixed"
    for provider in (openai_p, compat, claude):
        assert provider._keys.read() == ()  # lazy: no key read, no client built
        assert "SECRET" not in repr(provider)


def test_factory_mock_latency_uses_the_clock() -> None:
    clock = FakeClock()
    spec = ProviderSpec.model_validate({"kind": "mock", "mock": {"latency_s": 0.5}})
    create_provider("m", spec, clock=clock).complete(make_request())
    assert clock.t == 0.5


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (402, "auth"),
        (403, "auth"),
        (404, "not_found"),
        (408, "timeout"),
        (409, "server_error"),
        (413, "context_length"),
        (418, "bad_request"),
        (422, "bad_request"),
        (429, "rate_limited"),
        (499, "connection"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "overloaded"),
        (504, "server_error"),
        (529, "overloaded"),
        (599, "server_error"),
    ],
)
def test_kind_for_status(status: int, kind: str) -> None:
    assert kind_for_status(status) == kind


def test_every_mapped_kind_is_a_policy_error_kind() -> None:
    from policyrouter.policy.models import ERROR_KINDS

    assert set(STATUS_KINDS.values()) <= set(PROVIDER_ERROR_KINDS) <= set(ERROR_KINDS)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("context_length_exceeded", None, True),
        (None, "This model's maximum context length is 8192 tokens.", True),
        (None, "prompt is too long: 250000 tokens > 200000 maximum", True),
        ("invalid_value", "temperature must be <= 2", False),
        (None, None, False),
    ],
)
def test_is_context_length(code: str | None, message: str | None, expected: bool) -> None:
    assert is_context_length(code, message) is expected


def test_status_error_builds_a_classified_redacted_error() -> None:
    error = status_error(
        "oai",
        400,
        headers={"x-request-id": "req_1", "retry-after": "3"},
        code="context_length_exceeded",
        message="key sk-SECRET is too long",
        secrets=("sk-SECRET", None),
    )
    assert (error.kind, error.status_code, error.retry_after_s, error.request_id) == (
        "context_length",
        400,
        3.0,
        "req_1",
    )
    assert "sk-SECRET" not in str(error) and "***" in str(error)
    # context length only upgrades a 400
    assert status_error("oai", 500, headers=None, message="maximum context length").kind == "server_error"


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "9"}) == 9.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-5"}) is None
    assert parse_retry_after({"retry-after": "inf"}) is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=lambda: now) == 30.0
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=lambda: now) == 0.0


def test_request_id_from_and_redact() -> None:
    assert request_id_from({"x-request-id": "a"}) == "a"
    assert request_id_from({"request-id": "b"}) == "b"
    assert request_id_from({}) is None
    assert redact("x" * 1000, ()).endswith("...")
    assert len(redact("x" * 1000, ())) == 500


def test_finish_reasons() -> None:
    assert normalize_finish_reason(OPENAI_FINISH_REASONS, "length") == "length"
    assert normalize_finish_reason(OPENAI_FINISH_REASONS, "content_filter") == "content_filter"
    assert normalize_finish_reason(OPENAI_FINISH_REASONS, None) == "stop"
    assert normalize_finish_reason(ANTHROPIC_STOP_REASONS, "end_turn") == "stop"
    assert normalize_finish_reason(ANTHROPIC_STOP_REASONS, "max_tokens") == "length"
    assert normalize_finish_reason(ANTHROPIC_STOP_REASONS, "tool_use") == "tool_calls"
    assert normalize_finish_reason(ANTHROPIC_STOP_REASONS, "refusal") == "content_filter"
    assert normalize_finish_reason(ANTHROPIC_STOP_REASONS, "something_new") == "something_new"


# ---------------------------------------------------------------------------- shared pieces


def test_shared_builds_once_across_threads() -> None:
    built: list[object] = []
    gate = threading.Event()

    def factory() -> object:
        built.append(object())
        gate.wait(0.05)  # widen the race window
        return built[-1]

    shared: Shared[object] = Shared(factory)
    start = threading.Barrier(16)
    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(shared.get())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert all(r is built[0] for r in results)
    assert shared.take() is built[0]
    assert shared.peek() is None


def test_loop_local_builds_once_per_loop() -> None:
    built: list[object] = []

    def factory() -> object:
        built.append(object())
        return built[-1]

    local: LoopLocal[object] = LoopLocal(factory)

    async def twice() -> tuple[object, object]:
        return local.get(), local.get()

    a1, a2 = asyncio.run(twice())
    b1, b2 = asyncio.run(twice())
    assert a1 is a2 and b1 is b2 and a1 is not b1
    assert len(built) == 2


def test_read_secret_names_the_variable_only() -> None:
    assert read_secret({"V": "s3cret"}, "V", provider="p") == "s3cret"
    with pytest.raises(ConfigurationError, match="V") as info:
        read_secret({"V": "", "W": "s3cret"}, "V", provider="p")
    assert "s3cret" not in str(info.value)


def test_aiohttp_client_without_support_names_the_extra() -> None:
    with pytest.raises(ConfigurationError, match=r"policyrouter\[aiohttp\]"):
        aiohttp_client(object(), provider="p", package="openai")
