"""Replay traffic through compiled plans: the real retry loop, budgets and breakers.

Each record becomes one request to the plan's task, run by the router's own engine
(:class:`policyrouter.engine.Engine`: routes, degrade past soft limits, budget
reservations, breakers, client-side limits, retries and fallback) against in-process
providers that answer with the record's token counts, at the policy's prices. There is
no second copy of any rule. Time is the record's: a simulation clock jumps to each
record's ``ts`` and moves on only through the engine's own waits (backoff, limits), so a
day of traffic replays in seconds. Records are replayed in file order; time never runs
backwards.

Provider prompt caching: a record naming a shared ``prefix`` (with ``prefix_tokens``) of a task
with ``prompt_cache`` is a cache read when the same prefix went to the same model within its
lifetime on the simulated clock (Anthropic: the task's ``ttl``, where a breakpoint reaches the
model's minimum length; OpenAI: 10 minutes, or 24 hours with ``retention: 24h``, from 1024 tokens
in 128-token steps), else an Anthropic cache write. Other records replay their recorded
``cached_input_tokens``. The report's ``prompt_cache_saved_usd`` is the saving against uncached
prices, the write premium deducted.

Not simulated: the response cache (records carry no content) and latency.
The optional fault model fails calls at random (``rate``, a seeded RNG) and turns
providers off in time ranges (``outages``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policyrouter.engine import Engine, EventBus, Request, drive_sync, input_limit, route, task_plan
from policyrouter.errors import BudgetExceeded, ProviderError, RouterError
from policyrouter.plan import Chain, Plan, TaskPlan
from policyrouter.policy.prompt_cache import ANTHROPIC_KINDS
from policyrouter.providers.base import StreamEvent
from policyrouter.simulate.traffic import TrafficRecord
from policyrouter.stages.prompt_cache import PrefixTokens
from policyrouter.state.memory import MemoryState
from policyrouter.types import Attempt, ProviderRequest, ProviderResponse, Usage

__all__ = ["FaultModel", "Outage", "SimClock", "SimulationReport", "Simulator", "simulate"]

BUCKET_S = 3600.0


@dataclass(frozen=True, slots=True)
class Outage:
    """``provider`` fails every call with ``kind`` from ``start`` (inclusive) to ``end`` (epoch s)."""

    provider: str
    start: float
    end: float
    kind: str = "connection"


@dataclass(frozen=True)
class FaultModel:
    """``rate``: probability that any upstream call fails with a 500 (``server_error``)."""

    rate: float = 0.0
    outages: tuple[Outage, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")


class SimClock:
    """Monotonic and wall time are the same simulated epoch seconds."""

    __slots__ = ("t",)

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def at(self, ts: float) -> None:
        if ts > self.t:
            self.t = ts

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class _Replay:
    """What the current record's answer looks like."""

    __slots__ = ("cached", "input", "output", "prefix", "prefix_tokens")

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cached = 0
        self.prefix: str | None = None
        self.prefix_tokens = 0


_TTL_S = {"5m": 300.0, "1h": 3600.0}
_OPENAI_RETENTION_S = {"in_memory": 600.0, "24h": 86400.0}


class _PromptCaches:
    """The providers' prompt caches of a replay: (provider, model, key, prefix) -> expiry."""

    __slots__ = ("_clock", "_entries")

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str, str, str], float] = {}

    def usage(self, kind: str, provider: str, request: ProviderRequest, r: _Replay) -> Usage:
        """The call's usage: the shared prefix read or written, or the record's own cached count."""
        cache, now = request.prompt_cache, self._clock.t
        plain = Usage(r.input, r.output, r.cached)
        if cache is None or r.prefix is None:
            return plain
        entry = (provider, request.model, cache.key or "", r.prefix)
        if kind in ANTHROPIC_KINDS:
            if not set(cache.breakpoints) & {"system", "history"}:
                return Usage(r.input, r.output)
            lifetime = _TTL_S[cache.ttl]
            hit = self._entries.get(entry, -1.0) > now
            self._entries[entry] = now + lifetime  # written, or renewed by the read
            if hit:
                return Usage(r.input, r.output, r.prefix_tokens)
            hour = r.prefix_tokens if cache.ttl == "1h" else 0
            return Usage(r.input, r.output, 0, r.prefix_tokens, cache_write_1h_tokens=hour)
        if kind == "openai":
            steps = 0 if r.prefix_tokens < 1024 else 1024 + (r.prefix_tokens - 1024) // 128 * 128
            hit = self._entries.get(entry, -1.0) > now
            self._entries[entry] = now + _OPENAI_RETENTION_S[cache.retention or "in_memory"]
            return Usage(r.input, r.output, steps if hit else 0)
        return plain


