"""The policy language as typed models: the single source of truth.

`policyrouter schema` renders these models to ``schemas/policy.schema.json``; field
descriptions here become the editor hover text, so write them for policy authors.
Every model forbids unknown keys and uses strict types (a quoted number is an error,
not a silent coercion).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from policyrouter.policy.kinds import ERROR_KINDS, ErrorKind
from policyrouter.policy.sampling import sampled_above
from policyrouter.tokens import MAX_COUNT

__all__ = [
    "ERROR_KINDS",
    "Backoff",
    "Budget",
    "CacheSettings",
    "CircuitBreaker",
    "Environment",
    "Experiment",
    "Guards",
    "InputTokensCondition",
    "KeyEnv",
    "ModelLimits",
    "ModelSpec",
    "OutputSettings",
    "PatternRule",
    "Policy",
    "Pricing",
    "PromptCacheSettings",
    "ProviderSpec",
    "QueueAging",
    "QueuePriority",
    "QueueRetry",
    "QueueSpec",
    "QueueWebhook",
    "ReasoningSettings",
    "RedactSettings",
    "RetryPolicy",
    "Route",
    "RouteWhen",
    "SoftLimitAction",
    "StateSettings",
    "StreamSettings",
    "Task",
    "ThinkingBudget",
    "ThinkingSettings",
    "Tier",
    "TierModel",
    "ToolCounter",
    "ToolFee",
    "Variant",
    "sampled_above",
    "tier_members",
]


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=128)]
# Every number is bounded to what the runtime can hold (timers, Redis expiries, SQLite integers):
# finite, durations at most a leap year, counts and sizes exact in a float.
MAX_SECONDS = 366 * 86_400.0
DEFAULT_RESPONSE_BYTES = 16 * 2**20
MAX_RESPONSE_BYTES = 2**32  # 4 GiB: beyond it an answer is an attack, not an answer
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
NonNegSeconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
IsoTime = Annotated[AwareDatetime, Field(strict=False)]  # YAML gives a timestamp or a quoted ISO string


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- providers


class MockSettings(_Model):
    """Behaviour of the in-process `mock` provider (offline environments, policy tests)."""

    latency_s: NonNegSeconds = Field(0.0, description="Simulated latency of every call, in seconds.")
    reply: str | None = Field(
        None, description="Fixed reply text. Default: a deterministic answer derived from the input."
    )


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _shape(value: Any) -> str:
    """Which branch of a key union ``value`` belongs to, so errors come from that branch only
    (a validated :class:`KeyEnv` too: serializing picks its branch the same way)."""
    return "list" if isinstance(value, list) else "entry" if isinstance(value, dict | KeyEnv) else "name"


class KeyEnv(_Model):
    """One key of a rotation: the variable holding it, and its share of the requests."""

    env: EnvName = Field(description="Name of the environment variable holding this key.")
    weight: NonNegFloat = Field(
        1.0,
        description="Share of the requests this key gets, relative to the others (default 1). "
        "`0` drains a key: it is used only when no key with a weight is left.",
    )


KeyEntry = Annotated[Annotated[EnvName, Tag("name")] | Annotated[KeyEnv, Tag("entry")], Discriminator(_shape)]
KeyEnvs = Annotated[Annotated[EnvName, Tag("name")] | Annotated[list[KeyEntry], Tag("list")], Discriminator(_shape)]


class ProviderSpec(_Model):
    """An API endpoint and how to authenticate to it. Keys are never written here: name
    the environment variable that holds the key in `api_key_env`."""

    kind: Literal[
        "openai", "anthropic", "openai_compatible", "mock", "azure_openai", "anthropic_bedrock", "anthropic_vertex"
    ] = Field(
        description="Wire protocol: `openai`, `anthropic`, `openai_compatible` (any OpenAI-style "
        "endpoint, needs `base_url`), `mock` (in-process, offline, deterministic), `azure_openai` "
        "(Azure OpenAI: needs `endpoint` and `api_version`; each model names its `deployment`), "
        "`anthropic_bedrock` (Claude on Amazon Bedrock, extra `bedrock`) or `anthropic_vertex` "
        "(Claude on Google Vertex AI, extra `vertex`)."
    )
    api_key_env: KeyEnvs | None = Field(
        None,
        description="Name of the environment variable holding the API key, e.g. OPENAI_API_KEY, "
        "or a list of them to rotate keys: requests spread across the keys present (by `weight`, "
        "default 1), and a key refused with 401/403 is set aside. Read when a request first needs "
        "this provider."
        " `anthropic_bedrock`: Bedrock API keys instead of AWS credentials (unset: AWS_BEARER_TOKEN_BEDROCK "
        "if present, else the AWS credential chain); `anthropic_vertex`: OAuth access tokens instead of "
        "Google application default credentials; `azure_openai` with `auth: entra_id`: not used.",
    )
    base_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Endpoint base URL (proxies, gateways, tests). Required for `openai_compatible` "
        "unless `base_url_env` is set.",
    )
    base_url_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the base URL instead of `base_url` "
        "(a URL per deployment, or a test server's port), e.g. OPENAI_BASE_URL. Read when the "
        "router is built.",
    )
    organization_env: str | None = Field(
        None, description="Environment variable holding the OpenAI organization id (optional)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers sent with every request (no secrets: use api_key_env).",
    )
    async_transport: Literal["httpx", "aiohttp"] = Field(
        "httpx",
        description="HTTP transport for async calls. `aiohttp` needs the `aiohttp` extra.",
    )
    mock: MockSettings | None = Field(None, description="Settings of the `mock` provider kind.")
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="`azure_openai`: the resource endpoint, e.g. https://my-resource.openai.azure.com "
        "(requests go to <endpoint>/openai/deployments/<deployment>/...).",
    )
    endpoint_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="`azure_openai`: name of the environment variable holding the endpoint instead of "
        "`endpoint`, e.g. AZURE_OPENAI_ENDPOINT. Read when the router is built.",
    )
    api_version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="`azure_openai`: the `api-version` sent with every request, e.g. 2024-10-21 (required).",
    )
    auth: Literal["api_key", "entra_id"] = Field(
        "api_key",
        description="`azure_openai`: `api_key` (the key in `api_key_env`, sent as `api-key`) or `entra_id` "
        "(a Microsoft Entra ID token from azure-identity's DefaultAzureCredential; extra `azure`).",
    )
    region: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Cloud region of `anthropic_bedrock` (an AWS region, e.g. us-east-1) and "
        "`anthropic_vertex` (a Google Cloud region, e.g. us-east5, or `global`). Required for both.",
    )
    project: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="Google Cloud project id of `anthropic_vertex` (required for it).",
    )
    aws_profile: str | None = Field(
        None,
        description="`anthropic_bedrock`: the AWS profile (~/.aws/config) to take credentials from. "
        "Default: the usual AWS credential chain (environment, profile, SSO, instance role).",
    )

    @property
    def api_keys(self) -> tuple[KeyEnv, ...]:
        """`api_key_env` as a list of keys, each with its weight (a name alone weighs 1)."""
        names = self.api_key_env
        if names is None:
            return ()
        if isinstance(names, str):
            names = [names]
        return tuple(KeyEnv(env=n) if isinstance(n, str) else n for n in names)

    @model_validator(mode="after")
    def _check_kind(self) -> ProviderSpec:
        if self.kind == "openai_compatible" and not self.base_url and not self.base_url_env:
            raise ValueError("provider kind `openai_compatible` requires `base_url` or `base_url_env`")
        return self


# --------------------------------------------------------------------------- models


ToolCounter = Literal["web_search_requests", "web_fetch_requests"]
"""Per-use server tools, by the counter the provider reports (Anthropic ``usage.server_tool_use``)."""


class ToolFee(_Model):
    """The fee of one server tool: USD per use, and the most uses one call can make."""

    usd_per_use: NonNegFloat = Field(description="USD billed per use (Anthropic web search: 0.01).")
    max_uses: PositiveInt = Field(
        description="Most uses one call can make; send the tool with the same `max_uses`. "
        "Explain's worst case and the overbill bound count this many."
    )


class Pricing(_Model):
    """List prices in USD per 1M tokens, plus per-use server tool fees."""

    input: NonNegFloat = Field(description="USD per 1M input tokens.")
    output: NonNegFloat = Field(description="USD per 1M output tokens.")
    cached_input: NonNegFloat | None = Field(
        None, description="USD per 1M cached input tokens (prompt-cache reads). Default: `input`."
    )
    cache_write: NonNegFloat | None = Field(
        None,
        description="USD per 1M tokens written to the prompt cache with the 5-minute lifetime (Anthropic). "
        "Default: 1.25 x `input` on Anthropic models, `input` elsewhere.",
    )
    cache_write_1h: NonNegFloat | None = Field(
        None,
        description="USD per 1M tokens written to the prompt cache with the 1-hour lifetime (Anthropic). "
        "Default: 2 x `input` on Anthropic models, `input` elsewhere.",
    )
    tool_fees: dict[ToolCounter, ToolFee] = Field(
        default_factory=dict,
        description="Per-use fees of server tools, by usage counter (`web_search_requests`, `web_fetch_requests`).",
    )


class ModelLimits(_Model):
    """Client-side limits held for this model (usually your provider tier's limits)."""

    rpm: PositiveInt | None = Field(None, description="Requests per minute.")
    tpm: PositiveInt | None = Field(None, description="Tokens (input + max output) per minute.")
    concurrency: PositiveInt | None = Field(None, description="Requests in flight at once.")
    on_limit: Literal["wait", "spill"] = Field(
        "wait",
        description="`wait` for capacity (bounded by `max_wait_s` and the deadline) or `spill` "
        "to the next model of the chain at once.",
    )
    max_wait_s: NonNegSeconds = Field(5.0, description="Longest wait for capacity before spilling.")
    adaptive: bool = Field(
        False,
        description="Also hold to what the provider's rate-limit headers say is left (shared through "
        "the state backend): wait or spill before a 429, resume as the provider's window resets.",
    )
    reserve: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="With `adaptive`: the fraction of the provider's reported limit kept back "
        "(for other clients of the same key and token-count differences).",
    )
    window_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="With `adaptive`: the window the provider counts over (OpenAI and Anthropic: a "
        "minute). A reported reset sooner than this (a token bucket's 'full again') is not taken as the window.",
    )


