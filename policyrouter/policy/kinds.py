"""The error kinds a policy names (``retry_on``, ``trip_on``, fallbacks): one list, no pydantic."""

from __future__ import annotations

from typing import Literal

__all__ = ["ERROR_KINDS", "PROVIDER_ERROR_KINDS", "ErrorKind"]

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
