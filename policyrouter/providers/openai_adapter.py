"""Adapter for the OpenAI Chat Completions protocol (kinds ``openai`` and ``openai_compatible``).

Built on the official ``openai`` SDK, imported on first use (never at import of
policyrouter). One sync and one async client per API key (per event loop, for the
async one), created lazily and reused for every call, so connections are pooled.
SDK retries are off (``max_retries=0``); the router's policy is the only retry loop.

A non-streamed call goes through the SDK client's generic ``post("/chat/completions",
cast_to=<its HTTP response class>)``, the SDK's documented way to make a request it
does not model: the same client, connection pool, auth and default headers, timeout
and status-error classes as ``chat.completions.create``, minus the two steps that cost
most of its CPU and that we would throw away: the type-driven transform of the
arguments (an identity for the plain dicts we send) and the pydantic ``ChatCompletion``
built from the body (we decode the JSON and read the few fields we need). Streamed
calls use ``create(stream=True)`` and the SDK's stream parser.

Request mapping:

* ``system`` becomes the first message (``role: system``); ``messages`` follow as given.
* The output cap is ``max_completion_tokens`` for kind ``openai`` (``max_tokens`` is
  deprecated there and rejected by reasoning models) and ``max_tokens`` for
  ``openai_compatible`` (what gateways, vLLM, Ollama, LiteLLM ... understand).
* Reasoning models (``request.reasoning`` set: capability ``reasoning``) get no
  ``temperature`` (they reject any but the default) and ``reasoning_effort`` when the
  task asks one; their output cap is ``max_completion_tokens`` (kind ``openai``), which
  includes the reasoning tokens. Anthropic ``thinking_blocks`` on a message (a
  conversation continued from a Claude answer) are not sent.
* ``temperature`` when set, ``stop`` when non-empty, ``timeout=request.timeout_s`` per
  call when set (``None`` keeps the client default; it never disables the timeout).
* ``request.prompt_cache``: its ``key`` as ``prompt_cache_key`` and its ``retention`` as
  ``prompt_cache_retention`` (both ``create`` arguments since openai 3.0; OpenAI caches
  prefixes of 1024 tokens and more by itself, so there are no breakpoints to place); not
  sent by ``openai_compatible`` providers, whose servers may reject unknown fields.
* ``request.extra`` is merged last, as ``create`` would take it: ``extra_headers``,
  ``extra_query`` and ``timeout`` are request options, ``extra_body`` is merged into the
  JSON body last, any other key (``tools``, ``response_format``, ``seed``, or a vendor
  extension of a compatible server) is a JSON body field.

Response mapping: ``text`` is the first choice's content (``""`` for none). Content may be
a string or, from OpenAI-compatible servers (Mistral's reasoning models), a list of typed
blocks: ``text`` joins the ``text`` blocks; ``thinking`` blocks stay out of it; any other
shape is a malformed body (``server_error``), never a raw exception. A ``refusal`` (a
structured-output refusal: ``finish_reason: stop``, ``content: null``; streamed as
``delta.refusal`` fragments) raises :class:`ProviderError` kind ``content_filter`` with the
refusal text (redacted like every upstream text), billed;
``usage.input_tokens`` is ``prompt_tokens`` as reported, *including* cached tokens;
``usage.output_tokens`` is ``completion_tokens``, or ``total_tokens - prompt_tokens`` when
the total is larger than prompt + completion (Gemini's OpenAI-compatible endpoint leaves its
thinking tokens out of ``completion_tokens`` but counts and bills them in the total: we bill
what the provider bills); and
``usage.cached_input_tokens`` is ``prompt_tokens_details.cached_tokens`` (a subset of
the input; cost code prices the cached part at the cached rate and the rest at the
input rate). ``usage.reasoning_tokens`` is ``completion_tokens_details.reasoning_tokens``
(a part of ``completion_tokens``, which is priced whole as output). ``tool_calls`` become
``{"id", "name", "arguments"}`` with ``arguments``
the JSON string the model produced. ``finish_reason: content_filter`` raises
:class:`ProviderError` kind ``content_filter`` (with the usage, which is billed), naming the
categories an Azure ``content_filter_results`` marks filtered.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from policyrouter.errors import ProviderError
from policyrouter.providers.base import (
    StreamEvent,
    aiohttp_client,
    estimated_usage,
    limited,
    merge_extra,
    read_secret,
    stream_timeout,
    token_count,
)
from policyrouter.providers.classify import (
    CONTENT_FILTER,
    OPENAI_FINISH_REASONS,
    failure_error,
    filtered_categories,
    normalize_finish_reason,
    request_id_from,
)
from policyrouter.providers.keys import EventSink, KeyRing, KeySpec, key_list
from policyrouter.providers.sdk_adapter import SdkAdapter, limited_client
from policyrouter.types import OutputFormat, ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    import random

    import openai
    from openai.types.completion_usage import CompletionUsage

__all__ = ["OpenAIProvider"]

OpenAIKind = Literal["openai", "openai_compatible"]
AsyncTransport = Literal["httpx", "aiohttp"]

_PATH = "/chat/completions"
_REQUEST_OPTIONS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}
"""``create()`` arguments that are request options, not body fields, under their ``post`` option name."""

_NO_KEY = "none"
"""Sent as the key by an ``openai_compatible`` provider without ``api_key_env`` (keyless
local servers); the SDK refuses to build a client without one."""


class OpenAIProvider(SdkAdapter):
    """A provider speaking the OpenAI Chat Completions protocol.

    ``api_key_env`` names the environment variable holding the key, read from ``environ``
    at first use (default ``OPENAI_API_KEY`` for kind ``openai``; ``openai_compatible``
    without one sends no real key), or a sequence of variables, or of ``(variable, weight)``
    pairs, to rotate keys (see :mod:`policyrouter.providers.keys`; ``rng`` picks the key of
    each call, ``events`` receives ``key_missing`` and ``key_set_aside``). Keys are never
    stored outside the key ring and the SDK clients, nor shown in ``repr`` or error messages.
    ``http_client`` / ``async_http_client`` inject ``httpx2`` clients (tests, proxies);
    otherwise the SDK's defaults are used, or its aiohttp client with
    ``async_transport="aiohttp"``.

    The SDK itself still reads a few process variables we do not pass: ``OPENAI_ORG_ID``
    and ``OPENAI_PROJECT_ID`` (when ``organization_env`` is unset) and ``OPENAI_BASE_URL``
    (when ``base_url`` is unset).
    """

    __slots__ = (
        "_async_http_client",
        "_create_params",
        "_headers",
        "_http_client",
        "_http_response",
        "_keys",
        "_max_tokens_param",
        "_sdk",
        "api_key_env",
        "async_transport",
        "base_url",
        "environ",
        "kind",
        "name",
        "organization_env",
    )

    def __init__(
        self,
        name: str,
        *,
        kind: OpenAIKind = "openai",
        api_key_env: KeySpec = None,
        base_url: str | None = None,
        organization_env: str | None = None,
        headers: Mapping[str, str] | None = None,
        async_transport: AsyncTransport = "httpx",
        environ: Mapping[str, str] = os.environ,
        http_client: Any = None,
        async_http_client: Any = None,
        rng: random.Random | None = None,
        events: EventSink | None = None,
    ) -> None:
        if kind not in ("openai", "openai_compatible"):
            raise ValueError(f"OpenAIProvider kind must be 'openai' or 'openai_compatible', not {kind!r}")
        if async_transport not in ("httpx", "aiohttp"):
            raise ValueError(f"async_transport must be 'httpx' or 'aiohttp', not {async_transport!r}")
        self.name = name
        self.kind: str = kind
        self.api_key_env = api_key_env or ("OPENAI_API_KEY" if kind == "openai" else None)
        self.base_url = base_url
        self.organization_env = organization_env
        self.async_transport = async_transport
        self.environ = environ
        self._headers = dict(headers or {})
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._max_tokens_param = "max_completion_tokens" if kind == "openai" else "max_tokens"
        self._sdk: Any = None
        self._http_response: Any = None  # the SDK's HTTP response class (httpx or httpx2)
        self._create_params: frozenset[str] = frozenset()
        keys = self._key_pairs()
        self._keys: KeyRing[openai.OpenAI, openai.AsyncOpenAI] = KeyRing(
            name,
            keys,
            environ=environ,
            new_sync=self._new_client,
            new_async=self._new_async_client,
            rng=rng,
            events=events,
            keyless=None if keys else _NO_KEY,
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(name={self.name!r}, kind={self.kind!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def _key_pairs(self) -> tuple[tuple[str, float], ...]:
        """The ``(variable, weight)`` pairs of the keys this provider sends; none: keyless
        (the Azure adapter's Entra ID authentication sends no key)."""
        return key_list(self.api_key_env)

    # ------------------------------------------------------------------ calls

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self._ready()
        body, options = self._body(request)

        def post(client: openai.OpenAI) -> tuple[Any, Any]:
            http = client.post(_PATH, cast_to=self._http_response, body=body, options=options)
            return http, json.loads(http.content)

        with limited(request):
            http, data = self._call(post)
        return self._from_json(data, http.headers, request)

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        body, options = self._body(request)

        async def post(client: openai.AsyncOpenAI) -> tuple[Any, Any]:
            http = await client.post(_PATH, cast_to=self._http_response, body=body, options=options)
            return http, json.loads(http.content)

        with limited(request):
            http, data = await self._acall(post)
        return self._from_json(data, http.headers, request)

    def stream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> Generator[StreamEvent, None, None]:
        """One streamed call (``stream_options.include_usage``: the last chunk carries usage)."""
        self._ready()  # clients built (and the SDK imported) before the first read is timed
        return self._events(
            request, self._stream_params(request, read_timeout_s), _Accumulator(self.name, request, self._keys)
        )

    def astream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        self._ready_async()
        return self._aevents(
            request, self._stream_params(request, read_timeout_s), _Accumulator(self.name, request, self._keys)
        )

    # ------------------------------------------------------------------ clients

    def _endpoint(self, client: Any) -> Any:
        return client.chat.completions.create

    def _status_details(self, exc: Any) -> tuple[str | None, str]:
        return exc.code, _error_message(exc)

    def _usage_of(self, raw: Mapping[str, Any]) -> Usage | None:
        return _usage_json(raw)

    def _client_kwargs(self, key: str) -> dict[str, Any]:
        # Configuration is checked before the SDK is imported: a missing key fails fast.
        kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0}
        if self.organization_env:
            kwargs["organization"] = read_secret(
                self.environ, self.organization_env, provider=self.name, what="organization id"
            )
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if self._headers:
            kwargs["default_headers"] = dict(self._headers)
        return kwargs

    def _load_sdk(self) -> Any:
        if self._sdk is None:
            import openai

            self._http_response = _http_response_class(openai)
            self._sdk = openai
        return self._sdk

    def _new_client(self, key: str) -> openai.OpenAI:
        kwargs = self._client_kwargs(key)
        sdk = self._load_sdk()
        http_client = self._http_client if self._http_client is not None else limited_client(sdk, sync=True)
        if http_client is not None:
            kwargs["http_client"] = http_client
        client: openai.OpenAI = self._sdk_client(sdk, kwargs, sync=True)
        self._remember_params(client.chat.completions.create)
        return client

    def _new_async_client(self, key: str) -> openai.AsyncOpenAI:
        kwargs = self._client_kwargs(key)
        sdk = self._load_sdk()
        if self._async_http_client is not None:
            kwargs["http_client"] = self._async_http_client
        elif self.async_transport == "aiohttp":
            kwargs["http_client"] = aiohttp_client(sdk, provider=self.name, package="openai")
        elif (http_client := limited_client(sdk, sync=False)) is not None:
            kwargs["http_client"] = http_client
        client: openai.AsyncOpenAI = self._sdk_client(sdk, kwargs, sync=False)
        self._remember_params(client.chat.completions.create)
        return client

    def _sdk_client(self, sdk: Any, kwargs: dict[str, Any], *, sync: bool) -> Any:
        """The SDK client built from ``kwargs`` (the Azure adapter builds Azure's clients)."""
        return sdk.OpenAI(**kwargs) if sync else sdk.AsyncOpenAI(**kwargs)

    def _remember_params(self, create: Any) -> None:
        if not self._create_params:
            import inspect

            self._create_params = frozenset(inspect.signature(create).parameters)

    # ------------------------------------------------------------------ mapping

    def _body(self, request: ProviderRequest) -> tuple[dict[str, Any], Any]:
        """The JSON body and the SDK request options (``timeout``, ``headers``, ``params``)
        of a non-streamed call: what ``create`` would send, built without its per-call
        type-driven transform (an identity for these plain dicts, and most of the SDK's CPU)."""
        body = self._base(request)
        options: dict[str, Any] = {}
        if request.timeout_s is not None:
            options["timeout"] = request.timeout_s
        _add_optional(body, request, cache_params=self.kind != "openai_compatible")
        if request.extra:
            vendor: Mapping[str, Any] = {}
            for key, value in request.extra.items():
                option = _REQUEST_OPTIONS.get(key)
                if option is not None:  # extra_headers, extra_query, timeout: as create() takes them
                    options[option] = value
                elif key == "extra_body":
                    vendor = value
                else:  # create()'s arguments and vendor keys alike: JSON body fields
                    body[key] = value
            if vendor:
                body.update(vendor)  # like create(extra_body=...): last, so it wins
        return body, options

    def _base(self, request: ProviderRequest) -> dict[str, Any]:
        """The fields every chat completion request has: model, messages (system first), max tokens."""
        messages: list[Any] = list(request.messages)
        if any("thinking_blocks" in m for m in messages):  # Anthropic's, from a Claude answer
            messages = [{k: v for k, v in m.items() if k != "thinking_blocks"} for m in messages]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        return {"model": request.model, "messages": messages, self._max_tokens_param: request.max_output_tokens}

    def _params(self, request: ProviderRequest) -> dict[str, Any]:
        """``create()``'s keyword arguments (the streamed path)."""
        params = self._base(request)
        if request.timeout_s is not None:
            params["timeout"] = request.timeout_s
        optional: dict[str, Any] = {}
        _add_optional(optional, request, cache_params=self.kind != "openai_compatible")
        if request.extra:
            optional.update(request.extra)
        if optional:
            merge_extra(params, optional, self._create_params)
        return params

    def _stream_params(self, request: ProviderRequest, read_timeout_s: float | None) -> dict[str, Any]:
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        if request.timeout_s is not None or read_timeout_s is not None:
            params["timeout"] = stream_timeout(self._sdk, request.timeout_s or 600.0, read_timeout_s)
        return params

    def _from_json(self, data: Any, headers: Mapping[str, str], request: ProviderRequest) -> ProviderResponse:
        """A chat completion body (decoded JSON) and its headers as a :class:`ProviderResponse`."""
        request_id = request_id_from(headers)
        if not isinstance(data, dict):
            raise failure_error(
                self.name,
                "malformed",
                f"expected a chat completion body, got {type(data).__name__}",
                status=200,
                request_id=request_id,
            )
        try:
            usage = _usage_json(data.get("usage"))  # also on a body without choices: it was billed
        except (AttributeError, TypeError) as exc:
            raise failure_error(
                self.name, "malformed", f"usage is malformed ({type(exc).__name__})", status=200, request_id=request_id
            ) from exc
        try:
            choice = data["choices"][0]
            message = choice["message"]
            finish = normalize_finish_reason(OPENAI_FINISH_REASONS, choice["finish_reason"])  # required, may be null
            calls = message.get("tool_calls")
            tool_calls = tuple(_tool_call_json(call) for call in calls) if calls else ()
            text = _answer_text(message.get("content"))
            refusal = _answer_text(message.get("refusal"))
            model = data["model"]
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise failure_error(
                self.name,
                "malformed",
                f"chat completion body has missing or malformed fields ({type(exc).__name__})",
                status=200,
                request_id=request_id,
                usage=usage,
            ) from exc
        if usage is None:
            usage = estimated_usage(self.name, request, text or refusal, tool_calls)
        if refusal or finish == CONTENT_FILTER:
            filtered = filtered_categories(choice.get("content_filter_results"))
            raise _withheld(self.name, refusal, request_id, usage, self._keys.secrets(), filtered)
        return ProviderResponse(text, usage, finish, request_id, model, tool_calls, headers=headers)


