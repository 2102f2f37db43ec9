"""Router: wires a compiled plan to providers, state and a clock. Nothing more.

It parses nothing and retries nothing itself. Every request takes one path:
``engine.prepare`` (a frozen ``Request``) -> ``Engine.run`` (the only retry loop,
cache hits included) -> a driver (sync, async, stream) -> the engine's finish (ledger, cache,
events). Decisions live in ``stages/``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyrouter.clock import SYSTEM_CLOCK, Clock
from policyrouter.engine import (
    Ask,
    Engine,
    EventBus,
    OutputSpecs,
    Request,
    drive_async,
    drive_stream,
    drive_stream_async,
    drive_sync,
    prepare,
)
from policyrouter.errors import ConfigurationError, InvalidRequest, ProviderError
from policyrouter.explain import Explanation, explain_task
from policyrouter.health import HealthReport, check_health
from policyrouter.plan import Plan
from policyrouter.providers.base import Provider
from policyrouter.providers.base import missing_methods as missing_provider_methods
from policyrouter.queue.base import JobInfo, QueueEngine
from policyrouter.queue.jobs import Jobs
from policyrouter.reload import PolicyWatcher, Reloaded, ReloadResult, compile_again
from policyrouter.state.base import StateBackend, missing_methods
from policyrouter.state.memory import MemoryState
from policyrouter.tokens import TokenCounter, count_text
from policyrouter.types import FeedbackRow, Message, Result, StreamChunk

MAX_LABEL = 128
"""Longest ``label=`` of ``Router.feedback``."""

if TYPE_CHECKING:  # kept off `import policyrouter`: loaded where used
    import random

__all__ = ["Router"]

log = logging.getLogger("policyrouter")


class Router:
    """Runs requests through a compiled plan.

    ``Router(plan, providers, state, clock=..., rng=...)`` takes its collaborators;
    ``Router.from_path("policies/", env="prod")`` builds them from a policy.
    """

    def __init__(
        self,
        plan: Plan,
        providers: Mapping[str, Provider],
        state: StateBackend | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        token_counter: TokenCounter | None = None,
        source_paths: Sequence[str | Path] = (),
        environ: Mapping[str, str] | None = None,
        events: EventBus | None = None,
        queue: QueueEngine | None = None,
    ) -> None:
        self._plan = plan
        self._queue = queue  # else opened beside the state on the first job call
        self._providers = dict(providers)
        self._state: StateBackend = state if state is not None else MemoryState()
        missing = missing_methods(self._state)
        if missing:
            raise ConfigurationError(
                f"state backend {type(self._state).__name__} lacks {', '.join(missing)}: "
                "a state backend implements every method of policyrouter.state.base.StateBackend"
            )
        for name, provider in self._providers.items():
            lacking = missing_provider_methods(provider)
            if lacking:
                raise ConfigurationError(
                    f"provider {name!r} ({type(provider).__name__}) lacks {', '.join(lacking)}: "
                    "a provider implements every method of policyrouter.Provider"
                )
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._rng = _rng_or_new(rng)
        self._counter: TokenCounter = token_counter or count_text
        self._source_paths = tuple(source_paths)
        self._environ = environ
        self._reload_lock = threading.Lock()
        self._outputs = OutputSpecs()
        self._provider_overrides: Mapping[str, Provider] = {}
        self._watcher: PolicyWatcher | None = None  # under from_path(watch=True)
        self.events = events if events is not None else EventBus()  # given: the providers emit on it too
        self._state.attach_events(self.events.emit)  # a shared backend reports its outages
        self._engine = Engine(self._providers, self._state, self._clock, self._rng, self.events)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_path(
        cls,
        path: str | Path | Sequence[str | Path],
        env: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        state: StateBackend | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        providers: Mapping[str, Provider] | None = None,
        token_counter: TokenCounter | None = None,
        watch: bool = False,
        watch_interval_s: float = 1.0,
        warm: bool = False,
    ) -> Router:
        """Load, validate and compile a policy, then build its providers and state.

        Raises ``PolicyError`` (with every diagnostic) when the policy is invalid.
        No provider client is created and no key is read until a request needs it, unless
        ``warm=True``: then :meth:`warm` runs before this returns (a missing key raises
        ``ConfigurationError`` here; an unreachable provider is logged as a warning).
        ``watch=True`` polls the policy files every ``watch_interval_s`` and hot-reloads
        on a change (see :meth:`reload`); ``close()`` stops the watcher.
        """
        from policyrouter.state.factory import create_state

        paths = [path] if isinstance(path, (str, Path)) else list(path)
        plan = _compile(paths, env)
        env_vars = environ if environ is not None else os.environ
        rng = _rng_or_new(rng)
        bus = EventBus()  # the providers report their keys on the router's bus
        built = {**_create_providers(plan, env_vars, clock, rng, bus), **(providers or {})}
        router = cls(
            plan,
            built,
            state if state is not None else create_state(plan.state, environ=env_vars),
            clock=clock,
            rng=rng,
            token_counter=token_counter,
            source_paths=paths,
            environ=env_vars,
            events=bus,
        )
        router._provider_overrides = dict(providers or {})
        if warm:
            router._warm_or_close()
        if watch:
            router._watcher = PolicyWatcher(router, watch_interval_s).start()
        return router

    def _warm_or_close(self) -> None:
        """:meth:`warm` at construction: a missing key closes the router (giving back the state
        it opened) and raises; an unreachable provider is only logged."""
        try:
            unreachable = self.warm()
        except BaseException:
            self.close()
            raise
        for name, exc in unreachable.items():
            log.warning("policyrouter: provider %r could not be warmed (%s: %s)", name, exc.kind, exc.message[:200])

    def reload(self, path: str | Path | Sequence[str | Path] | None = None) -> ReloadResult:
        """Compile the policy again (or the one at ``path``) and swap it in atomically.

        Returns a :class:`policyrouter.reload.ReloadResult`. An invalid policy keeps the
        current plan and emits an ``error`` event with its diagnostics; requests in flight
        finish on the plan they started with; state (budgets, breakers, cache) is kept.
        """
        if path is not None:
            paths: tuple[str | Path, ...] = (path,) if isinstance(path, (str, Path)) else tuple(path)
        else:
            paths = self._source_paths
        if not paths:
            raise ConfigurationError("this router was not built from a policy path; call reload(path)")
        with self._reload_lock:
            out = compile_again(
                paths,
                self._plan,
                self._providers,
                self._provider_overrides,
                environ=self._environ if self._environ is not None else os.environ,
                clock=self._clock,
                rng=self._rng,
                events=self.events,
            )
            if isinstance(out, Reloaded):
                # providers (a superset) before the plan: no request sees a plan without its providers
                self._providers = out.providers
                self._engine = Engine(out.providers, self._state, self._clock, self._rng, self.events)
                self._plan = out.plan
                self.events.emit("reload", out.event)
                out = out.result
            if out.ok:
                self._source_paths = paths
            return out

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def state(self) -> StateBackend:
        return self._state

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def source_paths(self) -> tuple[str | Path, ...]:
        """The policy files or directories this router was built from (what ``reload()`` reads)."""
        return self._source_paths

    def __repr__(self) -> str:
        p = self._plan
        return f"Router(env={p.env!r}, tasks={len(p.tasks)}, fingerprint={p.fingerprint!r})"

    # ------------------------------------------------------------------ requests
    def _prepare(self, ask: Ask) -> Request:
        return prepare(
            self._plan,
            ask,
            counter=self._counter,
            outputs=self._outputs,
            state=self._state,
            clock=self._clock,
            events=self.events,
        )

    def complete(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        user: str | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        cache: bool | None = None,
        extra: dict[str, Any] | None = None,
        response_model: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        request_id: str | None = None,
    ) -> Result:
        """Run one request through the task's plan, synchronously.

        Safe from many threads and from inside a running event loop (it never touches
        asyncio). Raises a ``policyrouter.errors.RouterError`` carrying the trace.
        ``request_id`` names the request in its trace, events and ledger row (a worker passes the
        job id, so a job delivered twice is found in the ledger); default: a new id.
        """
        req = self._prepare(
            Ask(task=task, input=input, messages=messages, user=user, tenant=tenant, metadata=metadata,
                temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
                response_model=response_model, tools=tools, tool_choice=tool_choice, request_id=request_id)
        )  # fmt: skip
        return drive_sync(self._engine.run(req), self._clock)

    async def acomplete(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        user: str | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        cache: bool | None = None,
        extra: dict[str, Any] | None = None,
        response_model: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        request_id: str | None = None,
    ) -> Result:
        """``complete`` for asyncio; cancellation releases reservations and slots."""
        req = self._prepare(
            Ask(task=task, input=input, messages=messages, user=user, tenant=tenant, metadata=metadata,
                temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
                response_model=response_model, tools=tools, tool_choice=tool_choice, request_id=request_id)
        )  # fmt: skip
        return await drive_async(self._engine.run(req), self._clock)

    # ------------------------------------------------------------------ streams
    def stream(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        user: str | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        cache: bool | None = None,
        extra: dict[str, Any] | None = None,
        response_model: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> Generator[StreamChunk, None, None]:
        """Stream one request: ``text`` / ``tool_call`` deltas, then a ``final`` chunk with
        the ``Result``. Retry and fallback happen only before the first chunk; a failure
        after it raises ``StreamInterrupted`` (or, with ``on_stream_failure: restart``,
        yields a ``reset`` chunk and starts again on the next model). The request is
        checked here, eagerly (``response_model=`` is refused: structured outputs are
        validated whole, so use ``complete``); breaking out of the loop (or ``close()``) releases the
        budget reservation and closes the connection."""
        req = self._prepare(
            Ask(task=task, input=input, messages=messages, user=user, tenant=tenant, metadata=metadata,
                temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
                response_model=response_model, tools=tools, tool_choice=tool_choice, stream=True)
        )  # fmt: skip
        return drive_stream(self._engine.run(req), self._clock, req)

    def astream(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        user: str | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        cache: bool | None = None,
        extra: dict[str, Any] | None = None,
        response_model: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """``stream`` for asyncio: ``async for chunk in router.astream(...)``. Cancelling
        or ``aclose()`` releases the reservation and closes the connection."""
        req = self._prepare(
            Ask(task=task, input=input, messages=messages, user=user, tenant=tenant, metadata=metadata,
                temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
                response_model=response_model, tools=tools, tool_choice=tool_choice, stream=True)
        )  # fmt: skip
        return drive_stream_async(self._engine.run(req), self._clock, req)

    # ------------------------------------------------------------------ jobs
    def jobs(self) -> Jobs:
        """The job API over this plan's ``queues:`` (what ``submit`` and workers use); opens the
        queue engine beside the state (same SQLite file or Redis) on first use."""
        if self._queue is None:
            from policyrouter.queue.factory import create_queue

            self._queue = create_queue(self._plan.state, environ=self._environ)
        return Jobs(self._plan.queues, self._queue, self._clock)

    def submit(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        priority: int | None = None,
        tenant: str | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        not_after: float | None = None,
    ) -> str:
        """Queue the request on the queue serving ``task``; returns its job id at once.

        ``priority`` (1 first) overrides the class the queue's rules give; a submit with an
        ``idempotency_key`` already seen returns the first job's id; a job not started by
        ``not_after`` (epoch seconds) expires. Workers run it like ``complete``.
        """
        return self.jobs().submit(task, input, messages, priority=priority, tenant=tenant, user=user,
                                  metadata=metadata, idempotency_key=idempotency_key, not_after=not_after)  # fmt: skip

    async def asubmit(
        self,
        task: str,
        input: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        priority: int | None = None,
        tenant: str | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        not_after: float | None = None,
    ) -> str:
        """``submit`` for asyncio (the engine call runs on a thread, off the event loop)."""
        import asyncio

        return await asyncio.to_thread(self.submit, task, input, messages=messages, priority=priority, tenant=tenant,
                                       user=user, metadata=metadata, idempotency_key=idempotency_key,
                                       not_after=not_after)  # fmt: skip

    def job(self, job_id: str) -> JobInfo:
        """A job's status, its position and estimated start while queued, its result or error
        (with the trace) once done. Raises ``JobNotFound``."""
        return self.jobs().job(job_id)

    def wait(self, job_id: str, timeout: float | None = None, *, poll_s: float = 0.2) -> JobInfo:
        """Block until the job is final; raises ``JobTimeout`` after ``timeout`` seconds."""
        return self.jobs().wait(job_id, timeout, poll_s)

    async def await_job(self, job_id: str, timeout: float | None = None, *, poll_s: float = 0.2) -> JobInfo:
        """``wait`` for asyncio."""
        return await self.jobs().await_job(job_id, timeout, poll_s)

    def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job (True); a running or finished one is left as it is (False)."""
        return self.jobs().cancel(job_id)

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        task: str,
        *,
        input_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        user: str | None = None,
    ) -> Explanation:
        """What a request would get (route, chain, limits, retry, worst case); no call made."""
        return explain_task(
            self._plan,
            self._state,
            task,
            input_tokens=input_tokens,
            metadata=metadata,
            tenant=tenant,
            user=user,
            wall=self._clock.wall(),
        )

    def feedback(self, request_id: str, score: float | None = None, label: str | None = None) -> None:
        """Record a quality signal about an answered request (``Result.request_id``): a ``score`` (any
        finite number, e.g. 0/1 or 1-5), a ``label`` (e.g. ``"thumbs_up"``), or both. The last feedback
        given for a request replaces the earlier one; experiment reports average the scores per variant."""
        problems = []
        if not isinstance(request_id, str) or not request_id:
            problems.append(("request_id", "request_id= must be the non-empty request_id of a Result"))
        if score is None and label is None:
            problems.append(("score", "give score= or label= (or both)"))
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)
        ):
            problems.append(("score", f"score= must be a finite number (got {type(score).__name__})"))
        if label is not None and (not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL):
            problems.append(("label", f"label= must be a string of 1 to {MAX_LABEL} characters"))
        if problems:
            raise InvalidRequest(
                "; ".join(what for _, what in problems), arguments=tuple(dict.fromkeys(n for n, _ in problems))
            )
        row = FeedbackRow(self._clock.wall(), request_id, float(score) if score is not None else None, label)
        self._state.feedback_put(row)
        self.events.emit("feedback", {"request_id": request_id, "score": row.score, "label": label})

    def on(self, event: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        """Subscribe ``fn`` to ``attempt``, ``result``, ``error``, ``budget_soft_limit``, ``breaker_open``,
        ``state_unavailable`` / ``state_restored`` (a shared state backend failing open), ``reload``,
        ``key_missing`` / ``key_set_aside`` (a provider's rotated keys), ``usage_estimated``,
        ``limit_learned`` (an adaptive model's rate-limit headers, read), ``feedback``, ``job`` (a
        worker ended a job's delivery)."""
        self.events.on(event, fn)

    def health(self, *, providers: bool = True) -> HealthReport:
        """Breakers, budgets and (with ``providers=True``) provider reachability, spending no tokens."""
        return check_health(self._plan, self._state, self._providers, self._clock.wall(), providers=providers)

    # ------------------------------------------------------------------ lifecycle
    def warm(self, *, timeout_s: float = 5.0) -> dict[str, ProviderError]:
        """Build the sync client of every provider a model uses and open a connection to each,
        with a request that bills nothing (``GET /v1/models`` on OpenAI and Anthropic), so the
        first request pays neither the SDK import nor the TCP and TLS handshakes.

        Returns the providers that could not be reached, by name (``{}`` when all were); a
        misconfigured provider (its key variable unset) raises ``ConfigurationError``. Async
        clients belong to an event loop: warm them with :meth:`awarm` inside that loop.
        """
        unreachable: dict[str, ProviderError] = {}
        for name in self._used_providers():
            try:
                self._providers[name].warm(timeout_s=timeout_s)
            except ProviderError as exc:
                unreachable[name] = exc
        return unreachable

    async def awarm(self, *, timeout_s: float = 5.0) -> dict[str, ProviderError]:
        """:meth:`warm` for the running event loop's async clients, every provider at once."""
        import asyncio

        names = self._used_providers()
        warming = (self._providers[name].awarm(timeout_s=timeout_s) for name in names)
        outcomes = await asyncio.gather(*warming, return_exceptions=True)
        unreachable: dict[str, ProviderError] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, ProviderError):
                unreachable[name] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return unreachable

    def _used_providers(self) -> list[str]:
        """The providers some model of the plan calls (another may lack a key it never needs)."""
        return sorted({m.provider for m in self._plan.models.values()})

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        for p in self._providers.values():
            p.close()
        self._state.close()
        if self._queue is not None:
            self._queue.close()

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        for p in self._providers.values():
            await p.aclose()
        self._state.close()
        if self._queue is not None:
            self._queue.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rng_or_new(rng: random.Random | None) -> random.Random:
    """``rng``, else a new one (``random`` is imported here, off ``import policyrouter``)."""
    if rng is not None:
        return rng
    import random

    return random.Random()


def _compile(paths: list[str | Path], env: str | None) -> Plan:
    """Load, validate and compile the policy at ``paths`` (one path alone is passed as is)."""
    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy

    policy = load_policy(paths[0] if len(paths) == 1 else paths, env)
    return compile_policy(policy, env)


def _create_providers(
    plan: Plan, environ: Mapping[str, str], clock: Clock | None, rng: random.Random, bus: EventBus
) -> dict[str, Provider]:
    """A provider for each of the plan's provider specs, reporting its key events on ``bus``."""
    from policyrouter.providers.factory import create_provider

    return {
        name: create_provider(name, spec, environ=environ, clock=clock, rng=rng, events=bus.emit)
        for name, spec in plan.providers.items()
    }
