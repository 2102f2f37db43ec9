"""Prepare: a call's arguments become one frozen :class:`Request`, before anything is sent.

Every request is prepared here and only here: the task, input guards, messages, output
shape and tools, token count and truncation, route, degrade past a soft limit, and the
cache key. What fails here fails before any call or reservation.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from policyrouter.clock import Clock
from policyrouter.engine._events import EventBus
from policyrouter.engine._request import Ask, Request
from policyrouter.engine._shapes import OutputSpecs, check_tools
from policyrouter.errors import InputTooLong, InvalidRequest, RouterError
from policyrouter.plan import Chain, Plan, TaskPlan
from policyrouter.policy.names import closest
from policyrouter.stages import budget as budget_rules
from policyrouter.stages.cache import cache_key, cacheable
from policyrouter.stages.guard import GuardRun, audit_row, guard_error
from policyrouter.stages.output import OutputSpec
from policyrouter.stages.prompt_cache import prefix_tokens
from policyrouter.state.base import Record, StateBackend
from policyrouter.tokens import TokenCounter, count_messages, truncate
from policyrouter.types import Message, Reasoning

__all__ = ["Routed", "degrade", "input_limit", "new_request_id", "prepare", "refuse", "route", "task_plan"]

_ids = itertools.count(1)
_PREFIX = f"pr-{os.getpid():x}-{int.from_bytes(os.urandom(3), 'big'):06x}"


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_ids)}"


def prepare(
    plan: Plan,
    ask: Ask,
    *,
    counter: TokenCounter,
    outputs: OutputSpecs,
    state: StateBackend,
    clock: Clock,
    events: EventBus,
) -> Request:
    """Check and shape ``ask`` into a :class:`Request`; a refusal raises a ``RouterError``
    (audited and emitted as an ``error`` event) before anything is sent."""
    request_id = ask.request_id or new_request_id()
    tp = task_plan(plan, ask.task, request_id)
    _check_arguments(tp, ask, request_id)
    tp, experiment, variant = _assign_variant(tp, ask, clock)
    guard, input, messages = _guard_input(tp, ask, request_id, state, clock, events)
    system, msgs = _messages(tp, input, messages)
    output, tools = _output_and_tools(tp, ask, outputs, request_id)
    try:
        msgs, n = _fit(tp, system, msgs, counter, request_id)
    except InputTooLong as too_long:
        raise refuse(too_long, guard, ask, state, clock, events) from None
    route_name, chain, _, reasoning = route(tp, n, ask.tenant, ask.user, ask.metadata, state, clock, events)
    temperature = ask.temperature if ask.temperature is not None else tp.temperature
    out_tokens = ask.max_output_tokens or tp.max_output_tokens
    key = None
    if tp.cache is not None and cacheable(tp.cache, temperature, ask.cache):
        shape = _answer_shape(ask, output, tools, reasoning)
        key = cache_key(tp.cache, tp.name, chain.upstreams, system, msgs, out_tokens, temperature, ask.tenant, shape)
    return Request(
        request_id=request_id,
        task=tp,
        route=route_name,
        chain=chain,
        messages=msgs,
        system=system,
        input_tokens=n,
        max_output_tokens=out_tokens,
        temperature=temperature,
        tenant=ask.tenant,
        user=ask.user,
        metadata=ask.metadata,
        started=clock.now(),
        extra=dict(ask.extra or {}),
        output=output,
        tools=tools,
        tool_choice=ask.tool_choice,
        guard=guard,
        cache_key=key,
        reasoning=reasoning,
        prompt_prefix=prefix_tokens(tools, system, msgs, counter) if tp.prompt_cache is not None else None,
        experiment=experiment,
        variant=variant,
    )


def _assign_variant(tp: TaskPlan, ask: Ask, clock: Clock) -> tuple[TaskPlan, str | None, str | None]:
    """The plan that runs the request (an experiment's variant, else its control), with the
    experiment and variant names when a variant was assigned."""
    if tp.experiment is None:
        return tp, None, None
    assigned = tp.experiment.assign(ask.user, ask.tenant, clock.wall())
    if assigned is None:
        return tp.experiment.control.task, None, None
    return assigned.task, tp.experiment.name, assigned.name


def _guard_input(
    tp: TaskPlan, ask: Ask, request_id: str, state: StateBackend, clock: Clock, events: EventBus
) -> tuple[GuardRun | None, str | None, Sequence[Message] | None]:
    """The input guards' run and the input and messages they let through (masked where they
    say); a guard's refusal raises, before anything is counted, cached or sent."""
    if tp.guards is None:
        return None, ask.input, ask.messages
    guard = tp.guards.start()
    input, messages = guard.apply(ask.input, ask.messages)
    if guard.verdict is not None:
        raise refuse(guard_error(guard, tp.name, request_id), guard, ask, state, clock, events)
    return guard, input, messages