class _Accumulator:
    """Turns chat-completion chunks into :class:`StreamEvent` and keeps what the final
    response needs: text, tool calls by index, finish reason, the last chunk's usage."""

    __slots__ = (
        "filtered",
        "finish",
        "keys",
        "model",
        "provider",
        "refusals",
        "request",
        "request_id",
        "texts",
        "tools",
        "usage",
    )

    def __init__(self, provider: str, request: ProviderRequest, keys: KeyRing[Any, Any]) -> None:
        self.provider = provider
        self.keys = keys  # redacted from a refusal's text
        self.request = request
        self.texts: list[str] = []
        self.refusals: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.request_id: str | None = None
        self.filtered = ""  # the categories an Azure content filter marked filtered

    def feed(self, chunk: Any) -> Iterator[StreamEvent]:
        """The chunk's events; a chunk of an unexpected shape is a malformed body (``server_error``)."""
        try:
            events = list(self._events(chunk))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise failure_error(
                self.provider,
                "malformed",
                f"stream chunk has missing or malformed fields ({type(exc).__name__})",
                status=200,
                request_id=self.request_id,
            ) from exc
        yield from events

    def _events(self, chunk: Any) -> Iterator[StreamEvent]:
        if chunk.usage is not None:
            self.usage = _usage(self.provider, chunk.usage)
        self.model = chunk.model or self.model
        produced = False
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason
            self.filtered = filtered_categories(getattr(choice, "content_filter_results", None)) or self.filtered
            delta = choice.delta
            if delta is None:
                continue
            text = _answer_text(delta.content)
            if text:
                self.texts.append(text)
                produced = True
                yield StreamEvent(text=text)
            refusal = _answer_text(getattr(delta, "refusal", None))
            if refusal:
                self.refusals.append(refusal)  # not answer text: the response raises it as a refusal
            for call in delta.tool_calls or ():
                index = call.index
                fn = call.function
                name = fn.name if fn is not None else None
                args = (fn.arguments if fn is not None else None) or ""
                slot = self.tools.get(index)
                if slot is None:
                    slot = self.tools[index] = {"id": call.id or "", "name": name or "", "arguments": ""}
                else:
                    slot["id"] = slot["id"] or call.id or ""
                    slot["name"] = slot["name"] or name or ""
                slot["arguments"] += args
                produced = True
                yield StreamEvent(tool_call={"index": index, "id": call.id, "name": name, "arguments": args})
        if not produced:
            yield StreamEvent()  # heartbeat: a role chunk, the usage chunk

    def response(self) -> ProviderResponse:
        if self.finish is None:
            raise failure_error(self.provider, "malformed", "stream ended without a finish_reason", status=200)
        finish = normalize_finish_reason(OPENAI_FINISH_REASONS, self.finish)
        calls = tuple(
            {"id": t["id"], "name": t["name"], "arguments": t["arguments"] or "{}"}
            for _, t in sorted(self.tools.items())
        )
        refusal = "".join(self.refusals)
        usage = self.usage or estimated_usage(self.provider, self.request, "".join(self.texts) or refusal, calls)
        if refusal or finish == CONTENT_FILTER:
            raise _withheld(self.provider, refusal, self.request_id, usage, self.keys.secrets(), self.filtered)
        return ProviderResponse("".join(self.texts), usage, finish, self.request_id, self.model, calls)


