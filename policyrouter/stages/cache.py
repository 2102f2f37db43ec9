"""Exact-match cache keys: a hash of the normalized request, never of secrets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from policyrouter.plan import CachePlan, Chain
from policyrouter.types import Message

# Built once: ``json.dumps`` with these options would build a new encoder per call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def cacheable(cache: CachePlan | None, temperature: float | None, force: bool | None) -> bool:
    if cache is None or force is False:
        return False
    if force or cache.force:
        return True
    return (temperature or 0.0) <= cache.max_temperature


def cache_key(
    cache: CachePlan,
    task: str,
    chain: Chain,
    system: str | None,
    messages: Sequence[Message],
    max_output_tokens: int,
    temperature: float | None,
    tenant: str | None,
    extra: Any = None,
) -> str:
    """sha256 of the request's meaning: task, chain, prompt, parameters, output schema.

    Provider names, base URLs and keys are not part of it: nothing secret can be
    recovered from (or leak into) a key. Tenant-scoped caches include the tenant.
    """
    doc = [
        task,
        [m.upstream for m in chain.models],
        system,
        list(messages),
        max_output_tokens,
        temperature,
        extra,
        tenant if cache.scope == "tenant" else None,
    ]
    raw = _ENCODE(doc)
    ns = f"t:{tenant}" if cache.scope == "tenant" else "g"
    return f"{ns}:{hashlib.sha256(raw.encode()).hexdigest()}"
