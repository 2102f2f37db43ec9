"""One request through its plan: the single retry loop.

``run`` is a generator that *decides* and yields actions (``Call``, ``Sleep``); a sync
and an async driver perform them (like tenacity's ``DoAttempt``/``DoSleep``). So the
sync and async paths share every rule, and a fake clock makes tests instant.
Reservations and concurrency slots are released in ``finally`` blocks, so an error,
a cancellation or a consumer that goes away never leaves one behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policyrouter.clock import Clock
from policyrouter.errors import (
    AllModelsFailed,
    BadRequest,
    BudgetExceeded,
    CircuitOpen,
    InvalidOutput,
    ProviderError,
    RequestTimeout,
    RouterError,
    StreamInterrupted,
)
from policyrouter.fastinit import fast_init, maker
from policyrouter.plan import Chain, ModelPlan, TaskPlan
from policyrouter.providers.base import Provider
from policyrouter.stages.cache import answer_from_cache
from policyrouter.stages.guard import GuardRun, restore
from policyrouter.stages.output import OutputSpec
from policyrouter.stages.retry import decide
from policyrouter.state import combined
from policyrouter.state.base import AdmitResult, BudgetCharge, BudgetRefused, CacheEntry, StateBackend
from policyrouter.types import Attempt, Message, ProviderRequest, ProviderResponse, Result, Usage

if TYPE_CHECKING:
    import random

log = logging.getLogger("policyrouter")

LEASE_MARGIN_S = 60.0
LIMIT_POLL_S = 0.005
_ADMITTED = AdmitResult("ok")  # what ``attempt_admit`` answers when it has no stage to run
# the objects of every successful call, built positionally (every field, in order): see fastinit.maker
_new_request = maker(ProviderRequest)
_new_attempt = maker(Attempt)
_new_result = maker(Result)


@fast_init
@dataclass(frozen=True, slots=True)
class Call:
    provider: Provider
    request: ProviderRequest
    model: str = ""


@dataclass(frozen=True, slots=True)
class StreamBroken:
    """A streamed call failed after its first chunk reached the caller: no retry on
    that model; ``raise`` or ``restart`` per the task's ``on_stream_failure``."""

    error: ProviderError
    partial_text: str


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Action = Call | Sleep
Outcome = ProviderResponse | ProviderError | StreamBroken | None


@dataclass(slots=True)
class Request:
    """A request after input handling: what the loop needs, nothing more."""

    request_id: str
    task: TaskPlan
    route: str
    chain: Chain
    messages: tuple[Message, ...]
    system: str | None
    input_tokens: int
    max_output_tokens: int
    temperature: float | None
    tenant: str | None
    user: str | None
    metadata: Mapping[str, Any] | None
    extra: dict[str, Any]
    started: float
    output: OutputSpec | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    guard: GuardRun | None = None  # this request's pass through the task's input guards
    on_event: Callable[[str, dict[str, Any]], None] | None = None  # e.g. breaker_open
    # A backend with round trips (Redis): the cache lookup folded into the first admission (a fresh
    # entry returns a cache-hit Result, nothing admitted), and a success's finish left in
    # ``pending_finish`` for the router to send with the cache store and ledger row (``state/combined.py``).
    cache_key: str | None = None
    defer_finish: bool = False
    pending_finish: combined.FinishArgs | None = None


