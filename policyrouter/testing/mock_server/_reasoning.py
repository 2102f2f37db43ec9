"""Reasoning models as the real APIs treat them: what they refuse, and what they think.

OpenAI: a model reasons when :meth:`MockLLMServer.set_reasoning` says so, else when its id
starts with ``o1``, ``o3``, ``o4`` or ``gpt-5``. A reasoning model refuses ``max_tokens``
(use ``max_completion_tokens``) and any ``temperature`` but 1; any other model refuses
``reasoning_effort``. A reasoning model's completion tokens include its reasoning tokens,
reported in ``completion_tokens_details.reasoning_tokens``.

Anthropic: ``thinking: {type: enabled, budget_tokens}`` needs a budget of at least 1024 and
below ``max_tokens``, no ``temperature`` but 1, no forced tool use, and a final assistant
message with tool use must start with the thinking block the model returned. The answer
then starts with a ``thinking`` block (text and ``signature``); its tokens are part of
``output_tokens`` and reported in ``output_tokens_details.thinking_tokens``.

The messages are the real APIs' (their wording, codes and ``param``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from policyrouter.testing.mock_server._types import family

__all__ = [
    "DEFAULT_REASONING_TOKENS",
    "Problem",
    "Thought",
    "anthropic_problem",
    "openai_problem",
    "openai_reasons",
    "signature",
    "thought",
]

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
DEFAULT_REASONING_TOKENS = {"minimal": 0, "low": 16, "medium": 64, "high": 256}
"""Reasoning tokens an OpenAI reasoning model reports by effort (no effort: ``medium``)."""
_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


class Problem(NamedTuple):
    """Why a request is refused with a 400: the message, and OpenAI's ``param`` and ``code``."""

    message: str
    param: str | None = None
    code: str | None = None


class Thought(NamedTuple):
    """What a reasoning answer spends: reasoning tokens, and the thinking text (Anthropic)."""

    tokens: int
    text: str | None


def openai_reasons(model: str, switched: Mapping[str, bool]) -> bool:
    return switched.get(model, model.startswith(REASONING_PREFIXES))


def openai_problem(body: Mapping[str, Any], reasons: bool) -> Problem | None:
    if not reasons:
        if "reasoning_effort" in body:
            return Problem(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "reasoning_effort",
                "unsupported_parameter",
            )
        return None
    if "max_tokens" in body:
        return Problem(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return Problem(
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported.",
            "temperature",
            "unsupported_value",
        )
    return None


def _budget(body: Mapping[str, Any]) -> int | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    return budget if isinstance(budget, int) else 0


def anthropic_problem(body: Mapping[str, Any]) -> Problem | None:
    budget = _budget(body)
    if budget is None:
        return None
    if budget < 1024:
        return Problem("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and budget >= max_tokens:
        return Problem(
            f"`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            f"{_DOCS}#max-tokens-and-context-window-size"
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return Problem(
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
            f"{_DOCS}#important-considerations-when-using-extended-thinking"
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return Problem("Thinking may not be enabled when tool_choice forces tool use.")
    return _unsigned_turn(body)


def _unsigned_turn(body: Mapping[str, Any]) -> Problem | None:
    """A final assistant turn with tool use must lead with its thinking block, signed as returned."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    last = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"), default=None
    )
    if last is None:
        return None
    content = messages[last].get("content")
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
        return None
    first = content[0] if isinstance(content[0], dict) else {}
    if first.get("type") not in ("thinking", "redacted_thinking"):
        return Problem(
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must start with a "
            f"thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend "
            f"you include thinking blocks from previous turns. Please consult our documentation at {_DOCS}"
        )
    if first.get("type") == "thinking" and first.get("signature") != signature(str(first.get("thinking", ""))):
        return Problem(f"messages.{last}.content.0: Invalid `signature` in `thinking` block")
    return None


def signature(thinking: str) -> str:
    """The mock's signature of a thinking text (opaque to clients, checked when it comes back)."""
    return "mocksig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def thought(protocol: str, model: str, body: Mapping[str, Any], reasons: bool, usage: Mapping[str, int]) -> Thought:
    """What the answer to ``body`` spends on reasoning (``usage["reasoning"]`` overrides the count)."""
    if family(protocol) == "anthropic":
        budget = _budget(body)
        if budget is None:
            return Thought(0, None)
        text = f"mock thinking of {model} about the question, step by step"
        return Thought(usage.get("reasoning", min(budget, len(text.split()) * 4)), text)
    if family(protocol) == "openai" and reasons:
        effort = body.get("reasoning_effort")
        default = DEFAULT_REASONING_TOKENS.get(effort if isinstance(effort, str) else "medium", 64)
        return Thought(usage.get("reasoning", default), None)
    return Thought(0, None)
