"""The compiled plan: immutable, built once per policy and environment.

Beyond ``policy/`` nothing reads dict-shaped config: the router, explain and simulate
work from these frozen objects only. A plan holds the stages' settings (``stages/``) and
never changes: a new policy is a new plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from policyrouter.stages.budget import PriceRows
from policyrouter.stages.cache import CachePlan
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.stages.experiment import arm, point
from policyrouter.stages.guard import GuardPlan
from policyrouter.stages.output import max_repair_growth
from policyrouter.stages.prompt_cache import PromptCachePlan
from policyrouter.stages.retry import RetrySettings
from policyrouter.tokens import MAX_COUNT
from policyrouter.types import Reasoning, Usage

__all__ = [
    "MAX_COUNT",
    "NO_REASONING",
    "BudgetPlan",
    "CachePlan",
    "Chain",
    "ExperimentPlan",
    "LimitSettings",
    "ModelPlan",
    "Plan",
    "Price",
    "PriceRows",
    "PromptCachePlan",
    "RouteCondition",
    "RoutePlan",
    "TaskPlan",
    "VariantPlan",
    "WorstCase",
    "price_rows",
    "worst_case",
]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token (the policy's per-1M prices divided by 1e6), and USD per server tool use."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    tool_fees: tuple[tuple[str, float, int], ...] = ()
    """``(usage counter, USD per use, max uses per call)`` of each priced server tool."""
    cache_write_1h: float | None = None
    """USD per token written with the 1-hour lifetime (``None``: as ``cache_write``)."""
    write_bound: float | None = None
    """The dearest write rate a call of this model can be billed (``None``: ``cache_write``):
    compile sets it from the lifetimes the tasks reaching the model ask for."""

    @property
    def write_1h(self) -> float:
        return self.cache_write if self.cache_write_1h is None else self.cache_write_1h

    @property
    def dearest_input(self) -> float:
        """The most one input token can be billed: uncached, or written to the prompt cache."""
        return max(self.input, self.cache_write if self.write_bound is None else self.write_bound)

    def cost(self, usage: Usage) -> float:
        """Cost of one call. ``usage.input_tokens`` includes cached and cache-write tokens (the
        1-hour writes at their own price); each reported server tool use is billed its fee (a
        counter without a fee is free)."""
        plain = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
        hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        cost = (
            plain * self.input
            + usage.cached_input_tokens * self.cached_input
            + (usage.cache_write_tokens - hour) * self.cache_write
            + hour * self.write_1h
            + usage.output_tokens * self.output
        )
        if usage.tool_uses and self.tool_fees:
            uses = dict(usage.tool_uses)
            cost += sum(uses.get(name, 0) * fee for name, fee, _ in self.tool_fees)
        return cost

    @property
    def max_tool_fees(self) -> float:
        """The most one call can be billed in tool fees: every tool used its ``max_uses`` times."""
        return sum(fee * most for _, fee, most in self.tool_fees)

    def prompt_cache_saving(self, usage: Usage) -> float:
        """What the provider's prompt cache saved on one call against uncached prices: reads at
        the input price less their cached price, less the premium of the writes (may be negative)."""
        plain_cost = replace(usage, cached_input_tokens=0, cache_write_tokens=0, cache_write_1h_tokens=0)
        return self.cost(plain_cost) - self.cost(usage)

    def worst_case(self, input_tokens: int, output_tokens: int) -> float:
        """Cost if every input token is billed at the dearest input rate (uncached, or a cache
        write of either lifetime) and every priced tool is used its ``max_uses`` times."""
        return input_tokens * self.dearest_input + output_tokens * self.output + self.max_tool_fees


@dataclass(frozen=True, slots=True)
class LimitSettings:
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    on_limit: str
    max_wait_s: float
    adaptive: bool = False  # also hold to the provider's rate-limit headers (learned, shared in state)
    reserve: float = 0.05  # with adaptive: the fraction of the provider's limit kept back
    window_s: float = 60.0  # with adaptive: the shortest window the provider counts over


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """One model as a chain member: where to send, what it costs, how it may fail."""

    name: str
    provider: str
    provider_kind: str
    upstream: str
    price: Price | None
    context_window: int | None
    max_output_tokens: int | None
    breaker: BreakerSettings | None
    breaker_name: str | None
    limits: LimitSettings | None
    capabilities: frozenset[str]
    prompt_cache_min_tokens: int = 1024  # shortest prefix the provider caches (policy.prompt_cache)
    reasoning: Reasoning | None = None  # the model's own effort/budget: replaces the route's and task's
    track_latency: bool = False  # in a lowest_latency tier: each finished attempt updates its average in state

    def reasoning_for(self, asked: Reasoning | None) -> Reasoning | None:
        """What a call to this model carries: ``None`` unless it reasons (capability
        ``reasoning``); else its own setting, or the one ``asked`` by the route or task."""
        if "reasoning" not in self.capabilities:
            return None
        return self.reasoning or asked or NO_REASONING

    def usage_bound(self, max_output_tokens: int) -> int:
        """The largest token count a response of this model is believed to report (each of
        input and output): its context window plus the request's output allowance."""
        return min(MAX_COUNT, (self.context_window or MAX_COUNT) + max_output_tokens)

    def max_excess(self, input_tokens: int, max_output_tokens: int) -> float | None:
        """The most one attempt can bill beyond its reservation (``None``: no context window,
        so no bound): believed counts at the dearest input rate, less the attempt's worst case
        (which holds the most tool fees a call can bill)."""
        if self.price is None:
            return 0.0
        if self.context_window is None:
            return None
        bound = self.usage_bound(max_output_tokens)
        return self.price.worst_case(bound, bound) - self.price.worst_case(input_tokens, max_output_tokens)


