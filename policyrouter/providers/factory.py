"""Build a provider from its policy spec. No client is created and no key is read here:
adapters do both lazily, at the first call that needs them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.base import Provider
from policyrouter.providers.mock import MockProvider
from policyrouter.providers.openai_adapter import OpenAIProvider

if TYPE_CHECKING:
    from policyrouter.clock import Clock
    from policyrouter.policy.models import ProviderSpec

__all__ = ["create_provider"]


def create_provider(
    name: str,
    spec: ProviderSpec,
    *,
    environ: Mapping[str, str] = os.environ,
    clock: Clock | None = None,
) -> Provider:
    """The provider for ``spec.kind``: ``openai`` / ``openai_compatible`` ->
    :class:`OpenAIProvider`, ``anthropic`` -> :class:`AnthropicProvider`, ``mock`` ->
    :class:`MockProvider` (with ``spec.mock`` settings; ``clock`` paces its latency)."""
    if spec.kind in ("openai", "openai_compatible"):
        return OpenAIProvider(
            name,
            kind=spec.kind,
            api_key_env=spec.api_key_env,
            base_url=spec.base_url,
            organization_env=spec.organization_env,
            headers=spec.headers,
            async_transport=spec.async_transport,
            environ=environ,
        )
    if spec.kind == "anthropic":
        return AnthropicProvider(
            name,
            api_key_env=spec.api_key_env,
            base_url=spec.base_url,
            headers=spec.headers,
            async_transport=spec.async_transport,
            environ=environ,
        )
    if spec.kind == "mock":
        settings = spec.mock
        return MockProvider(
            name,
            latency_s=settings.latency_s if settings is not None else 0.0,
            reply=settings.reply if settings is not None else None,
            clock=clock,
        )
    raise ValueError(f"provider {name!r}: unknown kind {spec.kind!r}")
