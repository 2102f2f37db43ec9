"""``explain``: what a request would get, with no call made.

Renders the same compiled plan the router runs: route, chain, limits, retry and
breaker settings, budgets, and the worst case (upstream calls, USD and tokens), so a retry
storm or an unbounded cost is visible in review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from policyrouter.plan import Chain, ModelPlan, Plan, RoutePlan, TaskPlan, worst_case
from policyrouter.policy.kinds import protocol_of
from policyrouter.state.base import StateBackend


@dataclass(frozen=True)
class ModelStep:
    model: str
    provider: str
    provider_kind: str
    upstream: str
    price_in_per_1m: float | None
    price_out_per_1m: float | None
    context_window: int | None
    breaker: dict[str, Any] | None
    limits: dict[str, Any] | None
    state: str
    learned: dict[str, Any] | None = None  # adaptive limits: what the provider's headers said, per dimension


@dataclass(frozen=True)
class Explanation:
    task: str
    env: str | None
    route: str
    reason: str
    tier: str
    chain: tuple[ModelStep, ...]
    input_tokens: int | None
    max_input_tokens: int | None
    on_input_overflow: str
    max_output_tokens: int
    temperature: float | None
    timeout_s: float
    deadline_s: float
    retry: dict[str, Any]
    max_total_attempts: int | None
    worst_case_calls: int
    worst_case_calls_uncapped: int
    worst_case_cost_usd: float | None
    budgets: tuple[dict[str, Any], ...]
    cache: dict[str, Any] | None
    guards: dict[str, Any] | None = None  # rule names only (GuardPlan.describe)
    # the most one attempt can bill beyond its reservation (None: a model has no context window)
    max_excess_per_attempt_usd: float | None = None
    log_content: bool = False
    state: str = "memory"  # where budgets, limits, breakers and the cache live (a sqlite file: absolute)
    # tokens a request can use in the worst case, and what one attempt reserves on a token
    # budget (counted input + max output); None: unbounded input
    worst_case_tokens: int | None = None
    worst_case_attempt_tokens: int | None = None
    # per reasoning model of the chain: {"model", "effort", "thinking_budget", "temperature_sent"}
    reasoning: tuple[dict[str, Any], ...] = ()
    stream_thinking: bool = False
    log_thinking: bool = False
    # the task's provider prompt caching: {"ttl", "breakpoints", "key", "retention", "marks"}, where
    # "marks" lists the chain's Anthropic-protocol models with the shortest prefix each caches
    prompt_cache: dict[str, Any] | None = None
    # how the tier picks the first model; with weighted, each model's share of the draw
    strategy: str = "ordered"
    shares: dict[str, float] | None = None
    # the queue serving the task's submitted jobs: {"name", "priority", "aging", "fairness", ...}
    queue: dict[str, Any] | None = None

    def __str__(self) -> str:
        return render_text(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chain"] = [asdict(s) for s in self.chain]
        d["budgets"] = list(self.budgets)
        d["reasoning"] = list(self.reasoning)
        if d["queue"] is None:
            del d["queue"]  # a task no queue serves
        return d


def _counted_input(tp: TaskPlan, input_tokens: int | None) -> int:
    """The input size routing sees: an over-long prompt that is truncated routes at the cap."""
    n = input_tokens if input_tokens is not None else 0
    if tp.max_input_tokens is not None and n > tp.max_input_tokens and tp.on_input_overflow != "reject":
        n = tp.max_input_tokens
    return n


def _model_step(m: ModelPlan, state: StateBackend, wall: float) -> ModelStep:
    rec = state.breaker_get(m.name)
    return ModelStep(
        model=m.name,
        provider=m.provider,
        provider_kind=m.provider_kind,
        upstream=m.upstream,
        price_in_per_1m=round(m.price.input * 1e6, 6) if m.price else None,
        price_out_per_1m=round(m.price.output * 1e6, 6) if m.price else None,
        context_window=m.context_window,
        breaker=asdict(m.breaker) | {"name": m.breaker_name, "trip_on": sorted(m.breaker.trip_on)}
        if m.breaker
        else None,
        limits=asdict(m.limits) if m.limits else None,
        state=rec.status,
        learned=_learned(m, state, wall),
    )


def _learned(m: ModelPlan, state: StateBackend, wall: float) -> dict[str, Any] | None:
    """What is left of an adaptive model's provider limits by the state's count (``None``: not
    adaptive, or nothing learned yet)."""
    if m.limits is None or not m.limits.adaptive:
        return None
    learned = state.learned_get(m.name, wall)
    return {d: asdict(r) for d, r in learned.readings()} if learned is not None else None


def _shares(chain: Chain) -> dict[str, float] | None:
    """Each model's share of a weighted tier's draw (before any model is left out)."""
    if chain.strategy != "weighted":
        return None
    total = sum(chain.weights)
    return {m.name: w / total for m, w in zip(chain.models, chain.weights, strict=True)}


def _max_excess(chain: Chain, max_output_tokens: int) -> float | None:
    """The most one attempt on the chain can bill beyond its reservation; None if unbounded."""
    # the bound at no counted input: a shorter prompt reserves less, so it can overshoot more
    excesses = [m.max_excess(0, max_output_tokens) for m in chain.models]
    bounded = [x for x in excesses if x is not None]
    return round(max(bounded, default=0.0), 10) if len(bounded) == len(excesses) else None


def _retry_summary(tp: TaskPlan) -> dict[str, Any]:
    r = tp.retry
    return {
        "policy": tp.retry_name or "(built-in default)",
        "max_attempts": r.max_attempts,
        "backoff": f"{r.initial_s:g}s x{r.multiplier:g} up to {r.max_s:g}s, jitter {r.jitter}",
        "retry_on": sorted(r.retry_on),
        "respect_retry_after": r.respect_retry_after,
    }


def _budget_rows(tp: TaskPlan) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "name": b.name,
            "scope": b.scope,
            "window": b.window,
            "limit_usd": b.limit_usd,
            "limit_tokens": b.limit_tokens,
            "soft_limit": b.soft_limit,
            "degrade_to": b.degrade_to.tier if b.degrade_to else None,
        }
        for b in tp.budgets
    )


def explain_task(
    plan: Plan,
    state: StateBackend,
    task: str,
    *,
    input_tokens: int | None,
    metadata: Mapping[str, Any] | None,
    tenant: str | None,
    user: str | None,
    wall: float = 0.0,
) -> Explanation:
    """``wall``: now, for what adaptive limits have learned (the router's clock)."""
    from policyrouter.errors import InvalidRequest

    tp: TaskPlan | None = plan.tasks.get(task)
    if tp is None:
        raise InvalidRequest(f"unknown task {task!r}", task=task)
    route = tp.select(_counted_input(tp, input_tokens), metadata, tenant)
    reason = "default tier" if route.condition is None else f"matched {route.condition.describe()}"
    steps = tuple(_model_step(m, state, wall) for m in route.chain.models)
    repairs = tp.max_repairs if tp.response_schema is not None else 0
    wc = worst_case([route.chain], tp.retry, tp.max_total_attempts, tp.max_input_tokens, tp.max_output_tokens, repairs)
    attempt_tokens = None if tp.max_input_tokens is None else tp.max_input_tokens + tp.max_output_tokens
    return Explanation(
        task=tp.name,
        env=plan.env,
        route=route.name,
        reason=reason,
        tier=route.chain.tier,
        chain=steps,
        input_tokens=input_tokens,
        max_input_tokens=tp.max_input_tokens,
        on_input_overflow=tp.on_input_overflow,
        max_output_tokens=tp.max_output_tokens,
        temperature=tp.temperature,
        timeout_s=tp.timeout_s,
        deadline_s=tp.deadline_s,
        retry=_retry_summary(tp),
        max_total_attempts=tp.max_total_attempts,
        worst_case_calls=wc.calls,
        worst_case_calls_uncapped=wc.calls_uncapped,
        worst_case_cost_usd=wc.cost_usd,
        max_excess_per_attempt_usd=_max_excess(route.chain, tp.max_output_tokens),
        budgets=_budget_rows(tp),
        cache=asdict(tp.cache) if tp.cache else None,
        guards=tp.guards.describe() if tp.guards is not None else None,
        log_content=tp.log_content,
        state=_state_where(plan),
        strategy=route.chain.strategy,
        shares=_shares(route.chain),
        worst_case_tokens=wc.tokens,
        worst_case_attempt_tokens=attempt_tokens,
        reasoning=_reasoning_rows(route),
        stream_thinking=tp.stream_thinking,
        log_thinking=tp.log_thinking,
        prompt_cache=_prompt_cache_row(tp, route),
        queue=_queue_row(plan, tp.name),
    )


def _queue_row(plan: Plan, task: str) -> dict[str, Any] | None:
    """The queue ``router.submit`` puts this task's jobs on, with its ordering and delivery rules."""
    for name, spec in plan.queues.items():
        if task in spec.tasks:
            return {"name": name, **spec.model_dump(mode="json", exclude={"tasks", "webhook"}),
                    "webhook": spec.webhook is not None}  # fmt: skip
    return None


def _prompt_cache_row(tp: TaskPlan, route: RoutePlan) -> dict[str, Any] | None:
    """What the task asks of the providers' prompt caches (our response cache's key is unchanged by it)."""
    from policyrouter.policy.kinds import ANTHROPIC_PROTOCOL_KINDS

    pc = tp.prompt_cache
    if pc is None:
        return None
    marks = [
        {"model": m.name, "min_tokens": m.prompt_cache_min_tokens}
        for m in route.chain.models
        if m.provider_kind in ANTHROPIC_PROTOCOL_KINDS
    ]
    return {
        "ttl": pc.ttl,
        "breakpoints": list(pc.breakpoints),
        "key": pc.key,
        "retention": pc.retention,
        "marks": marks,
    }


def _reasoning_rows(route: RoutePlan) -> tuple[dict[str, Any], ...]:
    """What each reasoning model of the route's chain is asked: OpenAI-protocol models an effort,
    Anthropic models a thinking budget; and whether the task's temperature reaches it."""
    rows = []
    for m in route.chain.models:
        r = m.reasoning_for(route.reasoning)
        if r is None:
            continue
        protocol = protocol_of(m.provider_kind)
        anthropic, openai = protocol == "anthropic", protocol == "openai"
        budget = None if openai else r.budget_tokens
        rows.append(
            {
                "model": m.name,
                "effort": None if anthropic else r.effort,
                "thinking_budget": budget,
                "temperature_sent": anthropic and budget is None,
            }
        )
    return tuple(rows)


def _state_where(plan: Plan) -> str:
    """The state backend and where it is, as a reviewer needs it (no URL: it may hold a password)."""
    s = plan.state
    if s.backend == "sqlite":
        return f"sqlite {s.path}"
    if s.backend == "redis":
        return f"redis from ${s.url_env}, key prefix {s.key_prefix} ({s.on_unavailable})"
    return "memory"


def render_text(e: Explanation) -> str:
    lines = _head_lines(e)
    lines += _chain_lines(e)
    lines += _limit_retry_lines(e)
    lines += _worst_budget_lines(e)
    lines += _cache_state_lines(e)
    lines += _guard_lines(e)
    lines += _reasoning_lines(e)
    lines += _prompt_cache_lines(e)
    lines += _queue_lines(e)
    return "\n".join(lines) + "\n"


def _head_lines(e: Explanation) -> list[str]:
    """Task, route, tier, and how a non-ordered tier picks its first model."""
    lines = [
        f"task {e.task}" + (f" (env {e.env})" if e.env else ""),
        f"  route     {e.route}: {e.reason}",
        f"  tier      {e.tier}",
    ]
    if e.strategy != "ordered":
        shares = f" ({', '.join(f'{m} {s:.0%}' for m, s in e.shares.items())})" if e.shares else ""
        lines.append(
            f"  strategy  {e.strategy}{shares}: picks the first model among those with a closed breaker "
            "and free limits; the rest follow as listed"
        )
    return lines


def _chain_lines(e: Explanation) -> list[str]:
    """One numbered line per model of the chain."""
    return ["  chain"] + [_step_line(i, s) for i, s in enumerate(e.chain, 1)]


def _step_line(i: int, s: ModelStep) -> str:
    """A chain model: upstream, price, context window, breaker, limits and what the provider says is left."""
    price = f"${s.price_in_per_1m:g}/${s.price_out_per_1m:g} per 1M" if s.price_in_per_1m is not None else "no price"
    ctx = f"ctx {s.context_window}" if s.context_window else "ctx ?"
    br = f"breaker {s.breaker['name']} ({s.state})" if s.breaker else "no breaker"
    return f"    {i}. {s.model} -> {s.provider}:{s.upstream}  {price}, {ctx}, {br}{_step_limits(s)}"


def _step_limits(s: ModelStep) -> str:
    """A chain model's configured limits, then its learned provider headroom ('' when neither)."""
    lim = ""
    if s.limits:
        parts = [f"{k} {v}" for k, v in s.limits.items() if k in ("rpm", "tpm", "concurrency") and v]
        if s.limits.get("adaptive"):
            parts.append(f"adaptive (reserve {s.limits['reserve']:.0%})")
        lim = ", limits " + " ".join(parts) + f" on_limit {s.limits['on_limit']}" if parts else ""
    if s.learned:
        left = ", ".join(
            f"{d} {r['remaining']}/{r['limit'] if r['limit'] is not None else '?'}" for d, r in s.learned.items()
        )
        lim += f", provider says left: {left}"
    return lim


def _limit_retry_lines(e: Explanation) -> list[str]:
    """Input/output caps, timeouts, and the retry policy."""
    inp = f"{e.max_input_tokens} ({e.on_input_overflow})" if e.max_input_tokens else "unbounded"
    return [
        f"  limits    input {inp}, output {e.max_output_tokens}, timeout {e.timeout_s:g}s, deadline {e.deadline_s:g}s",
        f"  retry     {e.retry['policy']}: {e.retry['max_attempts']} attempts per model, {e.retry['backoff']}",
        f"            retry on {', '.join(e.retry['retry_on'])}"
        + ("; honours Retry-After" if e.retry["respect_retry_after"] else ""),
    ]


def _worst_budget_lines(e: Explanation) -> list[str]:
    """The worst case in calls and USD, then each budget, its token bound and the overbill per attempt."""
    cap = f" (capped by max_total_attempts={e.max_total_attempts})" if e.max_total_attempts else ""
    worst = f"${e.worst_case_cost_usd:.6f}" if e.worst_case_cost_usd is not None else "unbounded (set max_input_tokens)"
    lines = [
        f"  worst     {e.worst_case_calls} upstream calls{cap}"
        + (f", {e.worst_case_calls_uncapped} uncapped" if e.worst_case_calls_uncapped != e.worst_case_calls else "")
        + f"; {worst}"
    ]
    for b in e.budgets:
        soft = f", soft {b['soft_limit']:g} -> {b['degrade_to']}" if b["soft_limit"] else ""
        lines.append(f"  budget    {b['name']}: {b['scope']}/{b['window']} {_limits(b)}{soft}")
    if any(b["limit_tokens"] is not None for b in e.budgets):
        lines.append(f"  tokens    {_token_worst(e)}")
    if e.budgets:
        excess = e.max_excess_per_attempt_usd
        how = f"up to ${excess:.6f}" if excess is not None else "without bound (a model has no context_window)"
        lines.append(f"  overbill  an upstream may bill {how} beyond its reservation, per attempt in flight")
    return lines


def _cache_state_lines(e: Explanation) -> list[str]:
    """The response cache (if any) and where the state lives."""
    lines = []
    if e.cache:
        lines.append(
            f"  cache     ttl {e.cache['ttl_s']:g}s, scope {e.cache['scope']}, "
            f"stale-if-error {e.cache['stale_if_error_s']:g}s"
        )
    where = "memory (this process only)" if e.state == "memory" else e.state
    lines.append(f"  state     {where}")
    return lines


def _queue_lines(e: Explanation) -> list[str]:
    """The queue serving the task's submitted jobs and its ordering and delivery rules."""
    if e.queue is None:
        return []
    q = e.queue
    wait = f", served by {q['aging']['max_wait_s']:g}s" if q["aging"]["max_wait_s"] is not None else ""
    return [
        f"  queue     {q['name']}: classes default {q['priority']['default']}, +1 per "
        f"{q['aging']['dispatches_per_level']} dispatches waited{wait}, fairness {q['fairness']}, "
        f"{q['max_deliveries']} deliveries, lease {q['lease_s']:g}s"
    ]


def _prompt_cache_lines(e: Explanation) -> list[str]:
    """Where the providers may cache the prompt prefix, and with which key."""
    pc = e.prompt_cache
    if pc is None:
        return []
    marks = ", ".join(f"{m['model']} from {m['min_tokens']:,} tokens" for m in pc["marks"]) or "no Anthropic model"
    key = f"key {pc['key']!r}" if pc["key"] else "key derived from task and tenant"
    retention = f", retention {pc['retention']}" if pc["retention"] else ""
    return [
        f"  prompt    provider cache ttl {pc['ttl']} at {', '.join(pc['breakpoints']) or 'no breakpoint'} "
        f"(cache_control: {marks}); OpenAI {key}{retention}; our response cache key is unchanged"
    ]


def _reasoning_lines(e: Explanation) -> list[str]:
    """Effort and budget per reasoning model; reasoning is output, inside the output cap."""
    if not e.reasoning:
        return []
    asks = []
    for row in e.reasoning:
        parts = [f"effort {row['effort']}"] if row["effort"] else []
        if row["thinking_budget"] is not None:
            parts.append(f"thinking budget {row['thinking_budget']:,} tokens")
        asks.append(f"{row['model']} " + (", ".join(parts) or "model default"))
    lines = [
        f"  reasoning {'; '.join(asks)}",
        f"            inside max_output_tokens {e.max_output_tokens}, billed as output: the worst case is unchanged",
    ]
    dropped = [row["model"] for row in e.reasoning if not row["temperature_sent"]]
    if e.temperature is not None and dropped:
        lines.append(f"            temperature {e.temperature:g} not sent to {', '.join(dropped)} (only the default)")
    shown = "streamed as `thinking` chunks" if e.stream_thinking else "dropped from streams"
    logged = "in events (redacted)" if e.log_thinking else "never in events or the cache"
    lines.append(f"  thinking  {shown}; {logged}")
    return lines


def _limits(b: Mapping[str, Any]) -> str:
    """A budget row's limits: ``$5``, ``200,000 tokens``, or both (either one refuses)."""
    parts = [f"${b['limit_usd']:g}"] if b["limit_usd"] is not None else []
    if b["limit_tokens"] is not None:
        parts.append(f"{b['limit_tokens']:,} tokens")
    return " and ".join(parts)


def _token_worst(e: Explanation) -> str:
    """What a token budget reserves per attempt and what a request can use at most."""
    if e.worst_case_attempt_tokens is None or e.worst_case_tokens is None:
        return "unbounded (set max_input_tokens): each attempt reserves its counted input + max output"
    return (
        f"each attempt reserves up to {e.worst_case_attempt_tokens:,} (input + max output); "
        f"a request uses at most {e.worst_case_tokens:,}"
    )


def _guard_lines(e: Explanation) -> list[str]:
    g = e.guards
    lines = []
    if g is not None:
        if g["max_chars"] is not None:
            lines.append(f"  guards    max_chars {g['max_chars']}: longer input is refused (InputTooLong)")
        if g["block"]:
            lines.append(f"  guards    block {', '.join(g['block'])}: a match is refused (GuardBlocked), nothing sent")
        if g["redact"]:
            how = "reversible placeholders, restored in the answer" if g["reversible"] else "placeholders"
            lines.append(f"  guards    redact {', '.join(g['redact'])} before sending ({how})")
    if e.log_content:
        redacted = "redacted" if g is not None and g["redact"] else "NOT redacted"
        lines.append(f"  events    log_content: prompt and answer text in events ({redacted})")
    return lines


def render_mermaid(e: Explanation) -> str:
    lines = ["flowchart LR", f'  req(["{e.task}: {e.route}"])']
    prev = "req"
    for i, s in enumerate(e.chain):
        node = f"m{i}"
        lines.append(f'  {node}["{s.model}<br/>{s.provider}:{s.upstream}<br/>x{e.retry["max_attempts"]}"]')
        label = "" if i == 0 else "|fallback|"
        lines.append(f"  {prev} -->{label} {node}")
        prev = node
    lines.append('  fail(["AllModelsFailed"])')
    lines.append(f"  {prev} -->|exhausted| fail")
    return "\n".join(lines) + "\n"