def _output_and_tools(
    tp: TaskPlan, ask: Ask, outputs: OutputSpecs, request_id: str
) -> tuple[OutputSpec | None, tuple[dict[str, Any], ...]]:
    """The output shape and the tools asked for; a structured output cannot be streamed."""
    output = outputs.resolve(tp, ask.response_model, request_id)
    tools = check_tools(ask.tools, ask.tool_choice, tp.name, request_id)
    if ask.stream and output is not None:
        raise _invalid(tp, request_id, "structured outputs are validated whole; use complete(), not stream()")
    return output, tools


def _answer_shape(
    ask: Ask, output: OutputSpec | None, tools: tuple[dict[str, Any], ...], reasoning: Reasoning | None
) -> Any:
    """What besides the prompt decides the answer, for the cache key: extra parameters, the
    output schema and tools when there are any, and how hard the model thinks."""
    shape = _call_shape(ask, output, tools)
    if reasoning is None:
        return shape
    return {"~shape": shape, "~reasoning": [reasoning.effort, reasoning.budget_tokens]}


def _call_shape(ask: Ask, output: OutputSpec | None, tools: tuple[dict[str, Any], ...]) -> Any:
    """Extra parameters, and the output schema and tools when there are any."""
    if output is None and not tools:
        return ask.extra or None
    return {
        **(ask.extra or {}),
        "~schema": output.schema if output else None,
        "~tools": tools,
        "~tool_choice": ask.tool_choice,
    }


def _fit(
    tp: TaskPlan, system: str | None, msgs: tuple[Message, ...], counter: TokenCounter, request_id: str
) -> tuple[tuple[Message, ...], int]:
    """The messages and their token count, within ``max_input_tokens``: truncated as the task
    says, or ``InputTooLong`` (``on_input_overflow: reject``)."""
    n = count_messages(msgs, system, counter)
    limit = input_limit(tp, n, request_id)
    if limit is None:
        return msgs, n
    fitted, n = truncate(msgs, system, limit, tp.on_input_overflow, counter)
    return tuple(fitted), n


def input_limit(tp: TaskPlan, input_tokens: int, request_id: str) -> int | None:
    """``None`` when ``input_tokens`` fits ``max_input_tokens``; else the limit to truncate to,
    or ``InputTooLong`` when the task says ``on_input_overflow: reject``."""
    limit = tp.max_input_tokens
    if limit is None or input_tokens <= limit:
        return None
    if tp.on_input_overflow == "reject":
        raise InputTooLong(
            f"task {tp.name!r}: input is ~{input_tokens} tokens, over max_input_tokens={limit}",
            task=tp.name,
            request_id=request_id,
        )
    return limit


class Routed(NamedTuple):
    """The route a request takes: its name and chain, the budget whose soft limit degraded it
    (``None`` when it was not), and the effort/budget the route asks of reasoning models."""

    name: str
    chain: Chain
    degraded_by: str | None
    reasoning: Reasoning | None


def route(
    tp: TaskPlan,
    input_tokens: int,
    tenant: str | None,
    user: str | None,
    metadata: Mapping[str, Any] | None,
    state: StateBackend,
    clock: Clock,
    events: EventBus,
) -> Routed:
    """The route the request takes (the task's first matching route, then any degrade)."""
    chosen = tp.select(input_tokens, metadata, tenant)
    degraded = degrade(tp, tenant, user, metadata, state, clock.wall(), events)
    if degraded is None:
        return Routed(chosen.name, chosen.chain, None, chosen.reasoning)
    chain, budget_name = degraded
    return Routed(f"{chosen.name}>degraded:{budget_name}", chain, budget_name, chosen.reasoning)


