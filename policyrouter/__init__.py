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
    InputTooLong,
    InvalidOutput,
    InvalidRequest,
    PolicyError,
    PolicyRouterError,
    ProviderError,
    RequestTimeout,
    RouterError,
    StateUnavailable,
    StreamInterrupted,
)
from policyrouter.router import Router
from policyrouter.types import Attempt, ProviderRequest, ProviderResponse, Result, Usage

if TYPE_CHECKING:
    from pathlib import Path

    from policyrouter.policy.models import Policy

__version__ = "0.1.0"

__all__ = [
    "AllModelsFailed",
    "Attempt",
    "BadRequest",
    "BudgetExceeded",
    "CircuitOpen",
    "Clock",
    "ConfigurationError",
    "InputTooLong",
    "InvalidOutput",
    "InvalidRequest",
    "PolicyError",
    "PolicyRouterError",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "RequestTimeout",
    "Result",
    "Router",
    "RouterError",
    "StateUnavailable",
    "StreamInterrupted",
    "SystemClock",
    "Usage",
    "__version__",
    "load_policy",
]


def load_policy(path: str | Path, env: str | None = None, **kwargs: Any) -> Policy:
    """Load and validate a policy file or directory, merged for ``env``.

    Raises ``PolicyError`` whose ``.diagnostics`` list every problem found.
    """
    from policyrouter.policy.loader import load_policy as _load

    return _load(path, env, **kwargs)
