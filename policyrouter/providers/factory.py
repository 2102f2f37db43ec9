"""Build a provider from its policy spec. No client is created and no key is read here:
adapters do both lazily, at the first call that needs them. A ``base_url_env`` is read
here, so a missing variable fails when the router is built, not at the first request."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from policyrouter.errors import ConfigurationError
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.base import Provider, read_secret
from policyrouter.providers.keys import EventSink, KeySpec
from policyrouter.providers.mock import MockProvider
from policyrouter.providers.openai_adapter import OpenAIProvider

if TYPE_CHECKING:
    import random

    from policyrouter.clock import Clock
    from policyrouter.policy.models import ProviderSpec

__all__ = ["create_provider"]


def create_provider(
    name: str,
    spec: ProviderSpec,
    *,
    environ: Mapping[str, str] = os.environ,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    events: EventSink | None = None,
) -> Provider:
    """The provider for ``spec.kind``: ``openai`` / ``openai_compatible`` ->
    :class:`OpenAIProvider`, ``anthropic`` -> :class:`AnthropicProvider`, ``mock`` ->
    :class:`MockProvider` (with ``spec.mock`` settings; ``clock`` paces its latency).
    ``rng`` picks the key of each call among several; ``events`` receives the key events."""
    keys: KeySpec = spec.api_key_env if isinstance(spec.api_key_env, str) else None
    if isinstance(spec.api_key_env, list):
        keys = [(key.env, key.weight) for key in spec.api_keys]
    if spec.kind in ("openai", "openai_compatible"):
        return OpenAIProvider(
            name,
            kind=spec.kind,
            api_key_env=keys,
            base_url=_base_url(name, spec, environ),
            organization_env=spec.organization_env,
            headers=spec.headers,
            async_transport=spec.async_transport,
            environ=environ,
            rng=rng,
            events=events,
        )
    if spec.kind == "anthropic":
        return AnthropicProvider(
            name,
            api_key_env=keys,
            base_url=_base_url(name, spec, environ),
            headers=spec.headers,
            async_transport=spec.async_transport,
            environ=environ,
            rng=rng,
            events=events,
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


def _base_url(name: str, spec: ProviderSpec, environ: Mapping[str, str]) -> str | None:
    """``base_url``, or the value of ``base_url_env``; errors name the variable, never its value."""
    if spec.base_url_env is None:
        return spec.base_url
    url = read_secret(environ, spec.base_url_env, provider=name, what="base URL")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"provider {name!r}: environment variable {spec.base_url_env} (the base URL) "
            "does not start with http:// or https://"
        )
    return url
