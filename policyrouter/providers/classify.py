"""Failure classification, in one place, shared by every adapter.

Pure functions and tables: no SDK import, no I/O. An adapter catches its SDK's specific
exception classes, pulls out the primitives (status code, headers, error code, message)
and hands them here; what comes back is one :class:`~policyrouter.errors.ProviderError`
with a stable ``kind``.

==============================================  ==================
failure                                         kind
==============================================  ==================
HTTP 429                                        ``rate_limited``
HTTP 503, 529                                   ``overloaded``
HTTP 500, 502, 504, any other 5xx; HTTP 409     ``server_error``
2xx whose body cannot be parsed / is malformed  ``server_error``
HTTP 408; SDK/transport timeout; the attempt's  ``timeout``
deadline passing while bytes still arrive
a body past the task's ``max_response_bytes``   ``response_too_large``
connection refused/reset, DNS, TLS; HTTP 499    ``connection``
HTTP 401, 403; HTTP 402 (billing)               ``auth``
HTTP 404                                        ``not_found``
HTTP 400, 422, any other 4xx                    ``bad_request``
HTTP 413; HTTP 400 saying the prompt is over    ``context_length``
the model's context window (see below)
2xx with OpenAI ``finish_reason=content_filter``  ``content_filter``
or a ``refusal``, or Anthropic
``stop_reason=refusal``; HTTP 400 with
``code: content_filter`` (Azure's prompt filter)
an error event inside a 200 stream              by the status it
                                                carries, as above
a cloud's own error type, over its status       see
(Bedrock ``x-amzn-ErrorType``, Vertex           ``PLATFORM_ERROR_KINDS``
``error.status``)
==============================================  ==================

An error event inside a stream (OpenAI-compatible ``data: {"error": {...}}``, Anthropic
``event: error``) arrives after a 200 head, so its HTTP status says nothing. Its body
does: a ``status_code`` / ``status`` or an integer ``code`` (Groq, OpenRouter, vLLM),
else the error ``type`` (``overloaded_error``, ``invalid_request_error``, ...; see
:data:`ERROR_TYPE_STATUS`). :func:`stream_error_status` reads it, and the event is then
classified like a non-streamed error with that status; an event that says nothing is
``server_error``.

An unparseable 200 is ``server_error`` rather than ``connection``: the connection
worked and the upstream answered; what it answered was broken, which is a server
fault and is worth a retry like any other 5xx.

Context-length detection: OpenAI sends ``code: context_length_exceeded`` (and a
message mentioning the "maximum context length"); Anthropic sends a 400
``invalid_request_error`` whose message says "prompt is too long", or a 413 for an
oversized request body. The stable code is checked first; the message phrases are
the documented fallback because neither API gives a structured field for every case.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final

from policyrouter.errors import ProviderError
from policyrouter.policy.kinds import PROVIDER_ERROR_KINDS

__all__ = [
    "ANTHROPIC_STOP_REASONS",
    "CONTENT_FILTER",
    "ERROR_TYPE_STATUS",
    "FAILURE_KINDS",
    "OPENAI_FINISH_REASONS",
    "PLATFORM_ERROR_KINDS",
    "PROVIDER_ERROR_KINDS",
    "STATUS_KINDS",
    "failure_error",
    "filtered_categories",
    "is_context_length",
    "kind_for_status",
    "normalize_finish_reason",
    "parse_retry_after",
    "redact",
    "request_id_from",
    "status_error",
    "stream_error_status",
]


STATUS_KINDS: Final[Mapping[int, str]] = MappingProxyType(
    {
        400: "bad_request",
        401: "auth",
        402: "auth",  # billing / payment required: account-specific, fall back
        403: "auth",
        404: "not_found",
        408: "timeout",
        409: "server_error",  # lock / conflict on the provider side: transient
        413: "context_length",  # request body too large (Anthropic)
        422: "bad_request",
        429: "rate_limited",
        499: "connection",  # client closed request
        503: "overloaded",
        529: "overloaded",  # Anthropic "overloaded_error"
    }
)
"""HTTP status -> kind. Statuses not listed: other 5xx -> server_error, other 4xx -> bad_request."""

FAILURE_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "timeout": "timeout",  # SDK APITimeoutError (connect/read/write/pool timeout)
        "connection": "connection",  # SDK APIConnectionError (refused, reset, DNS, TLS)
        "malformed": "server_error",  # a 2xx whose body is not the promised JSON shape
        "response_too_large": "response_too_large",  # a body past the task's max_response_bytes
    }
)
"""Failures without a usable HTTP status -> kind."""

CONTENT_FILTER: Final = "content_filter"

OPENAI_FINISH_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "function_call": "tool_calls",
        "content_filter": CONTENT_FILTER,
    }
)
ANTHROPIC_STOP_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "pause_turn": "pause_turn",
        "refusal": CONTENT_FILTER,
    }
)
"""Provider stop reasons -> our ``finish_reason``; ``content_filter`` becomes an error."""

ERROR_TYPE_STATUS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "rate_limit_exceeded": 429,
        "api_error": 500,
        "server_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
        # Amazon Bedrock: the exception frames of a response stream, by member name
        "validationException": 400,
        "modelTimeoutException": 408,
        "modelStreamErrorException": 424,
        "throttlingException": 429,
        "internalServerException": 500,
        "serviceUnavailableException": 503,
    }
)
"""An error body's ``type`` (Anthropic's, and OpenAI's) -> the HTTP status it stands for."""

