"""Every exception policyrouter raises, in one small tree.

::

    PolicyRouterError                 base of everything we raise; has ``kind``
    ├── PolicyError                   a policy failed to load/validate; ``.diagnostics``
    ├── ConfigurationError            runtime configuration is missing (key env var, extra)
    ├── StateUnavailable              the state backend (sqlite/redis) cannot be reached
    ├── JobNotFound                   no job with that id (never submitted, or past result_ttl_s)
    ├── JobTimeout                    ``router.wait`` gave up before the job finished
    ├── ProviderError                 one failed upstream call, already classified
    │                                 (internal: never escapes ``complete``)
    └── RouterError                   a request failed; ``.kind``, ``.attempts``, ``.task``
        ├── InvalidRequest            the call itself is malformed (unknown task, no input)
        ├── InputTooLong              input over ``max_input_tokens`` with ``reject``
        │                             (or over ``guards.max_chars``)
        ├── GuardBlocked              the input matched a ``guards.block`` rule; nothing sent
        ├── BudgetExceeded            a hard budget refused the reservation; nothing sent
        ├── RequestTimeout            the request deadline passed across attempts
        ├── CircuitOpen               every model of the chain has an open breaker
        ├── BadRequest                the provider rejected the request (400); no fallback
        ├── AllModelsFailed           every model of the chain was tried and failed
        ├── InvalidOutput             output failed its schema after repairs
        └── StreamInterrupted         a stream failed after its first chunk
            └── StreamAbandoned       the caller stopped reading mid-call (never raised to
                                      it: the request's ledger outcome, ``abandoned``)

Foreign exceptions (SDK, httpx, sqlite) are translated at the adapter boundary with
``raise ... from exc``; checks use ``.kind`` or the class, never the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyrouter.diagnostics import Diagnostic
    from policyrouter.types import Attempt

__all__ = [
    "AllModelsFailed",
    "BadRequest",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigurationError",
    "GuardBlocked",
    "InputTooLong",
    "InvalidOutput",
    "InvalidRequest",
    "JobNotFound",
    "JobTimeout",
    "PolicyError",
    "PolicyRouterError",
    "ProviderError",
    "RequestTimeout",
    "RouterError",
    "StateUnavailable",
    "StreamAbandoned",
    "StreamInterrupted",
]


class PolicyRouterError(Exception):
    """Base class of every exception policyrouter raises."""

    kind: str = "error"


class PolicyError(PolicyRouterError):
    """A policy could not be loaded or failed validation.

    ``diagnostics`` holds every problem found, sorted by location, each with a code,
    ``file:line:col``, the policy path and a hint.
    """

    kind = "invalid_policy"

    def __init__(self, diagnostics: Sequence[Diagnostic], message: str | None = None) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        if message is None:
            head = f"{len(errors)} error(s) in policy"
            lines = [head, *(d.one_line() for d in errors[:20])]
            if len(errors) > 20:
                lines.append(f"... and {len(errors) - 20} more")
            message = "\n".join(lines)
        super().__init__(message)


class ConfigurationError(PolicyRouterError):
    """Runtime configuration is missing: an API key env var, an optional extra."""

    kind = "configuration"


class StateUnavailable(PolicyRouterError):
    """The state backend cannot be reached and the policy says fail closed."""

    kind = "state_unavailable"


class JobNotFound(PolicyRouterError):
    """No job with this id: never submitted, or finished longer ago than its ``result_ttl_s``."""

    kind = "job_not_found"


class JobTimeout(PolicyRouterError):
    """``router.wait(id, timeout)`` gave up; the job goes on. ``.job`` is its last known state."""

    kind = "job_timeout"

    def __init__(self, message: str, job: Any = None) -> None:
        self.job = job
        super().__init__(message)


class ProviderError(PolicyRouterError):
    """One upstream call failed; classified into an error ``kind``.

    Raised by provider adapters and consumed by the router's retry loop. ``may_be_billed``:
    the request reached the model, so it may have generated (and billed) an answer this
    client never got: a timeout, a 200 it could not use, a connection lost after sending.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
        usage: Any = None,
        may_be_billed: bool | None = None,
        headers: Mapping[str, str] | None = None,
        key_refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.headers = headers  # the error response's (its rate-limit headers feed adaptive limits)
        self.key_refused = key_refused  # the provider does not accept the key itself (not a model's 403)
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.request_id = request_id
        self.usage = usage
        self.may_be_billed = may_be_billed if may_be_billed is not None else (kind == "timeout" or status_code == 200)

    def __repr__(self) -> str:
        return f"ProviderError(kind={self.kind!r}, status_code={self.status_code!r}, message={self.message!r})"