Capability = Literal["json_schema", "json_mode", "tools", "vision", "streaming", "prompt_cache", "reasoning"]

Effort = Literal["minimal", "low", "medium", "high"]


class ReasoningSettings(_Model):
    """How hard a reasoning model may think (OpenAI ``reasoning_effort``)."""

    effort: Effort = Field(
        description="`minimal`, `low`, `medium` or `high`: sent as `reasoning_effort` to OpenAI-protocol "
        "reasoning models; Anthropic reasoning models think with the budget it stands for unless "
        "`thinking` says otherwise (minimal 1024, low 2048, medium 4096, high 8192 tokens)."
    )


class ThinkingBudget(_Model):
    """Anthropic extended thinking: a token budget, given directly or as an effort."""

    budget_tokens: Annotated[int, Field(ge=1024, le=MAX_COUNT)] | None = Field(
        None,
        description="Tokens Claude may think with (at least 1024, below `max_output_tokens`: thinking "
        "is part of the output and billed as output).",
    )
    effort: Effort | None = Field(
        None,
        description="The budget as an effort: minimal 1024, low 2048, medium 4096, high 8192 tokens. "
        "OpenAI-protocol reasoning models get it as `reasoning_effort` unless `reasoning` is set.",
    )

    @model_validator(mode="after")
    def _check_budget(self) -> ThinkingBudget:
        if (self.budget_tokens is None) == (self.effort is None):
            raise ValueError("`thinking` needs exactly one of `budget_tokens` or `effort` (e.g. `budget_tokens: 4096`)")
        return self