def run(
    req: Request,
    providers: Mapping[str, Provider],
    state: StateBackend,
    clock: Clock,
    rng: random.Random,
) -> Generator[Action, Outcome, Result]:
    """Run ``req`` along its chain. Yields actions; returns the ``Result`` or raises."""
    tp = req.task
    deadline = req.started + tp.deadline_s
    attempts: list[Attempt] = []
    total_calls = 0
    total_cost = 0.0
    min_window: int | None = None  # after context_length: only larger windows help
    deadline_cut = False  # the last model lost a retry to the deadline
    last: ProviderError | None = None
    invalid: tuple[str, list[str]] | None = None  # the last model's output that failed its schema
    restarted: StreamBroken | None = None  # the last failure broke a stream the caller was reading
    spec = req.output
    budgets = tp.budgets
    charge_sets = tp.charge_sets
    lease_s = tp.deadline_s + LEASE_MARGIN_S  # a reservation outlives the request's deadline, then expires
    models = req.chain.models
    price_rows = req.chain.price_rows

    def fail(cls: type[RouterError], message: str, **kw: Any) -> RouterError:
        return cls(message, task=tp.name, route=req.route, attempts=attempts, request_id=req.request_id, **kw)

    for index, m in enumerate(models):
        if min_window is not None and (m.context_window is None or m.context_window <= min_window):
            attempts.append(Attempt(m.name, m.provider, "skipped", "context_length", message="window too small"))
            continue
        provider = providers[m.provider]
        deadline_cut = False
        n_on_model = 0
        convo = req.messages
        repairs = 0
        input_tokens = req.input_tokens  # grows with each repair turn
        while True:
            n_on_model += 1
            if tp.max_total_attempts is not None and total_calls >= tp.max_total_attempts:
                raise fail(
                    AllModelsFailed,
                    f"task {tp.name!r}: max_total_attempts={tp.max_total_attempts} reached",
                )
            now = clock.now()
            if now >= deadline:
                raise fail(RequestTimeout, f"task {tp.name!r}: deadline of {tp.deadline_s:g}s passed")
            # breaker, limits and budget in one state operation; it stops at the first stage that says no
            amount = 0.0
            if budgets:  # ``stages.budget.attempt_worst_case``, inlined: the call costs more than the loop
                for rate, out in price_rows[index]:
                    worst = input_tokens * rate + req.max_output_tokens * out
                    if worst > amount:
                        amount = worst
            if req.cache_key is not None:  # the first admission also looks the answer up (one round trip)
                admit = None
                if budgets or m.breaker is not None or m.limits is not None:
                    admit = _admit_args(req, m, input_tokens, amount if budgets else None, now, clock.wall())
                entry, got = combined.run_admit_cached(state, req.cache_key, clock.wall(), admit)
                req.cache_key = None
                if entry is not None:
                    return _cached_result(req, entry, clock)
                adm = got or _ADMITTED
            elif m.breaker is not None or m.limits is not None:
                adm = _admit(state, req, m, input_tokens, amount if budgets else None, now, clock.wall())
            else:  # budgets only (reserved below, by ``budget_hold``) or no stage: nothing to ask yet
                adm = _ADMITTED
            if adm.stage == "open":
                attempts.append(Attempt(m.name, m.provider, "skipped", "circuit_open", message="breaker open"))
                break
            probe = adm.probe
            # client-side limits: wait (bounded) or spill to the next model
            slot = adm.slot
            lim = m.limits
            if lim is not None and adm.stage in ("slot", "rate"):
                waited = 0.0
                max_wait = min(lim.max_wait_s, max(0.0, deadline - now)) if lim.on_limit == "wait" else 0.0
                granted = False
                wait = adm.wait if adm.stage == "rate" else LIMIT_POLL_S
                while True:
                    if waited + wait > max_wait:
                        break
                    yield Sleep(wait)
                    waited += wait
                    wait = 0.0
                    if lim.concurrency is not None and not slot:
                        slot = state.slot_acquire(m.name, lim.concurrency)
                        if not slot:
                            wait = LIMIT_POLL_S
                    if (slot or lim.concurrency is None) and (lim.rpm is not None or lim.tpm is not None):
                        wait = state.rate_acquire(
                            m.name, lim.rpm, lim.tpm, input_tokens + req.max_output_tokens, clock.now()
                        )
                    if wait <= 0 and (slot or lim.concurrency is None):
                        granted = True
                        break
                if not granted:
                    if slot:
                        state.slot_release(m.name)
                        slot = False
                    if probe:
                        state.breaker_record(m.name, m.breaker, clock.now(), False, "rate_limited", True)  # type: ignore[arg-type]
                    attempts.append(Attempt(m.name, m.provider, "skipped", "rate_limited", message="client-side limit"))
                    break
            try:
                reservation = None
                if budgets:
                    res = adm.reserve
                    try:
                        if res is None:  # budgets only, or the limits made this attempt wait: reserve now
                            wall = clock.wall()
                            reservation = state.budget_hold(
                                charge_sets.get(req.tenant, req.user, m.name, req.metadata, wall), amount, wall, lease_s
                            )
                        elif res.ok:
                            reservation = res.reservation_id
                        else:
                            raise BudgetRefused(res.denied_budget or "", res.used, res.limit)
                    except BudgetRefused as no:  # the slot, if one is held, is given back below (finally)
                        if probe:
                            state.breaker_record(m.name, m.breaker, clock.now(), True, None, True)  # type: ignore[arg-type]
                        raise fail(
                            BudgetExceeded,
                            f"budget {no.budget!r}: worst case ${amount:.6f} does not fit "
                            f"(${no.used:.6f} of ${no.limit:.6f} used or reserved)",
                            budget=no.budget,
                        ) from None
                system = req.system
                fmt = None
                if spec is not None:
                    fmt = spec.format_for(m.capabilities)
                    if fmt.mode != "json_schema":
                        system = f"{system}\n\n{spec.instructions()}" if system else spec.instructions()
                # positional (the field order): keyword arguments cost ~0.1 µs each on this path
                request = _new_request(
                    m.upstream,  # model
                    convo,  # messages
                    req.max_output_tokens,
                    system,
                    req.temperature,
                    min(tp.timeout_s, deadline - now),  # timeout_s
                    (),  # stop
                    req.extra,
                    req.tools,
                    req.tool_choice,
                    fmt,  # output
                )
                t0 = clock.now()
                try:
                    outcome = yield Call(provider, request, m.name)
                except BaseException:
                    if slot:
                        state.slot_release(m.name)
                        slot = False
                    raise
                latency = clock.now() - t0
                total_calls += 1
                if isinstance(outcome, ProviderResponse):
                    cost = m.price.cost(outcome.usage) if m.price is not None else 0.0
                    # slot release, settle, breaker record: one state operation
                    held, slot = slot, False
                    deferred = req.defer_finish and spec is None  # final: the router sends it with the ledger row
                    if held or m.breaker is not None or (deferred and reservation is not None):
                        now, wall = clock.now(), clock.wall()
                        finish = (m.name, held, reservation, cost, m.breaker, now, wall, True, None, probe)
                        if deferred:
                            req.pending_finish = finish
                        else:
                            state.attempt_finish(*finish)
                    elif reservation is not None:  # budgets only: the settle is the whole finish
                        state.budget_settle(reservation, cost, clock.wall())
                    reservation = None
                    total_cost += cost
                    parsed = None
                    if spec is not None:
                        parsed, problems = spec.check(outcome)
                        if problems:
                            attempts.append(
                                Attempt(
                                    m.name,
                                    m.provider,
                                    "error",
                                    "invalid_output",
                                    latency_s=latency,
                                    request_id=outcome.request_id,
                                    message="; ".join(problems)[:300],
                                    cost_usd=cost,
                                    usage=outcome.usage,
                                )
                            )
                            invalid = (outcome.text, problems)
                            last = None
                            restarted = None
                            if repairs < tp.max_repairs:
                                repairs += 1
                                turns = spec.repair_turns(outcome.text, problems)
                                convo = (*convo, *turns)
                                input_tokens += outcome.usage.output_tokens + len(turns[1]["content"]) // 3 + 8
                                n_on_model -= 1  # a repair is not a retry: it spends no retry attempt
                                continue
                            break
                    used = outcome.usage
                    # positional, in field order (see ProviderRequest above)
                    attempts.append(
                        _new_attempt(
                            m.name,
                            m.provider,
                            "ok",
                            None,  # error_kind
                            latency,
                            outcome.request_id,
                            None,  # status_code
                            None,  # message
                            None,  # retry_after_s
                            cost,
                            used,  # usage
                            t0 - req.started,  # started_s
                        )
                    )
                    return _new_result(
                        outcome.text,
                        m.name,  # model
                        m.provider,
                        used,  # usage
                        total_cost,  # cost_usd
                        False,  # cache_hit
                        req.route,
                        tuple(attempts),
                        clock.now() - req.started,  # latency_s
                        tp.name,  # task
                        outcome.finish_reason,
                        req.request_id,
                        False,  # stale
                        parsed,
                        outcome.tool_calls,
                    )
                broken = outcome if isinstance(outcome, StreamBroken) else None
                if broken is not None:
                    outcome = broken.error
                err = outcome if isinstance(outcome, ProviderError) else ProviderError("unknown", "no outcome")
                usage = err.usage if isinstance(err.usage, Usage) else None
                cost = m.price.cost(usage) if (usage is not None and m.price is not None) else 0.0
                # slot release, settle what it cost (or release), breaker record: one state operation
                held, slot = slot, False
                rec = state.attempt_finish(
                    m.name, held, reservation, cost, m.breaker, clock.now(), clock.wall(), False, err.kind, probe
                )
                reservation = None
                total_cost += cost
            finally:
                if reservation is not None:  # cancelled or raised mid-call
                    state.budget_release(reservation)
                if slot:  # refused by a budget (or the state failed) before the call
                    state.slot_release(m.name)
                    slot = False
            last = err
            invalid = None
            restarted = None
            tripped = False
            if rec is not None:
                tripped = rec.status != "closed"
                if rec.status == "open" and req.on_event is not None:
                    req.on_event("breaker_open", _breaker_payload(req, m.name, m.breaker_name, err.kind, probe))
            attempts.append(
                Attempt(
                    m.name,
                    m.provider,
                    "error",
                    err.kind,
                    latency_s=latency,
                    request_id=err.request_id,
                    status_code=err.status_code,
                    message=err.message[:300],
                    retry_after_s=err.retry_after_s,
                    cost_usd=cost,
                    usage=usage,
                    started_s=t0 - req.started,
                )
            )
            if broken is not None:
                if tp.on_stream_failure != "restart":
                    raise StreamInterrupted(
                        f"task {tp.name!r}: the stream from {m.name} failed after its first chunk ({err.kind})",
                        partial_text=broken.partial_text,
                        task=tp.name,
                        route=req.route,
                        attempts=attempts,
                        request_id=req.request_id,
                    )
                restarted = broken
                break  # restart on the next model; the driver sends the caller a reset chunk
            if err.kind == "auth":
                log.error(
                    "policyrouter: provider %r rejected its credentials for model %r (task %r); falling back",
                    m.provider,
                    m.name,
                    tp.name,
                )
            decision = decide(tp.retry, err.kind, n_on_model, err.retry_after_s, rng)
            if decision.action == "fail":
                raise fail(BadRequest, f"task {tp.name!r}: {m.name} rejected the request: {err.message[:200]}")
            if err.kind == "context_length":
                window = m.context_window or 0
                min_window = window if min_window is None else max(min_window, window)
                break
            if decision.action == "fallback" or tripped:
                break
            remaining = deadline - clock.now()
            if decision.delay_s >= remaining:
                deadline_cut = True
                break  # no time to retry here; the next model may still answer in time
            if decision.delay_s > 0:
                yield Sleep(decision.delay_s)
    if deadline_cut or clock.now() >= deadline:
        raise fail(RequestTimeout, f"task {tp.name!r}: deadline of {tp.deadline_s:g}s passed")
    if restarted is not None:  # no model left to restart on: the caller holds a partial answer
        raise StreamInterrupted(
            f"task {tp.name!r}: the stream failed after its first chunk and no model is left to restart on",
            partial_text=restarted.partial_text,
            task=tp.name,
            route=req.route,
            attempts=attempts,
            request_id=req.request_id,
        )
    if invalid is not None:
        raise InvalidOutput(
            f"task {tp.name!r}: the output failed its schema after {tp.max_repairs} repair(s) on every model",
            raw_text=invalid[0],
            errors=invalid[1],
            task=tp.name,
            route=req.route,
            attempts=attempts,
            request_id=req.request_id,
        )
    if attempts and all(a.error_kind == "circuit_open" for a in attempts):
        raise fail(CircuitOpen, f"task {tp.name!r}: every model of tier {req.chain.tier!r} has an open circuit")
    kind = last.kind if last is not None else "none"
    raise fail(
        AllModelsFailed,
        f"task {tp.name!r}: every model of tier {req.chain.tier!r} failed (last: {kind})",
    )


