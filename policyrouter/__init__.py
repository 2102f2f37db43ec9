"""policyrouter: every production rule for LLM API calls in reviewed YAML policies.

    from policyrouter import Router
    router = Router.from_path("policies/", env="prod")
    result = router.complete(task="summarize", input=text)

Importing this package is cheap: pydantic, the YAML loader and the provider SDKs load
only when a policy is loaded or a provider first needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policyrouter.clock import Clock, SystemClock
from policyrouter.errors import (
    AllModelsFailed,
    BadRequest,
    BudgetExceeded,
    CircuitOpen,
    ConfigurationError,
    GuardBlocked,
    InputTooLong,
    InvalidOutput,
    InvalidRequest,
    JobNotFound,
    JobTimeout,
    PolicyError,
    PolicyRouterError,
    ProviderError,
    RequestTimeout,
    RouterError,
    StateUnavailable,
    StreamAbandoned,
    StreamInterrupted,
)
from policyrouter.router import Router
from policyrouter.types import Attempt, ProviderRequest, ProviderResponse, Reasoning, Result, StreamChunk, Usage

if TYPE_CHECKING:
    from pathlib import Path

    from policyrouter.clock import FakeClock
    from policyrouter.compile import compile_policy
    from policyrouter.explain import Explanation
    from policyrouter.health import HealthReport
    from policyrouter.metrics import PrometheusMetrics
    from policyrouter.otel import OpenTelemetryTracing
    from policyrouter.plan import Plan
    from policyrouter.policy.models import Policy
    from policyrouter.providers.base import Provider
    from policyrouter.providers.mock import MockProvider
    from policyrouter.queue.base import JobInfo, QueueEngine
    from policyrouter.queue.redis import RedisQueue
    from policyrouter.queue.sqlite import SqliteQueue
    from policyrouter.reload import PolicyWatcher, ReloadResult
    from policyrouter.state.base import Admit, Admitted, CacheStore, Finish, Record, StateBackend
    from policyrouter.state.memory import MemoryState
    from policyrouter.state.redis import RedisState
    from policyrouter.state.sqlite import SqliteState
    from policyrouter.worker import Worker

_LAZY = {
    "Admit": "policyrouter.state.base",
    "Admitted": "policyrouter.state.base",
    "CacheStore": "policyrouter.state.base",
    "Finish": "policyrouter.state.base",
    "Record": "policyrouter.state.base",
    "Explanation": "policyrouter.explain",
    "FakeClock": "policyrouter.clock",
    "HealthReport": "policyrouter.health",
    "JobInfo": "policyrouter.queue.base",
    "QueueEngine": "policyrouter.queue.base",
    "RedisQueue": "policyrouter.queue.redis",
    "SqliteQueue": "policyrouter.queue.sqlite",
    "Worker": "policyrouter.worker",
    "MemoryState": "policyrouter.state.memory",
    "MockProvider": "policyrouter.providers.mock",
    "OpenTelemetryTracing": "policyrouter.otel",
    "Plan": "policyrouter.plan",
    "Policy": "policyrouter.policy.models",
    "PolicyWatcher": "policyrouter.reload",
    "PrometheusMetrics": "policyrouter.metrics",
    "Provider": "policyrouter.providers.base",
    "RedisState": "policyrouter.state.redis",
    "ReloadResult": "policyrouter.reload",
    "SqliteState": "policyrouter.state.sqlite",
    "StateBackend": "policyrouter.state.base",
    "compile_policy": "policyrouter.compile",
}
"""Public names whose modules load on first use, so ``import policyrouter`` stays light."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policyrouter' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Admit",
    "Admitted",
    "AllModelsFailed",
    "Attempt",
    "BadRequest",
    "BudgetExceeded",
    "CacheStore",
    "CircuitOpen",
    "Clock",
    "ConfigurationError",
    "Explanation",
    "FakeClock",
    "Finish",
    "GuardBlocked",
    "HealthReport",
    "InputTooLong",
    "InvalidOutput",
    "InvalidRequest",
    "JobInfo",
    "JobNotFound",
    "JobTimeout",
    "MemoryState",
    "MockProvider",
    "OpenTelemetryTracing",
    "Plan",
    "Policy",
    "PolicyError",
    "PolicyRouterError",
    "PolicyWatcher",
    "PrometheusMetrics",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "QueueEngine",
    "Reasoning",
    "Record",
    "RedisQueue",
    "RedisState",
    "ReloadResult",
    "RequestTimeout",
    "Result",
    "Router",
    "RouterError",
    "SqliteQueue",
    "SqliteState",
    "StateBackend",
    "StateUnavailable",
    "StreamAbandoned",
    "StreamChunk",
    "StreamInterrupted",
    "SystemClock",
    "Usage",
    "Worker",
    "__version__",
    "compile_policy",
    "load_policy",
]


def load_policy(path: str | Path, env: str | None = None, **kwargs: Any) -> Policy:
    """Load and validate a policy file or directory, merged for ``env``.

    Raises ``PolicyError`` whose ``.diagnostics`` list every problem found.
    """
    from policyrouter.policy.loader import load_policy as _load

    return _load(path, env, **kwargs)
