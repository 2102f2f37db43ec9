"""The engine: one request through its plan, the only retry loop.

``Engine.run`` is a generator that *decides* and yields actions (``Warm``, ``Call``, ``Sleep``); the
drivers (``engine/_drive.py``: sync, async; ``engine/_stream.py``: streamed) perform them,
like tenacity's ``DoAttempt``/``DoSleep``. Every loop variable lives in one
:class:`RunState`, and each rule lives in one named step:

    run -> chain -> model -> admit -> wait_for_limits -> reserve -> call -> settle -> after_failure
                                                                       \\-> finish (engine/_finish.py)

A new rule goes in the step that owns its moment. Reservations and slots are given back in
``finally`` blocks, so an error, a cancellation or a consumer that goes away leaves none behind.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policyrouter.clock import Clock
from policyrouter.engine._events import EventBus, limit_payload
from policyrouter.engine._finish import Finisher
from policyrouter.engine._request import Request
from policyrouter.errors import (
    AllModelsFailed,
    BadRequest,
    BudgetExceeded,
    CircuitOpen,
    InvalidOutput,
    ProviderError,
    RequestTimeout,
    RouterError,
    StreamAbandoned,
    StreamInterrupted,
)
from policyrouter.plan import ModelPlan
from policyrouter.providers.base import Provider
from policyrouter.providers.classify import failure_error
from policyrouter.providers.ratelimits import read_limits
from policyrouter.stages import budget as budget_rules
from policyrouter.stages.adaptive import Costs, floored
from policyrouter.stages.circuit import BreakerRecord
from policyrouter.stages.output import repair_growth
from policyrouter.stages.retry import decide
from policyrouter.stages.select import LOADED, pick
from policyrouter.state.base import Admit, Admitted, CacheEntry, Finish, StateBackend
from policyrouter.tokens import count_text
from policyrouter.types import Attempt, Message, ProviderRequest, ProviderResponse, Result, Usage

__all__ = [
    "LEASE_MARGIN_S",
    "Abandoned",
    "Action",
    "Call",
    "Engine",
    "Outcome",
    "RunState",
    "Sleep",
    "StreamBroken",
    "Warm",
]

log = logging.getLogger("policyrouter")

LEASE_MARGIN_S = 60.0  # a reservation outlives the request's deadline by this much, then expires
LIMIT_POLL_S = 0.005  # how often a waiting attempt asks for a concurrency slot again
IN_FLIGHT = 2**31 - 1  # a least_busy tier's model without a concurrency limit still holds a slot (its count)
MAX_REDRAWS = 3  # least_busy: draws lost to another caller before one is taken regardless


@dataclass(frozen=True, slots=True)
class Call:
    provider: Provider
    request: ProviderRequest
    model: str = ""


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Warm:
    """Build ``provider``'s client (``warm(connect=False)``, sync or async) before the attempt's
    timer starts, so an SDK import or a client build is never counted as the call's latency.
    The driver sends back ``None``, or the ``ProviderError`` that kept the client from being built."""

    provider: Provider


@dataclass(frozen=True, slots=True)
class StreamBroken:
    """A streamed call failed after its first chunk reached the caller: no retry on that
    model; ``raise`` or ``restart`` per the task's ``on_stream_failure``."""

    error: ProviderError
    partial_text: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The caller stopped reading a streamed call before its end; ``delivered`` is what it got."""

    delivered: str


Action = Call | Sleep | Warm
Outcome = ProviderResponse | ProviderError | StreamBroken | Abandoned | None


class RunState:
    """Everything one request's loop knows, in one place (tenacity's ``RetryCallState``)."""

    __slots__ = (
        "admit_wall",
        "admitted",
        "amount",
        "attempts",
        "broken",
        "busy",
        "cache_key",
        "calls",
        "cap",
        "convo",
        "cost",
        "deadline",
        "deadline_cut",
        "drawing",
        "index",
        "input_tokens",
        "invalid",
        "last",
        "lost",
        "min_window",
        "model",
        "pending",
        "probe",
        "repairs",
        "req",
        "reservation",
        "slot",
        "tries",
        "tripped",
    )

    def __init__(self, req: Request) -> None:
        self.req = req
        self.deadline = req.started + req.task.deadline_s
        self.attempts: list[Attempt] = []
        self.calls = 0  # upstream calls made, for max_total_attempts
        self.cost = 0.0  # what every attempt cost so far
        self.cache_key = req.cache_key  # asked of the cache with the first admission, then None
        self.min_window: int | None = None  # after context_length: only larger windows help
        self.deadline_cut = False  # the last model lost a retry to the deadline
        self.last: ProviderError | None = None
        self.invalid: tuple[str, list[str]] | None = None  # the last output that failed its schema
        self.broken: StreamBroken | None = None  # the last failure broke a stream the caller was reading
        self.pending: Finish | None = None  # a success's finish, sent with the request's record
        self.tripped = False  # the last failure left this model's breaker not closed
        self.drawing = False  # the tier's strategy is still picking: a model refused by its limits is left out
        self.cap: int | None = None  # least_busy: the slot count the drawn model must still be under
        self.lost = False  # least_busy: another caller took the drawn model's slot first (draw again)
        self.busy = False  # the drawn model's limits refused it: left out of the draw, waited for as a fallback
        # the model being tried
        self.model: ModelPlan = req.chain.models[0] if req.chain.models else None  # type: ignore[assignment]
        self.index = 0
        self.tries = 0
        self.convo: tuple[Message, ...] = req.messages
        self.repairs = 0
        self.input_tokens = req.input_tokens  # grows with each repair turn
        # the attempt in flight: what it holds
        self.amount = 0.0  # its worst case, reserved on each budget
        self.probe = False
        self.slot = False
        self.reservation: str | None = None
        self.admit_wall = 0.0  # the wall time of the last admission asked
        self.admitted: tuple[float, Costs] | None = None  # adaptive: (admitted at, our usage in the window)

    def enter(self, index: int, m: ModelPlan) -> None:
        self.index, self.model = index, m
        self.tries = self.repairs = 0
        self.deadline_cut = False
        self.convo = self.req.messages
        self.input_tokens = self.req.input_tokens

    def called(
        self,
        outcome: Literal["ok", "error"],
        kind: str | None,
        t0: float,
        latency: float,
        request_id: str | None,
        cost: float,
        usage: Usage | None,
        **detail: Any,
    ) -> None:
        """Trace a call made on the current model (``detail``: status code, message, retry-after)."""
        m = self.model
        self.attempts.append(
            Attempt(
                m.name,
                m.provider,
                outcome,
                kind,
                latency_s=latency,
                request_id=request_id,
                cost_usd=cost,
                usage=usage,
                started_s=t0 - self.req.started,
                **detail,
            )
        )

    def skip(self, kind: str, message: str) -> None:
        m = self.model
        self.attempts.append(Attempt(m.name, m.provider, "skipped", kind, message=message))

    def fail(self, cls: type[RouterError], message: str, **kw: Any) -> RouterError:
        req = self.req
        return cls(
            message, task=req.task.name, route=req.route, attempts=self.attempts, request_id=req.request_id, **kw
        )


class Engine:
    """Runs prepared requests: decides, and leaves the calls and waits to a driver."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        state: StateBackend,
        clock: Clock,
        rng: random.Random,
        events: EventBus,
    ) -> None:
        self.providers = providers
        self.state = state
        self.clock = clock
        self.rng = rng
        self.events = events
        self.finisher = Finisher(state, clock, events)

    def run(self, req: Request) -> Generator[Action, Outcome, Result]:
        """Run ``req`` along its chain. Yields actions; returns the ``Result`` or raises."""
        rs = RunState(req)
        try:
            answer = yield from self._chain(rs)
        except RouterError as exc:
            return self.finisher.failed(req, exc)  # the stale answer, or raises ``exc``
        if isinstance(answer, CacheEntry):
            return self.finisher.cached(req, answer)
        return self.finisher.succeeded(req, answer, rs.pending)

    def _chain(self, rs: RunState) -> Generator[Action, Outcome, Result | CacheEntry]:
        """Each model of the chain in turn, until one answers (or the cache does); else why none did."""
        for index, m in self._order(rs):
            if rs.min_window is not None and (m.context_window is None or m.context_window <= rs.min_window):
                rs.model = m
                rs.skip("context_length", "window too small")
                continue
            tokens, tpm = rs.req.input_tokens + rs.req.max_output_tokens, m.limits.tpm if m.limits is not None else None
            if tpm is not None and tokens > tpm:  # the rate window could never hold it: fall back now
                rs.model = m
                rs.skip("rate_limited", f"a request of {tokens} tokens is above the model's tpm ({tpm})")
                continue
            rs.enter(index, m)
            result = yield from self._model(rs)
            if result is not None:
                return result
        raise self._exhausted(rs)

    def _order(self, rs: RunState) -> Iterator[tuple[int, ModelPlan]]:
        """The chain's models in the order tried, each with its index for the budget's worst case.

        Ordered: as listed. Otherwise the tier's strategy draws the first model among those not
        yet left out; a model refused at admission (breaker open, limits exhausted) is left out
        and the draw repeats; once one is called (or none is left), the rest follow as listed,
        with those whose limits refused them (now waited for) but not those whose breaker was
        open. Each attempt reserves at the tier's dearest model (index 0)."""
        chain = rs.req.chain
        if chain.strategy == "ordered":
            yield from enumerate(chain.models)
            return
        left = list(range(len(chain.models)))
        loads = self.state.loads(chain.names) if chain.strategy in LOADED else None
        costs = None
        if chain.strategy == "lowest_cost":
            tokens, out = rs.req.input_tokens, rs.req.max_output_tokens
            costs = [m.price.worst_case(tokens, out) if m.price is not None else float("inf") for m in chain.models]
        rs.drawing, redraws, busy = True, 0, []
        while left and rs.drawing:
            i = pick(chain.strategy, left, self.rng, weights=chain.weights, loads=loads, costs=costs)
            if chain.strategy == "least_busy" and loads is not None and redraws < MAX_REDRAWS:
                rs.cap = loads[i].in_flight + 1  # taken only if no other caller got there first
            yield 0, chain.models[i]
            rs.cap = None
            if rs.lost:  # the loads changed under the draw: read them again and draw again
                rs.lost, redraws = False, redraws + 1
                loads = self.state.loads(chain.names)
                continue
            left.remove(i)
            if rs.busy:
                rs.busy = False
                busy.append(i)
        rs.drawing = False
        for i in sorted(left + busy):
            yield 0, chain.models[i]

    def _model(self, rs: RunState) -> Generator[Action, Outcome, Result | CacheEntry | None]:
        """Attempts on one model: its answer (or the cache's), or ``None`` to move on to the next model."""
        tp = rs.req.task
        while True:
            rs.tries += 1
            if tp.max_total_attempts is not None and rs.calls >= tp.max_total_attempts:
                raise rs.fail(AllModelsFailed, f"task {tp.name!r}: max_total_attempts={tp.max_total_attempts} reached")
            if self.clock.now() >= rs.deadline:
                raise rs.fail(RequestTimeout, f"task {tp.name!r}: deadline of {tp.deadline_s:g}s passed")
            adm = self._admit(rs)
            if adm.stage == "cached" and adm.entry is not None:
                return adm.entry
            if adm.stage == "open":
                rs.skip("circuit_open", "breaker open")
                return None
            rs.probe, rs.slot = adm.probe, adm.slot
            try:
                if adm.stage == "slot" and rs.drawing and self._capped(rs):
                    rs.lost = True
                    return None
                if adm.stage in ("slot", "rate", "learned"):
                    rs.busy = rs.drawing
                    waited = None if rs.drawing else (yield from self._wait_for_limits(rs, adm))
                    if waited is None:
                        self._spill(rs, adm)
                        return None
                    adm = waited
                rs.admitted = (rs.admit_wall, adm.own) if adm.own is not None else None
                rs.drawing, rs.cap = False, None  # this model is the draw's: its retries are plain attempts
                self._reserve(rs, adm)
                outcome = yield from self._call(rs)
                result = self._settle(rs, outcome)
            finally:
                self._give_back(rs)
            if isinstance(result, Result):
                return result
            if result == "repair":
                continue
            if result == "next":
                return None
            delay = self._after_failure(rs)
            if delay is None:
                return None
            if delay > 0:
                yield Sleep(delay)

    def _admit(self, rs: RunState, *, again: bool = False) -> Admitted:
        """Breaker, limits and budget in one state call; the first one also asks the cache.
        ``again`` (a wait for the limits): only what is still missing, the breaker already said yes."""
        req, m, clock = rs.req, rs.model, self.clock
        tp, lim = req.task, m.limits
        now, wall = clock.now(), clock.wall()
        rs.admit_wall = wall
        a = Admit(
            model=m.name,
            now=now,
            wall=wall,
            lease_s=tp.deadline_s + LEASE_MARGIN_S,
            tokens=rs.input_tokens + req.max_output_tokens,
            breaker=None if again else m.breaker,
            concurrency=None if rs.slot else self._concurrency(rs),
            rpm=lim.rpm if lim is not None else None,
            tpm=lim.tpm if lim is not None else None,
            charges=self._charges(rs, wall) if tp.budgets else None,
            cache_key=None if again else rs.cache_key,
            adaptive=lim.reserve if lim is not None and lim.adaptive else None,
            output_tokens=req.max_output_tokens,
            waited=again,
        )
        rs.cache_key = None
        return self.state.admit(a)

    def _concurrency(self, rs: RunState) -> int | None:
        """The slot limit the attempt asks for: the model's, or (least_busy) the draw's cap, or a
        slot that only counts."""
        lim = rs.model.limits
        own = lim.concurrency if lim is not None else None
        if self._capped(rs):
            return rs.cap
        if own is not None:
            return own
        return IN_FLIGHT if rs.req.chain.strategy == "least_busy" else None

    @staticmethod
    def _capped(rs: RunState) -> bool:
        """The draw's cap, not the model's own limit, is the slot limit asked."""
        lim = rs.model.limits
        own = lim.concurrency if lim is not None else None
        return rs.cap is not None and (own is None or rs.cap < own)

    def _charges(self, rs: RunState, wall: float) -> tuple[budget_rules.BudgetCharge, ...]:
        """This attempt's worst case on each budget: counted input + max output, in tokens and
        at the dearest model left."""
        req = rs.req
        amount = budget_rules.attempt_worst_case(req.chain.price_rows, rs.index, rs.input_tokens, req.max_output_tokens)
        rs.amount = amount
        tp = req.task
        tokens = rs.input_tokens + req.max_output_tokens
        return budget_rules.charges(
            tp.budgets, tp.name, req.tenant, req.user, rs.model.name, req.metadata, amount, wall, tokens
        )

    def _wait_for_limits(self, rs: RunState, adm: Admitted) -> Generator[Action, Outcome, Admitted | None]:
        """Client-side limits: wait (bounded by ``max_wait_s`` and the deadline) and ask again for
        what is missing; the admission that let the attempt through (or whose budget refused it),
        or ``None`` when the wait would be too long (spill to the next model)."""
        lim = rs.model.limits
        assert lim is not None
        max_wait = min(lim.max_wait_s, max(0.0, rs.deadline - self.clock.now())) if lim.on_limit == "wait" else 0.0
        waited = 0.0
        wait = adm.wait if adm.stage in ("rate", "learned") else LIMIT_POLL_S
        while waited + wait <= max_wait:
            yield Sleep(wait)
            waited += wait
            again = self._admit(rs, again=True)
            rs.slot = rs.slot or again.slot
            if again.stage in ("ok", "budget"):
                return again
            wait = again.wait if again.stage in ("rate", "learned") else LIMIT_POLL_S
        return None

    def _spill(self, rs: RunState, adm: Admitted) -> None:
        """The limits did not clear in time: this model is skipped (a held probe is given back
        uncounted by ``_give_back``: no call was made, so it decides nothing)."""
        rs.skip("rate_limited", "the provider says little is left" if adm.stage == "learned" else "client-side limit")

    def _reserve(self, rs: RunState, adm: Admitted) -> None:
        """The attempt's budget reservation, taken by the admission that let it through; a
        refusal is ``BudgetExceeded`` and nothing is sent."""
        res = adm.reserve
        if res is None:  # a task without budgets
            return
        if res.ok:
            rs.reservation = res.reservation_id
            return
        if res.unit == "tokens":
            asked = float(rs.input_tokens + rs.req.max_output_tokens)
            need = f"{asked:,.0f} tokens does not fit ({res.used:,.0f} of {res.limit:,.0f} tokens used or reserved)"
        else:
            asked = rs.amount
            need = f"${asked:.6f} does not fit (${res.used:.6f} of ${res.limit:.6f} used or reserved)"
        raise rs.fail(  # a held probe is given back uncounted (``_give_back``): no call was made
            BudgetExceeded,
            f"budget {res.denied_budget!r}: worst case {need}",
            budget=res.denied_budget,
            unit=res.unit,
            requested=asked,
            used=res.used,
            limit=res.limit,
        )

    def _call(self, rs: RunState) -> Generator[Action, Outcome, tuple[Outcome, float, float]]:
        """One upstream call: the provider's client built, then the request for this model, timed
        from here, and the driver performs it."""
        req, m, tp = rs.req, rs.model, rs.req.task
        provider = self.providers[m.provider]
        unbuilt = yield Warm(provider)
        if unbuilt is not None:  # the client could not be built: the attempt failed, nothing was sent
            return unbuilt, self.clock.now(), 0.0
        if self.clock.now() >= rs.deadline:  # building the client took what was left
            raise rs.fail(RequestTimeout, f"task {tp.name!r}: deadline of {tp.deadline_s:g}s passed")
        system, fmt = req.system, None
        if req.output is not None:
            fmt = req.output.format_for(m.capabilities)
            if fmt.mode != "json_schema":  # no native schema mode: the schema goes in the prompt
                extra = req.output.instructions()
                system = f"{system}\n\n{extra}" if system else extra
        now = self.clock.now()
        request = ProviderRequest(
            model=m.upstream,
            messages=rs.convo,
            max_output_tokens=req.max_output_tokens,
            system=system,
            temperature=req.temperature,
            timeout_s=min(tp.timeout_s, rs.deadline - now),
            extra=dict(req.extra),
            tools=req.tools,
            tool_choice=req.tool_choice,
            output=fmt,
            max_response_bytes=tp.max_response_bytes,
            reasoning=m.reasoning_for(req.reasoning),
            prompt_cache=None
            if tp.prompt_cache is None
            else tp.prompt_cache.for_call(tp.name, req.tenant, req.prompt_prefix, m.prompt_cache_min_tokens),
        )
        outcome = yield Call(provider, request, m.name)
        rs.calls += 1
        return outcome, now, self.clock.now() - now

    def _settle(self, rs: RunState, called: tuple[Outcome, float, float]) -> Result | str:
        """Book the attempt: its cost, its finish in state, its trace entry. The ``Result`` of a
        success; ``"repair"`` (ask again on this model), ``"next"`` (move on) or ``"failed"``."""
        outcome, t0, latency = called
        m = rs.model
        outcome = self._sane(rs, outcome)
        if isinstance(outcome, ProviderResponse):
            return self._succeeded(rs, outcome, t0, latency)
        err, delivered = _failure(outcome)
        usage, billed_as = self._billed(rs, err, delivered)
        cost = m.price.cost(usage) if (usage is not None and m.price is not None) else 0.0
        tokens = usage.total_tokens if usage is not None else 0
        timed = latency if err.kind == "timeout" else None  # a timeout is a latency; a quick refusal is not
        finish = self._finish(rs, ok=False, cost=cost, tokens=tokens, kind=err.kind, headers=err.headers, latency=timed)
        rec = self.state.finish(finish)
        rs.cost += cost
        rs.last, rs.invalid = err, None
        rs.broken = outcome if isinstance(outcome, StreamBroken) else None
        rs.tripped = rec is not None and rec.status != "closed"
        detail = {"status_code": err.status_code, "message": err.message[:300], "retry_after_s": err.retry_after_s}
        rs.called("error", err.kind, t0, latency, err.request_id, cost, usage, billed_as=billed_as, **detail)
        self._breaker_event(rs, rec, err.kind, finish.probe)
        if isinstance(outcome, Abandoned):  # the caller is gone: the request ends here, billed
            tp = rs.req.task
            message = f"task {tp.name!r}: the caller went away during the call to {m.name}"
            raise rs.fail(StreamAbandoned, message, partial_text=outcome.delivered)
        return "failed"

    def _sane(self, rs: RunState, outcome: Outcome) -> Outcome:
        """Reported usage is believed only within what one call can bill: no count below 0 or
        above the model's context window + max output (nor 2**53), no cached part above the
        input. Anything else is a malformed body (then billed as unknown usage), never a charge."""
        usage = outcome.usage if isinstance(outcome, (ProviderResponse, ProviderError)) else None
        if not isinstance(usage, Usage):
            return outcome
        m, req = rs.model, rs.req
        bound = m.usage_bound(req.max_output_tokens)
        counts = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens)
        parts = usage.cached_input_tokens + usage.cache_write_tokens
        reasoning_ok = 0 <= usage.reasoning_tokens <= usage.output_tokens  # a part of the output
        hour = usage.cache_write_1h_tokens
        if (
            all(0 <= c <= bound for c in counts)
            and parts <= usage.input_tokens
            and reasoning_ok
            and 0 <= hour <= usage.cache_write_tokens
        ):
            return outcome
        request_id = outcome.request_id if isinstance(outcome, (ProviderResponse, ProviderError)) else None
        detail = (
            f"reported usage out of range (counts {counts}, at most {bound} each; reasoning {usage.reasoning_tokens})"
        )
        return failure_error(m.provider, "malformed", detail, status=200, request_id=request_id)

    def _billed(self, rs: RunState, err: ProviderError, delivered: str | None) -> tuple[Usage | None, str | None]:
        """What a failed attempt is billed for: the usage its response carried; else, when the call
        may have been billed (a timeout, a 200 we could not use, a stream that delivered), the
        task's ``on_unknown_usage``. Delivered output proves a bill, so it is never free."""
        if isinstance(err.usage, Usage):
            return err.usage, None
        if delivered is None and not err.may_be_billed:
            return None, None  # refused, or never reached the model: not billed
        req = rs.req
        policy = req.task.on_unknown_usage
        output = count_text(delivered or "")
        if policy == "zero" and output:
            policy = "estimate"
        if policy == "zero":
            return Usage(), policy
        if policy == "reserve":
            return Usage(rs.input_tokens, max(output, req.max_output_tokens)), policy
        return Usage(rs.input_tokens, output), "estimate"

    def _succeeded(self, rs: RunState, response: ProviderResponse, t0: float, latency: float) -> Result | str:
        """A response: the answer, unless it fails the output schema (then repair or move on)."""
        req, m = rs.req, rs.model
        cost = m.price.cost(response.usage) if m.price is not None else 0.0
        rs.cost += cost
        tokens = response.usage.total_tokens
        finish = self._finish(rs, ok=True, cost=cost, tokens=tokens, headers=response.headers, latency=latency)
        parsed = None
        if req.output is None:
            rs.pending = finish  # sent with the request's record: one state call for both
        else:
            self.state.finish(finish)  # checked before it is the answer: finished now
            parsed, problems = req.output.check(response)
            if problems:
                return self._invalid(rs, response, problems, cost, t0, latency)
        billed_as = "estimate" if response.usage.estimated else None
        rs.called("ok", None, t0, latency, response.request_id, cost, response.usage, billed_as=billed_as)
        if billed_as is not None:  # the upstream did not say what it billed: visible, not silent
            self.events.emit("usage_estimated", {"request_id": req.request_id, "task": req.task.name, "model": m.name})
        return Result(
            text=response.text,
            model=m.name,
            provider=m.provider,
            usage=response.usage,
            cost_usd=rs.cost,
            cache_hit=False,
            route=req.route,
            attempts=tuple(rs.attempts),
            latency_s=self.clock.now() - req.started,
            task=req.task.name,
            finish_reason=response.finish_reason,
            request_id=req.request_id,
            parsed=parsed,
            tool_calls=response.tool_calls,
            thinking_blocks=response.thinking_blocks,
        )

    def _invalid(
        self, rs: RunState, response: ProviderResponse, problems: list[str], cost: float, t0: float, latency: float
    ) -> str:
        """An output that failed its schema: a repair turn on this model while repairs are left. An
        answer cut at ``max_output_tokens`` is not repaired here (the repair would be cut too): next model."""
        req = rs.req
        truncated = response.finish_reason == "length"
        message = "; ".join(problems)[:300]
        if truncated:
            message = f"cut at max_output_tokens={req.max_output_tokens}; not repaired on this model: {message}"[:300]
        reason = "truncated" if truncated else "schema"
        usage, rid = response.usage, response.request_id
        rs.called("error", "invalid_output", t0, latency, rid, cost, usage, message=message, reason=reason)
        rs.invalid, rs.last, rs.broken = (response.text, problems), None, None
        if truncated or rs.repairs >= req.task.max_repairs or req.output is None:
            return "next"
        rs.repairs += 1
        turns = req.output.repair_turns(response.text, problems)
        rs.convo = (*rs.convo, *turns)
        rs.input_tokens += repair_growth(response.usage.output_tokens, turns[1]["content"])
        rs.tries -= 1  # a repair is not a retry: it spends no retry attempt
        return "repair"

    def _finish(
        self,
        rs: RunState,
        *,
        ok: bool,
        cost: float,
        tokens: int,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        latency: float | None = None,
    ) -> Finish:
        """The attempt's finish; what it held passes to it (and is no longer ours to give back).
        An adaptive model's finish carries what the response's rate-limit headers said; a
        lowest_latency tier's model, the call's latency (for its shared average)."""
        m = rs.model
        wall = self.clock.wall()
        limits, admitted = None, rs.admitted
        if headers is not None and admitted is not None:
            limits = read_limits(headers, wall)
            if limits is not None and self.events.active("limit_learned"):  # what the provider said
                self.events.emit(
                    "limit_learned", limit_payload(rs.req.request_id, rs.req.task.name, m.name, limits, wall)
                )
            if limits is not None and m.limits is not None:  # learned: a reset never sooner than the window
                limits = floored(limits, admitted[0], m.limits.window_s)
        f = Finish(
            model=m.name,
            now=self.clock.now(),
            wall=wall,
            ok=ok,
            cost_usd=cost,
            tokens=tokens,
            kind=kind,
            slot=rs.slot,
            reservation_id=rs.reservation,
            breaker=m.breaker,
            probe=rs.probe,
            limits=limits,
            admitted_at=admitted[0] if admitted is not None else 0.0,
            own=admitted[1] if admitted is not None else None,
            latency_s=latency if m.track_latency else None,
        )
        rs.slot, rs.reservation, rs.probe, rs.admitted = False, None, False, None
        return f

    def _give_back(self, rs: RunState) -> None:
        """What an attempt still holds when it ends without a finish (refused, spilled, raised
        or cancelled): its reservation, its slot, and its half-open probe, given back uncounted
        so the next request may probe (a probe that made no call decides nothing)."""
        m = rs.model
        if rs.reservation is not None:
            self.state.budget_release(rs.reservation)
            rs.reservation = None
        if rs.slot:
            self.state.slot_release(m.name)
            rs.slot = False
        if rs.probe and m.breaker is not None:
            self.state.breaker_record(m.name, m.breaker, self.clock.now(), False, None, True)
        rs.probe = False

    def _breaker_event(self, rs: RunState, rec: BreakerRecord | None, kind: str, probe: bool) -> None:
        if rec is not None and rec.status == "open":
            m = rs.model
            self.events.emit(
                "breaker_open",
                {
                    "request_id": rs.req.request_id,
                    "task": rs.req.task.name,
                    "model": m.name,
                    "breaker": m.breaker_name,
                    "error_kind": kind,
                    "reason": "probe_failed" if probe else "failure_threshold",
                },
            )

    def _after_failure(self, rs: RunState) -> float | None:
        """After a failed attempt: seconds to wait before trying this model again, or ``None``
        to move on; raises when the failure ends the request."""
        m, tp = rs.model, rs.req.task
        err = rs.last
        assert err is not None
        if rs.broken is not None:
            if tp.on_stream_failure != "restart":
                raise rs.fail(
                    StreamInterrupted,
                    f"task {tp.name!r}: the stream from {m.name} failed after its first chunk ({err.kind})",
                    partial_text=rs.broken.partial_text,
                )
            return None  # restart on the next model; the driver sends the caller a reset chunk
        if err.kind == "auth":
            log.error(
                "policyrouter: provider %r rejected its credentials for model %r (task %r); falling back",
                m.provider,
                m.name,
                tp.name,
            )
        decision = decide(tp.retry, err.kind, rs.tries, err.retry_after_s, self.rng)
        if decision.action == "fail":
            raise rs.fail(BadRequest, f"task {tp.name!r}: {m.name} rejected the request: {err.message[:200]}")
        if err.kind == "context_length":
            window = m.context_window or 0
            rs.min_window = window if rs.min_window is None else max(rs.min_window, window)
            return None
        if decision.action == "fallback" or rs.tripped:
            return None
        if decision.delay_s >= rs.deadline - self.clock.now():
            rs.deadline_cut = True
            return None  # no time to retry here; the next model may still answer in time
        return decision.delay_s

    def _no_valid_output(self, rs: RunState) -> RouterError:
        """``InvalidOutput`` saying, per model, why its answer failed (cut short, or off-schema)."""
        assert rs.invalid is not None
        why, reason = _why_invalid(rs)
        return rs.fail(
            InvalidOutput,
            f"task {rs.req.task.name!r}: no valid output: {why}",
            raw_text=rs.invalid[0],
            errors=rs.invalid[1],
            reason=reason,
        )

    def _exhausted(self, rs: RunState) -> RouterError:
        """Why no model of the chain answered."""
        tp = rs.req.task
        if rs.deadline_cut or self.clock.now() >= rs.deadline:
            return rs.fail(RequestTimeout, f"task {tp.name!r}: deadline of {tp.deadline_s:g}s passed")
        if rs.broken is not None:  # no model left to restart on: the caller holds a partial answer
            return rs.fail(
                StreamInterrupted,
                f"task {tp.name!r}: the stream failed after its first chunk and no model is left to restart on",
                partial_text=rs.broken.partial_text,
            )
        if rs.invalid is not None:
            return self._no_valid_output(rs)
        if rs.attempts and all(a.error_kind == "circuit_open" for a in rs.attempts):
            return rs.fail(
                CircuitOpen, f"task {tp.name!r}: every model of tier {rs.req.chain.tier!r} has an open circuit"
            )
        skipped = rs.attempts[-1] if rs.attempts and rs.attempts[-1].outcome == "skipped" else None
        kind = rs.last.kind if rs.last is not None else "none"
        if rs.last is None and skipped is not None:  # no call made: say why the last model was skipped
            kind = f"{skipped.error_kind}, {skipped.message}"
        return rs.fail(
            AllModelsFailed, f"task {tp.name!r}: every model of tier {rs.req.chain.tier!r} failed (last: {kind})"
        )