NO_REASONING = Reasoning()
"""A reasoning model asked for no particular effort or budget (its defaults apply)."""


@dataclass(frozen=True, slots=True)
class Chain:
    tier: str
    models: tuple[ModelPlan, ...]
    # per start index, the price pairs of the models left that can be the dearest (``price_rows``):
    # what a budget reservation's worst case needs, computed once when the plan is compiled
    price_rows: tuple[PriceRows, ...]
    strategy: str = "ordered"  # how the first model is picked (``stages/select.py``)
    weights: tuple[float, ...] = ()  # per model, for ``weighted``

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def upstreams(self) -> tuple[str, ...]:
        return tuple(m.upstream for m in self.models)


def price_rows(models: tuple[ModelPlan, ...]) -> tuple[PriceRows, ...]:
    """For each start index, the price rows of the models left that no other row beats on every rate."""
    per_index = []
    for index in range(len(models)):
        pairs = set()
        for m in models[index:]:
            p = m.price
            if p is not None:
                pairs.add((p.dearest_input, p.output, p.max_tool_fees))
        per_index.append(
            tuple(
                sorted(
                    a
                    for a in pairs
                    if not any(b != a and all(x >= y for x, y in zip(b, a, strict=True)) for b in pairs)
                )
            )
        )
    return tuple(per_index)


@dataclass(frozen=True, slots=True)
class RouteCondition:
    """All given conditions must hold. ``None`` means unconstrained."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None
    metadata: tuple[tuple[str, frozenset[Any]], ...] = ()
    tenants: frozenset[str] | None = None

    def matches(self, input_tokens: int, metadata: Mapping[str, Any] | None, tenant: str | None) -> bool:
        if self.gt is not None and not input_tokens > self.gt:
            return False
        if self.gte is not None and not input_tokens >= self.gte:
            return False
        if self.lt is not None and not input_tokens < self.lt:
            return False
        if self.lte is not None and not input_tokens <= self.lte:
            return False
        if self.tenants is not None and tenant not in self.tenants:
            return False
        for key, allowed in self.metadata:
            if metadata is None or key not in metadata:
                return False
            value = metadata[key]
            try:
                if value not in allowed:
                    return False
            except TypeError:  # unhashable metadata value
                return False
        return True

    def describe(self) -> str:
        parts: list[str] = []
        for op, v in (("gt", self.gt), ("gte", self.gte), ("lt", self.lt), ("lte", self.lte)):
            if v is not None:
                sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
                parts.append(f"input_tokens {sym} {v}")
        for key, allowed in self.metadata:
            vals = sorted(map(str, allowed))
            parts.append(f"metadata.{key} in [{', '.join(vals)}]" if len(vals) > 1 else f"metadata.{key} == {vals[0]}")
        if self.tenants is not None:
            parts.append(f"tenant in [{', '.join(sorted(self.tenants))}]")
        return " and ".join(parts) or "always"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    name: str
    condition: RouteCondition | None  # None: the task's default route
    chain: Chain
    reasoning: Reasoning | None = None  # the route's effort/budget, else the task's


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    name: str
    scope: str
    key: str | None
    window: str
    timezone: str
    limit_usd: float | None  # at least one of the two limits is set; either refuses
    soft_limit: float | None
    degrade_to: Chain | None
    limit_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The most a request can do: upstream calls, USD and tokens (None: unbounded input)."""

    calls: int
    cost_usd: float | None
    calls_uncapped: int
    tokens: int | None = None  # input + output over every call, what token budgets can be charged