class ThinkingSettings(ThinkingBudget):
    """A task's thinking budget, and what becomes of the thinking text."""

    stream: bool = Field(
        False, description="Send thinking deltas to stream callers as `thinking` chunks (default: dropped)."
    )
    log_content: bool = Field(
        False, description="Put the (redacted) thinking text in events too. Default: never logged."
    )


class ModelSpec(_Model):
    """One deployable model: a pinned provider model id with its price and limits."""

    provider: Name = Field(description="Name of a provider defined under `providers`.")
    model: str = Field(
        min_length=1,
        description="The provider's model id. Pin a dated version (gpt-4.1-mini-2025-04-14); "
        "an alias that moves under you is a warning.",
    )
    pricing: Pricing | None = Field(None, description="List prices, needed wherever a budget applies.")
    context_window: PositiveInt | None = Field(None, description="Max input + output tokens.")
    max_output_tokens: PositiveInt | None = Field(None, description="The model's output token limit.")
    limits: ModelLimits | None = Field(None, description="Client-side rate and concurrency limits.")
    capabilities: list[Capability] = Field(
        default_factory=list, description="What the model supports natively (json_schema, tools, ...)."
    )
    circuit_breaker: Name | None = Field(
        None, description="Circuit breaker to use. Default: the breaker named `default`, if any."
    )
    pinned: bool | None = Field(
        None, description="Set true to declare an id pinned when the naming heuristic cannot tell."
    )
    deployment: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="`azure_openai` providers: the deployment that serves this model. Default: the `model` id.",
    )
    reasoning: ReasoningSettings | None = Field(
        None, description="This model's reasoning effort, replacing the task's and the route's."
    )
    thinking: ThinkingBudget | None = Field(
        None, description="This model's thinking budget, replacing the task's and the route's."
    )
    prompt_cache_min_tokens: PositiveInt | None = Field(
        None,
        description="Shortest prefix (counted tokens) the provider caches: a `prompt_cache` breakpoint "
        "is placed only where the prefix reaches it. Default: 2048 for Claude Haiku ids, 1024 otherwise.",
    )


