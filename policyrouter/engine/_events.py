"""Structured events: one per request and one per attempt, to hooks and stdlib logging.

Events are plain dicts, built only when someone listens (a hook, or the
``policyrouter.events`` logger enabled at INFO). Each is logged as one record whose
message is short (``policyrouter.result request_id=... task=... outcome=ok``) and whose
``record.policyrouter`` attribute holds the whole payload, so JSON formatters and
structlog's stdlib bridge get every field.

Events:

``attempt``
    one per entry of the trace (a call made, or a model skipped): ``request_id``,
    ``task``, ``route``, ``attempt`` (1-based), ``model``, ``provider``, ``outcome``
    (ok / error / skipped), ``error_kind``, ``status_code``, ``provider_request_id``,
    ``latency_s``, ``started_s`` (after the request started), ``retry_after_s``,
    ``input_tokens``, ``output_tokens``, ``cost_usd``, ``message`` (the error's text,
    keys scrubbed by the adapter), ``reason`` (why an ``invalid_output`` answer failed:
    ``truncated`` or ``schema``).
``result`` / ``error``
    one per request: ``request_id``, ``task``, ``route``, ``outcome`` (``ok`` or the
    error kind), ``model``, ``provider``, ``tenant``, ``user``, ``input_tokens``,
    ``output_tokens``, ``cached_input_tokens``, ``cost_usd``, ``latency_s``,
    ``cache_hit``, ``stale``, ``attempts`` (model, outcome, error kind, provider request
    id of each), ``retries``, ``fallbacks`` (``from``, ``to``, ``reason``),
    ``degraded_by`` and ``budget_status`` (``ok`` / ``soft_limit`` / ``exceeded``),
    ``guards`` (rule names and counts); ``result`` adds ``finish_reason``, ``error``
    adds ``error`` (class), ``message``, ``budget`` and ``rule`` where they apply.
``budget_soft_limit``
    ``budget``, ``key``, ``spent_usd``, ``limit_usd`` (a token limit: ``spent_tokens``,
    ``limit_tokens``): once per budget window and limit.
``breaker_open``
    ``request_id``, ``task``, ``model``, ``breaker``, ``error_kind``, ``reason``
    (``failure_threshold`` or ``probe_failed``).
``usage_estimated``
    ``request_id``, ``task``, ``model``: an answer whose upstream did not report both token
    counts was billed at an estimate (the attempt says ``billed_as: estimate``).
``key_missing``
    ``provider``, ``key_env``: one of a provider's key variables is unset or empty when its
    keys are first read; the others serve.
``key_set_aside``
    ``provider``, ``key_env``, ``status_code`` (401, or a cloud's credential 403), ``keys_left``: the provider refused
    one of its keys; the call went on with the next (see :mod:`policyrouter.providers.keys`).
``limit_learned``
    ``request_id``, ``task``, ``model``, and per dimension the provider reported
    (``requests``, ``tokens``, ``input_tokens``, ``output_tokens``) ``limit_<d>``,
    ``remaining_<d>`` and ``reset_<d>_s`` (seconds until full again): one per response of a
    model with ``limits: {adaptive: true}`` whose rate-limit headers were read (a 429's too).
``feedback``
    ``request_id``, ``score``, ``label``: ``Router.feedback`` recorded a quality signal.
``job``
    ``job_id`` (also ``request_id``), ``queue``, ``task``, ``outcome`` (``done``, ``queued``: back
    for a retry, ``failed``, ``dead``, ``lost``: its lease was gone), ``deliveries``, ``wait_s``
    (submit to the start of this delivery), ``error_kind`` on a failure, ``recovered`` when the
    answer came from the ledger: one per delivery a worker ends (:mod:`policyrouter.worker`).

``attempt``, ``result`` and ``error`` also carry ``experiment`` and ``variant`` (``None``
outside an experiment, or when the control variant served a request not enrolled).

No prompt or completion text and no secret is ever put in an event, unless the task
sets ``log_content: true``: then ``result`` and ``error`` carry ``system``, ``messages``
(what was sent: after redaction) and ``completion`` (redacted the same way).

Hooks are plain callables taking the payload. A hook returning an awaitable is
scheduled on the running event loop (``acomplete``), or run to completion before the
call returns when there is none (``complete`` from synchronous code). A hook that
raises is logged with its traceback at ERROR; it never fails the request.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from policyrouter.errors import BudgetExceeded, GuardBlocked, RouterError
from policyrouter.types import Attempt, ProviderLimits, Result

if TYPE_CHECKING:
    import asyncio

    from policyrouter.engine._request import Request
    from policyrouter.stages.guard import GuardRun

__all__ = ["EVENTS", "EventBus", "Hook", "limit_payload"]

EVENTS = (
    "attempt",
    "result",
    "error",
    "budget_soft_limit",
    "breaker_open",
    "state_unavailable",
    "state_restored",
    "reload",
    "usage_estimated",
    "key_missing",
    "key_set_aside",
    "limit_learned",
    "feedback",
    "job",
)

Hook = Callable[[dict[str, Any]], Any]


def limit_payload(request_id: str, task: str, model: str, limits: ProviderLimits, wall: float) -> dict[str, Any]:
    """The ``limit_learned`` event of one response's rate-limit headers."""
    payload: dict[str, Any] = {"request_id": request_id, "task": task, "model": model}
    for dim, r in limits.readings():
        payload[f"limit_{dim}"] = r.limit
        payload[f"remaining_{dim}"] = r.remaining
        payload[f"reset_{dim}_s"] = round(r.reset_at - wall, 3) if r.reset_at is not None else None
    return payload


