"""The error kinds a policy names (``retry_on``, ``trip_on``, fallbacks): one list, no pydantic;
and which wire protocol each provider kind speaks."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ANTHROPIC_PROTOCOL_KINDS",
    "ERROR_KINDS",
    "OPENAI_PROTOCOL_KINDS",
    "PROVIDER_ERROR_KINDS",
    "ErrorKind",
    "protocol_of",
]

ErrorKind = Literal[
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "auth",
    "not_found",
    "bad_request",
    "context_length",
    "content_filter",
    "invalid_output",
    "circuit_open",
    "budget_exceeded",
    "response_too_large",
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]

PROVIDER_ERROR_KINDS: tuple[str, ...] = tuple(
    k for k in ERROR_KINDS if k not in ("invalid_output", "circuit_open", "budget_exceeded")
)
"""Every ``kind`` a provider adapter may raise (the others are the router's own)."""

ANTHROPIC_PROTOCOL_KINDS: frozenset[str] = frozenset({"anthropic", "anthropic_bedrock", "anthropic_vertex"})
"""Provider kinds that speak Anthropic's messages protocol (thinking budgets, ``cache_control``)."""
OPENAI_PROTOCOL_KINDS: frozenset[str] = frozenset({"openai", "openai_compatible", "azure_openai"})
"""Provider kinds that speak OpenAI's chat-completions protocol (``reasoning_effort``)."""


def protocol_of(kind: str) -> Literal["anthropic", "openai", "mock"]:
    """The wire protocol of a provider kind; the one rule every check, explain and adapter choice uses."""
    if kind in ANTHROPIC_PROTOCOL_KINDS:
        return "anthropic"
    return "openai" if kind in OPENAI_PROTOCOL_KINDS else "mock"
