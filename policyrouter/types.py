"""Plain value types shared by providers, stages and the router.

Frozen, slotted dataclasses, safe to share; the lowest module of the request path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Message = dict[str, Any]
"""An OpenAI-style chat message: ``{"role": "user", "content": "..."}``."""

Outcome = Literal["ok", "error", "skipped"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call (or the sum of a request's calls)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = field(default=False, compare=False)  # the upstream did not report both counts
    tool_uses: tuple[tuple[str, int], ...] = ()
    """Billed server tool uses by the provider's counter, sorted, none zero: ``(("web_search_requests", 2),)``."""
    reasoning_tokens: int = 0
    """The part of ``output_tokens`` the model spent reasoning (already in ``output_tokens``, priced as output)."""
    cache_write_1h_tokens: int = 0
    """The part of ``cache_write_tokens`` written with a 1-hour lifetime (Anthropic); the rest is 5-minute."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        uses = dict(self.tool_uses)
        for name, count in other.tool_uses:
            uses[name] = uses.get(name, 0) + count
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            estimated=self.estimated or other.estimated,
            tool_uses=tuple(sorted(uses.items())),
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What one call to a reasoning model asks: an effort (OpenAI ``reasoning_effort``) and a
    thinking budget (Anthropic ``thinking.budget_tokens``); ``None`` asks nothing. A request
    carries one only to a model that declares the ``reasoning`` capability."""

    effort: str | None = None
    budget_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """A normalized request for one upstream call.

    ``messages`` never contains the system prompt: it is in ``system`` so each adapter
    can place it the way its protocol wants (OpenAI: first message; Anthropic: ``system``).
    """

    model: str
    messages: tuple[Message, ...]
    max_output_tokens: int
    system: str | None = None
    temperature: float | None = None
    timeout_s: float | None = None
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    tools: tuple[dict[str, Any], ...] = ()
    """Tools in OpenAI function format (``{"type": "function", "function": {...}}``)."""
    tool_choice: Any = None
    """OpenAI-style: ``"auto"``, ``"required"``, ``"none"`` or ``{"type": "function", ...}``."""
    output: OutputFormat | None = None
    """A structured-output request: the schema and the native mode to ask for it in."""
    max_response_bytes: int | None = None
    """Largest response body the adapter reads; a larger one fails as ``response_too_large``."""
    reasoning: Reasoning | None = None
    """Set when the model reasons (capability ``reasoning``): it is sent no temperature, and the
    effort or thinking budget asked, if any."""
    prompt_cache: PromptCache | None = None
    """Provider prompt caching asked for this call (the task's ``prompt_cache``), or ``None``."""