class RouterError(PolicyRouterError):
    """A request failed. Carries the full attempt trace."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        task: str | None = None,
        route: str | None = None,
        attempts: Sequence[Attempt] = (),
        request_id: str | None = None,
    ) -> None:
        if kind is not None:
            self.kind = kind
        self.task = task
        self.route = route
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        self.request_id = request_id
        trace = "; ".join(a.describe() for a in self.attempts)
        super().__init__(f"{message}" + (f" [attempts: {trace}]" if trace else ""))


class InvalidRequest(RouterError):
    """The call's arguments were refused before anything was sent, reserved or billed.

    ``arguments`` names the arguments at fault (``("temperature",)``, ``("task",)``).
    """

    kind = "invalid_request"

    def __init__(self, message: str, *, arguments: Sequence[str] = (), **kw: Any) -> None:
        self.arguments = tuple(arguments)
        super().__init__(message, **kw)


class InputTooLong(RouterError):
    kind = "input_too_long"


class GuardBlocked(RouterError):
    """The input matched a ``guards.block`` rule of the task; nothing was sent.

    ``rule`` names the rule; the matching text is never part of the error.
    """

    kind = "guard_blocked"

    def __init__(self, message: str, *, rule: str, **kw: Any) -> None:
        self.rule = rule
        super().__init__(message, **kw)


class BudgetExceeded(RouterError):
    """A hard budget refused the attempt's worst case; nothing was sent.

    ``budget`` names it; ``unit`` (``"usd"`` or ``"tokens"``) says which of its limits refused,
    and ``requested``, ``used`` (spent + reserved) and ``limit`` are in that unit.
    """

    kind = "budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        budget: str | None = None,
        unit: str = "usd",
        requested: float | None = None,
        used: float | None = None,
        limit: float | None = None,
        **kw: Any,
    ) -> None:
        self.budget = budget
        self.unit = unit
        self.requested = requested
        self.used = used
        self.limit = limit
        super().__init__(message, **kw)


class RequestTimeout(RouterError):
    kind = "timeout"


class CircuitOpen(RouterError):
    kind = "circuit_open"


class BadRequest(RouterError):
    kind = "bad_request"


class AllModelsFailed(RouterError):
    kind = "all_models_failed"


class InvalidOutput(RouterError):
    """No model gave an output that passes the schema. ``raw_text`` and ``errors`` are the last
    answer's; ``reason`` says why it failed: ``"truncated"`` (cut at ``max_output_tokens``, so not
    repaired on that model) or ``"schema"`` (it did not match, repairs included)."""

    kind = "invalid_output"

    def __init__(
        self, message: str, *, raw_text: str = "", errors: Sequence[str] = (), reason: str = "schema", **kw: Any
    ) -> None:
        self.raw_text = raw_text
        self.errors = tuple(errors)
        self.reason = reason
        super().__init__(message, **kw)


class StreamInterrupted(RouterError):
    kind = "stream_interrupted"

    def __init__(self, message: str, *, partial_text: str = "", **kw: Any) -> None:
        self.partial_text = partial_text
        super().__init__(message, **kw)


class StreamAbandoned(StreamInterrupted):
    """The caller closed a stream before its end; the attempt was billed for what it got."""

    kind = "abandoned"
