"""Provider adapters: one upstream call per ``complete``, normalized in and out.

Kinds: ``openai`` and ``openai_compatible`` (:class:`OpenAIProvider`), ``anthropic``
(:class:`AnthropicProvider`), ``azure_openai`` (:class:`AzureOpenAIProvider`),
``anthropic_bedrock`` and ``anthropic_vertex`` (:class:`AnthropicBedrockProvider`,
:class:`AnthropicVertexProvider`), ``mock``
(:class:`MockProvider`, in-process). Importing
this package imports neither SDK: each adapter imports its SDK at its first call, and
the adapter modules themselves load on first attribute access (``import policyrouter``
pulls in only ``providers.base``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyrouter.providers.anthropic_adapter import AnthropicProvider
    from policyrouter.providers.anthropic_clouds import AnthropicBedrockProvider, AnthropicVertexProvider
    from policyrouter.providers.azure import AzureOpenAIProvider
    from policyrouter.providers.base import Provider, ProviderKind
    from policyrouter.providers.classify import PROVIDER_ERROR_KINDS
    from policyrouter.providers.factory import create_provider
    from policyrouter.providers.mock import MockProvider
    from policyrouter.providers.openai_adapter import OpenAIProvider

_LAZY = {
    "AnthropicBedrockProvider": "policyrouter.providers.anthropic_clouds",
    "AnthropicVertexProvider": "policyrouter.providers.anthropic_clouds",
    "AnthropicProvider": "policyrouter.providers.anthropic_adapter",
    "AzureOpenAIProvider": "policyrouter.providers.azure",
    "MockProvider": "policyrouter.providers.mock",
    "OpenAIProvider": "policyrouter.providers.openai_adapter",
    "PROVIDER_ERROR_KINDS": "policyrouter.providers.classify",
    "Provider": "policyrouter.providers.base",
    "ProviderKind": "policyrouter.providers.base",
    "create_provider": "policyrouter.providers.factory",
}

__all__ = [
    "PROVIDER_ERROR_KINDS",
    "AnthropicBedrockProvider",
    "AnthropicProvider",
    "AnthropicVertexProvider",
    "AzureOpenAIProvider",
    "MockProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderKind",
    "create_provider",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