class _SimProvider:
    kind = "simulated"

    def __init__(
        self,
        name: str,
        replay: _Replay,
        clock: SimClock,
        faults: FaultModel,
        rng: random.Random,
        caches: _PromptCaches,
        provider_kind: str,
    ) -> None:
        self.name = name
        self._replay = replay
        self._caches = caches
        self._provider_kind = provider_kind
        self._clock = clock
        self._rate = faults.rate
        self._outages = tuple(o for o in faults.outages if o.provider == name)
        self._rng = rng

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        if self._outages:
            t = self._clock.t
            for o in self._outages:
                if o.start <= t < o.end:
                    raise ProviderError(o.kind, f"simulated outage of {self.name}")
        if self._rate and self._rng.random() < self._rate:
            raise ProviderError("server_error", "simulated fault", status_code=500)
        usage = self._caches.usage(self._provider_kind, self.name, request, self._replay)
        return ProviderResponse("", usage, "stop", None, request.model)

    async def acomplete(self, request: ProviderRequest) -> ProviderResponse:
        return self.complete(request)

    def stream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> Generator[StreamEvent, None, None]:
        """Replayed traffic has no text: one final event with the recorded usage."""
        yield StreamEvent(response=self.complete(request))

    async def astream(
        self, request: ProviderRequest, *, read_timeout_s: float | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        yield StreamEvent(response=self.complete(request))

    def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        return None

    async def awarm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
        return None

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Group:
    requests: int = 0
    answered: int = 0
    cost_usd: float = 0.0


@dataclass
class BudgetStats:
    name: str
    scope: str
    window: str
    limit_usd: float | None
    soft_limit: float | None
    soft_at: float | None = None
    exhausted_at: float | None = None
    refusals: int = 0
    limit_tokens: int | None = None


@dataclass
class SimulationReport:
    """Totals of one replay (``label`` names the policy)."""

    label: str
    env: str | None
    requests: int = 0
    answered: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    degraded: int = 0
    fallbacks: int = 0
    retried: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    by_task: dict[str, Group] = field(default_factory=dict)
    by_tenant: dict[str, Group] = field(default_factory=dict)
    by_model: dict[str, Group] = field(default_factory=dict)
    by_variant: dict[str, Group] = field(default_factory=dict)  # "experiment/variant": the arm it was assigned
    budgets: dict[str, BudgetStats] = field(default_factory=dict)
    spend_by_hour: dict[float, float] = field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None
    prompt_cache_read_tokens: int = 0
    prompt_cache_write_tokens: int = 0
    prompt_cache_saved_usd: float = 0.0  # against uncached prices, the write premium deducted

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def rate(self, n: int) -> float:
        return n / self.requests if self.requests else 0.0

    def cumulative(self) -> list[tuple[float, float]]:
        """(hour start, spend so far at the end of that hour), in time order."""
        out, total = [], 0.0
        for hour in sorted(self.spend_by_hour):
            total += self.spend_by_hour[hour]
            out.append((hour, total))
        return out

    def to_dict(self) -> dict[str, Any]:
        def groups(d: dict[str, Group]) -> dict[str, dict[str, Any]]:
            return {k: {"requests": g.requests, "answered": g.answered, "cost_usd": g.cost_usd} for k, g in d.items()}

        return {
            "label": self.label,
            "env": self.env,
            "requests": self.requests,
            "answered": self.answered,
            "rejected": dict(sorted(self.rejected.items())),
            "calls": self.calls,
            "cost_usd": self.cost_usd,
            "degraded": self.degraded,
            "fallbacks": self.fallbacks,
            "retried": self.retried,
            "by_task": groups(self.by_task),
            "by_tenant": groups(self.by_tenant),
            "by_model": groups(self.by_model),
            "by_variant": groups(self.by_variant),
            "budgets": {
                name: {
                    "scope": b.scope,
                    "window": b.window,
                    "limit_usd": b.limit_usd,
                    "limit_tokens": b.limit_tokens,
                    "soft_limit": b.soft_limit,
                    "soft_limit_at": b.soft_at,
                    "exhausted_at": b.exhausted_at,
                    "refusals": b.refusals,
                }
                for name, b in self.budgets.items()
            },
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "cumulative_spend": [[h, c] for h, c in self.cumulative()],
            "prompt_cache": {
                "cached_input_tokens": self.prompt_cache_read_tokens,
                "cache_write_tokens": self.prompt_cache_write_tokens,
                "saved_usd": self.prompt_cache_saved_usd,
            },
        }


def _group(d: dict[str, Group], key: str) -> Group:
    g = d.get(key)
    if g is None:
        g = d[key] = Group()
    return g


class Simulator:
    """Replays records through one plan; ``feed`` one record at a time, then ``report``."""

    def __init__(
        self,
        plan: Plan,
        *,
        label: str = "policy",
        faults: FaultModel | None = None,
        seed: int = 0,
    ) -> None:
        self.plan = plan
        faults = faults or FaultModel()
        self._clock = SimClock()
        self._replay = _Replay()
        self._g_variant: Group | None = None  # the current record's experiment arm
        fault_rng = random.Random(faults.seed)
        self.report = SimulationReport(label, plan.env)
        self.report.budgets = {
            name: BudgetStats(name, b.scope, b.window, b.limit_usd, b.soft_limit, limit_tokens=b.limit_tokens)
            for name, b in plan.budgets.items()
        }
        caches = _PromptCaches(self._clock)
        providers = {
            name: _SimProvider(name, self._replay, self._clock, faults, fault_rng, caches, spec.kind)
            for name, spec in plan.providers.items()
        }
        # no ledger and a one-entry cache: the report keeps its own totals, records carry no content
        self._state = MemoryState(cache_max_entries=1, ledger_max_rows=0)
        self._events = EventBus()
        self._events.on("budget_soft_limit", self._soft)
        self._engine = Engine(providers, self._state, self._clock, random.Random(seed), self._events)

    def _soft(self, event: dict[str, Any]) -> None:
        self._soft_budget(str(event.get("budget")))

    def _soft_budget(self, name: str) -> None:
        b = self.report.budgets.get(name)
        if b is not None and b.soft_at is None:
            b.soft_at = self._clock.t

    def _reject(self, kind: str) -> None:
        rep = self.report
        rep.rejected[kind] = rep.rejected.get(kind, 0) + 1

    def _start(self, rec: TrafficRecord) -> tuple[TaskPlan, int, Group, Group] | None:
        """What every record does first: the clock, the counts, the task and its input limit;
        ``None`` when it is rejected there."""
        rep = self.report
        clock = self._clock
        clock.at(rec.ts)
        if rep.first_ts is None:
            rep.first_ts = clock.t
        rep.last_ts = clock.t
        rep.requests += 1
        g_task = _group(rep.by_task, rec.task)
        g_tenant = _group(rep.by_tenant, rec.tenant or "(none)")
        g_task.requests += 1
        g_tenant.requests += 1
        self._g_variant = None
        try:  # the router's rules: the task (in the variant the router assigns), the input limit
            tp = task_plan(self.plan, rec.task, "sim")
            if tp.experiment is not None:
                exp = tp.experiment
                assigned = exp.assign(rec.user, rec.tenant, clock.wall())
                tp = (assigned or exp.control).task
                if assigned is not None:
                    self._g_variant = _group(rep.by_variant, f"{exp.name}/{assigned.name}")
                    self._g_variant.requests += 1
            limit = input_limit(tp, rec.input_tokens, "sim")
        except RouterError as refused:
            self._reject(refused.kind)
            return None
        return tp, rec.input_tokens if limit is None else limit, g_task, g_tenant

    def _refused(self, kind: str, budget: str | None) -> None:
        """A request that got no answer; a budget that refused it counts the refusal."""
        self._reject(kind)
        b = self.report.budgets.get(budget) if budget is not None else None
        if b is not None:
            b.refusals += 1
            if b.exhausted_at is None:
                b.exhausted_at = self._clock.t

    def _spent(self, cost: float, g_task: Group, g_tenant: Group) -> None:
        if cost:
            rep = self.report
            rep.cost_usd += cost
            g_task.cost_usd += cost
            g_tenant.cost_usd += cost
            if self._g_variant is not None:
                self._g_variant.cost_usd += cost
            t = self._clock.t
            hour = t - t % BUCKET_S
            rep.spend_by_hour[hour] = rep.spend_by_hour.get(hour, 0.0) + cost

    def feed(self, rec: TrafficRecord) -> None:
        """Replay one record: the route, the engine run, then the report's counts."""
        started = self._start(rec)
        if started is None:
            return
        tp, n, g_task, g_tenant = started
        routed = route(tp, n, rec.tenant, rec.user, rec.metadata, self._state, self._clock, self._events)
        if routed.degraded_by is not None:
            self.report.degraded += 1
        req = self._request(rec, tp, n, routed.name, routed.chain)
        try:
            result = drive_sync(self._engine.run(req), self._clock)
        except RouterError as exc:
            self._refused(exc.kind, exc.budget if isinstance(exc, BudgetExceeded) else None)
            cost = self._count_calls(exc.attempts, answered=False)
        else:
            # a fallback: the answer came from another model than the first one tried (a strategy's draw included)
            fallback = bool(result.attempts) and result.model != result.attempts[0].model
            self._answered(g_task, g_tenant, fallback=fallback)
            cost = result.cost_usd + self._count_calls(result.attempts, answered=True)
        self._spent(cost, g_task, g_tenant)

    def _request(self, rec: TrafficRecord, tp: TaskPlan, n: int, route_name: str, chain: Chain) -> Request:
        """The record as the engine's request; the simulated providers answer with its counts."""
        replay = self._replay
        replay.input = n
        replay.output = min(rec.output_tokens, tp.max_output_tokens)
        replay.cached = min(rec.cached_input_tokens, n)
        replay.prefix, replay.prefix_tokens = rec.prefix, min(rec.prefix_tokens, n)
        prefix = PrefixTokens(0, replay.prefix_tokens, n) if tp.prompt_cache is not None else None
        return Request(
            request_id="sim",
            task=tp,
            route=route_name,
            chain=chain,
            messages=(),
            system=None,
            input_tokens=n,
            max_output_tokens=tp.max_output_tokens,
            temperature=tp.temperature,
            tenant=rec.tenant,
            user=rec.user,
            metadata=rec.metadata,
            started=self._clock.t,
            prompt_prefix=prefix,
        )

    def _answered(self, g_task: Group, g_tenant: Group, *, fallback: bool) -> None:
        rep = self.report
        rep.answered += 1
        g_task.answered += 1
        g_tenant.answered += 1
        if self._g_variant is not None:
            self._g_variant.answered += 1
        if fallback:
            rep.fallbacks += 1

    def _count_calls(self, attempts: Sequence[Attempt], *, answered: bool) -> float:
        """Each call per model; what the calls of a refused request cost (an answer's cost is its
        own ``cost_usd``, which already sums them)."""
        rep = self.report
        calls, cost = 0, 0.0
        for a in attempts:
            if a.outcome == "skipped":
                continue
            calls += 1
            g_model = _group(rep.by_model, a.model)
            g_model.requests += 1
            self._prompt_cache(a)
            if a.cost_usd:
                g_model.cost_usd += a.cost_usd
                if not answered:
                    cost += a.cost_usd
            if a.outcome == "ok":
                g_model.answered += 1
        rep.calls += calls
        if calls > 1:
            rep.retried += 1
        return cost

    def _prompt_cache(self, a: Attempt) -> None:
        """Count a call's provider prompt cache tokens and its saving at the model's prices."""
        u = a.usage
        if u is None or not (u.cached_input_tokens or u.cache_write_tokens):
            return
        rep = self.report
        rep.prompt_cache_read_tokens += u.cached_input_tokens
        rep.prompt_cache_write_tokens += u.cache_write_tokens
        model = self.plan.models.get(a.model)
        if model is not None and model.price is not None:
            rep.prompt_cache_saved_usd += model.price.prompt_cache_saving(u)


def simulate(
    plans: Sequence[tuple[str, Plan]],
    records: Iterable[TrafficRecord],
    *,
    faults: FaultModel | None = None,
    seed: int = 0,
    on_record: Callable[[int], None] | None = None,
) -> list[SimulationReport]:
    """Replay ``records`` once through every ``(label, plan)``, side by side (the file
    is read once). ``on_record(n)`` is called every 10,000 records."""
    sims = [Simulator(plan, label=label, faults=faults, seed=seed) for label, plan in plans]
    feeds = [s.feed for s in sims]
    for n, rec in enumerate(records, 1):
        for feed in feeds:
            feed(rec)
        if on_record is not None and n % 10_000 == 0:
            on_record(n)
    return [s.report for s in sims]
