"""Router: wires a compiled plan to providers, state and a clock. Nothing more.

It parses nothing and retries nothing itself: input handling is in ``prepare``, the
retry loop in ``execute``, decisions in ``stages/``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from policyrouter import execute, streaming
from policyrouter.clock import SYSTEM_CLOCK, Clock
from policyrouter.errors import (
    AllModelsFailed,
    ConfigurationError,
    InputTooLong,
    InvalidRequest,
    PolicyRouterError,
    ProviderError,
    RouterError,
)
from policyrouter.events import EventBus
from policyrouter.fastinit import maker
from policyrouter.plan import Chain, Plan, TaskPlan
from policyrouter.providers.base import Provider
from policyrouter.shapes import OutputSpecs, check_tools
from policyrouter.stages import budget as budget_stage
from policyrouter.stages.cache import answer_from_cache, cache_key, cacheable, input_cache_key
from policyrouter.stages.guard import (
    GuardRun,
    StreamRestorer,
    audit_metadata,
    audit_row,
    guard_error,
    restore,
    stream_restorer,
)
from policyrouter.state import combined
from policyrouter.state.base import CacheEntry, LedgerRow, StateBackend, missing_methods
from policyrouter.tokens import TokenCounter, count_input, count_messages, count_text, truncate
from policyrouter.types import Message, Result, StreamChunk

if TYPE_CHECKING:
    from policyrouter.reload import ReloadResult

if TYPE_CHECKING:  # kept off `import policyrouter`: loaded where used
    import random
    from pathlib import Path

_new_row = maker(LedgerRow)
_ids = itertools.count(1)
_PREFIX = f"pr-{os.getpid():x}-{int.from_bytes(os.urandom(3), 'big'):06x}"


def _request_id() -> str:
    return f"{_PREFIX}-{next(_ids)}"


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
    ) -> None:
        from policyrouter.state.memory import MemoryState

        self._plan = plan
        self._providers = dict(providers)
        self._state: StateBackend = state if state is not None else MemoryState()
        missing = missing_methods(self._state)
        if missing:
            raise ConfigurationError(
                f"state backend {type(self._state).__name__} lacks {', '.join(missing)}: "
                "a state backend implements every method of policyrouter.state.base.StateBackend"
            )
        self._clock: Clock = clock or SYSTEM_CLOCK
        if rng is None:
            import random

            rng = random.Random()
        self._rng = rng
        self._counter: TokenCounter = token_counter or count_text
        self._source_paths = tuple(source_paths)
        self._environ = environ
        self._reload_lock = threading.Lock()
        self._outputs = OutputSpecs()
        self._provider_overrides: Mapping[str, Provider] = {}
        self._watcher: Any = None  # a policyrouter.reload.PolicyWatcher under from_path(watch=True)
        self.events = EventBus()
        attach = getattr(self._state, "attach_events", None)  # shared backends report outages
        if attach is not None:
            attach(self.events.emit)
        # a backend with round trips folds the cache lookup into the first admission, and the
        # last finish into the ledger write (state/combined.py): two round trips per request
        self._fold = hasattr(self._state, "admit_cached")

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
    ) -> Router:
        """Load, validate and compile a policy, then build its providers and state.

        Raises ``PolicyError`` (with every diagnostic) when the policy is invalid.
        No provider client is created and no key is read until a request needs it.
        ``watch=True`` polls the policy files every ``watch_interval_s`` and hot-reloads
        on a change (see :meth:`reload`); ``close()`` stops the watcher.
        """
        from pathlib import Path

        from policyrouter.compile import compile_policy
        from policyrouter.policy.loader import load_policy
        from policyrouter.providers.factory import create_provider
        from policyrouter.state.factory import create_state

        paths = [path] if isinstance(path, (str, Path)) else list(path)
        policy = load_policy(paths[0] if len(paths) == 1 else paths, env)
        plan = compile_policy(policy, env)
        env_vars = environ if environ is not None else os.environ
        built: dict[str, Provider] = {
            name: create_provider(name, spec, environ=env_vars, clock=clock) for name, spec in plan.providers.items()
        }
        if providers:
            built.update(providers)
        router = cls(
            plan,
            built,
            state if state is not None else create_state(plan.state, environ=env_vars),
            clock=clock,
            rng=rng,
            token_counter=token_counter,
            source_paths=paths,
            environ=env_vars,
        )
        router._provider_overrides = dict(providers or {})
        if watch:
            from policyrouter.reload import PolicyWatcher

            router._watcher = PolicyWatcher(router, watch_interval_s).start()
        return router

    def reload(self, path: str | Path | Sequence[str | Path] | None = None) -> ReloadResult:
        """Compile the policy again (or the one at ``path``) and swap it in atomically.

        Returns a :class:`policyrouter.reload.ReloadResult`. An invalid policy keeps the
        current plan and emits an ``error`` event with its diagnostics; requests in flight
        finish on the plan they started with; state (budgets, breakers, cache) is kept.
        """
        from policyrouter.reload import reload_router

        return reload_router(self, path)

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

    def __repr__(self) -> str:
        p = self._plan
        return f"Router(env={p.env!r}, tasks={len(p.tasks)}, fingerprint={p.fingerprint!r})"

    # ------------------------------------------------------------------ requests
    def _task(self, task: str, request_id: str) -> TaskPlan:
        tp = self._plan.tasks.get(task)
        if tp is None:
            from policyrouter.policy.names import closest

            match = closest(task, self._plan.tasks)
            hint = f"; did you mean {match!r}?" if match is not None else ""
            raise InvalidRequest(f"unknown task {task!r}{hint}", task=task, request_id=request_id)
        return tp

    def _messages(
        self, tp: TaskPlan, input: str | None, messages: Sequence[Message] | None, request_id: str
    ) -> tuple[str | None, tuple[Message, ...]]:
        if (input is None) == (messages is None):
            raise InvalidRequest(
                "pass exactly one of input= (a string) or messages= (a list)",
                task=tp.name,
                request_id=request_id,
            )
        if input is not None:
            if not isinstance(input, str):
                raise InvalidRequest("input= must be a string", task=tp.name, request_id=request_id)
            return tp.system, ({"role": "user", "content": input},)
        system = tp.system
        out: list[Message] = []
        for m in messages or ():
            if not isinstance(m, Mapping) or "role" not in m:
                raise InvalidRequest(
                    "each message must be a mapping with 'role' and 'content'",
                    task=tp.name,
                    request_id=request_id,
                )
            if m["role"] == "system" and isinstance(m.get("content"), str):
                system = f"{system}\n\n{m['content']}" if system else m["content"]
                continue
            out.append(dict(m))
        return system, tuple(out)

    def _prepare(
        self,
        task: str,
        input: str | None,
        messages: Sequence[Message] | None,
        *,
        user: str | None,
        tenant: str | None,
        metadata: Mapping[str, Any] | None,
        temperature: float | None,
        max_output_tokens: int | None,
        cache: bool | None,
        extra: dict[str, Any] | None,
        response_model: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        stream: bool = False,
    ) -> tuple[execute.Request, str | None]:
        request_id = _request_id()
        tp = self._task(task, request_id)
        guard = None
        if tp.guards is not None:  # input guards: before anything is counted, cached or sent
            guard = tp.guards.start()
            input, messages = guard.apply(input, messages)
            if guard.verdict is not None:
                raise self._refused(guard_error(guard, tp.name, request_id), guard, user=user, tenant=tenant)
        system, msgs = self._messages(tp, input, messages, request_id)
        output = self._outputs.resolve(tp, response_model, request_id)
        tool_defs = check_tools(tools, tool_choice, tp.name, request_id)
        if stream and output is not None:
            raise InvalidRequest(
                f"task {tp.name!r}: structured outputs are validated whole; use complete(), not stream()",
                task=tp.name,
                request_id=request_id,
            )
        counter = self._counter
        n = count_messages(msgs, system, counter)
        limit = tp.max_input_tokens
        if limit is not None and n > limit:
            if tp.on_input_overflow == "reject":
                too_long = InputTooLong(
                    f"task {tp.name!r}: input is ~{n} tokens, over max_input_tokens={limit}",
                    task=tp.name,
                    request_id=request_id,
                )
                raise self._refused(too_long, guard, user=user, tenant=tenant)
            fitted, n = truncate(msgs, system, limit, tp.on_input_overflow, counter)
            msgs = tuple(fitted)
            input = None  # the messages no longer are the input alone
        route = tp.select(n, metadata, tenant)
        chain, route_name = route.chain, route.name
        now = self._clock.now()
        degraded = self._degrade(tp, chain, tenant, user, metadata)
        if degraded is not None:
            chain, budget_name = degraded
            route_name = f"{route_name}>degraded:{budget_name}"
        temp = temperature if temperature is not None else tp.temperature
        out_tokens = max_output_tokens or tp.max_output_tokens
        key = None
        if cacheable(tp.cache, temp, cache):
            assert tp.cache is not None
            shape = extra or None
            if output is not None or tool_defs:
                shape = {**(extra or {}), "~schema": output.schema if output else None, "~tools": tool_defs}
                shape["~tool_choice"] = tool_choice
            if shape is None and messages is None and isinstance(input, str):
                key = input_cache_key(tp.cache, tp.name, chain, system, input, out_tokens, temp, tenant)
            else:
                key = cache_key(tp.cache, tp.name, chain, system, msgs, out_tokens, temp, tenant, shape)
        # positional, in field order: keyword arguments cost ~0.1 µs each on the hot path
        req = execute.Request(
            request_id,
            tp,  # task
            route_name,
            chain,
            msgs,  # messages
            system,
            n,  # input_tokens
            out_tokens,  # max_output_tokens
            temp,  # temperature
            tenant,
            user,
            metadata,
            extra or {},
            now,  # started
            output,
            tool_defs,  # tools
            tool_choice,
            guard,
            self.events.emit,  # on_event
        )
        return req, key

    def _plain(
        self,
        task: str,
        input: str | None,
        user: str | None,
        tenant: str | None,
        metadata: Mapping[str, Any] | None,
        temperature: float | None,
        max_output_tokens: int | None,
        cache: bool | None,
    ) -> Result | tuple[execute.Request, str | None, bool] | None:
        """``_prepare`` for a plain request (a string input; no messages, extra parameters,
        schema or tools, which the caller checked): the same steps and the same request,
        without the checks and calls that cannot apply. ``None`` when the task needs the
        full ``_prepare`` (an unknown task, a non-string input, guards, a response schema,
        an input over the limit): it raises or does the rest.

        A cached task's answer is looked up once the key is known, before the request is built:
        a fresh entry is the ``Result`` (when nobody listens for events, which need the request);
        else ``(request, key, looked_up)``."""
        tp = self._plan.tasks.get(task)
        if tp is None or type(input) is not str or tp.guards is not None or tp.response_schema is not None:
            return None
        system = tp.system
        n = count_input(input, system, self._counter)
        limit = tp.max_input_tokens
        if limit is not None and n > limit:
            return None
        request_id = _request_id()
        route = tp.select(n, metadata, tenant)
        chain, route_name = route.chain, route.name
        now = self._clock.now()
        if tp.budgets:
            degraded = self._degrade(tp, chain, tenant, user, metadata)
            if degraded is not None:
                chain, budget_name = degraded
                route_name = f"{route_name}>degraded:{budget_name}"
        temp = temperature if temperature is not None else tp.temperature
        out_tokens = max_output_tokens or tp.max_output_tokens
        key = None
        if cacheable(tp.cache, temp, cache):
            assert tp.cache is not None
            key = input_cache_key(tp.cache, tp.name, chain, system, input, out_tokens, temp, tenant)
        looked_up = False
        if key is not None and not self._fold and not self._listened:
            entry = self._state.cache_get(key)
            if entry is not None and entry.expires_at > self._clock.wall():
                r: Result = entry.value
                return answer_from_cache(r, r.text, route_name, self._clock.now() - now, tp.name, request_id, False)
            looked_up = True
        # positional, in field order (see _prepare)
        req = execute.Request(
            request_id,
            tp,
            route_name,
            chain,
            ({"role": "user", "content": input},),  # messages
            system,
            n,
            out_tokens,
            temp,
            tenant,
            user,
            metadata,
            {},  # extra
            now,  # started
            None,  # output
            (),  # tools
            None,  # tool_choice
            None,  # guard
            self.events.emit,
        )
        return req, key, looked_up

    @property
    def _listened(self) -> bool:
        """Someone listens for results or attempts (a cache hit then goes through the request)."""
        return self.events.active("result") or self.events.active("attempt")

    def _degrade(
        self,
        tp: TaskPlan,
        chain: Chain,
        tenant: str | None,
        user: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[Chain, str] | None:
        """Past a budget's soft limit, its ``degrade_to`` tier serves the rest of the window."""
        for b in tp.budgets:
            if b.soft_limit is None or b.scope == "model":
                continue
            wall = self._clock.wall()
            value = budget_stage.scope_value(b, tp.name, tenant, user, None, metadata)
            key, _ = budget_stage.counter_key(b, value, wall)
            spent, reserved = combined.soft_used(self._state, key, wall)
            if spent + reserved >= b.soft_limit * b.limit_usd:
                if self._state.budget_mark_soft(key):
                    self.events.emit(
                        "budget_soft_limit",
                        {"budget": b.name, "key": key, "spent_usd": spent, "limit_usd": b.limit_usd},
                    )
                if b.degrade_to is not None:
                    return b.degrade_to, b.name
        return None

    def _cached(self, req: execute.Request, key: str | None) -> Result | None:
        if key is None:
            return None
        entry = self._state.cache_get(key)
        if entry is None or entry.expires_at <= self._clock.wall():
            return None
        return self._audited(req, self._from_cache(req, entry, stale=False))

    def _folded_hit(self, req: execute.Request, hit: Result) -> Result:
        """A cache hit found by the lookup folded into the first admission (``execute.run``, which
        restored its guarded text)."""
        self.events.emit_result(self._audited(req, hit), req)
        return hit

    def _audited(self, req: execute.Request, hit: Result) -> Result:
        """A cache hit of a guarded request leaves its audit row (nothing billed)."""
        if req.guard is not None:
            self._ledger(req, hit.model, 0.0, (), "cache_hit", None)
        return hit

    def _from_cache(self, req: execute.Request, entry: CacheEntry, *, stale: bool) -> Result:
        r: Result = entry.value
        text, latency_s = restore(req.guard, r.text), self._clock.now() - req.started
        return answer_from_cache(r, text, req.route, latency_s, req.task.name, req.request_id, stale)

    def _finish(self, req: execute.Request, key: str | None, result: Result) -> Result:
        cache = None
        if key is not None and req.task.cache is not None:
            c = req.task.cache
            wall = self._clock.wall()
            cache = (key, CacheEntry(result, wall + c.ttl_s, wall + c.ttl_s + c.stale_if_error_s), c.max_entries)
        finish, req.pending_finish = req.pending_finish, None  # the last attempt's finish, when deferred
        self._ledger(req, result.model, result.cost_usd, result.attempts, "ok", result, cache, finish)
        self.events.emit_result(result, req)
        return result if req.guard is None else replace(result, text=restore(req.guard, result.text))

    def _failed(self, req: execute.Request, key: str | None, exc: RouterError) -> Result | None:
        cost = sum(a.cost_usd for a in exc.attempts)
        if cost > 0 or req.guard is not None:  # spend, or the audit row of a guarded request
            self._ledger(req, exc.attempts[-1].model if exc.attempts else "", cost, exc.attempts, exc.kind, None)
        if key is not None and isinstance(exc, AllModelsFailed) and req.task.cache is not None:
            entry = self._state.cache_get(key)
            if entry is not None and entry.stale_until > self._clock.wall():
                stale = self._from_cache(req, entry, stale=True)
                # the trace and the bill keep the failed attempts that led to the stale answer
                stale = dataclasses.replace(stale, attempts=tuple(exc.attempts), cost_usd=cost)
                self.events.emit_result(stale, req)
                return stale
        self.events.emit_failure(exc, req, self._clock.now() - req.started)
        return None

    def _refused(
        self, exc: RouterError, guard: GuardRun | None, *, user: str | None, tenant: str | None
    ) -> RouterError:
        """A request refused before any call (a guard, the input limit): audit it when the
        task is guarded, emit ``error``, and return ``exc`` to raise."""
        if guard is not None:
            row = audit_row(self._clock.wall(), exc.request_id or "", exc.task or "", guard, exc.kind, user, tenant)
            self._state.ledger_append(row)
        self.events.emit_failure(exc, None, 0.0, guard=guard, tenant=tenant, user=user)
        return exc

    def _ledger(
        self,
        req: execute.Request,
        model: str,
        cost: float,
        attempts: Sequence[Any],
        outcome: str,
        result: Result | None,
        cache: tuple[str, CacheEntry, int] | None = None,
        finish: combined.FinishArgs | None = None,
    ) -> None:
        """Append the ledger row; with ``cache``, store that entry in the same state operation, and
        with ``finish``, also finish the last attempt (``combined.finish_record``)."""
        row = None
        if req.task.budgets or cost != 0 or req.guard is not None:
            row = self._row(req, model, cost, attempts, outcome, result)
        if finish is not None:  # a folding backend (Redis): one round trip for all three
            combined.run_finish_record(self._state, finish, cache, row)
        elif cache is not None or row is not None:
            self._state.record_result(cache, row)

    def _row(
        self,
        req: execute.Request,
        model: str,
        cost: float,
        attempts: Sequence[Any],
        outcome: str,
        result: Result | None,
    ) -> LedgerRow:
        u = result.usage if result is not None else None
        return _new_row(  # positional, every field in order (fastinit.maker)
            self._clock.wall(),  # ts
            req.request_id,
            req.task.name,  # task
            req.route,
            model,
            req.tenant,
            req.user,
            u.input_tokens if u else 0,
            u.output_tokens if u else 0,
            u.cached_input_tokens if u else 0,
            cost,  # cost_usd
            (
                (attempts[0].request_id or "")
                if len(attempts) == 1  # the common case, without a generator
                else ",".join(a.request_id for a in attempts if a.request_id)
            ),  # provider_request_ids
            outcome,
            len(attempts),  # attempts
            "{}" if req.guard is None else audit_metadata(req.guard),  # metadata
        )

    def _begin(
        self,
        task: str,
        input: str | None,
        messages: Sequence[Message] | None,
        user: str | None,
        tenant: str | None,
        metadata: Mapping[str, Any] | None,
        temperature: float | None,
        max_output_tokens: int | None,
        cache: bool | None,
        extra: dict[str, Any] | None,
        response_model: Any,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: Any,
    ) -> Result | tuple[execute.Request, str | None]:
        """What ``complete`` and ``acomplete`` do before the retry loop: the cached answer, or
        the request to run and its cache key. A plain request (a string input, no extra
        parameters, schema or tools) takes the fast paths; on a backend that folds the cache
        lookup into the first admission (Redis), the loop looks it up."""
        looked_up = False
        plain = None
        if messages is None and response_model is None and tools is None and tool_choice is None and not extra:
            plain = self._plain(task, input, user, tenant, metadata, temperature, max_output_tokens, cache)
        if isinstance(plain, Result):
            return plain
        if plain is not None:
            req, key, looked_up = plain
        else:
            req, key = self._prepare(
                task, input, messages, user=user, tenant=tenant, metadata=metadata,
                temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
                response_model=response_model, tools=tools, tool_choice=tool_choice,
            )  # fmt: skip
        if self._fold:
            req.cache_key, req.defer_finish = key, True
            return req, key
        hit = None if looked_up or key is None else self._cached(req, key)
        if hit is not None:
            self.events.emit_result(hit, req)
            return hit
        return req, key

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
    ) -> Result:
        """Run one request through the task's plan, synchronously.

        Safe from many threads and from inside a running event loop (it never touches
        asyncio). Raises a ``policyrouter.errors.RouterError`` carrying the trace.
        """
        begun = self._begin(
            task, input, messages, user, tenant, metadata, temperature, max_output_tokens, cache, extra,
            response_model, tools, tool_choice,
        )  # fmt: skip
        if isinstance(begun, Result):
            return begun
        req, key = begun
        try:
            result = _drive_sync(execute.run(req, self._providers, self._state, self._clock, self._rng), self._clock)
        except RouterError as exc:
            stale = self._failed(req, key, exc)
            if stale is not None:
                return stale
            raise
        if result.cache_hit:
            return self._folded_hit(req, result)
        return self._finish(req, key, result)

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
    ) -> Result:
        """``complete`` for asyncio; cancellation releases reservations and slots."""
        begun = self._begin(
            task, input, messages, user, tenant, metadata, temperature, max_output_tokens, cache, extra,
            response_model, tools, tool_choice,
        )  # fmt: skip
        if isinstance(begun, Result):
            return begun
        req, key = begun
        try:
            result = await _drive_async(
                execute.run(req, self._providers, self._state, self._clock, self._rng), self._clock
            )
        except RouterError as exc:
            stale = self._failed(req, key, exc)
            if stale is not None:
                return stale
            raise
        if result.cache_hit:
            return self._folded_hit(req, result)
        return self._finish(req, key, result)

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
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> Generator[StreamChunk, None, None]:
        """Stream one request: ``text`` / ``tool_call`` deltas, then a ``final`` chunk with
        the ``Result``. Retry and fallback happen only before the first chunk; a failure
        after it raises ``StreamInterrupted`` (or, with ``on_stream_failure: restart``,
        yields a ``reset`` chunk and starts again on the next model). The request is
        checked here, eagerly; breaking out of the loop (or ``close()``) releases the
        budget reservation and closes the connection."""
        req, key = self._prepare(
            task, input, messages, user=user, tenant=tenant, metadata=metadata,
            temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
            tools=tools, tool_choice=tool_choice, stream=True,
        )  # fmt: skip
        return self._stream(req, key)

    def _stream(self, req: execute.Request, key: str | None) -> Generator[StreamChunk, None, None]:
        hit = self._cached(req, key)
        if hit is not None:
            self.events.emit_result(hit)
            yield from _replay(hit)
            return
        gen = execute.run(req, self._providers, self._state, self._clock, self._rng)
        chunks = streaming.drive_stream(gen, self._clock, req.task)
        restorer = stream_restorer(req.guard)
        try:
            for chunk in chunks:
                if chunk.result is None and restorer is None:
                    yield chunk
                else:
                    yield from self._deliver(req, key, restorer, chunk)
        except RouterError as exc:
            stale = self._failed(req, key, exc)
            if stale is None:
                raise
            yield from _replay(stale)
        finally:
            chunks.close()  # a consumer that stops early: close the stream, release the reservation

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
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """``stream`` for asyncio: ``async for chunk in router.astream(...)``. Cancelling
        or ``aclose()`` releases the reservation and closes the connection."""
        req, key = self._prepare(
            task, input, messages, user=user, tenant=tenant, metadata=metadata,
            temperature=temperature, max_output_tokens=max_output_tokens, cache=cache, extra=extra,
            tools=tools, tool_choice=tool_choice, stream=True,
        )  # fmt: skip
        return self._astream(req, key)

    async def _astream(self, req: execute.Request, key: str | None) -> AsyncGenerator[StreamChunk, None]:
        hit = self._cached(req, key)
        if hit is not None:
            self.events.emit_result(hit)
            for chunk in _replay(hit):
                yield chunk
            return
        gen = execute.run(req, self._providers, self._state, self._clock, self._rng)
        chunks = streaming.drive_stream_async(gen, self._clock, req.task)
        restorer = stream_restorer(req.guard)
        try:
            async for chunk in chunks:
                if chunk.result is None and restorer is None:
                    yield chunk
                else:
                    for out in self._deliver(req, key, restorer, chunk):
                        yield out
        except RouterError as exc:
            stale = self._failed(req, key, exc)
            if stale is None:
                raise
            for chunk in _replay(stale):
                yield chunk
        finally:
            await chunks.aclose()

    def _deliver(
        self, req: execute.Request, key: str | None, restorer: StreamRestorer | None, chunk: StreamChunk
    ) -> tuple[StreamChunk, ...]:
        """What the caller gets for one chunk of ``stream``/``astream``: the final chunk
        settled through ``_finish``, guard placeholders put back in text (a split one is
        held until it is whole, flushed before the final chunk and dropped at a reset)."""
        if chunk.result is not None:
            final = StreamChunk("final", result=self._finish(req, key, chunk.result), model=chunk.model)
            tail = restorer.flush() if restorer is not None else ""
            return (StreamChunk("text", text=tail, model=chunk.model), final) if tail else (final,)
        if restorer is None:
            return (chunk,)
        if chunk.type == "text":
            text = restorer.feed(chunk.text)
            return (chunk._replace(text=text),) if text else ()
        if chunk.type == "reset":
            restorer.flush()  # the caller discards everything before a reset
        return (chunk,)

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        task: str,
        *,
        input_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        user: str | None = None,
    ) -> Any:
        """What a request would get (route, chain, limits, retry, worst case); no call made."""
        from policyrouter.explain import explain_task

        return explain_task(self, task, input_tokens=input_tokens, metadata=metadata, tenant=tenant, user=user)

    def on(self, event: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        """Subscribe ``fn`` to ``attempt``, ``result``, ``error``, ``budget_soft_limit``, ``breaker_open``,
        ``state_unavailable`` / ``state_restored`` (a shared state backend failing open), ``reload``."""
        self.events.on(event, fn)

    def health(self, *, providers: bool = True) -> Any:
        """Breakers, budgets and (with ``providers=True``) provider reachability, spending no tokens."""
        from policyrouter.health import check_health

        return check_health(self, providers=providers)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        for p in self._providers.values():
            p.close()
        self._state.close()

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        for p in self._providers.values():
            await p.aclose()
        self._state.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replay(result: Result) -> Iterator[StreamChunk]:
    """A cached (or stale) answer as a stream: its text, its tool calls, the final chunk."""
    if result.text:
        yield StreamChunk("text", text=result.text, model=result.model)
    for index, call in enumerate(result.tool_calls):
        yield StreamChunk("tool_call", tool_call={"index": index, **call}, model=result.model)
    yield StreamChunk("final", result=result, model=result.model)


def _unexpected(exc: Exception) -> ProviderError:
    """A provider raised something its adapter did not classify: record it, don't crash."""
    return ProviderError("unknown", f"unexpected {type(exc).__name__} from provider adapter")


def _drive_sync(gen: Generator[execute.Action, execute.Outcome, Result], clock: Clock) -> Result:
    try:
        action = next(gen)
        while True:
            if type(action) is execute.Call:
                try:
                    outcome: execute.Outcome = action.provider.complete(action.request)
                except ProviderError as e:
                    outcome = e
                except PolicyRouterError:
                    raise
                except Exception as e:
                    outcome = _unexpected(e)
                action = gen.send(outcome)
            else:
                assert isinstance(action, execute.Sleep)
                clock.sleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        result: Result = stop.value
        return result
    finally:
        gen.close()


async def _drive_async(gen: Generator[execute.Action, execute.Outcome, Result], clock: Clock) -> Result:
    """Cancellation and errors propagate; ``gen.close()`` unwinds the loop's ``finally``
    blocks, which release reservations and slots."""
    try:
        action = next(gen)
        while True:
            if type(action) is execute.Call:
                try:
                    outcome: execute.Outcome = await action.provider.acomplete(action.request)
                except ProviderError as e:
                    outcome = e
                except PolicyRouterError:
                    raise
                except Exception as e:
                    outcome = _unexpected(e)
                action = gen.send(outcome)
            else:
                assert isinstance(action, execute.Sleep)
                await clock.asleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        result: Result = stop.value
        return result
    finally:
        gen.close()