log = logging.getLogger("policyrouter.events")


class EventBus:
    """Hooks per event name, plus the ``policyrouter.events`` logger."""

    __slots__ = ("_hooks", "_pending")

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {}
        self._pending: set[asyncio.Task[Any]] = set()  # strong refs: scheduled hooks are not collected

    def on(self, event: str, fn: Hook) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        if not callable(fn):
            raise TypeError(f"hook for {event!r} must be callable, got {type(fn).__name__}")
        self._hooks.setdefault(event, []).append(fn)

    def off(self, event: str, fn: Hook) -> None:
        """Unsubscribe ``fn`` (no error if it was not subscribed)."""
        hooks = self._hooks.get(event)
        if hooks is not None and fn in hooks:
            hooks.remove(fn)
            if not hooks:
                del self._hooks[event]

    def active(self, event: str) -> bool:
        return event in self._hooks or log.isEnabledFor(logging.INFO)

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        payload = {"event": event, **payload}
        if log.isEnabledFor(logging.INFO):
            log.info(
                "policyrouter.%s request_id=%s task=%s outcome=%s",
                event,
                payload.get("request_id"),
                payload.get("task"),
                payload.get("outcome"),
                extra={"policyrouter": payload},
            )
        for fn in self._hooks.get(event, ()):
            try:
                out = fn(payload)
            except Exception:  # a broken hook must not fail the request; it is reported, not swallowed
                log.exception("policyrouter: %s hook %r raised", event, fn)
                continue
            if inspect.isawaitable(out):
                self._schedule(event, fn, out)

    # ------------------------------------------------------------------ request events
    def emit_result(self, result: Result, req: Request | None = None) -> None:
        """``attempt`` events for the trace, then one ``result`` event."""
        hooks = self._hooks
        if "result" not in hooks and "attempt" not in hooks and not log.isEnabledFor(logging.INFO):
            return  # nobody listens (``active("result")``, inlined: once per request)
        self._attempts(result.request_id, result.task, result.route, result.attempts, req)
        payload = _request_payload(req, result.request_id, result.task, result.route, result.attempts)
        payload.update(
            outcome="ok",
            model=result.model,
            provider=result.provider,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cached_input_tokens=result.usage.cached_input_tokens,
            cost_usd=result.cost_usd,
            latency_s=round(result.latency_s, 6),
            cache_hit=result.cache_hit,
            stale=result.stale,
            finish_reason=result.finish_reason,
            reasoning_tokens=result.usage.reasoning_tokens,
        )
        if req is not None and req.task.log_content:
            payload.update(_content(req, result.text))
        if req is not None and req.task.log_thinking:  # never otherwise: thinking text stays out of events
            thinking = result.thinking
            payload["thinking"] = req.guard.redact_output(thinking) if req.guard is not None else thinking
        self.emit("result", payload)

    def emit_failure(
        self,
        exc: RouterError,
        req: Request | None,
        latency_s: float,
        *,
        guard: GuardRun | None = None,
        tenant: str | None = None,
        user: str | None = None,
    ) -> None:
        """``attempt`` events for the trace, then one ``error`` event. Without ``req`` (the
        request was refused before it was built) ``guard``, ``tenant`` and ``user`` say who."""
        if not (self.active("error") or "attempt" in self._hooks):
            return
        task = exc.task or (req.task.name if req is not None else "")
        route = exc.route or (req.route if req is not None else "")
        self._attempts(exc.request_id, task, route, exc.attempts, req)
        payload = _request_payload(req, exc.request_id, task, route, exc.attempts)
        if req is None:
            payload.update(tenant=tenant, user=user, guards=guard.summary() if guard is not None else None)
        last = exc.attempts[-1] if exc.attempts else None
        usage = [a.usage for a in exc.attempts if a.usage is not None]
        payload.update(
            outcome=exc.kind,
            error=type(exc).__name__,
            message=str(exc).split(" [attempts: ", 1)[0][:300],
            model=last.model if last is not None else None,
            provider=last.provider if last is not None else None,
            input_tokens=sum(u.input_tokens for u in usage),
            output_tokens=sum(u.output_tokens for u in usage),
            cached_input_tokens=sum(u.cached_input_tokens for u in usage),
            cost_usd=sum(a.cost_usd for a in exc.attempts),
            latency_s=round(latency_s, 6),
            cache_hit=False,
            stale=False,
        )
        if isinstance(exc, BudgetExceeded) and exc.budget is not None:
            payload.update(budget=exc.budget, budget_status="exceeded")
        if isinstance(exc, GuardBlocked):
            payload["rule"] = exc.rule
        if req is not None and req.task.log_content:
            payload.update(_content(req, None))
        self.emit("error", payload)

    def _attempts(
        self, request_id: str | None, task: str, route: str, attempts: tuple[Attempt, ...], req: Request | None
    ) -> None:
        if not self.active("attempt"):
            return
        for i, a in enumerate(attempts, 1):
            u = a.usage
            self.emit(
                "attempt",
                {
                    "request_id": request_id,
                    "task": task,
                    "route": route,
                    "attempt": i,
                    "model": a.model,
                    "provider": a.provider,
                    "outcome": a.outcome,
                    "error_kind": a.error_kind,
                    "status_code": a.status_code,
                    "provider_request_id": a.request_id,
                    "latency_s": round(a.latency_s, 6),
                    "started_s": round(a.started_s, 6),
                    "retry_after_s": a.retry_after_s,
                    "input_tokens": u.input_tokens if u is not None else 0,
                    "output_tokens": u.output_tokens if u is not None else 0,
                    "cost_usd": a.cost_usd,
                    "message": a.message,
                    "reason": a.reason,
                    "experiment": req.experiment if req is not None else None,
                    "variant": req.variant if req is not None else None,
                },
            )

    # ------------------------------------------------------------------ async hooks
    def _schedule(self, event: str, fn: Hook, awaitable: Any) -> None:
        import asyncio

        async def run() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("policyrouter: %s hook %r raised", event, fn)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # synchronous caller: run the hook to completion now
            asyncio.run(run())
            return
        task = loop.create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _request_payload(
    req: Request | None, request_id: str | None, task: str, route: str, attempts: tuple[Attempt, ...]
) -> dict[str, Any]:
    """The fields ``result`` and ``error`` share: who, where, and how the chain went."""
    fallbacks = []
    retries = 0
    for prev, cur in itertools.pairwise(attempts):
        if cur.model == prev.model:
            retries += 1
        else:
            fallbacks.append({"from": prev.model, "to": cur.model, "reason": prev.error_kind})
    degraded = route.partition(">degraded:")[2] or None
    guard = req.guard if req is not None else None
    return {
        "request_id": request_id,
        "task": task,
        "route": route,
        "tenant": req.tenant if req is not None else None,
        "user": req.user if req is not None else None,
        "attempts": [
            {
                "model": a.model,
                "outcome": a.outcome,
                "error_kind": a.error_kind,
                "provider_request_id": a.request_id,
            }
            for a in attempts
        ],
        "retries": retries,
        "fallbacks": fallbacks,
        "degraded_by": degraded,
        "budget_status": "soft_limit" if degraded else "ok",
        "guards": guard.summary() if guard is not None else None,
        "experiment": req.experiment if req is not None else None,
        "variant": req.variant if req is not None else None,
    }


def _content(req: Request, completion: str | None) -> dict[str, Any]:
    """``log_content``: what was sent (already redacted) and the answer, redacted alike."""
    guard = req.guard
    out: dict[str, Any] = {"system": req.system, "messages": [dict(m) for m in req.messages]}
    if completion is not None:
        out["completion"] = guard.redact_output(completion) if guard is not None else completion
    return out
