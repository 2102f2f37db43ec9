"""Policy -> Plan. Pure: no I/O, no clock, no environment reads.

Passes run in a fixed order, each named (like OPA's compiler stages):
``retry_policies`` -> ``breakers`` -> ``models`` -> ``chains`` -> ``budgets`` ->
``tasks`` (routes, worst case). The input policy has passed validation, so a
missing reference here is a bug, reported as ``PolicyError`` rather than a KeyError.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace

from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.errors import PolicyError
from policyrouter.plan import (
    BudgetPlan,
    CachePlan,
    Chain,
    ExperimentPlan,
    LimitSettings,
    ModelPlan,
    Plan,
    Price,
    PromptCachePlan,
    RouteCondition,
    RoutePlan,
    TaskPlan,
    VariantPlan,
    price_rows,
    worst_case,
)
from policyrouter.policy.models import Budget, Policy, RetryPolicy, Task, Tier, tier_members
from policyrouter.policy.prompt_cache import ANTHROPIC_KINDS, min_cacheable_tokens, write_prices
from policyrouter.policy.reasoning import reasoning_of
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.stages.guard import compile_guards
from policyrouter.stages.retry import RetrySettings

DEFAULT_DEADLINE_FACTOR = 4.0
"""Without ``deadline_s`` a request may take at most this many ``timeout_s``."""


def _fail(path: str, message: str) -> PolicyError:
    return PolicyError([Diagnostic("error", "compile", message, Location("<policy>"), path=path)])


def _retry(rp: RetryPolicy | None) -> RetrySettings:
    if rp is None:
        return RetrySettings()
    b = rp.backoff
    return RetrySettings(
        max_attempts=rp.max_attempts,
        initial_s=b.initial_s,
        multiplier=b.multiplier,
        max_s=b.max_s,
        jitter=b.jitter,
        retry_on=frozenset(rp.retry_on),
        respect_retry_after=rp.respect_retry_after,
    )


def _cache_lifetimes(policy: Policy) -> dict[str, set[str]]:
    """Model -> the prompt cache lifetimes asked by the tasks that can reach it (their tier, routes,
    and any budget's degrade tier)."""
    degrade = [b.on_soft_limit.degrade_to for b in policy.budgets.values() if b.on_soft_limit is not None]
    out: dict[str, set[str]] = {}
    for task in policy.tasks.values():
        if task.prompt_cache is None:
            continue
        for tier in [task.tier, *(r.tier for r in task.routes), *(d for d in degrade if d is not None)]:
            for member in policy.tier_models(tier):
                out.setdefault(member, set()).add(task.prompt_cache.ttl)
    return out


def _models(policy: Policy) -> dict[str, ModelPlan]:
    out: dict[str, ModelPlan] = {}
    ttls = _cache_lifetimes(policy)
    tracked = _latency_tracked(policy)
    for name, m in policy.models.items():
        provider = policy.providers.get(m.provider)
        if provider is None:
            raise _fail(f"models.{name}.provider", f"unknown provider {m.provider!r}")
        bname = m.circuit_breaker or ("default" if "default" in policy.circuit_breakers else None)
        breaker = None
        if bname is not None:
            cb = policy.circuit_breakers.get(bname)
            if cb is None:
                raise _fail(f"models.{name}.circuit_breaker", f"unknown circuit breaker {bname!r}")
            breaker = BreakerSettings(cb.failure_threshold, cb.window_s, cb.cooldown_s, frozenset(cb.trip_on))
        price = None
        if m.pricing is not None:
            p = m.pricing
            write_5m, write_1h = write_prices(p, provider.kind)
            # writes the worst case counts: those priced explicitly, a 5-minute write on any Anthropic
            # call (a caller's own cache_control mark asks for one), and the lifetimes tasks ask of it
            asked = ["5m", *ttls.get(name, ())] if provider.kind in ANTHROPIC_KINDS else list(ttls.get(name, ()))
            bound = [p.cache_write or 0.0, *({"5m": write_5m, "1h": write_1h}[ttl] for ttl in asked)]
            price = Price(
                input=p.input / 1e6,
                output=p.output / 1e6,
                cached_input=(p.cached_input if p.cached_input is not None else p.input) / 1e6,
                cache_write=write_5m / 1e6,
                tool_fees=tuple((name, f.usd_per_use, f.max_uses) for name, f in sorted(p.tool_fees.items())),
                cache_write_1h=write_1h / 1e6,
                write_bound=max(bound) / 1e6,
            )
        limits = None
        if m.limits is not None:
            lim = m.limits
            limits = LimitSettings(
                lim.rpm, lim.tpm, lim.concurrency, lim.on_limit, lim.max_wait_s, lim.adaptive, lim.reserve, lim.window_s
            )
        out[name] = ModelPlan(
            name=name,
            provider=m.provider,
            provider_kind=provider.kind,
            # what the provider is sent: an Azure deployment name (default the model id), else the model id
            upstream=m.deployment if provider.kind == "azure_openai" and m.deployment else m.model,
            price=price,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            breaker=breaker,
            breaker_name=bname,
            limits=limits,
            capabilities=frozenset(m.capabilities),
            reasoning=reasoning_of(m.reasoning, m.thinking),
            prompt_cache_min_tokens=min_cacheable_tokens(m),
            track_latency=name in tracked,
        )
    return out


def _chains(policy: Policy, models: Mapping[str, ModelPlan]) -> dict[str, Chain]:
    chains: dict[str, Chain] = {}
    weights: tuple[float, ...]
    for tier, spec in policy.tiers.items():
        resolved = []
        for i, member in enumerate(tier_members(spec)):
            if member not in models:
                raise _fail(f"tiers.{tier}[{i}]", f"unknown model {member!r}")
            resolved.append(models[member])
        chain_models = tuple(resolved)
        strategy, weights = "ordered", ()
        if isinstance(spec, Tier):
            strategy = spec.strategy
            weights = tuple(1.0 if isinstance(m, str) or m.weight is None else m.weight for m in spec.models)
        chains[tier] = Chain(tier, chain_models, price_rows(chain_models), strategy, weights)
    return chains


def _latency_tracked(policy: Policy) -> set[str]:
    """The models of a ``lowest_latency`` tier: their finished attempts keep an average latency in state."""
    return {
        m
        for spec in policy.tiers.values()
        if isinstance(spec, Tier) and spec.strategy == "lowest_latency"
        for m in tier_members(spec)
    }


def _budget(name: str, b: Budget, chains: Mapping[str, Chain]) -> BudgetPlan:
    degrade = None
    if b.on_soft_limit is not None and b.on_soft_limit.degrade_to is not None:
        degrade = chains.get(b.on_soft_limit.degrade_to)
        if degrade is None:
            raise _fail(f"budgets.{name}.on_soft_limit.degrade_to", f"unknown tier {b.on_soft_limit.degrade_to!r}")
    return BudgetPlan(
        name, b.scope, b.key, b.window, b.timezone, b.limit_usd, b.soft_limit, degrade, limit_tokens=b.limit_tokens
    )


def _budgets_for(name: str, task: Task, policy: Policy, plans: Mapping[str, BudgetPlan]) -> tuple[BudgetPlan, ...]:
    selected = []
    for bname, b in policy.budgets.items():
        if b.tasks is not None and name not in b.tasks:
            continue
        if task.budgets is not None and bname not in task.budgets:
            continue
        selected.append(plans[bname])
    return tuple(selected)


def _condition(route_when: object) -> RouteCondition:
    from policyrouter.policy.models import RouteWhen

    assert isinstance(route_when, RouteWhen)
    it = route_when.input_tokens
    meta: list[tuple[str, frozenset[object]]] = []
    for key, value in sorted((route_when.metadata or {}).items()):
        values = value if isinstance(value, list) else [value]
        meta.append((key, frozenset(values)))
    return RouteCondition(
        gt=it.gt if it else None,
        gte=it.gte if it else None,
        lt=it.lt if it else None,
        lte=it.lte if it else None,
        metadata=tuple(meta),
        tenants=frozenset(route_when.tenant) if route_when.tenant is not None else None,
    )


def _task_retry(name: str, task: Task, retries: Mapping[str, RetrySettings]) -> tuple[str | None, RetrySettings]:
    """Pick the task's retry policy: its own, else ``default`` if declared, else none."""
    rname = task.retry or ("default" if "default" in retries else None)
    if rname is not None and rname not in retries:
        raise _fail(f"tasks.{name}.retry", f"unknown retry policy {rname!r}")
    return rname, retries[rname] if rname is not None else RetrySettings()


def _task_routes(name: str, task: Task, chains: Mapping[str, Chain]) -> tuple[RoutePlan, tuple[RoutePlan, ...]]:
    """Resolve the default tier and each conditional route's tier to chains."""
    if task.tier not in chains:
        raise _fail(f"tasks.{name}.tier", f"unknown tier {task.tier!r}")
    routes = []
    asked = reasoning_of(task.reasoning, task.thinking)
    for i, r in enumerate(task.routes):
        if r.tier not in chains:
            raise _fail(f"tasks.{name}.routes[{i}].tier", f"unknown tier {r.tier!r}")
        own = reasoning_of(r.reasoning, r.thinking)
        routes.append(RoutePlan(r.name or f"route-{i}", _condition(r.when), chains[r.tier], own or asked))
    return RoutePlan("default", None, chains[task.tier], asked), tuple(routes)


def _cache(task: Task) -> CachePlan | None:
    c = task.cache
    if c is None:
        return None
    return CachePlan(c.ttl_s, c.max_temperature, c.force, c.scope, c.stale_if_error_s, c.max_entries)


def _prompt_cache(task: Task) -> PromptCachePlan | None:
    c = task.prompt_cache
    if c is None:
        return None
    return PromptCachePlan(c.ttl, tuple(dict.fromkeys(c.breakpoints)), c.key, c.retention)


def _max_repairs(task: Task) -> int:
    """Repair attempts a structured reply may take (also for ``response_model=``)."""
    return task.output.max_repairs if task.output is not None else 1


def _task(
    name: str,
    t: Task,
    policy: Policy,
    retries: Mapping[str, RetrySettings],
    chains: Mapping[str, Chain],
    budgets: Mapping[str, BudgetPlan],
) -> TaskPlan:
    rname, retry = _task_retry(name, t, retries)
    default, routes = _task_routes(name, t, chains)
    task_budgets = _budgets_for(name, t, policy, budgets)
    # every chain a request can end on bounds the worst case: routes, default, budget degrades
    reachable = [default.chain, *(r.chain for r in routes)]
    reachable += [b.degrade_to for b in task_budgets if b.degrade_to is not None]
    repairs = _max_repairs(t) if t.response_schema is not None else 0
    return TaskPlan(
        name=name,
        routes=routes,
        default=default,
        system=t.system,
        max_input_tokens=t.max_input_tokens,
        on_input_overflow=t.on_input_overflow,
        max_output_tokens=t.max_output_tokens,
        temperature=t.temperature,
        timeout_s=t.timeout_s,
        deadline_s=t.deadline_s if t.deadline_s is not None else t.timeout_s * DEFAULT_DEADLINE_FACTOR,
        max_total_attempts=t.max_total_attempts,
        retry=retry,
        retry_name=rname,
        cache=_cache(t),
        budgets=task_budgets,
        worst_case=worst_case(reachable, retry, t.max_total_attempts, t.max_input_tokens, t.max_output_tokens, repairs),
        response_schema=t.response_schema,
        max_repairs=_max_repairs(t),
        on_stream_failure=t.on_stream_failure,
        on_unknown_usage=t.on_unknown_usage,
        first_token_timeout_s=t.stream.first_token_timeout_s if t.stream is not None else None,
        idle_timeout_s=t.stream.idle_timeout_s if t.stream is not None else None,
        guards=compile_guards(t.guards),
        log_content=t.log_content,
        max_response_bytes=t.max_response_bytes,
        reasoning=default.reasoning,
        stream_thinking=t.thinking is not None and t.thinking.stream,
        log_thinking=t.thinking is not None and t.thinking.log_content,
        prompt_cache=_prompt_cache(t),
    )


def _experiment(
    name: str,
    t: Task,
    policy: Policy,
    retries: Mapping[str, RetrySettings],
    chains: Mapping[str, Chain],
    budgets: Mapping[str, BudgetPlan],
) -> ExperimentPlan | None:
    """The task's experiment with each variant compiled as a whole task (the request path only picks one)."""
    if not t.experiments:
        return None
    e_name, e = next(iter(t.experiments.items()))  # validate refuses two on one task
    variants = []
    for v_name, v in e.variants.items():
        changed = v.model_dump(exclude={"weight"}, exclude_none=True)
        if v.routes is not None:
            changed["routes"] = v.routes  # keep the validated models (a dump would be plain dicts)
        merged = t.model_copy(update={**changed, "experiments": {}})
        try:
            plan = _task(name, merged, policy, retries, chains, budgets)
        except PolicyError as exc:
            raise _fail(f"tasks.{name}.experiments.{e_name}.variants.{v_name}", str(exc)) from None
        variants.append(VariantPlan(v_name, v.weight, plan))
    control = next(v for v in variants if v.name == e.control_name)
    return ExperimentPlan(
        name=e_name,
        variants=tuple(variants),
        control=control,
        sticky=e.sticky,
        start=e.start.timestamp() if e.start is not None else None,
        end=e.end.timestamp() if e.end is not None else None,
        enabled=e.enabled,
    )


def _fingerprint(policy: Policy) -> str:
    return hashlib.sha256(json.dumps(policy.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def compile_policy(policy: Policy, env: str | None = None) -> Plan:
    """Compile a validated policy into an immutable plan. Same policy, equal plan."""
    retries = {name: _retry(rp) for name, rp in policy.retry_policies.items()}
    models = _models(policy)
    chains = _chains(policy, models)
    budgets = {name: _budget(name, b, chains) for name, b in policy.budgets.items()}
    tasks = {name: _task(name, t, policy, retries, chains, budgets) for name, t in policy.tasks.items()}
    for name, t in policy.tasks.items():
        experiment = _experiment(name, t, policy, retries, chains, budgets)
        if experiment is not None:
            tasks[name] = replace(tasks[name], experiment=experiment)
    return Plan(
        env=env,
        tasks=tasks,
        providers=dict(policy.providers),
        models=models,
        budgets=budgets,
        state=policy.state,
        fingerprint=_fingerprint(policy),
        queues=dict(policy.queues),
    )