def _admit(
    state: StateBackend, req: Request, m: ModelPlan, input_tokens: int, amount: float | None, now: float, wall: float
) -> AdmitResult:
    """Breaker admission, concurrency slot, rate window and (with ``amount``) the budget reservation."""
    return state.attempt_admit(*_admit_args(req, m, input_tokens, amount, now, wall))


def _admit_args(
    req: Request, m: ModelPlan, input_tokens: int, amount: float | None, now: float, wall: float
) -> combined.AdmitArgs:
    lim = m.limits
    return (
        m.name,
        m.breaker,
        lim.concurrency if lim is not None else None,
        lim.rpm if lim is not None else None,
        lim.tpm if lim is not None else None,
        input_tokens + req.max_output_tokens,
        _charges(req, m, amount, wall) if amount is not None else None,
        now,
        wall,
        req.task.deadline_s + LEASE_MARGIN_S,
    )


def _cached_result(req: Request, entry: CacheEntry, clock: Clock) -> Result:
    """The answer of a cache hit found by the folded lookup, its guarded text restored (as the
    router's own lookup answers, ``Router._from_cache``)."""
    r: Result = entry.value
    text, latency_s = restore(req.guard, r.text), clock.now() - req.started
    return answer_from_cache(r, text, req.route, latency_s, req.task.name, req.request_id, False)


def _charges(req: Request, m: ModelPlan, amount: float, wall: float) -> list[BudgetCharge]:
    return req.task.charge_sets.get(req.tenant, req.user, m.name, req.metadata, wall).charges(amount)


def _breaker_payload(req: Request, model: str, breaker: str | None, kind: str, probe: bool) -> dict[str, Any]:
    return {
        "request_id": req.request_id,
        "task": req.task.name,
        "model": model,
        "breaker": breaker,
        "error_kind": kind,
        "reason": "probe_failed" if probe else "failure_threshold",
    }