def _withheld(
    provider: str, refusal: str, request_id: str | None, usage: Usage, secrets: tuple[str, ...], filtered: str = ""
) -> ProviderError:
    """The ``content_filter`` error of a refusal (its text, redacted) or of ``finish_reason: content_filter``
    (with the categories Azure's ``content_filter_results`` marked filtered, if any)."""
    if refusal:
        detail = f"the model refused to answer: {refusal}"
    else:
        detail = "the provider's content filter withheld the response (finish_reason=content_filter)"
        if filtered:
            detail += f"; filtered: {filtered}"
    return failure_error(
        provider, CONTENT_FILTER, detail, status=200, request_id=request_id, secrets=secrets, usage=usage
    )


def _answer_text(content: Any) -> str:
    """A message's (or delta's) ``content`` or ``refusal`` as text: a string as it is; a list of
    typed blocks as its ``text`` blocks joined (``thinking`` and other non-text blocks left
    out); ``None`` as ``""``. Any other shape raises ``TypeError`` (a malformed body): stricter
    than ``tokens.content_text``, which reads the caller's prompt leniently to count it."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise TypeError(f"content of type {type(content).__name__}")
    texts: list[str] = []
    for block in content:
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise TypeError("content block without a type")
        if block["type"] == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise TypeError("text block without text")
            texts.append(text)
    return "".join(texts)


def _response_format(output: OutputFormat) -> dict[str, Any]:
    if output.mode == "json_mode":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": output.name, "schema": output.schema, "strict": output.strict},
    }


def _usage(provider: str, usage: CompletionUsage) -> Usage | None:
    """A stream's usage chunk; ``None`` unless it gives both counts (then the usage is estimated)."""
    details = usage.prompt_tokens_details
    output = getattr(usage, "completion_tokens_details", None)
    try:
        return _counts(
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            getattr(details, "cached_tokens", None),
            getattr(details, "cache_write_tokens", None),
            getattr(output, "reasoning_tokens", None),
            getattr(usage, "total_tokens", None),
        )
    except TypeError as exc:
        raise failure_error(provider, "malformed", "usage chunk is malformed", status=200) from exc