PLATFORM_ERROR_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # Amazon Bedrock, by x-amzn-ErrorType (the shape name; a stream's frame names the member)
        "ThrottlingException": "rate_limited",  # 429: the account's quota
        "ServiceQuotaExceededException": "rate_limited",  # 400: over a service quota, retry later
        "ModelNotReadyException": "overloaded",  # 429: the model is still being loaded
        "ServiceUnavailableException": "overloaded",  # 503
        "ModelTimeoutException": "timeout",  # 408
        "ModelErrorException": "server_error",  # 424: the model failed to process the request
        "ModelStreamErrorException": "server_error",  # 424, mid-stream
        "InternalServerException": "server_error",  # 500
        "ValidationException": "bad_request",  # 400 (a prompt over the context window: context_length)
        "AccessDeniedException": "auth",  # 403: no access to the model, or no permission
        "UnrecognizedClientException": "auth",  # 403: unknown access key
        "ExpiredTokenException": "auth",
        "ResourceNotFoundException": "not_found",  # 404
        # Google Vertex AI, by the error body's gRPC status
        "RESOURCE_EXHAUSTED": "rate_limited",  # 429: a quota per project, region and base model
        "UNAVAILABLE": "overloaded",  # 503
        "DEADLINE_EXCEEDED": "timeout",  # 504
        "INTERNAL": "server_error",
        "UNAUTHENTICATED": "auth",  # 401
        "PERMISSION_DENIED": "auth",  # 403: the API is off, or the model is not enabled
        "NOT_FOUND": "not_found",  # 404: no such model in this region
        "INVALID_ARGUMENT": "bad_request",
        "FAILED_PRECONDITION": "bad_request",
    }
)
"""A cloud's own error type -> kind, where it names the failure better than the status does
(Bedrock answers 429 both for throttling and for a model still loading; 424 for a model
error). Bedrock sends it in ``x-amzn-ErrorType``, Vertex in the body's ``error.status``."""

KEY_REFUSALS: Final[frozenset[str]] = frozenset({"UnrecognizedClientException", "ExpiredTokenException"})
"""The 403s that refuse the credential itself (a 401 always does); another 403 (no access to a
model, a project's permission) is the model's, and sets no key aside."""

_CONTEXT_LENGTH_CODES: Final = frozenset({"context_length_exceeded", "prompt_too_long"})
_CONTEXT_LENGTH_PHRASES: Final = (
    "maximum context length",
    "context_length_exceeded",
    "prompt is too long",
    "context window",
    "input is too long",  # Amazon Bedrock's ValidationException
)
_MESSAGE_LIMIT: Final = 500
_KEY_SHAPED: Final = re.compile(
    r"(?i)(?P<label>\b(?:bearer|basic)\s+"  # Authorization: Bearer <token>
    r"|\b(?:x-)?(?:api|access|auth)[-_]?(?:key|token)[\"']?\s*[:=]\s*[\"']?"  # api-key: v, "x-api-key": "v", api_key=v
    r"|[?&](?:api[-_]?)?key=)"  # ?key=v in a URL
    r"(?P<value>[^\s\"'&,;]{8,})"
    r"|\bsk-[A-Za-z0-9_-]{8,}"  # OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) keys
)
"""Credentials by their shape: known key prefixes, and the values of auth headers and parameters."""


def kind_for_status(status: int) -> str:
    """The kind of an HTTP error status, from :data:`STATUS_KINDS` and the ranges."""
    kind = STATUS_KINDS.get(status)
    if kind is not None:
        return kind
    if 400 <= status < 500:
        return "bad_request"
    # other 5xx, and any non-error status reaching an error path (a protocol violation)
    return "server_error"


def stream_error_status(body: object) -> int | None:
    """The HTTP error status an in-stream error event's body carries (``None``: it says none).

    ``body`` is the event's JSON: the whole object, or its ``error`` member. A
    ``status_code``, ``status`` or integer ``code`` from 400 to 599 wins; else the error
    ``type`` through :data:`ERROR_TYPE_STATUS`.
    """
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if not isinstance(body, Mapping):
        return None
    for key in ("status_code", "status", "code"):
        value = body.get(key)
        if type(value) is int and 400 <= value <= 599:
            return value
    kind = body.get("type")
    return ERROR_TYPE_STATUS.get(kind) if isinstance(kind, str) else None


