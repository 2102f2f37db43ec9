"""What a task, route or model asks of reasoning models: one rule, read by compile and the checks.

The most specific level that sets ``reasoning`` or ``thinking`` wins whole: a model's own
setting, else its route's, else its task's. Within a level, OpenAI-protocol models get
``reasoning.effort`` (else ``thinking.effort``) and Anthropic models get
``thinking.budget_tokens`` (else the budget that ``thinking.effort`` or ``reasoning.effort``
stands for, :data:`THINKING_BUDGETS`).
"""

from __future__ import annotations

from policyrouter.policy.models import ReasoningSettings, ThinkingBudget
from policyrouter.types import Reasoning

__all__ = ["THINKING_BUDGETS", "reasoning_of"]

THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 4096, "high": 8192}
"""The Anthropic thinking budget an effort stands for, where no ``budget_tokens`` is given."""


def reasoning_of(reasoning: ReasoningSettings | None, thinking: ThinkingBudget | None) -> Reasoning | None:
    """One level's settings as the effort and budget a call carries; ``None`` when it sets neither."""
    if thinking is not None:
        effort = reasoning.effort if reasoning is not None else thinking.effort
        return Reasoning(effort, thinking.budget_tokens or THINKING_BUDGETS[thinking.effort or "medium"])
    if reasoning is not None:
        return Reasoning(reasoning.effort, THINKING_BUDGETS[reasoning.effort])
    return None
