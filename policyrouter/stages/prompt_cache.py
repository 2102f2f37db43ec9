"""Provider prompt caching: which breakpoints one call gets, and its OpenAI cache key.

The plan holds the task's settings (:class:`PromptCachePlan`); ``prepare`` counts the
prefix ends once with the router's token counter (:func:`prefix_tokens`); each call asks
:meth:`PromptCachePlan.for_call` for the provider-neutral :class:`PromptCache` of the
model it goes to. Adapters map it to their SDK (the plan never speaks SDK).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from policyrouter.tokens import TokenCounter, count_messages
from policyrouter.types import Message, PromptCache

__all__ = ["PrefixTokens", "PromptCachePlan", "derived_key", "prefix_tokens"]

Breakpoint = Literal["tools", "system", "history"]


@dataclass(frozen=True, slots=True)
class PrefixTokens:
    """Counted tokens of the prompt up to the end of each part, in the order providers cache
    it: tool definitions, then the system prompt, then the messages."""

    tools: int
    system: int
    history: int

    def at(self, breakpoint: Breakpoint) -> int:
        return {"tools": self.tools, "system": self.system, "history": self.history}[breakpoint]


def prefix_tokens(
    tools: Sequence[Any], system: str | None, messages: Sequence[Message], counter: TokenCounter
) -> PrefixTokens:
    """The prefix ends of a request (tools are counted as their JSON text)."""
    t = counter(json.dumps(list(tools), sort_keys=True)) if tools else 0
    s = t + (counter(system) if system else 0)
    return PrefixTokens(t, s, t + count_messages(messages, system, counter))


def derived_key(task: str, tenant: str | None) -> str:
    """The OpenAI cache key of a task's requests for one tenant: a digest (no tenant name travels)."""
    digest = hashlib.sha256(f"{task}\0{tenant or ''}".encode()).hexdigest()[:32]
    return f"pr-{digest}"


@dataclass(frozen=True, slots=True)
class PromptCachePlan:
    """A task's ``prompt_cache`` settings."""

    ttl: Literal["5m", "1h"]
    breakpoints: tuple[Breakpoint, ...]
    key: str | None = None
    retention: Literal["in_memory", "24h"] | None = None

    def for_call(self, task: str, tenant: str | None, prefix: PrefixTokens | None, min_tokens: int) -> PromptCache:
        """The call's caching: the breakpoints whose prefix reaches ``min_tokens``, and the key."""
        placed = tuple(b for b in self.breakpoints if prefix is not None and prefix.at(b) >= min_tokens)
        key = self.key if self.key is not None else derived_key(task, tenant)
        return PromptCache(self.ttl, placed, key, self.retention)
