"""MockLLMServer driven through the real openai and anthropic SDKs (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import Message, MessageParam, RawMessageStreamEvent
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionStreamOptionsParam,
)

from policyrouter.testing import Fault, MockLLMServer, RecordedRequest
from policyrouter.testing.clock import FakeClock

PROMPT = "what is the capital of France"
USER = [{"role": "user", "content": PROMPT}]
OPENAI_USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
ANTHROPIC_USER: list[MessageParam] = [{"role": "user", "content": PROMPT}]


# Building an SDK's HTTP client (TLS context, CA bundle) costs ~100 ms; share one per session.
# SDK clients below are not closed, because closing one would close the shared HTTP client.


@pytest.fixture(scope="session")
def openai_http() -> Iterator[openai.DefaultHttpxClient]:
    with openai.DefaultHttpxClient() as client:
        yield client


@pytest.fixture(scope="session")
def anthropic_http() -> Iterator[anthropic.DefaultHttpxClient]:
    with anthropic.DefaultHttpxClient() as client:
        yield client


@pytest.fixture
def oai(mock_llm_server: MockLLMServer, openai_http: openai.DefaultHttpxClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=mock_llm_server.openai_base_url, api_key="sk-secret", max_retries=0, http_client=openai_http
    )


@pytest.fixture
def claude(mock_llm_server: MockLLMServer, anthropic_http: anthropic.DefaultHttpxClient) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=mock_llm_server.anthropic_base_url, api_key="sk-ant", max_retries=0, http_client=anthropic_http
    )


def chat(client: openai.OpenAI, model: str = "gpt-mock", timeout: float = 5.0) -> ChatCompletion:
    return client.chat.completions.create(model=model, messages=OPENAI_USER, timeout=timeout)


def chat_stream(
    client: openai.OpenAI, model: str = "gpt-mock", include_usage: bool | None = None
) -> openai.Stream[ChatCompletionChunk]:
    if include_usage is None:
        return client.chat.completions.create(model=model, messages=OPENAI_USER, stream=True)
    options: ChatCompletionStreamOptionsParam = {"include_usage": include_usage}
    return client.chat.completions.create(model=model, messages=OPENAI_USER, stream=True, stream_options=options)


def message(client: anthropic.Anthropic, model: str = "claude-mock", timeout: float = 5.0) -> Message:
    return client.messages.create(model=model, max_tokens=64, messages=ANTHROPIC_USER, timeout=timeout)


def message_stream(client: anthropic.Anthropic, model: str = "claude-mock") -> anthropic.Stream[RawMessageStreamEvent]:
    return client.messages.create(model=model, max_tokens=64, messages=ANTHROPIC_USER, stream=True)


# --------------------------------------------------------------------------- normal answers


def test_openai_completion_default_reply(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    completion = chat(oai)

    choice = completion.choices[0]
    assert choice.message.content == "mock answer from gpt-mock to a 6-word prompt"
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.id == "chatcmpl-mock-1"
    assert completion._request_id == "req_mock_1"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len("what is the capital of France") // 4 + 1
    assert completion.usage.completion_tokens == 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 8
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


def test_anthropic_completion_configured_reply(mock_llm_server: MockLLMServer, claude: anthropic.Anthropic) -> None:
    mock_llm_server.set_reply(
        "claude-mock", text="Paris.", usage={"input": 120, "output": 3, "cached": 100, "cache_write": 20}
    )

    reply = message(claude)

    assert reply.type == "message"
    assert reply.id == "msg_mock_1"
    assert reply._request_id == "req_mock_1"
    assert reply.stop_reason == "end_turn"
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].type == "text" and reply.content[0].text == "Paris."
    usage = reply.usage
    assert (usage.input_tokens, usage.output_tokens) == (120, 3)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 20)


def test_default_reply_is_deterministic(oai: openai.OpenAI) -> None:
    first, second = chat(oai), chat(oai)

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage


def test_async_openai_client(mock_llm_server: MockLLMServer) -> None:
    async def run() -> tuple[str | None, str | None]:
        async with openai.AsyncOpenAI(
            base_url=mock_llm_server.openai_base_url, api_key="test", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model="gpt-async", messages=OPENAI_USER)
            parts = []
            stream = await client.chat.completions.create(model="gpt-async", messages=OPENAI_USER, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return completion.choices[0].message.content, "".join(parts)

    text, streamed = asyncio.run(run())

    assert text == streamed == "mock answer from gpt-async to a 6-word prompt"


def test_request_log_records_and_redacts(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    chat(oai, "gpt-a")
    message(claude, "claude-b")

    first, second = mock_llm_server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.protocol, first.path, first.model, first.status) == ("openai", "/v1/chat/completions", "gpt-a", 200)
    assert first.body["messages"] == USER
    assert first.headers["authorization"] == "***"
    assert second.protocol == "anthropic" and second.path == "/v1/messages"
    assert second.headers["authorization"] == "***"  # anthropic 2.x sends the key as a Bearer token
    httpx2.post(
        mock_llm_server.anthropic_base_url + "/v1/messages",
        json={"model": "raw", "max_tokens": 5, "messages": USER},
        headers={"x-api-key": "sk-raw"},
    )
    assert mock_llm_server.requests[2].headers["x-api-key"] == "***"
    assert "sk-" not in repr(mock_llm_server.requests)
    assert mock_llm_server.requests_for("claude-b") == [second]


def test_models_endpoint_lists_configured_models(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.set_reply("gpt-one", text="x")
    mock_llm_server.script("claude-two", ["ok"])

    assert [model.id for model in oai.models.list()] == ["gpt-one", "claude-two"]
    assert [model.id for model in claude.models.list()] == ["gpt-one", "claude-two"]
    assert {request.protocol for request in mock_llm_server.requests} == {"models"}


def test_unknown_path_is_a_json_404(mock_llm_server: MockLLMServer) -> None:
    response = httpx2.get(mock_llm_server.url + "/v1/embeddings")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert mock_llm_server.requests[0].protocol == "unknown"


# --------------------------------------------------------------------------- scripted errors


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (529, openai.InternalServerError, "server_error"),
    ],
)
def test_openai_status_errors(
    mock_llm_server: MockLLMServer,
    oai: openai.OpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    error_type: str,
) -> None:
    mock_llm_server.script("gpt-mock", [status])

    with pytest.raises(error_class) as caught:
        chat(oai)

    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.request_id == "req_mock_1"
    assert chat(oai).choices[0].finish_reason == "stop"  # script exhausted: normal again
    assert mock_llm_server.status_counts == {status: 1, 200: 1}


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_status_errors(
    mock_llm_server: MockLLMServer,
    claude: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    mock_llm_server.script("claude-mock", [status, "ok"])

    with pytest.raises(error_class) as caught:
        message(claude)

    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.request_id == "req_mock_1"
    assert message(claude).stop_reason == "end_turn"


def test_retry_after_headers_reach_the_exception(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", [Fault(status=429, retry_after_ms=200)])
    mock_llm_server.script("claude-mock", [Fault(status=529, retry_after_s=1.5)])

    with pytest.raises(openai.RateLimitError) as rate_limited:
        chat(oai)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        message(claude)

    assert rate_limited.value.response.headers["retry-after-ms"] == "200"
    assert "retry-after" not in rate_limited.value.response.headers
    assert overloaded.value.response.headers["retry-after"] == "1.5"
    assert mock_llm_server.count_429 == 1


def test_context_length_errors(mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    mock_llm_server.script("gpt-mock", [Fault(status=400, kind="context_length")])
    mock_llm_server.script("claude-mock", ["context_length"])

    with pytest.raises(openai.BadRequestError) as openai_error:
        chat(oai)
    with pytest.raises(anthropic.BadRequestError) as anthropic_error:
        message(claude)

    assert openai_error.value.code == "context_length_exceeded"
    assert anthropic_error.value.type == "invalid_request_error"
    assert anthropic_error.value.api_message == "prompt is too long: 250000 tokens > 200000 maximum"


def test_reset_is_a_connection_error(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", ["reset"])
    mock_llm_server.script("claude-mock", [Fault(kind="reset")])

    with pytest.raises(openai.APIConnectionError) as openai_error:
        chat(oai)
    with pytest.raises(anthropic.APIConnectionError):
        message(claude)

    assert not isinstance(openai_error.value, openai.APITimeoutError)
    assert [request.status for request in mock_llm_server.requests] == [0, 0]
    assert sum(mock_llm_server.status_counts.values()) == 0
    assert chat(oai).choices[0].finish_reason == "stop"


def test_stall_trips_the_client_timeout(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", [Fault(kind="stall", seconds=5)])
    mock_llm_server.script("claude-mock", [Fault(kind="stall", seconds=5)])

    with pytest.raises(openai.APITimeoutError):
        chat(oai, timeout=0.2)
    with pytest.raises(anthropic.APITimeoutError):
        message(claude, timeout=0.2)
    # the stalled handlers are still waiting; stop() (from the fixture) wakes them


def test_latency_fault_delays_then_answers(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.script("gpt-mock", [Fault(latency_s=0.3), Fault(latency_s=0.01)])

    with pytest.raises(openai.APITimeoutError):
        chat(oai, timeout=0.05)
    assert chat(oai).choices[0].finish_reason == "stop"


def test_malformed_body_fails_to_parse(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", ["malformed"])
    mock_llm_server.script("claude-mock", [Fault(kind="malformed")])

    # Both SDKs let the JSON decoder's error escape for a 200 with an invalid body.
    with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError)):
        chat(oai)
    with pytest.raises((json.JSONDecodeError, anthropic.APIResponseValidationError)):
        message(claude)
    assert mock_llm_server.status_counts == {200: 2}


def test_malformed_stream_fails_mid_iteration(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", ["malformed"])
    mock_llm_server.script("claude-mock", ["malformed"])

    with pytest.raises(json.JSONDecodeError):
        list(chat_stream(oai))
    with pytest.raises(json.JSONDecodeError):
        list(message_stream(claude))


def test_invalid_request_body_is_a_400(mock_llm_server: MockLLMServer) -> None:
    not_json = httpx2.post(mock_llm_server.openai_base_url + "/chat/completions", content=b"{nope")
    no_model = httpx2.post(mock_llm_server.anthropic_base_url + "/v1/messages", json={"messages": USER})

    assert not_json.status_code == no_model.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    assert no_model.json()["error"]["message"] == "Invalid request: 'model' is required (mock)."
    assert [(r.protocol, r.model, r.status) for r in mock_llm_server.requests] == [
        ("openai", None, 400),
        ("anthropic", None, 400),
    ]


def test_refusal(mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    mock_llm_server.script("gpt-mock", ["refusal"])
    mock_llm_server.script("claude-mock", ["refusal"])

    completion = chat(oai)
    reply = message(claude)

    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content is None
    assert reply.stop_reason == "refusal"
    assert reply.content == []


def test_script_entries_are_consumed_in_order(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.script("gpt-mock", [429, "ok", 500])

    outcomes: list[object] = []
    for _ in range(4):
        try:
            outcomes.append(chat(oai).choices[0].finish_reason)
        except openai.APIStatusError as error:
            outcomes.append(error.status_code)

    assert outcomes == [429, "stop", 500, "stop"]
    assert chat(oai, "other-model").choices[0].finish_reason == "stop"


def test_invalid_faults_are_rejected(mock_llm_server: MockLLMServer) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        Fault(status=302)
    with pytest.raises(ValueError, match="cannot carry status"):
        Fault(status=500, kind="reset")
    with pytest.raises(ValueError, match="invalid script entry"):
        mock_llm_server.script("m", ["sometimes"])
    with pytest.raises(ValueError, match="usage keys"):
        mock_llm_server.set_reply("m", usage={"prompt": 1})


# --------------------------------------------------------------------------- streaming


def test_openai_stream_with_usage(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.set_reply("gpt-mock", text="The capital is Paris.", usage={"input": 40, "cached": 32})

    chunks = list(chat_stream(oai, include_usage=True))

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "The capital is Paris."
    assert len(deltas) == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (40, 4, 44)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 32
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-mock-1" for c in chunks)


def test_openai_stream_without_usage(oai: openai.OpenAI) -> None:
    chunks = list(chat_stream(oai))

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_anthropic_stream_helper(mock_llm_server: MockLLMServer, claude: anthropic.Anthropic) -> None:
    mock_llm_server.set_reply("claude-mock", text="The capital is Paris.", usage={"input": 40, "cached": 32})

    with claude.messages.stream(model="claude-mock", max_tokens=64, messages=ANTHROPIC_USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "The capital is Paris."
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (40, 4)
    assert final.usage.cache_read_input_tokens == 32


def test_anthropic_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(message_stream(claude))

    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert types.count("content_block_delta") == 8
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens > 0
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 8


def test_interrupted_streams_raise_mid_iteration(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    mock_llm_server.script("gpt-mock", [Fault(kind="interrupt_stream", after_chunks=2)])
    mock_llm_server.script("claude-mock", [Fault(kind="interrupt_stream", after_chunks=2)])

    # Depending on the SDK version, a transport error while iterating a stream is either
    # wrapped in APIConnectionError or escapes as the HTTP library's own error.
    transport_errors = (httpx.TransportError, httpx2.TransportError)
    received: list[str] = []
    with pytest.raises((openai.APIConnectionError, *transport_errors)):
        for chunk in chat_stream(oai):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "mock"]

    events: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, *transport_errors)):
        for event in message_stream(claude):
            events.append(event.type)
    assert events == ["message_start", "content_block_start"]


def test_interrupt_without_stream_truncates_the_body(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.script("gpt-mock", ["interrupt_stream"])

    with pytest.raises(openai.APIConnectionError):
        chat(oai)


# --------------------------------------------------------------------------- tool calls


def test_tool_calls_both_protocols(
    mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}]
    mock_llm_server.set_reply("gpt-mock", tool_calls=calls)
    mock_llm_server.set_reply("claude-mock", tool_calls=calls)

    completion = chat(oai)
    reply = message(claude)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (tool_call,) = choice.message.tool_calls
    assert tool_call.type == "function"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris", "unit": "C"}

    assert reply.stop_reason == "tool_use"
    (block,) = reply.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "Paris", "unit": "C"})


def test_streamed_tool_calls(mock_llm_server: MockLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    calls = [{"name": "lookup", "arguments": {"q": "x"}}, {"name": "fetch", "arguments": {"id": 7}}]
    mock_llm_server.set_reply("gpt-mock", text="Checking.", tool_calls=calls)
    mock_llm_server.set_reply("claude-mock", text="Checking.", tool_calls=calls)

    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in chat_stream(oai):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.function and delta.function.name:
                names[delta.index] = delta.function.name
            if delta.function and delta.function.arguments:
                arguments[delta.index] = arguments.get(delta.index, "") + delta.function.arguments
    assert finish == "tool_calls"
    assert names == {0: "lookup", 1: "fetch"}
    assert {i: json.loads(a) for i, a in arguments.items()} == {0: {"q": "x"}, 1: {"id": 7}}

    with claude.messages.stream(model="claude-mock", max_tokens=64, messages=ANTHROPIC_USER) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["text", "tool_use", "tool_use"]
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("lookup", {"q": "x"}),
        ("fetch", {"id": 7}),
    ]


# --------------------------------------------------------------------------- limits


def test_rpm_limit_uses_a_sliding_window_on_the_injected_clock(openai_http: openai.DefaultHttpxClient) -> None:
    clock = FakeClock()
    with MockLLMServer(clock=clock.now) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0, http_client=openai_http)
        server.enforce_limits("gpt-mock", rpm=2)

        chat(client)
        clock.advance(30)
        chat(client)
        with pytest.raises(openai.RateLimitError) as caught:
            chat(client)
        assert caught.value.response.headers["retry-after"] == "30"

        clock.advance(30)  # the first request leaves the window
        chat(client)
        assert server.count_429 == 1
        assert server.status_counts == {200: 3, 429: 1}
        assert [r.received_at for r in server.requests] == [1000.0, 1030.0, 1030.0, 1060.0]


def test_concurrency_limit(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.enforce_limits("gpt-mock", concurrency=1)
    mock_llm_server.script("gpt-mock", [Fault(kind="stall", seconds=5)])
    failures: list[BaseException] = []

    def stalled_call() -> None:
        try:
            chat(oai)
        except openai.APIConnectionError as error:
            failures.append(error)

    worker = threading.Thread(target=stalled_call)
    worker.start()
    arrived = threading.Event()
    for _ in range(1000):  # wait (bounded) until the stalled request is in flight
        if mock_llm_server.requests_for("gpt-mock"):
            break
        arrived.wait(0.005)

    with pytest.raises(openai.RateLimitError, match="concurrent"):
        chat(oai)
    mock_llm_server.stop()  # wakes the stalled handler and cuts its connection
    worker.join(5)

    assert not worker.is_alive()
    assert len(failures) == 1
    assert mock_llm_server.count_429 == 1


# --------------------------------------------------------------------------- connections, lifecycle


def test_one_client_reuses_one_connection(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    for _ in range(100):
        chat(oai)

    assert mock_llm_server.connections_opened == 1
    assert {request.connection_id for request in mock_llm_server.requests} == {1}


def test_stop_is_prompt_with_open_keep_alive_connections(openai_http: openai.DefaultHttpxClient) -> None:
    server = MockLLMServer().start()
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0, http_client=openai_http)
    chat(client)  # leaves an idle keep-alive connection in the client's pool

    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(5)

    assert not stopper.is_alive()
    assert not [t for t in threading.enumerate() if "process_request_thread" in t.name]
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    server.stop()  # idempotent


def test_reset_forgets_everything(mock_llm_server: MockLLMServer, oai: openai.OpenAI) -> None:
    mock_llm_server.set_reply("gpt-mock", text="configured")
    mock_llm_server.script("gpt-mock", [500, 500])
    with pytest.raises(openai.InternalServerError):
        chat(oai)

    mock_llm_server.reset()

    assert mock_llm_server.requests == []
    assert mock_llm_server.status_counts == {}
    assert mock_llm_server.connections_opened == 0
    completion = chat(oai)
    assert completion.choices[0].message.content == "mock answer from gpt-mock to a 6-word prompt"
    assert completion._request_id == "req_mock_1"


def test_request_log_can_be_disabled_for_benchmarks(openai_http: openai.DefaultHttpxClient) -> None:
    with MockLLMServer(record_requests=False) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0, http_client=openai_http)
        chat(client)

        assert server.requests == []
        assert server.status_counts == {200: 1}
        assert server.connections_opened == 1


def test_server_properties_require_a_running_server() -> None:
    server = MockLLMServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.openai_base_url == server.url + "/v1"
        assert server.anthropic_base_url == server.url
    with pytest.raises(RuntimeError, match="only be started once"):
        server.start()


def test_standalone_entry_point_parses_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from policyrouter.testing.mock_server import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    assert "--port" in capsys.readouterr().out


def test_a_port_already_taken_is_an_os_error_not_a_crash_in_cleanup() -> None:
    with MockLLMServer() as taken:
        port = int(taken.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):  # the bind fails; closing what was opened must not fail too
            MockLLMServer(port=port).start()
