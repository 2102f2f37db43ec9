"""Exact-match cache keys: a hash of the normalized request, never of secrets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from policyrouter.policy.sampling import sampled_above
from policyrouter.types import Message, Result

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


@dataclass(frozen=True, slots=True)
class CachePlan:
    """A task's cache rule, as compiled."""

    ttl_s: float
    max_temperature: float
    force: bool
    scope: str
    stale_if_error_s: float
    max_entries: int


def cacheable(cache: CachePlan | None, temperature: float | None, force: bool | None) -> bool:
    if cache is None or force is False:
        return False
    if force or cache.force:
        return True
    return not sampled_above(temperature, cache.max_temperature)


def cache_key(
    cache: CachePlan,
    task: str,
    upstreams: Sequence[str],
    system: str | None,
    messages: Sequence[Message],
    max_output_tokens: int,
    temperature: float | None,
    tenant: str | None,
    extra: Any = None,
) -> str:
    """sha256 of the request's meaning: task, upstream models, prompt, parameters, output schema.

    Provider names, base URLs and keys are not part of it: nothing secret can be
    recovered from (or leak into) a key. Tenant-scoped caches include the tenant.
    """
    doc = [
        task,
        list(upstreams),
        system,
        list(messages),
        max_output_tokens,
        temperature,
        extra,
        tenant if cache.scope == "tenant" else None,
    ]
    digest = hashlib.sha256(_encode(doc).encode()).hexdigest()
    ns = f"t:{tenant}" if cache.scope == "tenant" else "g"
    return f"{ns}:{digest}"


def answer_from_cache(
    cached: Result, text: str, route: str, latency_s: float, task: str, request_id: str, stale: bool
) -> Result:
    """This request's answer from a cached ``Result``: the cached text, model, usage and output,
    at no cost, with no attempts, and this request's route, latency, task and request id."""
    return replace(
        cached,
        text=text,
        cost_usd=0.0,
        cache_hit=True,
        route=route,
        attempts=(),
        latency_s=latency_s,
        task=task,
        request_id=request_id,
        stale=stale,
    )