def degrade(
    tp: TaskPlan,
    tenant: str | None,
    user: str | None,
    metadata: Mapping[str, Any] | None,
    state: StateBackend,
    wall: float,
    events: EventBus,
) -> tuple[Chain, str] | None:
    """Past a budget's soft limit (on its USD or its token counter), its ``degrade_to`` tier serves
    the rest of the window (a ``budget_soft_limit`` event the first time in the window)."""
    for b in tp.budgets:
        if b.soft_limit is None or b.scope == "model":
            continue
        value = budget_rules.scope_value(b, tp.name, tenant, user, None, metadata)
        for unit, limit in budget_rules.limits(b):
            key, _ = budget_rules.counter_key(b, value, wall, unit)
            spent, reserved = state.budget_used_recent(key, wall)
            if spent + reserved < b.soft_limit * limit:
                continue
            if state.budget_mark_soft(key):
                events.emit(
                    "budget_soft_limit", {"budget": b.name, "key": key, f"spent_{unit}": spent, f"limit_{unit}": limit}
                )
            if b.degrade_to is not None:
                return b.degrade_to, b.name
    return None


def refuse(
    exc: RouterError,
    guard: GuardRun | None,
    ask: Ask,
    state: StateBackend,
    clock: Clock,
    events: EventBus,
) -> RouterError:
    """A request refused before any call (a guard, the input limit): audit it when the task is
    guarded, emit ``error``, and return ``exc`` to raise."""
    if guard is not None:
        row = audit_row(clock.wall(), exc.request_id or "", exc.task or "", guard, exc.kind, ask.user, ask.tenant)
        state.record(Record(row=row))
    events.emit_failure(exc, None, 0.0, guard=guard, tenant=ask.tenant, user=ask.user)
    return exc


def task_plan(plan: Plan, task: str, request_id: str) -> TaskPlan:
    """The plan of ``task``, or ``InvalidRequest`` (with a "did you mean")."""
    if not isinstance(task, str):
        raise InvalidRequest(
            f"task= must be a string naming a task, not {type(task).__name__}",
            request_id=request_id,
            arguments=("task",),
        )
    tp = plan.tasks.get(task)
    if tp is None:
        match = closest(task, plan.tasks)
        hint = f"; did you mean {match!r}?" if match is not None else ""
        raise InvalidRequest(f"unknown task {task!r}{hint}", task=task, request_id=request_id, arguments=("task",))
    return tp


ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
"""The message roles both protocols take (``developer`` is folded into the system prompt like ``system``)."""
_SCALARS = (str, int, float, bool, type(None))
MAX_OUTPUT_TOKENS = 2**31 - 1
"""The largest ``max_output_tokens=`` taken: beyond it no provider answers and budgets lose precision."""

Problem = tuple[str, str]
"""An argument at fault, and what is wrong with it (a sentence that names it)."""


def _check_arguments(tp: TaskPlan, ask: Ask, request_id: str) -> None:
    """Every argument has the type and range it is documented with, else one ``InvalidRequest``
    naming each argument at fault (never a ``TypeError`` from deep inside a call). Runs before
    the guards, the token count and the cache: nothing is sent, reserved or billed."""
    problems = [*_scalar_problems(ask), *_prompt_problems(ask)]
    if problems:
        names = tuple(dict.fromkeys(name for name, _ in problems))
        message = "; ".join(dict.fromkeys(what for _, what in problems))
        raise InvalidRequest(f"task {tp.name!r}: {message}", task=tp.name, request_id=request_id, arguments=names)


