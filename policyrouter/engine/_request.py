"""What a caller asks (:class:`Ask`) and what the engine runs (:class:`Request`, built by
``engine.prepare``): frozen values, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policyrouter.plan import Chain, TaskPlan
from policyrouter.stages.guard import GuardRun
from policyrouter.stages.output import OutputSpec
from policyrouter.stages.prompt_cache import PrefixTokens
from policyrouter.types import Message, Reasoning

__all__ = ["Ask", "Request"]


@dataclass(frozen=True, slots=True)
class Ask:
    """What the caller asked for: the arguments of ``complete`` / ``stream``, unchecked."""

    task: str
    input: str | None = None
    messages: Sequence[Message] | None = None
    user: str | None = None
    tenant: str | None = None
    metadata: Mapping[str, Any] | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    cache: bool | None = None
    extra: dict[str, Any] | None = None
    response_model: Any = None
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: Any = None
    stream: bool = False
    request_id: str | None = None  # the caller's id for the request (a queued job's id), else a new one


@dataclass(frozen=True, slots=True)
class Request:
    """A request after preparation: everything the engine needs, nothing more."""

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
    started: float
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider parameters passed through
    output: OutputSpec | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    guard: GuardRun | None = None  # this request's pass through the task's input guards
    cache_key: str | None = None  # set when the answer may come from (and go to) the cache
    reasoning: Reasoning | None = None  # effort/budget the route (else the task) asks of reasoning models
    prompt_prefix: PrefixTokens | None = None  # the prefix ends, counted when the task asks for prompt_cache
    experiment: str | None = None  # the experiment this request is assigned in, and its variant
    variant: str | None = None