# --------------------------------------------------------------------------- retries, breakers


class Backoff(_Model):
    """Exponential backoff between retries on one model."""

    initial_s: NonNegSeconds = Field(0.5, description="Delay before the first retry.")
    multiplier: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] = Field(
        2.0, description="Growth factor per retry."
    )
    max_s: NonNegSeconds = Field(30.0, description="Upper bound of one delay (also caps Retry-After).")
    jitter: Literal["full", "equal", "none"] = Field(
        "full", description="`full`: uniform in [0, delay]; `equal`: [delay/2, delay]; `none`."
    )


DEFAULT_RETRY_ON: list[ErrorKind] = ["rate_limited", "overloaded", "server_error", "timeout", "connection"]


class RetryPolicy(_Model):
    """How failures on one model are retried before the chain falls back."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="Attempts on one model, the first included. Then the chain falls back."
    )
    backoff: Backoff = Field(default_factory=Backoff)
    retry_on: list[ErrorKind] = Field(
        default_factory=lambda: list[ErrorKind](DEFAULT_RETRY_ON),
        description="Error kinds retried on the same model. Others fall back at once.",
    )
    respect_retry_after: bool = Field(True, description="Wait what the provider's Retry-After says.")


class CircuitBreaker(_Model):
    """Stops calling a model that keeps failing, then probes it with one request."""

    failure_threshold: PositiveInt = Field(5, description="Failures within `window_s` that open it.")
    window_s: Seconds = Field(60.0, description="Sliding window for counting failures.")
    cooldown_s: Seconds = Field(30.0, description="Time open before a single half-open probe.")
    trip_on: list[ErrorKind] = Field(
        default_factory=lambda: list[ErrorKind](DEFAULT_RETRY_ON),
        description="Error kinds that count as failures.",
    )


# --------------------------------------------------------------------------- budgets


class SoftLimitAction(_Model):
    degrade_to: Name | None = Field(
        None, description="Tier that serves the rest of the window once the soft limit is crossed."
    )


class Budget(_Model):
    """A cap on USD spend, tokens, or both, over a calendar window, enforced before each attempt."""

    scope: Literal["global", "task", "tenant", "user", "model", "metadata"] = Field(
        description="What one counter covers: everything, or one per task/tenant/user/model, "
        "or one per value of metadata key `key`."
    )
    key: str | None = Field(None, description="Metadata key when `scope: metadata` (e.g. feature).")
    window: Literal["minute", "hour", "day", "month"] = Field(description="Calendar window.")
    timezone: str = Field("UTC", description="IANA timezone of the calendar window.")
    limit_usd: NonNegFloat | None = Field(
        None, description="Hard limit in USD: a request whose worst case does not fit is refused."
    )
    limit_tokens: PositiveInt | None = Field(
        None,
        description="Hard limit in tokens (input, cached included, + output): a request whose worst "
        "case (counted input + max_output_tokens) does not fit is refused. With `limit_usd` too, either stops it.",
    )
    soft_limit: float | None = Field(
        None, description="Fraction of each limit (0 < x < 1) at which `on_soft_limit` applies."
    )
    on_soft_limit: SoftLimitAction | None = None
    tasks: list[Name] | None = Field(None, description="Only these tasks count here. Default: all.")

    @model_validator(mode="after")
    def _check_key(self) -> Budget:
        if self.scope == "metadata" and not self.key:
            raise ValueError("`scope: metadata` needs `key` (the metadata key to budget by)")
        if self.limit_usd is None and self.limit_tokens is None:
            raise ValueError("a budget needs `limit_usd`, `limit_tokens` or both (e.g. `limit_tokens: 200000`)")
        return self


# --------------------------------------------------------------------------- state, cache


class StateSettings(_Model):
    """Where counters, reservations, breaker state, cache and the ledger live."""

    backend: Literal["memory", "sqlite", "redis"] = Field("memory")
    path: str | None = Field(
        None,
        description="SQLite file (sqlite backend); a relative path is relative to the policy file that "
        "sets it (default: policyrouter-state.sqlite beside that file).",
    )
    url_env: str | None = Field(None, description="Env var holding the Redis URL (redis backend).")
    key_prefix: str = Field("policyrouter", description="Prefix of every Redis key.")
    on_unavailable: Literal["fail_closed", "fail_open"] = Field("fail_closed")


# What a provider samples at when a request sends no temperature: how the cache reads "unset"
class CacheSettings(_Model):
    """Exact-match response cache of a task."""

    ttl_s: Seconds = Field(description="How long an answer is served from cache.")
    max_temperature: NonNegFloat = Field(
        0.3,
        description="Cache only when the request temperature is at or below this "
        "(no temperature set counts as the providers' default, 1.0).",
    )
    force: bool = Field(False, description="Cache whatever the temperature.")
    scope: Literal["tenant", "global"] = Field(
        "tenant", description="`tenant`: entries never cross tenants. `global`: shared."
    )
    stale_if_error_s: NonNegSeconds = Field(
        0.0, description="When every model fails, serve an entry expired for at most this long."
    )
    max_entries: PositiveInt = Field(10_000, description="Size bound of the memory cache.")


Breakpoint = Literal["tools", "system", "history"]


class PromptCacheSettings(_Model):
    """Provider prompt caching of a task (the provider bills cached prefix reads at a discount)."""

    ttl: Literal["5m", "1h"] = Field(
        "5m", description="Lifetime of an Anthropic cache entry: `5m` or `1h` (dearer writes, see pricing)."
    )
    breakpoints: list[Breakpoint] = Field(
        default_factory=lambda: list[Breakpoint](["tools", "system"]),
        description="Where Anthropic requests mark `cache_control`: after the tool definitions, the "
        "system prompt, and/or the conversation so far (each only where its prefix reaches the model's "
        "`prompt_cache_min_tokens`; at most four marks per request).",
    )
    key: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = Field(
        None,
        description="OpenAI `prompt_cache_key`, sent as given. Default: derived from the task and the "
        "request's tenant, so one tenant's requests share a cache.",
    )
    retention: Literal["in_memory", "24h"] | None = Field(
        None, description="OpenAI `prompt_cache_retention`. Default: not sent (the provider's default)."
    )


# --------------------------------------------------------------------------- tasks


class InputTokensCondition(_Model):
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


class RouteWhen(_Model):
    """Conditions of a route; all given must hold."""

    input_tokens: InputTokensCondition | None = Field(None, description="Counted input tokens.")
    metadata: dict[str, str | int | bool | list[str | int | bool]] | None = Field(
        None, description="Metadata key equals the value (or is one of the list)."
    )
    tenant: list[str] | None = Field(None, description="Tenant is one of these.")


class Route(_Model):
    """A conditional chain. Routes are tried in order; the first match wins."""

    name: Name | None = Field(None, description="Name shown in traces. Default: route-<index>.")
    when: RouteWhen
    tier: Name = Field(description="Tier serving matching requests.")
    reasoning: ReasoningSettings | None = Field(
        None, description="Reasoning effort of requests on this route, replacing the task's."
    )
    thinking: ThinkingBudget | None = Field(
        None, description="Thinking budget of requests on this route, replacing the task's."
    )


class OutputSettings(_Model):
    max_repairs: Annotated[int, Field(ge=0, le=5)] = Field(
        1, description="Repair attempts that show the model its validation errors."
    )


class PatternRule(_Model):
    name: Name = Field(description="Name shown in traces and audit records.")
    regex: str = Field(min_length=1, description="Python regular expression.")


class RedactSettings(_Model):
    """PII redaction applied to the input before it is sent."""

    emails: bool = Field(True, description="Redact email addresses.")
    phones: bool = Field(True, description="Redact phone numbers.")
    cards: bool = Field(True, description="Redact payment card numbers (Luhn-checked).")
    patterns: list[PatternRule] = Field(default_factory=list, description="Custom patterns to redact.")
    reversible: bool = Field(
        False,
        description="Replace with placeholders ([EMAIL_1]) and restore them in the answer.",
    )


class Guards(_Model):
    """Input guards of a task, applied before anything is sent."""

    redact: RedactSettings | None = None
    block: list[PatternRule] = Field(
        default_factory=list, description="Inputs matching any of these are refused (GuardBlocked)."
    )
    max_chars: PositiveInt | None = Field(None, description="Refuse inputs longer than this many characters.")


class StreamSettings(_Model):
    first_token_timeout_s: Seconds | None = Field(
        None, description="Fail over if the first chunk takes longer than this."
    )
    idle_timeout_s: Seconds | None = Field(None, description="Longest gap between two chunks.")


class Variant(_Model):
    """One arm of an experiment: the task as written, with these settings replaced."""

    weight: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] = Field(
        description="Share of the experiment's traffic, relative to the other variants' weights."
    )
    tier: Name | None = Field(None, description="Default tier of the task in this variant.")
    routes: list[Route] | None = Field(
        None, description="The task's conditional routes in this variant (replaced whole)."
    )
    max_output_tokens: PositiveInt | None = Field(None, description="Output tokens requested in this variant.")
    temperature: Annotated[float, Field(ge=0, le=2)] | None = Field(None, description="Temperature in this variant.")
    system: str | None = Field(None, description="System prompt in this variant.")
    response_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the output in this variant.")


class Experiment(_Model):
    """Splits a task's traffic between named variants, sticky per user or tenant."""

    variants: dict[Name, Variant] = Field(min_length=2, description="The arms, by name. At least two.")
    control: Name | None = Field(
        None,
        description="The variant served outside the experiment (killed, not started, ended, no sticky key). "
        "Default: the first variant.",
    )
    sticky: Literal["user", "tenant"] = Field(
        "user", description="Who keeps one variant: the request's `user` or `tenant` (hashed with the experiment name)."
    )
    start: IsoTime | None = Field(None, description="ISO time with a zone when it starts assigning (router clock).")
    end: IsoTime | None = Field(None, description="ISO time with a zone when it stops assigning (router clock).")
    enabled: bool = Field(True, description="Kill switch: `false` serves everyone the control variant at once.")

    @property
    def control_name(self) -> str:
        return self.control if self.control is not None else next(iter(self.variants))


