"""Exact-match cache keys: a hash of the normalized request, never of secrets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from policyrouter.fastinit import maker
from policyrouter.plan import CachePlan, Chain
from policyrouter.types import Message, Result

_encode: Callable[[Any], str] | None = None
_sha256: Callable[[bytes], Any] | None = None


def _encoders() -> tuple[Callable[[Any], str], Callable[[bytes], Any]]:
    """json and hashlib load on the first cache key, not at ``import policyrouter``; the
    encoder is built once (``json.dumps`` with these options builds one per call)."""
    global _encode, _sha256
    if _encode is None or _sha256 is None:
        import hashlib
        import json

        _encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
        _sha256 = hashlib.sha256
    return _encode, _sha256


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
    encode, sha256 = _encoders()
    raw = encode(doc)
    ns = f"t:{tenant}" if cache.scope == "tenant" else "g"
    return f"{ns}:{sha256(raw.encode()).hexdigest()}"


# The key of a plain request (one user message, no extra parameters, schema or tools) by its
# inputs: a repeated prompt is hashed once. Keyed on the exact types of the numbers too (JSON
# writes 0, 0.0 and false differently), on the chain by identity (kept and compared), and only
# for prompts up to _MEMO_MAX_CHARS so the memo stays small.
_memo: dict[tuple[Any, ...], tuple[Chain, str]] = {}
_MEMO_MAX_ENTRIES = 2048
_MEMO_MAX_CHARS = 8192


def input_cache_key(
    cache: CachePlan,
    task: str,
    chain: Chain,
    system: str | None,
    input: str,
    max_output_tokens: int,
    temperature: float | None,
    tenant: str | None,
) -> str:
    """``cache_key`` of the messages ``({"role": "user", "content": input},)`` with no extra, memoized."""
    if len(input) > _MEMO_MAX_CHARS:
        return cache_key(
            cache, task, chain, system, ({"role": "user", "content": input},), max_output_tokens, temperature, tenant
        )
    mk = (
        task,
        id(chain),
        system,
        input,
        max_output_tokens,
        type(max_output_tokens),
        temperature,
        type(temperature),
        cache.scope,
        tenant if cache.scope == "tenant" else None,
    )
    hit = _memo.get(mk)
    if hit is not None and hit[0] is chain:
        return hit[1]
    key = cache_key(
        cache, task, chain, system, ({"role": "user", "content": input},), max_output_tokens, temperature, tenant
    )
    if len(_memo) >= _MEMO_MAX_ENTRIES:
        _memo.clear()
    _memo[mk] = (chain, key)
    return key


_new_result = maker(Result)


def answer_from_cache(
    cached: Result, text: str, route: str, latency_s: float, task: str, request_id: str, stale: bool
) -> Result:
    """This request's answer from a cached ``Result``: the cached text, model, usage and output,
    at no cost, with no attempts, and this request's route, latency, task and request id."""
    return _new_result(  # positional, every field in order (fastinit.maker): a cache hit is a hot path
        text,
        cached.model,
        cached.provider,
        cached.usage,
        0.0,  # cost_usd
        True,  # cache_hit
        route,
        (),  # attempts
        latency_s,
        task,
        cached.finish_reason,
        request_id,
        stale,
        cached.parsed,
        cached.tool_calls,
    )