def _add_optional(into: dict[str, Any], request: ProviderRequest, *, cache_params: bool) -> None:
    """The optional request fields that are set: temperature (never to a reasoning model), reasoning
    effort, stop, tools, tool choice, response format, and (``cache_params``: OpenAI itself, not a
    compatible server that may reject unknown fields) the prompt cache's ``prompt_cache_key`` /
    ``prompt_cache_retention``."""
    reasoning = request.reasoning
    if request.temperature is not None and reasoning is None:
        into["temperature"] = request.temperature
    if reasoning is not None and reasoning.effort is not None:
        into["reasoning_effort"] = reasoning.effort
    if request.stop:
        into["stop"] = list(request.stop)
    if request.tools:
        into["tools"] = [dict(t) for t in request.tools]
    if request.tool_choice is not None:
        into["tool_choice"] = request.tool_choice
    if request.output is not None and request.output.mode != "prompt":
        into["response_format"] = _response_format(request.output)
    cache = request.prompt_cache if cache_params else None
    if cache is not None and cache.key is not None:
        into["prompt_cache_key"] = cache.key
    if cache is not None and cache.retention is not None:
        into["prompt_cache_retention"] = cache.retention


def _usage_json(usage: Any) -> Usage | None:
    """A body's ``usage``; ``None`` unless it gives both counts (then the usage is estimated)."""
    if usage is None:
        return None
    details = usage.get("prompt_tokens_details")
    output = usage.get("completion_tokens_details")
    return _counts(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        details.get("cached_tokens") if details else None,
        details.get("cache_write_tokens") if details else None,
        output.get("reasoning_tokens") if output else None,
        usage.get("total_tokens"),
    )


