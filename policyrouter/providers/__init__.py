"""Provider adapters: one upstream call per ``complete``, normalized in and out.

Kinds: ``openai`` and ``openai_compatible`` (:class:`OpenAIProvider`), ``anthropic``
(:class:`AnthropicProvider`), ``mock`` (:class:`MockProvider`, in-process). Importing
this package imports neither SDK: each adapter imports its SDK at its first call.
"""

from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.base import Provider, ProviderKind
from policyrouter.providers.classify import PROVIDER_ERROR_KINDS
from policyrouter.providers.factory import create_provider
from policyrouter.providers.mock import MockProvider
from policyrouter.providers.openai_adapter import OpenAIProvider

__all__ = [
    "PROVIDER_ERROR_KINDS",
    "AnthropicProvider",
    "MockProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderKind",
    "create_provider",
]