def _scalar_problems(ask: Ask) -> Iterator[Problem]:
    """``user``, ``tenant``, ``metadata``, ``extra``, ``temperature``, ``max_output_tokens``, ``cache``."""
    for name, text in (("user", ask.user), ("tenant", ask.tenant)):
        if text is not None and (not isinstance(text, str) or not text):
            yield name, f"{name}= must be a non-empty string (got {_kind(text)})"
    if ask.metadata is not None:
        if not isinstance(ask.metadata, Mapping):
            yield "metadata", f"metadata= must be a mapping (got {_kind(ask.metadata)})"
        elif not all(isinstance(k, str) for k in ask.metadata):
            yield "metadata", "metadata= keys must be strings"
        elif not all(isinstance(v, _SCALARS) for v in ask.metadata.values()):
            yield "metadata", "metadata= values must be str, int, float, bool or None"
    if ask.extra is not None and (not isinstance(ask.extra, Mapping) or not all(isinstance(k, str) for k in ask.extra)):
        yield "extra", f"extra= must be a mapping with string keys (got {_kind(ask.extra)})"
    t = ask.temperature
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 2):
        got = f"{t!r}" if isinstance(t, (int, float)) and not isinstance(t, bool) else _kind(t)
        yield "temperature", f"temperature= must be a number from 0 to 2 (got {got})"
    m = ask.max_output_tokens
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_OUTPUT_TOKENS):
        got = f"{m!r}" if isinstance(m, int) and not isinstance(m, bool) else _kind(m)
        yield "max_output_tokens", f"max_output_tokens= must be an integer from 1 to {MAX_OUTPUT_TOKENS} (got {got})"
    if ask.cache is not None and not isinstance(ask.cache, bool):
        yield "cache", f"cache= must be True, False or None (got {_kind(ask.cache)})"
    if ask.stream and ask.response_model is not None:
        yield "response_model", "response_model= cannot be streamed (outputs are validated whole); use complete()"


def _prompt_problems(ask: Ask) -> Iterator[Problem]:
    """Exactly one of ``input`` (text, not only whitespace) and ``messages`` (well-formed, at least
    one besides system messages). The values are never echoed: they may hold personal data."""
    if (ask.input is None) == (ask.messages is None):
        both = "pass exactly one of input= (a string) or messages= (a list)"
        yield "input", both
        yield "messages", both
        return
    if ask.input is not None:
        if not isinstance(ask.input, str):
            yield "input", f"input= must be a string (got {_kind(ask.input)})"
        elif not ask.input.strip():
            yield "input", "input= is empty or only whitespace: there is nothing to ask"
        return
    messages = ask.messages
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        yield "messages", f"messages= must be a list of messages (got {_kind(messages)})"
        return
    if not messages:
        yield "messages", "messages= is empty: there is nothing to ask"
        return
    for i, m in enumerate(messages):
        what = _message_problem(m)
        if what is not None:
            yield "messages", f"messages[{i}] {what}"
    if all(isinstance(m, Mapping) and m.get("role") in ("system", "developer") for m in messages):
        yield "messages", "messages= holds only system messages: there is nothing to answer"


def _message_problem(m: Any) -> str | None:
    """What is wrong with one message, or ``None``."""
    if not isinstance(m, Mapping):
        return f"must be a mapping with 'role' and 'content' (got {_kind(m)})"
    role, content = m.get("role"), m.get("content")
    if role not in ROLES:
        match = closest(role, ROLES) if isinstance(role, str) else None
        hint = f" (did you mean {match!r}?)" if match is not None else ""
        return f"has an unknown role{hint}; expected one of {', '.join(sorted(ROLES))}"
    if content is None:
        if role == "assistant" and m.get("tool_calls"):
            return None  # an assistant turn that only calls tools
        return "has no 'content'"
    if isinstance(content, str):
        if role == "user" and not content.strip():
            return "is a user message with empty or whitespace-only content"
        return None
    if isinstance(content, (list, tuple)):
        if all(isinstance(part, Mapping) and isinstance(part.get("type"), str) for part in content):
            return None
        return "has a content list whose parts are not all mappings with a 'type'"
    return f"has content of type {type(content).__name__}; expected a string or a list of content parts"


def _kind(value: Any) -> str:
    """How a refused value is shown: its type only (a value may hold personal data)."""
    return "None" if value is None else type(value).__name__


def _invalid(tp: TaskPlan, request_id: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"task {tp.name!r}: {message}", task=tp.name, request_id=request_id)


def _messages(
    tp: TaskPlan, input: str | None, messages: Sequence[Message] | None
) -> tuple[str | None, tuple[Message, ...]]:
    """The system prompt (the task's, then the caller's system messages) and the other messages
    (``_check_arguments`` already checked their shape)."""
    if input is not None:
        return tp.system, ({"role": "user", "content": input},)
    system = tp.system
    out: list[Message] = []
    for m in messages or ():
        if m["role"] == "system" and isinstance(m.get("content"), str):
            system = f"{system}\n\n{m['content']}" if system else m["content"]
            continue
        out.append(dict(m))
    return system, tuple(out)
