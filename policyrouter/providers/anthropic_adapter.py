"""Adapter for the Anthropic Messages protocol (kind ``anthropic``).

Built on the official ``anthropic`` SDK, imported on first use (never at import of
policyrouter). One sync and one async client per API key (per event loop, for the
async one), created lazily and reused for every call. SDK retries are off
(``max_retries=0``).

Request mapping (the Messages API is not the Chat Completions API):

* ``system`` goes in the top-level ``system`` parameter. ``role: system`` (and
  ``developer``) messages found in ``messages`` (OpenAI-style lists) are folded into it,
  in order, joined by a blank line.
* ``max_tokens`` is required by the API: it is always ``request.max_output_tokens``.
* The API requires alternating roles: consecutive messages of the same role are merged
  (two strings join with a blank line; otherwise their content blocks concatenate).
* OpenAI-style tool history is translated: an assistant message's ``tool_calls`` become
  ``tool_use`` blocks, a ``role: tool`` message becomes a user ``tool_result`` block.
* ``stop`` -> ``stop_sequences``; ``temperature`` when set; ``request.extra`` merged
  last. Keys ``create`` accepts go as arguments, any other key into ``extra_body``:
  anthropic 2.x has no ``temperature``/``top_p``/``top_k`` arguments any more, so
  ``temperature`` travels in the body, where the API still reads it.
* Extended thinking: a reasoning model (``request.reasoning``) asked for a budget gets
  ``thinking: {type: enabled, budget_tokens}`` and no ``temperature`` (the API allows
  none with thinking). The budget must stay below ``max_tokens`` (thinking is part of the
  output): a request that breaks this fails ``bad_request`` before anything is sent. An
  assistant message's ``thinking_blocks`` (``Result.thinking_blocks`` of an earlier answer)
  go first in its content, verbatim, as the API requires to continue a tool-use turn.
* A timeout is always passed per call (``request.timeout_s``, else 600 s), so the SDK's
  pre-flight "streaming is required" refusal of large ``max_tokens`` never fires: the
  deadline is the policy's business.

Response mapping: ``text`` concatenates the text blocks (never a thinking block: those
become ``thinking_blocks``, dumped as received with their ``signature``, and streamed
``thinking_delta`` events become ``StreamEvent.thinking``); ``tool_use`` blocks become
``{"id", "name", "arguments"}`` with ``arguments`` a JSON string, as for OpenAI.
``stop_reason``: end_turn/stop_sequence -> ``stop``, max_tokens and
model_context_window_exceeded -> ``length``, tool_use -> ``tool_calls``; ``refusal``
raises :class:`ProviderError` kind ``content_filter`` (with the billed usage).

Server tools billed per use (web search, web fetch) are counted in
``usage.server_tool_use``: each non-zero counter becomes ``Usage.tool_uses``, which the
model's ``pricing.tool_fees`` prices.

Provider prompt caching (``request.prompt_cache``): a ``cache_control: {type: ephemeral,
ttl}`` breakpoint goes on the last tool definition (``tools``), on the system prompt, sent
as one text block (``system``), and on the last content block of the last message
(``history``), in that order, never past four marks per request (marks already in the
messages count). The usage's ``cache_creation.ephemeral_1h_input_tokens`` becomes
``Usage.cache_write_1h_tokens`` (the rest of the writes are 5-minute ones).

Usage normalization: Anthropic reports ``input_tokens`` *excluding* cache reads and
cache writes. So that ``Usage.input_tokens`` means the whole prompt for every provider,
``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``,
with ``cached_input_tokens = cache_read_input_tokens`` and ``cache_write_tokens =
cache_creation_input_tokens`` as subsets of it (as OpenAI reports them).
``reasoning_tokens`` is ``output_tokens_details.thinking_tokens`` where the API reports it,
else 0 (thinking is inside ``output_tokens`` either way, and priced as output).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from policyrouter.errors import ProviderError
from policyrouter.providers.base import (
    StreamEvent,
    _field,
    aiohttp_client,
    estimated_usage,
    limited,
    merge_extra,
    stream_timeout,
    token_count,
)
from policyrouter.providers.classify import (
    ANTHROPIC_STOP_REASONS,
    CONTENT_FILTER,
    failure_error,
    normalize_finish_reason,
)
from policyrouter.providers.keys import EventSink, KeyRing, KeySpec, key_list
from policyrouter.providers.sdk_adapter import SdkAdapter, limited_client
from policyrouter.tokens import content_text
from policyrouter.types import Message, PromptCache, ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    import random

    import anthropic
    from anthropic.types import Usage as AnthropicUsage

__all__ = ["AnthropicProvider", "to_anthropic_messages"]

AsyncTransport = Literal["httpx", "aiohttp"]

MAX_BREAKPOINTS = 4
"""Most ``cache_control`` marks the Messages API takes in one request."""

DEFAULT_TIMEOUT_S = 600.0
"""Per-call timeout when the request has none (the SDK's own non-streaming default)."""

_SYSTEM_ROLES = frozenset({"system", "developer"})
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class AnthropicProvider(SdkAdapter):
    """A provider speaking the Anthropic Messages protocol.

    ``api_key_env`` names the environment variable holding the key, read from ``environ``
    at first use (default ``ANTHROPIC_API_KEY``), or a sequence of variables, or of
    ``(variable, weight)`` pairs, to rotate keys (see :mod:`policyrouter.providers.keys`;
    ``rng`` picks the key of each call, ``events`` receives ``key_missing`` and
    ``key_set_aside``). Keys are never stored outside the key ring and the SDK clients,
    nor shown in ``repr`` or error messages. anthropic 2.x sends it as
    ``Authorization: Bearer`` (not ``x-api-key``). The SDK still reads
    ``ANTHROPIC_BASE_URL`` (when ``base_url`` is unset) and ``ANTHROPIC_CUSTOM_HEADERS``
    from the process environment.
    """

    __slots__ = (
        "_async_http_client",
        "_create_params",
        "_headers",
        "_http_client",
        "_keys",
        "_sdk",
        "api_key_env",
        "async_transport",
        "base_url",
        "environ",
        "kind",
        "name",
    )

    default_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"
    """The variable holding the key when the policy names none."""

    keyless: ClassVar[str | None] = None
    """What a provider without keys authenticates with, for the key ring (a cloud's credential
    chain); ``None``: a key is required."""

    def __init__(
        self,
        name: str,
        *,
        api_key_env: KeySpec = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        async_transport: AsyncTransport = "httpx",
        environ: Mapping[str, str] = os.environ,
        http_client: Any = None,
        async_http_client: Any = None,
        rng: random.Random | None = None,
        events: EventSink | None = None,
    ) -> None:
        if async_transport not in ("httpx", "aiohttp"):
            raise ValueError(f"async_transport must be 'httpx' or 'aiohttp', not {async_transport!r}")
        self.name = name
        self.kind: str = "anthropic"
        self.api_key_env = api_key_env or self.default_key_env
        self.base_url = base_url
        self.async_transport = async_transport
        self.environ = environ
        self._headers = dict(headers or {})
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._sdk: Any = None
        self._create_params: frozenset[str] = frozenset()
        self._keys: KeyRing[anthropic.Anthropic, anthropic.AsyncAnthropic] = KeyRing(
            name,
            self._key_pairs(api_key_env),
            environ=environ,
            new_sync=self._new_client,
            new_async=self._new_async_client,
            rng=rng,
            events=events,
            keyless=self.keyless,
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def _key_pairs(self, api_key_env: KeySpec) -> tuple[tuple[str, float], ...]:
        """The ``(variable, weight)`` pairs of the keys the policy names (default
        :attr:`default_key_env`); none: keyless (a cloud's credential chain)."""
        return key_list(api_key_env or self.default_key_env)

    # ------------------------------------------------------------------ calls

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self._ready()
        params = self._params(request)

        def create(client: Any) -> tuple[Any, Any]:  # the raw response: its headers carry the rate limits
            raw = client.messages.with_raw_response.create(**params)
            return raw.parse(), raw.headers  # parsed inside the call: a malformed body is translated

        with limited(request):
            message, headers = self._call(create)
        return self._response(message, request, headers)

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        self._ready_async()
        params = self._params(request)

        async def create(client: Any) -> tuple[Any, Any]:
            raw = await client.messages.with_raw_response.create(**params)
            return await raw.parse(), raw.headers

        with limited(request):
            message, headers = await self._acall(create)
        return self._response(message, request, headers)

    def stream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> Generator[StreamEvent, None, None]:
        """One streamed call; usage from ``message_start`` and ``message_delta``."""
        self._ready()  # clients built (and the SDK imported) before the first read is timed
        acc = _Accumulator(self.name, request)
        return self._events(request, self._stream_params(request, read_timeout_s), acc)

    def astream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        self._ready_async()
        acc = _Accumulator(self.name, request)
        return self._aevents(request, self._stream_params(request, read_timeout_s), acc)

    # ------------------------------------------------------------------ clients

    def _endpoint(self, client: Any) -> Any:
        return client.messages.create

    def _status_details(self, exc: Any) -> tuple[str | None, str]:
        return exc.error_code, exc.api_message or exc.message

    def _usage_of(self, raw: Mapping[str, Any]) -> Usage | None:
        return _usage(raw)

    def _client_kwargs(self, key: str) -> dict[str, Any]:
        # Passing api_key explicitly also stops the SDK's own credential discovery
        # (ANTHROPIC_AUTH_TOKEN, profiles, workload identity).
        kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if self._headers:
            kwargs["default_headers"] = dict(self._headers)
        return kwargs

    def _load_sdk(self) -> Any:
        if self._sdk is None:
            import anthropic

            self._sdk = anthropic
        return self._sdk

    def _new_client(self, key: str) -> anthropic.Anthropic:
        kwargs = self._client_kwargs(key)
        sdk = self._load_sdk()
        http_client = self._http_client if self._http_client is not None else limited_client(sdk, sync=True)
        if http_client is not None:
            kwargs["http_client"] = http_client
        client: anthropic.Anthropic = self._client_classes(sdk)[0](**kwargs)
        self._remember_params(client.messages.create)
        return client

    def _new_async_client(self, key: str) -> anthropic.AsyncAnthropic:
        kwargs = self._client_kwargs(key)
        sdk = self._load_sdk()
        if self._async_http_client is not None:
            kwargs["http_client"] = self._async_http_client
        elif self.async_transport == "aiohttp":
            kwargs["http_client"] = aiohttp_client(sdk, provider=self.name, package="anthropic")
        elif (http_client := limited_client(sdk, sync=False)) is not None:
            kwargs["http_client"] = http_client
        client: anthropic.AsyncAnthropic = self._client_classes(sdk)[1](**kwargs)
        self._remember_params(client.messages.create)
        return client

    def _client_classes(self, sdk: Any) -> tuple[Any, Any]:
        """The SDK's sync and async client classes (a cloud's own, in a subclass)."""
        return sdk.Anthropic, sdk.AsyncAnthropic

    def _remember_params(self, create: Any) -> None:
        if not self._create_params:
            import inspect

            self._create_params = frozenset(inspect.signature(create).parameters)

    # ------------------------------------------------------------------ mapping

    def _params(self, request: ProviderRequest) -> dict[str, Any]:
        try:
            system, messages = to_anthropic_messages(request.messages, request.system)
        except ValueError as exc:
            raise ProviderError("bad_request", f"{self.name}: {exc}") from exc
        params: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_output_tokens,
            "timeout": request.timeout_s if request.timeout_s is not None else DEFAULT_TIMEOUT_S,
        }
        if system:
            params["system"] = system
        optional: dict[str, Any] = {}
        budget = request.reasoning.budget_tokens if request.reasoning is not None else None
        if budget is not None:
            if budget >= request.max_output_tokens:
                raise ProviderError(
                    "bad_request",
                    f"{self.name}: thinking budget {budget} must be below max_output_tokens "
                    f"{request.max_output_tokens} (thinking is part of the output)",
                )
            optional["thinking"] = {"type": "enabled", "budget_tokens": budget}
        elif request.temperature is not None:
            optional["temperature"] = request.temperature
        if request.stop:
            optional["stop_sequences"] = list(request.stop)
        if request.tools:
            optional["tools"] = [to_anthropic_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            optional["tool_choice"] = to_anthropic_tool_choice(request.tool_choice)
        output = request.output
        if output is not None and output.mode == "json_schema":
            # native structured output: one tool whose input is the answer, forced
            tool = {"name": output.name, "description": "Respond with the answer.", "input_schema": output.schema}
            optional["tools"] = [*optional.get("tools", ()), tool]
            optional["tool_choice"] = {"type": "tool", "name": output.name}
        if request.prompt_cache is not None and request.prompt_cache.breakpoints:
            place_breakpoints(request.prompt_cache, params, optional)
        if request.extra:
            optional.update(request.extra)
        if optional:
            # anthropic 2.x dropped `temperature` (and top_p/top_k) from `create`'s
            # arguments: whatever the SDK does not accept goes in the JSON body instead.
            merge_extra(params, optional, self._create_params)
        return params

    def _stream_params(self, request: ProviderRequest, read_timeout_s: float | None) -> dict[str, Any]:
        params = self._params(request)
        params["stream"] = True
        params["timeout"] = stream_timeout(self._sdk, params["timeout"], read_timeout_s)
        return params

    def _response(
        self, message: object, request: ProviderRequest, headers: Mapping[str, str] | None = None
    ) -> ProviderResponse:
        from anthropic.types import Message as AnthropicMessage

        if not isinstance(message, AnthropicMessage):
            raise failure_error(
                self.name,
                "malformed",
                f"expected a message body, got {type(message).__name__}",
                status=200,
            )
        output_tool = _output_tool(request)
        try:
            request_id = message._request_id
            usage = _usage(getattr(message, "usage", None))
            finish = normalize_finish_reason(ANTHROPIC_STOP_REASONS, message.stop_reason)
            texts, tool_calls, thinking = _content_parts(message.content, output_tool)
            if output_tool is not None and finish == "tool_calls" and not tool_calls:
                finish = "stop"  # the forced answer tool is the answer, not a tool call
            if usage is None:
                usage = estimated_usage(self.name, request, "".join(texts), tool_calls)
            if finish == CONTENT_FILTER:
                raise failure_error(
                    self.name,
                    CONTENT_FILTER,
                    "the model refused to answer (stop_reason=refusal)",
                    status=200,
                    request_id=request_id,
                    usage=usage,
                )
            return ProviderResponse(
                text="".join(texts),
                usage=usage,
                finish_reason=finish,
                request_id=request_id,
                model=message.model,
                tool_calls=tuple(tool_calls),
                thinking_blocks=tuple(thinking),
                headers=headers,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise failure_error(
                self.name,
                "malformed",
                f"message body is missing fields ({type(exc).__name__})",
                status=200,
                request_id=getattr(message, "_request_id", None),
            ) from exc


def place_breakpoints(cache: PromptCache, params: dict[str, Any], optional: dict[str, Any]) -> None:
    """Mark ``cache_control`` where ``cache`` asks (tools, system, history), up to four marks in all."""
    mark = {"type": "ephemeral", "ttl": cache.ttl}
    tools: list[dict[str, Any]] = optional.get("tools") or []
    messages: list[dict[str, Any]] = params["messages"]
    left = MAX_BREAKPOINTS - _marks(tools) - sum(_marks(m.get("content")) for m in messages)
    for where in ("tools", "system", "history"):
        if where not in cache.breakpoints or left <= 0:
            continue
        if where == "tools" and tools:
            tools[-1] = {**tools[-1], "cache_control": mark}
        elif where == "system" and isinstance(params.get("system"), str):
            params["system"] = [{"type": "text", "text": params["system"], "cache_control": mark}]
        elif where == "history" and messages and _blocks(messages[-1]["content"]):
            blocks = _blocks(messages[-1]["content"])
            blocks[-1] = {**blocks[-1], "cache_control": mark}
            messages[-1] = {**messages[-1], "content": blocks}
        else:
            continue
        left -= 1


def _marks(value: Any) -> int:
    """``cache_control`` marks already in a list of blocks (or tools)."""
    if not isinstance(value, list):
        return 0
    return sum(1 for block in value if isinstance(block, Mapping) and block.get("cache_control") is not None)


def _content_parts(
    content: Sequence[Any], output_tool: str | None
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """A message's content blocks as ``(texts, tool calls, thinking blocks)`` (the answer tool's input is text)."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type in _THINKING_BLOCKS:
            thinking.append(block.model_dump(mode="json", exclude_none=True))
        elif block.type == "tool_use" and block.name == output_tool:
            texts.append(json.dumps(block.input))
        elif block.type == "tool_use":
            tool_calls.append({"id": block.id, "name": block.name, "arguments": json.dumps(block.input)})
    return texts, tool_calls, thinking


def _canonical_json(raw: str) -> str:
    """Streamed tool input as ``complete`` renders it (``json.dumps`` of the object)."""
    try:
        return json.dumps(json.loads(raw)) if raw.strip() else "{}"
    except ValueError:
        return raw


def _output_tool(request: ProviderRequest) -> str | None:
    output = request.output
    return output.name if output is not None and output.mode == "json_schema" else None


def to_anthropic_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool (Anthropic-shaped tools pass through)."""
    if "input_schema" in tool:
        return dict(tool)
    fn = tool.get("function")
    if tool.get("type") != "function" or not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise ProviderError("bad_request", f"unsupported tool definition {str(tool)[:80]!r}")
    out: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": dict(fn.get("parameters") or {"type": "object", "properties": {}}),
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def to_anthropic_tool_choice(choice: Any) -> dict[str, Any]:
    """OpenAI ``tool_choice`` -> Anthropic: auto, required -> any, none, a named function -> tool."""
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            return {"type": "tool", "name": fn["name"]}
        if choice.get("type") in ("auto", "any", "none", "tool"):
            return dict(choice)
    raise ProviderError("bad_request", f"unsupported tool_choice {str(choice)[:80]!r}")


class _Accumulator:
    """Turns Messages stream events into :class:`StreamEvent`; keeps text, tool calls,
    stop reason and usage (``message_start`` has the prompt's, ``message_delta`` the
    final output count and, on newer APIs, the cumulative prompt counts)."""

    __slots__ = (
        "blocks",
        "model",
        "output_tool",
        "provider",
        "request",
        "request_id",
        "stop",
        "texts",
        "thinking_tokens",
        "thoughts",
        "tool_uses",
        "tools",
        "usage",
    )

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        self.provider = provider
        self.request = request
        self.output_tool = _output_tool(request)
        self.texts: list[str] = []
        self.tools: list[dict[str, Any]] = []
        self.blocks: dict[int, int] = {}  # content block index -> tool index (-1: the answer tool)
        self.stop: str | None = None
        self.usage: list[int | None] = [None, None, 0, 0, 0]  # input (uncached), output, cache read, write, 1h write
        self.tool_uses: tuple[tuple[str, int], ...] = ()  # the last event's server_tool_use (cumulative)
        self.thoughts: dict[int, dict[str, Any]] = {}  # content block index -> thinking block so far
        self.thinking_tokens = 0
        self.request_id: str | None = None
        self.model: str | None = None

    def feed(self, event: Any) -> Iterator[StreamEvent]:
        """The event's stream events; an event of an unexpected shape is a malformed body (``server_error``)."""
        try:
            events = list(self._events(event))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise failure_error(
                self.provider,
                "malformed",
                f"stream event has missing or malformed fields ({type(exc).__name__})",
                status=200,
                request_id=self.request_id,
            ) from exc
        yield from events

    def _events(self, event: Any) -> Iterator[StreamEvent]:
        kind = event.type
        found: StreamEvent | None = None
        if kind == "content_block_delta":
            found = self._on_delta(event)
        elif kind == "content_block_start":
            found = self._on_block_start(event)
        elif kind == "message_start":
            message = event.message
            self.model = message.model
            self._count(getattr(message, "usage", None))
        elif kind == "message_delta":
            self.stop = event.delta.stop_reason or self.stop
            self._count(getattr(event, "usage", None))
        yield found if found is not None else StreamEvent()  # else a heartbeat: message_start, block start/stop, ping

    def _on_delta(self, event: Any) -> StreamEvent | None:
        """A block's delta added to its text, thought or tool arguments; the event to pass on, if any."""
        delta = event.delta
        if delta.type == "text_delta":
            self.texts.append(delta.text)
            return StreamEvent(text=delta.text)
        if delta.type == "thinking_delta":
            self.thoughts[event.index]["thinking"] += delta.thinking
            return StreamEvent(thinking=delta.thinking)
        if delta.type == "signature_delta":
            self.thoughts[event.index]["signature"] += delta.signature
        elif delta.type == "input_json_delta":
            slot = self.blocks.get(event.index)
            if slot == -1:
                self.texts.append(delta.partial_json)
                return StreamEvent(text=delta.partial_json)
            if slot is not None:
                self.tools[slot]["arguments"] += delta.partial_json
                return StreamEvent(tool_call={"index": slot, "id": None, "name": None, "arguments": delta.partial_json})
        return None

    def _on_block_start(self, event: Any) -> StreamEvent | None:
        """A new thinking or tool-use block recorded; a tool call's first event, if it starts one."""
        block = event.content_block
        if block.type == "thinking":
            self.thoughts[event.index] = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
        elif block.type == "redacted_thinking":
            self.thoughts[event.index] = {"type": "redacted_thinking", "data": block.data}
        elif block.type == "tool_use" and block.name == self.output_tool:
            self.blocks[event.index] = -1
        elif block.type == "tool_use":
            slot = len(self.tools)
            self.blocks[event.index] = slot
            self.tools.append({"id": block.id, "name": block.name, "arguments": ""})
            return StreamEvent(tool_call={"index": slot, "id": block.id, "name": block.name, "arguments": ""})
        return None

    def _count(self, u: Any) -> None:
        """The counts an event reports (``message_start``: the prompt's; ``message_delta``: the
        output so far and, on newer APIs, the prompt's again); an absent or null one is kept."""
        names = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        try:
            for i, name in enumerate(names):
                value = token_count(getattr(u, name, None))
                if value is not None:
                    self.usage[i] = value
            hour = _write_1h(getattr(u, "cache_creation", None))
            if hour is not None:
                self.usage[4] = hour
            self.tool_uses = _tool_uses(getattr(u, "server_tool_use", None)) or self.tool_uses
            self.thinking_tokens = _thinking_tokens(getattr(u, "output_tokens_details", None)) or self.thinking_tokens
        except TypeError as exc:
            raise failure_error(self.provider, "malformed", "usage in a stream event is malformed", status=200) from exc

    def response(self) -> ProviderResponse:
        if self.stop is None:
            raise failure_error(self.provider, "malformed", "stream ended without a stop_reason", status=200)
        calls = tuple({**t, "arguments": _canonical_json(t["arguments"])} for t in self.tools)
        plain, output, read, write, hour = self.usage
        if plain is None or output is None:
            usage = estimated_usage(self.provider, self.request, "".join(self.texts), calls)
        else:
            usage = Usage(
                plain + (read or 0) + (write or 0),
                output,
                read or 0,
                write or 0,
                tool_uses=self.tool_uses,
                reasoning_tokens=self.thinking_tokens,
                cache_write_1h_tokens=hour or 0,
            )
        finish = normalize_finish_reason(ANTHROPIC_STOP_REASONS, self.stop)
        if finish == CONTENT_FILTER:
            raise failure_error(
                self.provider,
                CONTENT_FILTER,
                "the model refused to answer (stop_reason=refusal)",
                status=200,
                request_id=self.request_id,
                usage=usage,
            )
        if self.output_tool is not None and finish == "tool_calls" and not self.tools:
            finish = "stop"
        thinking = tuple(self.thoughts[i] for i in sorted(self.thoughts))
        return ProviderResponse("".join(self.texts), usage, finish, self.request_id, self.model, calls, thinking)


def to_anthropic_messages(
    messages: Sequence[Message], system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI-style ``messages`` (+ ``system``) -> Anthropic ``(system, messages)``.

    System/developer messages fold into ``system``; tool calls and tool results become
    ``tool_use`` / ``tool_result`` blocks; an assistant message's ``thinking_blocks`` lead its
    content; consecutive same-role messages are merged.
    The input is not modified. Tool-call arguments that are not JSON raise ``ValueError``.
    """
    systems: list[str] = [system] if system else []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        content = m.get("content")
        if role in _SYSTEM_ROLES:
            text = content_text(content)
            if text:
                systems.append(text)
            continue
        if role == "tool":
            role = "user"
            content = [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": content or ""}]
        elif role == "assistant" and m.get("tool_calls"):
            content = [*_blocks(content), *(_tool_use(call) for call in m["tool_calls"])]
        if role == "assistant" and m.get("thinking_blocks"):  # first, verbatim: the API checks signatures
            content = [*(dict(b) for b in m["thinking_blocks"]), *_blocks(content)]
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": _merge(out[-1]["content"], content)}
        else:
            out.append({"role": role, "content": content})
    return ("\n\n".join(systems) if systems else None), out


def _blocks(content: Any) -> list[Any]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return list(content)
    return [{"type": "text", "text": str(content)}]


def _merge(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}" if first and second else first or second
    return [*_blocks(first), *_blocks(second)]


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call (``{"id", "function": {"name", "arguments"}}``) or a normalized
    one (``{"id", "name", "arguments"}``) as an Anthropic ``tool_use`` block."""
    function = call.get("function")
    spec: Mapping[str, Any] = function if isinstance(function, Mapping) else call
    arguments = spec.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"tool call {call.get('id')!r}: arguments are not valid JSON") from exc
    return {"type": "tool_use", "id": call.get("id"), "name": spec.get("name"), "input": arguments or {}}


def _usage(usage: AnthropicUsage | Mapping[str, Any] | None) -> Usage | None:
    """A message's usage (input made the whole prompt); ``None`` unless it gives both counts."""

    def count(name: str) -> int | None:
        return token_count(_field(usage, name))

    plain, output = count("input_tokens"), count("output_tokens")
    if plain is None or output is None:
        return None
    cache_read = count("cache_read_input_tokens") or 0
    cache_write = count("cache_creation_input_tokens") or 0
    server = _field(usage, "server_tool_use")
    details = _field(usage, "output_tokens_details")
    creation = _field(usage, "cache_creation")
    return Usage(
        input_tokens=plain + cache_read + cache_write,
        output_tokens=output,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        tool_uses=_tool_uses(server),
        reasoning_tokens=_thinking_tokens(details) or 0,
        cache_write_1h_tokens=_write_1h(creation) or 0,
    )


def _thinking_tokens(details: Any) -> int | None:
    """``usage.output_tokens_details.thinking_tokens`` (a dict or the SDK's model), if reported."""
    return token_count(_field(details, "thinking_tokens"))


def _write_1h(creation: Any) -> int | None:
    """``usage.cache_creation.ephemeral_1h_input_tokens`` (the 1-hour writes), when reported."""
    return token_count(_field(creation, "ephemeral_1h_input_tokens"))


def _tool_uses(server: Any) -> tuple[tuple[str, int], ...]:
    """``usage.server_tool_use`` (``{"web_search_requests": 2, ...}``) as sorted non-zero counts.
    A count that is not a whole number of at least 0 raises ``TypeError`` (a malformed body)."""
    if server is None:
        return ()
    if not isinstance(server, Mapping):
        dump = getattr(server, "model_dump", None)  # the SDK's pydantic ServerToolUsage
        if dump is None:
            raise TypeError(f"server_tool_use of type {type(server).__name__}")
        server = dump(exclude_none=True)
    uses = []
    for name, raw in server.items():
        count = token_count(raw)
        if count is not None and count < 0:
            raise TypeError(f"server tool count {raw!r}")
        if count:
            uses.append((str(name), count))
    return tuple(sorted(uses))