def is_context_length(code: str | None, message: str | None) -> bool:
    """Whether a 400 says the prompt exceeds the model's context window."""
    if code is not None and code in _CONTEXT_LENGTH_CODES:
        return True
    if message:
        lowered = message.lower()
        return any(phrase in lowered for phrase in _CONTEXT_LENGTH_PHRASES)
    return False


def normalize_finish_reason(table: Mapping[str, str], raw: str | None) -> str:
    """Map a provider's stop reason through ``table``; unknown reasons pass through."""
    if raw is None:
        return "stop"
    return table.get(raw, raw)


def parse_retry_after(headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (milliseconds), else ``retry-after``.

    ``retry-after`` may be seconds (a float is tolerated) or an HTTP date. A date in the
    past gives ``0.0``. Absent, unparseable, negative or non-finite values give ``None``.
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _finite_non_negative(ms)
        if value is not None:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    value = _finite_non_negative(raw)
    if value is not None:
        return value
    try:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        when = email.utils.mktime_tz(parsed)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, float(when) - now())


def _finite_non_negative(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def request_id_from(headers: Mapping[str, str] | None) -> str | None:
    """The upstream request id: ``x-request-id`` (OpenAI), ``request-id`` (Anthropic) or
    ``apim-request-id`` (Azure OpenAI, whose answers may carry no other), ``x-amzn-requestid``
    (Amazon Bedrock)."""
    if headers is None:
        return None
    return (
        headers.get("x-request-id")
        or headers.get("request-id")
        or headers.get("apim-request-id")
        or headers.get("x-amzn-requestid")
        or None
    )


def filtered_categories(results: object) -> str:
    """The categories an Azure ``content_filter_results`` object filtered, as ``"self_harm (medium)"``
    joined by commas; ``""`` when it names none (or is not that shape)."""
    if not isinstance(results, Mapping):
        return ""
    named: list[str] = []
    for category, verdict in results.items():
        if isinstance(verdict, Mapping) and verdict.get("filtered") is True:
            severity = verdict.get("severity")
            named.append(f"{category} ({severity})" if isinstance(severity, str) else str(category))
    return ", ".join(named)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret, and anything shaped like a credential, replaced by
    ``***``; long text is truncated (after the replacement, so no key is cut in half).

    Every provider error message is built from upstream text here, once: the exact keys
    the adapter holds (``secrets``) go first, then :data:`_KEY_SHAPED` catches keys it
    does not hold (another provider's, a proxy's) and the values of auth headers.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    text = _KEY_SHAPED.sub(_masked, text)
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 3] + "..."
    return text


def _masked(match: re.Match[str]) -> str:
    """A credential's match as ``***``, keeping the header or parameter name before it."""
    return (match.group("label") or "") + "***"


def status_error(
    provider: str,
    status: int,
    *,
    headers: Mapping[str, str] | None,
    code: str | None = None,
    message: str | None = None,
    request_id: str | None = None,
    secrets: Iterable[str | None] = (),
    usage: object = None,
    platform_type: str | None = None,
) -> ProviderError:
    """The :class:`ProviderError` of an HTTP error response (with the ``usage`` it billed, if any);
    a cloud's ``platform_type`` (:data:`PLATFORM_ERROR_KINDS`) decides the kind over the status."""
    kind = PLATFORM_ERROR_KINDS.get(platform_type or "") or kind_for_status(status)
    if status == 400 and kind == "bad_request" and is_context_length(code, message):
        kind = "context_length"
    elif status == 400 and code == CONTENT_FILTER:  # Azure OpenAI's content filter refused the prompt
        kind = CONTENT_FILTER
    detail = redact(message, secrets) if message else "no error message"
    return ProviderError(
        kind,
        f"{provider}: HTTP {status} ({kind}): {detail}",
        status_code=status,
        retry_after_s=parse_retry_after(headers),
        request_id=request_id or request_id_from(headers),
        headers=headers,
        usage=usage,
        key_refused=status == 401 or platform_type in KEY_REFUSALS,
    )


def failure_error(
    provider: str,
    failure: str,
    detail: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    secrets: Iterable[str | None] = (),
    usage: object = None,
    may_be_billed: bool | None = None,
) -> ProviderError:
    """The :class:`ProviderError` of a failure without an error status (``FAILURE_KINDS``),
    or of a 2xx the adapter refuses (``content_filter``)."""
    kind = FAILURE_KINDS.get(failure, failure)
    return ProviderError(
        kind,
        f"{provider}: {kind}: {redact(detail, secrets)}",
        status_code=status,
        request_id=request_id,
        usage=usage,
        may_be_billed=may_be_billed,
    )
