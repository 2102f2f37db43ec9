"""Key rotation: a provider's list of key variables is non-empty, names each once, and weighs one above 0."""

from __future__ import annotations

from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.source import PathKey

__all__ = ["check_key_lists"]


def check_key_lists(ctx: Context) -> Iterator[Diagnostic]:
    """Each ``api_key_env`` list: not empty, no variable twice, not every weight 0."""
    for name, prov in ctx.policy.providers.items():
        listed = prov.api_key_env
        if not isinstance(listed, list):
            continue
        here: PathKey = ("providers", name, "api_key_env")
        if not listed:
            yield ctx.diag(
                "error",
                "key-list-empty",
                f"provider `{name}` lists no API key variable",
                here,
                f"name at least one environment variable, e.g. api_key_env: [{name.upper().replace('-', '_')}_API_KEY]",
            )
            continue
        seen: dict[str, int] = {}
        for i, key in enumerate(prov.api_keys):
            first = seen.setdefault(key.env, i)
            if first != i:
                yield ctx.diag(
                    "error",
                    "duplicate-key-env",
                    f"provider `{name}` lists the key variable {key.env} twice (entries {first + 1} and {i + 1})",
                    (*here, i) if isinstance(listed[i], str) else (*here, i, "env"),
                    "list each variable once; to send more requests to one key, raise its `weight`",
                )
        if all(key.weight == 0 for key in prov.api_keys):
            yield ctx.diag(
                "error",
                "all-keys-drained",
                f"every key of provider `{name}` has weight 0: no key is meant to serve requests",
                here,
                "give the key that should serve a weight above 0 (weight 0 only drains an old key "
                "while another one serves)",
            )