@dataclass(frozen=True, slots=True)
class PromptCache:
    """Provider prompt caching of one call, in provider-neutral terms.

    ``breakpoints``: where the prefix may be cached, among ``tools``, ``system`` and
    ``history``, already limited to those whose prefix reaches the model's minimum
    cacheable length. Anthropic marks them ``cache_control`` with ``ttl``; OpenAI caches
    on its own and takes ``key`` (``prompt_cache_key``) and ``retention``.
    """

    ttl: Literal["5m", "1h"] = "5m"
    breakpoints: tuple[Literal["tools", "system", "history"], ...] = ()
    key: str | None = None
    retention: Literal["in_memory", "24h"] | None = None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """Structured output asked of one model.

    ``mode``: ``json_schema`` (OpenAI ``response_format`` json_schema, Anthropic forced
    tool use), ``json_mode`` (OpenAI ``json_object``) or ``prompt`` (instructions only).
    ``strict`` is set only when the schema meets OpenAI's strict-mode rules.
    """

    name: str
    schema: dict[str, Any]
    mode: Literal["json_schema", "json_mode", "prompt"] = "json_schema"
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A normalized successful response of one upstream call."""

    text: str
    usage: Usage
    finish_reason: str = "stop"
    request_id: str | None = None
    model: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    thinking_blocks: tuple[dict[str, Any], ...] = ()
    """Anthropic ``thinking`` / ``redacted_thinking`` blocks as received (signature included)."""
    headers: Mapping[str, str] | None = field(default=None, compare=False, repr=False)  # the HTTP response's


LimitDimension = Literal["requests", "tokens", "input_tokens", "output_tokens"]
LIMIT_DIMENSIONS: tuple[LimitDimension, ...] = ("requests", "tokens", "input_tokens", "output_tokens")


@dataclass(frozen=True, slots=True)
class LimitReading:
    """One dimension of a provider's rate limit, as its headers (or the learned estimate) say."""

    limit: int | None  # the window's size, when reported
    remaining: int
    reset_at: float | None  # wall-clock (epoch) seconds when it is full again; None: not known yet


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What a provider says is left of its rate limits, per dimension (``None``: not reported)."""

    requests: LimitReading | None = None
    tokens: LimitReading | None = None
    input_tokens: LimitReading | None = None
    output_tokens: LimitReading | None = None

    def readings(self) -> list[tuple[LimitDimension, LimitReading]]:
        """The reported dimensions, in :data:`LIMIT_DIMENSIONS` order."""
        return [(d, r) for d in LIMIT_DIMENSIONS if (r := getattr(self, d)) is not None]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of a request's trace: a call made, or a model skipped and why."""

    model: str
    provider: str
    outcome: Outcome
    error_kind: str | None = None
    latency_s: float = 0.0
    request_id: str | None = None
    status_code: int | None = None
    message: str | None = None
    retry_after_s: float | None = None
    cost_usd: float = 0.0
    usage: Usage | None = None
    started_s: float = 0.0  # when the call started, seconds after the request started
    billed_as: str | None = None  # no usable usage reported: "estimate", "reserve" or "zero" (on_unknown_usage)
    reason: str | None = None  # why an invalid_output answer failed: "truncated" (cut at max_output_tokens) or "schema"

    def describe(self) -> str:
        if self.outcome == "ok":
            return f"{self.model}: ok"
        detail = f" ({self.status_code})" if self.status_code else ""
        return f"{self.model}: {self.outcome} {self.error_kind}{detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "outcome": self.outcome,
            "error_kind": self.error_kind,
            "latency_s": round(self.latency_s, 6),
            "request_id": self.request_id,
            "status_code": self.status_code,
            "message": self.message,
            "retry_after_s": self.retry_after_s,
            "cost_usd": self.cost_usd,
            "billed_as": self.billed_as,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to a request, with its full trace."""

    text: str
    model: str
    provider: str
    usage: Usage
    cost_usd: float
    cache_hit: bool
    route: str
    attempts: tuple[Attempt, ...]
    latency_s: float
    task: str = ""
    finish_reason: str = "stop"
    request_id: str | None = None
    stale: bool = False
    parsed: Any = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    thinking_blocks: tuple[dict[str, Any], ...] = ()
    """The model's thinking blocks (Anthropic), verbatim with their ``signature``: put them on the
    assistant message (``"thinking_blocks": ...``) to continue a tool-use conversation. Never cached."""
    experiment: str | None = None
    """The experiment this request was assigned in (``None``: none, or not enrolled: control served)."""
    variant: str | None = None
    """The experiment variant that served it."""

    @property
    def thinking(self) -> str:
        """The readable thinking text of ``thinking_blocks`` (``""`` when none was returned)."""
        return "".join(str(b.get("thinking", "")) for b in self.thinking_blocks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "text": self.text,
            "model": self.model,
            "provider": self.provider,
            "route": self.route,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cached_input_tokens": self.usage.cached_input_tokens,
                "cache_write_tokens": self.usage.cache_write_tokens,
                "reasoning_tokens": self.usage.reasoning_tokens,
                "cache_write_1h_tokens": self.usage.cache_write_1h_tokens,
            },
            "cost_usd": self.cost_usd,
            "cache_hit": self.cache_hit,
            "stale": self.stale,
            "finish_reason": self.finish_reason,
            "latency_s": round(self.latency_s, 6),
            "request_id": self.request_id,
            "tool_calls": [dict(call) for call in self.tool_calls],
            "parsed": _jsonable(self.parsed),
            "attempts": [a.to_dict() for a in self.attempts],
            "experiment": self.experiment,
            "variant": self.variant,
        }


def _jsonable(value: Any) -> Any:
    """``Result.parsed`` as JSON data: a pydantic object is dumped, anything else kept."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


ChunkType = Literal["text", "tool_call", "reset", "final", "thinking"]


class StreamChunk(NamedTuple):
    """One normalized chunk of ``Router.stream`` / ``Router.astream``.

    * ``text``: ``text`` is a delta of the answer.
    * ``tool_call``: ``tool_call`` is a delta ``{"index", "id", "name", "arguments"}``
      (``id`` and ``name`` on a call's first delta only; ``arguments`` a JSON fragment).
    * ``reset``: the model failed after streaming some output and the task says
      ``on_stream_failure: restart``: discard everything received so far; the answer
      starts again on the next model (``model`` names the one that failed,
      ``error_kind`` says why).
    * ``thinking``: ``text`` is a delta of the model's thinking, never of the answer; sent only
      when the task says ``thinking: {stream: true}`` (else thinking deltas are dropped).
    * ``final``: the last chunk; ``result`` is the whole ``Result`` (text, tool calls,
      usage from the provider's final usage, cost, the attempt trace).

    Immutable (a named tuple: one is built per streamed delta).
    """

    type: ChunkType
    text: str = ""
    tool_call: dict[str, Any] | None = None
    result: Result | None = None
    model: str = ""
    error_kind: str | None = None


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached answer: fresh until ``expires_at``, served after a failure until ``stale_until``."""

    value: Any
    expires_at: float
    stale_until: float


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One request in the spend ledger (no prompt or completion text)."""

    ts: float
    request_id: str
    task: str
    route: str
    model: str
    tenant: str | None
    user: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    provider_request_ids: str
    outcome: str
    attempts: int
    metadata: str = "{}"
    cache_write_tokens: int = 0  # provider prompt cache: tokens written (cached_input_tokens: read)
    prompt_cache_saved_usd: float = 0.0  # provider prompt cache: uncached price less the billed price
    cache_saved_usd: float = 0.0  # our response cache: what a hit's answer cost when it was made
    experiment: str | None = None  # the experiment and variant the request was assigned to
    variant: str | None = None
    latency_s: float = 0.0  # from the call to its end (experiment reports compare it)
    fallbacks: int = 0  # moves to another model among the attempts


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """A quality signal about one request (``Router.feedback``): the last one given counts."""

    ts: float
    request_id: str
    score: float | None
    label: str | None