class Task(_Model):
    """One kind of request your application makes."""

    tier: Name = Field(description="Default tier (ordered fallback chain) of the task.")
    description: str | None = None
    system: str | None = Field(None, description="System prompt sent with every request.")
    max_input_tokens: PositiveInt | None = Field(None, description="Counted input token limit.")
    on_input_overflow: Literal["reject", "truncate_start", "truncate_middle", "truncate_end"] = Field(
        "reject", description="What happens to input over `max_input_tokens`. System messages are kept."
    )
    max_output_tokens: PositiveInt = Field(1024, description="Output tokens requested from the model.")
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    timeout_s: Seconds = Field(30.0, description="Timeout of one upstream call.")
    deadline_s: Seconds | None = Field(
        None, description="Deadline of the whole request across attempts. Default: 4 x timeout_s."
    )
    max_response_bytes: Annotated[int, Field(ge=1024, le=MAX_RESPONSE_BYTES)] = Field(
        DEFAULT_RESPONSE_BYTES,
        description="Largest upstream response body of one attempt, counted while it is read. Default: 16 MiB.",
    )
    max_total_attempts: PositiveInt | None = Field(
        None, description="Upstream calls allowed per request across the chain (retries + fallbacks)."
    )
    retry: Name | None = Field(None, description="Retry policy. Default: the one named `default`.")
    cache: CacheSettings | None = None
    prompt_cache: PromptCacheSettings | None = Field(
        None, description="Ask the providers to cache the prompt prefix (Anthropic breakpoints, OpenAI cache key)."
    )
    routes: list[Route] = Field(default_factory=list, description="Conditional chains, first match wins.")
    response_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the output.")
    output: OutputSettings | None = None
    on_stream_failure: Literal["raise", "restart"] = Field(
        "raise", description="After the first chunk: `raise` StreamInterrupted, or `restart` on the next model."
    )
    stream: StreamSettings | None = None
    on_unknown_usage: Literal["estimate", "reserve", "zero"] = Field(
        "estimate",
        description="What an attempt that may have been billed but reported no usage (a timeout, a cut "
        "stream, an unreadable 200) costs: `estimate` counted input + delivered output, `reserve` its "
        "worst case, `zero` nothing (delivered output is always charged).",
    )
    guards: Guards | None = None
    log_content: bool = Field(False, description="Put (redacted) prompt and completion text in events.")
    budgets: list[Name] | None = Field(
        None, description="Restrict which budgets apply (default: every budget covering the task)."
    )
    reasoning: ReasoningSettings | None = Field(
        None,
        description="Reasoning effort asked of the task's reasoning models (capability `reasoning`). "
        "Reasoning tokens count in `max_output_tokens`, so the worst case is unchanged.",
    )
    thinking: ThinkingSettings | None = Field(
        None,
        description="Anthropic extended thinking for the task's reasoning models, and whether its text "
        "is streamed or logged (never by default).",
    )
    experiments: dict[Name, Experiment] = Field(
        default_factory=dict, description="Online experiments splitting this task's traffic between variants."
    )