@dataclass(frozen=True, slots=True)
class TaskPlan:
    name: str
    routes: tuple[RoutePlan, ...]
    default: RoutePlan
    system: str | None
    max_input_tokens: int | None
    on_input_overflow: str
    max_output_tokens: int
    temperature: float | None
    timeout_s: float
    deadline_s: float
    max_total_attempts: int | None
    retry: RetrySettings
    retry_name: str | None
    cache: CachePlan | None
    budgets: tuple[BudgetPlan, ...]
    worst_case: WorstCase
    response_schema: Mapping[str, Any] | None = None
    max_repairs: int = 0
    on_stream_failure: str = "raise"
    on_unknown_usage: str = "estimate"  # estimate | reserve | zero: an attempt billed without usage
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    guards: GuardPlan | None = None
    log_content: bool = False
    max_response_bytes: int = 16 * 2**20
    reasoning: Reasoning | None = None  # effort/budget asked of reasoning models (routes may replace it)
    stream_thinking: bool = False  # thinking deltas reach stream callers as `thinking` chunks
    log_thinking: bool = False  # thinking text in events (redacted like the answer)
    prompt_cache: PromptCachePlan | None = None
    experiment: ExperimentPlan | None = None  # the variants' own plans carry none

    def select(self, input_tokens: int, metadata: Mapping[str, Any] | None, tenant: str | None) -> RoutePlan:
        for route in self.routes:
            cond = route.condition
            if cond is None or cond.matches(input_tokens, metadata, tenant):
                return route
        return self.default


@dataclass(frozen=True, slots=True)
class VariantPlan:
    name: str
    weight: float
    task: TaskPlan  # the task as this variant runs it, compiled at load


@dataclass(frozen=True, slots=True)
class ExperimentPlan:
    name: str
    variants: tuple[VariantPlan, ...]
    control: VariantPlan  # served to whoever is not assigned
    sticky: str  # user | tenant
    start: float | None  # epoch seconds
    end: float | None
    enabled: bool
    pinned: str | None = None  # a policy test's or simulation's variant: every request gets it

    def assign(self, user: str | None, tenant: str | None, wall: float) -> VariantPlan | None:
        """The variant of a request, or ``None`` when it is not in the experiment (killed, outside
        its window, or no sticky key): the caller serves the control variant unrecorded."""
        if self.pinned is not None:
            return self.variant(self.pinned)
        key = user if self.sticky == "user" else tenant
        if not self.enabled or key is None:
            return None
        if (self.start is not None and wall < self.start) or (self.end is not None and wall >= self.end):
            return None
        return self.variants[arm([v.weight for v in self.variants], point(self.name, key))]

    def variant(self, name: str) -> VariantPlan | None:
        return next((v for v in self.variants if v.name == name), None)


@dataclass(frozen=True)
class Plan:
    """Everything the router needs for one environment, compiled once."""

    env: str | None
    tasks: Mapping[str, TaskPlan]
    providers: Mapping[str, Any]  # name -> ProviderSpec (frozen pydantic)
    models: Mapping[str, ModelPlan]
    budgets: Mapping[str, BudgetPlan]
    state: Any  # StateSettings (frozen pydantic)
    fingerprint: str = ""
    queues: Mapping[str, Any] = field(default_factory=dict)  # name -> QueueSpec (frozen pydantic)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def pin_variant(self, task: str, variant: str) -> Plan:
        """This plan with every request of ``task`` in ``variant`` (``KeyError``: no such task or variant)."""
        tp = self.tasks[task]
        if tp.experiment is None or tp.experiment.variant(variant) is None:
            raise KeyError(variant)
        pinned = replace(tp, experiment=replace(tp.experiment, pinned=variant))
        return replace(self, tasks={**self.tasks, task: pinned})


def worst_case(
    chains: list[Chain],
    retry: RetrySettings,
    max_total: int | None,
    max_input: int | None,
    max_output: int,
    repairs: int = 0,
) -> WorstCase:
    """Upstream calls and USD a request can spend in the worst case.

    Each chain allows ``max_attempts`` calls per model plus ``repairs`` output repairs (a
    task with a ``response_schema``); the worst chain counts. Every call is assumed to bill
    its full worst case (input + max output), the dearest first when ``max_total_attempts``
    caps the count. A repair turn grows the prompt (``max_repair_growth``): the k-th repair
    is sent with k turns more, and the retries after the last one with all of them.
    """
    best_calls, best_uncapped, best_cost, best_tokens = 0, 0, 0.0, 0
    unbounded = max_input is None
    growth = max_repair_growth(max_output)
    for chain in chains:
        per_call: list[float] = []
        per_call_tokens: list[int] = []
        for m in chain.models:
            prompts = [0] + [k * growth for k in range(1, repairs + 1)]
            prompts += [repairs * growth] * (retry.max_attempts - 1)
            for extra in prompts:
                per_call.append(m.price.worst_case((max_input or 0) + extra, max_output) if m.price else 0.0)
                per_call_tokens.append((max_input or 0) + extra + max_output)
            if m.price is None:
                unbounded = True
        uncapped = len(per_call)
        calls = min(uncapped, max_total) if max_total is not None else uncapped
        cost = sum(sorted(per_call, reverse=True)[:calls])
        best_calls = max(best_calls, calls)
        best_uncapped = max(best_uncapped, uncapped)
        best_cost = max(best_cost, cost)
        best_tokens = max(best_tokens, sum(sorted(per_call_tokens, reverse=True)[:calls]))
    tokens = None if max_input is None else best_tokens
    return WorstCase(best_calls, None if unbounded else round(best_cost, 10), best_uncapped, tokens)
