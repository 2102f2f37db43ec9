"""Providers: each real one can get its key, sets only what its kind uses, and keeps the key off plain http."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context

__all__ = ["check_provider_keys", "check_provider_settings"]

_KEYED_KINDS = ("openai", "anthropic", "openai_compatible")
_LOCAL_HOSTS = re.compile(
    r"^(localhost|127(\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0|host\.docker\.internal|[^/:]+\.local|[^/:]+\.localhost)$"
)


def check_provider_keys(ctx: Context) -> Iterator[Diagnostic]:
    """Each real provider names the environment variable holding its key."""
    for name, prov in ctx.policy.providers.items():
        if prov.kind in _KEYED_KINDS and prov.api_key_env is None:  # an empty list: key-list-empty
            yield ctx.diag(
                "error",
                "provider-no-key",
                f"provider `{name}` (kind {prov.kind}) has no way to get its API key",
                ("providers", name),
                "set `api_key_env` to the environment variable holding the key, e.g. "
                f"api_key_env: {name.upper().replace('-', '_')}_API_KEY",
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
        if prov.base_url and prov.base_url.startswith("http://") and prov.kind != "mock":
            host = prov.base_url[len("http://") :].split("/", 1)[0].rsplit("@", 1)[-1]
            host = host if host.startswith("[") else host.split(":", 1)[0]
            if not _LOCAL_HOSTS.match(host.lower()):
                yield ctx.diag(
                    "warning",
                    "insecure-base-url",
                    f"provider `{name}` sends its API key over plain http to `{host}`",
                    ("providers", name, "base_url"),
                    "use https:// (plain http is only fine for localhost)",
                )
