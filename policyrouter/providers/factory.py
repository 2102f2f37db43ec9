"""Build a provider from its policy spec. No client is created and no key is read here:
adapters do both lazily, at the first call that needs them. A ``base_url_env`` is read
here, so a missing variable fails when the router is built, not at the first request."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict

from policyrouter.errors import ConfigurationError
from policyrouter.policy.checks.providers import plain_http_host
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.anthropic_clouds import AnthropicBedrockProvider, AnthropicVertexProvider
from policyrouter.providers.azure import AzureOpenAIProvider
from policyrouter.providers.base import Provider, read_secret
from policyrouter.providers.keys import EventSink, KeySpec
from policyrouter.providers.mock import MockProvider
from policyrouter.providers.openai_adapter import AsyncTransport, OpenAIProvider

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
    :class:`MockProvider` (with ``spec.mock`` settings; ``clock`` paces its latency),
    ``azure_openai`` -> :class:`AzureOpenAIProvider`, ``anthropic_bedrock`` /
    ``anthropic_vertex`` -> :class:`AnthropicBedrockProvider` / :class:`AnthropicVertexProvider`.
    ``rng`` picks the key of each call among several; ``events`` receives the key events."""
    if spec.kind == "mock":
        return _mock(name, spec, clock)
    shared = _Shared(
        api_key_env=_key_spec(spec),
        headers=spec.headers,
        async_transport=spec.async_transport,
        environ=environ,
        rng=rng,
        events=events,
    )
    if spec.kind in ("openai", "openai_compatible"):
        base_url = _base_url(name, spec, environ)
        return OpenAIProvider(name, kind=spec.kind, base_url=base_url, organization_env=spec.organization_env, **shared)
    if spec.kind == "anthropic":
        return AnthropicProvider(name, base_url=_base_url(name, spec, environ), **shared)
    if spec.kind == "azure_openai":
        return _azure(name, spec, shared)
    if spec.kind in ("anthropic_bedrock", "anthropic_vertex"):
        return _anthropic_cloud(name, spec, shared)
    raise ValueError(f"provider {name!r}: unknown kind {spec.kind!r}")


class _Shared(TypedDict):
    """The keyword arguments every HTTP provider takes the same way."""

    api_key_env: KeySpec
    headers: Mapping[str, str] | None
    async_transport: AsyncTransport
    environ: Mapping[str, str]
    rng: random.Random | None
    events: EventSink | None


def _key_spec(spec: ProviderSpec) -> KeySpec:
    """``api_key_env``: one variable name, or several keys with their weights."""
    if isinstance(spec.api_key_env, list):
        return [(key.env, key.weight) for key in spec.api_keys]
    return spec.api_key_env if isinstance(spec.api_key_env, str) else None


def _mock(name: str, spec: ProviderSpec, clock: Clock | None) -> Provider:
    settings = spec.mock
    return MockProvider(
        name,
        latency_s=settings.latency_s if settings is not None else 0.0,
        reply=settings.reply if settings is not None else None,
        clock=clock,
    )


def _azure(name: str, spec: ProviderSpec, shared: _Shared) -> Provider:
    if spec.api_version is None:
        raise ConfigurationError(f"provider {name!r}: kind azure_openai needs `api_version`")
    return AzureOpenAIProvider(
        name,
        endpoint=_endpoint(name, spec, shared["environ"]),
        api_version=spec.api_version,
        auth=spec.auth,
        **shared,
    )


def _anthropic_cloud(name: str, spec: ProviderSpec, shared: _Shared) -> Provider:
    """Claude on Bedrock or Vertex. ``validate`` reports a missing region or project; a policy
    loaded without it still fails here, before any request."""
    vertex = spec.kind == "anthropic_vertex"
    missing = [
        field for field in ("region", "project") if getattr(spec, field) is None and (vertex or field == "region")
    ]
    if missing:
        raise ConfigurationError(f"provider {name!r} (kind {spec.kind}) needs `{'` and `'.join(missing)}`")
    region, base_url = spec.region or "", _base_url(name, spec, shared["environ"])
    if vertex:
        return AnthropicVertexProvider(name, region=region, project=spec.project or "", base_url=base_url, **shared)
    return AnthropicBedrockProvider(name, region=region, aws_profile=spec.aws_profile, base_url=base_url, **shared)


def _base_url(name: str, spec: ProviderSpec, environ: Mapping[str, str]) -> str | None:
    """``base_url``, or the value of ``base_url_env``."""
    if spec.base_url_env is None:
        return spec.base_url
    return _url_from(environ, spec.base_url_env, name, "base URL")


def _endpoint(name: str, spec: ProviderSpec, environ: Mapping[str, str]) -> str:
    """An Azure provider's ``endpoint``, or the value of ``endpoint_env``."""
    if spec.endpoint_env is None:
        if spec.endpoint is None:
            raise ConfigurationError(f"provider {name!r}: kind azure_openai needs `endpoint` or `endpoint_env`")
        return spec.endpoint
    return _url_from(environ, spec.endpoint_env, name, "Azure OpenAI endpoint")


def _url_from(environ: Mapping[str, str], variable: str, provider: str, what: str) -> str:
    """A provider URL read from ``variable``: errors name the variable, never its value; plain
    http to a remote host is warned (the `insecure-base-url` rule, for a URL validate cannot see)."""
    url = read_secret(environ, variable, provider=provider, what=what)
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"provider {provider!r}: environment variable {variable} (the {what}) does not start with http:// or https://"
        )
    host = plain_http_host(url)
    if host is not None:
        logging.getLogger("policyrouter").warning(
            "policyrouter: provider %r sends its API key over plain http to %r (from %s); use https://",
            provider,
            host,
            variable,
        )
    return url