def _why_invalid(rs: RunState) -> tuple[str, str]:
    """Why no valid output came: per model, its last invalid answer's failure; and the last reason."""
    last: dict[str, Attempt] = {}
    repairs: dict[str, int] = {}
    for a in rs.attempts:
        if a.error_kind == "invalid_output":
            repairs[a.model] = repairs.get(a.model, -1) + 1
            last[a.model] = a
    parts = []
    for model, a in last.items():
        if a.reason == "truncated":
            parts.append(
                f"{model}: the answer was cut at max_output_tokens={rs.req.max_output_tokens} "
                "(not repaired there: a repair would be cut too; raise max_output_tokens)"
            )
        else:
            parts.append(f"{model}: the answer failed its schema after {repairs[model]} repair(s)")
    final = next(reversed(last.values())).reason or "schema"
    return "; ".join(parts), final


def _failure(outcome: Outcome) -> tuple[ProviderError, str | None]:
    """A failed call's error, and what it delivered to the caller (``None``: nothing streamed)."""
    if isinstance(outcome, StreamBroken):
        return outcome.error, outcome.partial_text
    if isinstance(outcome, Abandoned):
        return ProviderError("abandoned", "the caller stopped reading the stream"), outcome.delivered
    if isinstance(outcome, ProviderError):
        return outcome, None
    return ProviderError("unknown", "no outcome"), None