# --------------------------------------------------------------------------- tiers

Strategy = Literal["ordered", "weighted", "least_busy", "lowest_latency", "lowest_cost"]


class TierModel(_Model):
    """One model of a tier in the long form, with its share of a `weighted` draw."""

    model: Name = Field(description="A model declared under `models`.")
    weight: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)] | None = Field(
        None, description="Share of a `weighted` tier's draw, relative to the others (default 1)."
    )


class Tier(_Model):
    """A tier whose strategy picks the first model of each request's chain; the other models
    follow as fallbacks in the order listed."""

    strategy: Strategy = Field(
        "ordered",
        description="How the first model is picked: ordered (the first listed), weighted (a draw by weight), "
        "least_busy (fewest calls in flight), lowest_latency (lowest decaying average latency), lowest_cost "
        "(cheapest worst case for the request). Models with an open breaker or exhausted limits are left out.",
    )
    models: list[Name | TierModel] = Field(min_length=1, description="The tier's models, in fallback order.")


def tier_members(spec: list[str] | Tier) -> list[str]:
    """The model names of a tier, in the order listed (short or long form)."""
    if isinstance(spec, list):
        return spec
    return [m if isinstance(m, str) else m.model for m in spec.models]


# --------------------------------------------------------------------------- queues


class QueuePriority(_Model):
    """How a job's priority class is derived (1 is served first). The first rule that matches wins:
    the submit's explicit `priority`, then `tenants`, then `metadata`, then `default`."""

    default: Annotated[int, Field(ge=1, le=100)] = Field(5, description="Class of a job no rule matches.")
    tenants: dict[str, Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=dict, description="Class by tenant id, e.g. `{acme: 1}`."
    )
    metadata: dict[str, dict[str, Annotated[int, Field(ge=1, le=100)]]] = Field(
        default_factory=dict,
        description="Class by a metadata key's value, e.g. `{customer_tier: {enterprise: 1, free: 5}}`.",
    )


