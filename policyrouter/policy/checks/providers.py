"""Providers: each real one can get its key, sets only what its kind uses, and keeps the key off plain http."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.models import ProviderSpec

__all__ = ["check_azure_settings", "check_provider_keys", "check_provider_settings", "plain_http_host"]

_KEYED_KINDS = ("openai", "anthropic", "openai_compatible")
_AZURE_ONLY = ("endpoint", "endpoint_env", "api_version")
_LOCAL_HOSTS = re.compile(
    r"^(localhost|127(\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0|host\.docker\.internal|[^/:]+\.local|[^/:]+\.localhost)$"
)


def check_provider_keys(ctx: Context) -> Iterator[Diagnostic]:
    """Each real provider names the environment variable holding its key."""
    for name, prov in ctx.policy.providers.items():
        keyed = prov.kind in _KEYED_KINDS or (prov.kind == "azure_openai" and prov.auth == "api_key")
        if keyed and prov.api_key_env is None:  # an empty list: key-list-empty
            yield ctx.diag(
                "error",
                "provider-no-key",
                f"provider `{name}` (kind {prov.kind}) has no way to get its API key",
                ("providers", name),
                "set `api_key_env` to the environment variable holding the key, e.g. "
                f"api_key_env: {name.upper().replace('-', '_')}_API_KEY"
                + (", or use `auth: entra_id`" if prov.kind == "azure_openai" else ""),
                key=True,
            )


def check_provider_settings(ctx: Context) -> Iterator[Diagnostic]:
    """Settings the provider kind ignores, two base URLs, and keys sent over plain http."""
    for name, prov in ctx.policy.providers.items():
        if prov.mock is not None and prov.kind != "mock":
            yield ctx.diag(
                "warning",
                "provider-setting-ignored",
                f"provider `{name}` has `mock` settings but its kind is {prov.kind}",
                ("providers", name, "mock"),
                "remove `mock`, or set `kind: mock`",
                key=True,
            )
        if prov.base_url is not None and prov.base_url_env is not None:
            yield ctx.diag(
                "error",
                "base-url-conflict",
                f"provider `{name}` sets both `base_url` and `base_url_env`",
                ("providers", name, "base_url_env"),
                "keep one; an environment overlay that switches to `base_url_env` writes `base_url: null`",
                key=True,
            )
        if prov.organization_env is not None and prov.kind not in ("openai", "openai_compatible"):
            yield ctx.diag(
                "warning",
                "provider-setting-ignored",
                f"provider `{name}` (kind {prov.kind}) does not use `organization_env`",
                ("providers", name, "organization_env"),
                "remove it; only OpenAI-style providers send an organization id",
                key=True,
            )
        for field in ("base_url", "endpoint"):
            url = getattr(prov, field)
            host = plain_http_host(url) if url and prov.kind != "mock" else None
            if host is not None:
                yield ctx.diag(
                    "warning",
                    "insecure-base-url",
                    f"provider `{name}` sends its API key over plain http to `{host}`",
                    ("providers", name, field),
                    "use https:// (plain http is only fine for localhost)",
                )


def plain_http_host(url: str) -> str | None:
    """The host a plain-http ``url`` sends the key to in clear text (``None``: https, or local)."""
    if not url.startswith("http://"):
        return None
    host = url[len("http://") :].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host if host.startswith("[") else host.split(":", 1)[0]
    return None if _LOCAL_HOSTS.match(host.lower()) else host


def check_azure_settings(ctx: Context) -> Iterator[Diagnostic]:
    """An ``azure_openai`` provider has one endpoint and an api_version; Azure settings elsewhere do nothing."""
    p = ctx.policy
    for name, prov in p.providers.items():
        if prov.kind != "azure_openai":
            for field in (*_AZURE_ONLY, "auth"):
                if field in prov.model_fields_set:
                    yield ctx.diag(
                        "warning",
                        "provider-setting-ignored",
                        f"provider `{name}` (kind {prov.kind}) does not use `{field}`",
                        ("providers", name, field),
                        "remove it, or set `kind: azure_openai` (only Azure OpenAI takes it)",
                        key=True,
                    )
            continue
        yield from _azure_provider(ctx, name, prov)
    for m_name, model in p.models.items():
        served_by = p.providers.get(model.provider)
        if model.deployment is not None and served_by is not None and served_by.kind != "azure_openai":
            yield ctx.diag(
                "warning",
                "provider-setting-ignored",
                f"model `{m_name}` sets `deployment` but its provider `{model.provider}` is kind {served_by.kind}",
                ("models", m_name, "deployment"),
                "remove `deployment` (only `azure_openai` providers route by deployment), or point the "
                "model at an azure_openai provider",
                key=True,
            )


def _azure_provider(ctx: Context, name: str, prov: ProviderSpec) -> Iterator[Diagnostic]:
    if prov.endpoint is None and prov.endpoint_env is None:
        yield ctx.diag(
            "error",
            "provider-missing-setting",
            f"provider `{name}` (kind azure_openai) has no endpoint",
            ("providers", name),
            "set `endpoint: https://<resource>.openai.azure.com`, or `endpoint_env: AZURE_OPENAI_ENDPOINT`",
            key=True,
        )
    if prov.endpoint is not None and prov.endpoint_env is not None:
        yield ctx.diag(
            "error",
            "endpoint-conflict",
            f"provider `{name}` sets both `endpoint` and `endpoint_env`",
            ("providers", name, "endpoint_env"),
            "keep one; an environment overlay that switches to `endpoint_env` writes `endpoint: null`",
            key=True,
        )
    for field in ("base_url", "base_url_env"):
        if getattr(prov, field) is not None:
            yield ctx.diag(
                "error",
                "endpoint-conflict",
                f"provider `{name}` (kind azure_openai) sets `{field}`; Azure OpenAI takes `endpoint`",
                ("providers", name, field),
                f"write the resource URL as `{field.replace('base_url', 'endpoint')}` "
                "(requests go to <endpoint>/openai/deployments/<deployment>/...)",
                key=True,
            )
    if prov.api_version is None:
        yield ctx.diag(
            "error",
            "provider-missing-setting",
            f"provider `{name}` (kind azure_openai) has no `api_version`",
            ("providers", name),
            "set the Azure OpenAI API version every request sends, e.g. api_version: 2024-10-21",
            key=True,
        )
    if prov.auth == "entra_id" and prov.api_key_env is not None:
        yield ctx.diag(
            "warning",
            "provider-setting-ignored",
            f"provider `{name}` uses `auth: entra_id`, so its `api_key_env` is never read",
            ("providers", name, "api_key_env"),
            "remove `api_key_env`, or use `auth: api_key`",
            key=True,
        )