def _counts(
    prompt: Any, completion: Any, cached: Any, cache_write: Any, reasoning: Any = None, total: Any = None
) -> Usage | None:
    """Reported counts as :class:`Usage`, or ``None`` when the prompt or completion count is missing.

    Output is what the provider bills: ``total - prompt`` when the total counts more than prompt +
    completion (Gemini leaves thinking tokens out of ``completion_tokens``, not out of the total);
    those hidden tokens are reasoning (at least them, or what the body reports)."""
    input_tokens, output_tokens = token_count(prompt), token_count(completion)
    if input_tokens is None or output_tokens is None:
        return None
    reasoning_tokens, total_tokens = token_count(reasoning) or 0, token_count(total)
    if total_tokens is not None and total_tokens > input_tokens + output_tokens:
        hidden = total_tokens - input_tokens - output_tokens
        output_tokens += hidden
        reasoning_tokens = max(reasoning_tokens, hidden)
    return Usage(
        input_tokens,
        output_tokens,
        token_count(cached) or 0,
        token_count(cache_write) or 0,
        reasoning_tokens=reasoning_tokens,
    )


def _tool_call_json(call: Any) -> dict[str, Any]:
    if call.get("type") == "custom":
        custom = call["custom"]
        return {"id": call["id"], "name": custom["name"], "arguments": custom["input"]}
    function = call["function"]
    return {"id": call["id"], "name": function["name"], "arguments": function.get("arguments") or "{}"}


def _http_response_class(sdk: Any) -> Any:
    """The ``cast_to`` that makes the SDK's ``post`` return the HTTP response unparsed:
    ``httpx2.Response`` from openai 3 on (its transport), ``httpx.Response`` before."""
    if int(str(sdk.__version__).split(".", 1)[0]) >= 3:
        import httpx2

        return httpx2.Response
    import httpx

    return httpx.Response


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message