class QueueAging(_Model):
    """Waiting raises a job's priority, so nothing starves."""

    dispatches_per_level: PositiveInt = Field(
        50,
        description="A job rises one priority class for every this many jobs of its queue dispatched "
        "while it waits (enterprise=1 vs free=5 with 50: a free job waits behind at most 200 newer enterprise jobs).",
    )
    max_wait_s: Seconds | None = Field(
        None, description="A job waiting this long is served next, whatever its class. Default: no bound."
    )


class QueueRetry(_Model):
    """A failed delivery goes back to the queue after a backoff, demoted."""

    backoff: Backoff = Field(
        default_factory=lambda: Backoff(initial_s=5.0, multiplier=2.0, max_s=300.0, jitter="none"),
        description="Delay before the job is visible again (the n-th failure waits initial_s * multiplier^(n-1)).",
    )
    demote: Annotated[int, Field(ge=0, le=100)] = Field(
        1, description="Priority classes added per failed delivery, so one bad job cannot eat the rate limit."
    )


class QueueWebhook(_Model):
    """POSTed by the worker that ends a job (done, failed, dead), HMAC-signed, retried on failure."""

    url_env: EnvName = Field(description="Env var holding the receiver's URL (http or https).")
    secret_env: EnvName = Field(
        description="Env var holding the HMAC-SHA256 key: the receiver checks `X-Policyrouter-Signature`."
    )
    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(5, description="Tries, the first included.")
    backoff: Backoff = Field(
        default_factory=lambda: Backoff(initial_s=1.0, multiplier=2.0, max_s=30.0, jitter="none"),
        description="Delay between tries (a 5xx, a 429 or no answer is retried; another 4xx is not).",
    )
    timeout_s: Seconds = Field(10.0, description="Timeout of one POST.")


class QueueSpec(_Model):
    """A named queue: which tasks it serves and how its jobs are ordered, retried and kept."""

    tasks: list[Name] = Field(min_length=1, description="Tasks whose jobs this queue holds.")
    priority: QueuePriority = Field(default_factory=QueuePriority)
    aging: QueueAging = Field(default_factory=QueueAging)
    fairness: Literal["tenant", "none"] = Field(
        "tenant",
        description="`tenant`: tenants take turns (a tenant's backlog never holds back another tenant's first "
        "job); `none`: one line, by priority and age.",
    )
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = Field(
        5, description="Deliveries (crashed workers included) before a job goes to the dead-letter list."
    )
    retry: QueueRetry = Field(default_factory=QueueRetry)
    lease_s: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = Field(
        60.0, description="A worker holds a job this long; it renews while running; a dead worker's job returns."
    )
    result_ttl_s: Seconds = Field(86_400.0, description="How long a finished job (result or error) is kept.")
    webhook: QueueWebhook | None = Field(None, description="Tell a receiver when each job ends.")


# --------------------------------------------------------------------------- top level


class Policy(_Model):
    """A complete policy: one file, or a directory of files merged."""

    version: Literal[1] = Field(description="Policy language version. Only 1 exists.")
    providers: dict[Name, ProviderSpec] = Field(default_factory=dict)
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    tiers: dict[Name, list[Name] | Tier] = Field(
        default_factory=dict,
        description="Fallback chains: a list of models (ordered), or `{strategy, models}` to spread load.",
    )
    retry_policies: dict[Name, RetryPolicy] = Field(default_factory=dict)
    circuit_breakers: dict[Name, CircuitBreaker] = Field(default_factory=dict)
    budgets: dict[Name, Budget] = Field(default_factory=dict)
    state: StateSettings = Field(default_factory=StateSettings)
    tasks: dict[Name, Task] = Field(default_factory=dict)
    queues: dict[Name, QueueSpec] = Field(
        default_factory=dict, description="Priority queues that workers drain (`router.submit`, `policyrouter worker`)."
    )
    environments: dict[Name, Environment] = Field(
        default_factory=dict,
        description="Overlays deep-merged onto the base (mappings merge, lists replace).",
    )

    def tier_models(self, tier: str) -> list[str]:
        """The model names of tier ``tier``, in the order listed (none when it is not declared)."""
        spec = self.tiers.get(tier)
        return [] if spec is None else tier_members(spec)


class Environment(BaseModel):
    """An overlay: any subset of the top-level sections, deep-merged onto the base.

    Validated in full after merging, so it is loose here on purpose.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: dict[str, Any] | None = None
    models: dict[str, Any] | None = None
    tiers: dict[str, Any] | None = None
    retry_policies: dict[str, Any] | None = None
    circuit_breakers: dict[str, Any] | None = None
    budgets: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    tasks: dict[str, Any] | None = None
    queues: dict[str, Any] | None = None


Policy.model_rebuild()
