"""How a cached answer is stored by the backends that serialize it (SQLite, Redis): JSON text."""

from __future__ import annotations

import json
import logging

from policyrouter.types import Result, Usage

__all__ = ["cacheable_json", "result_from_json", "result_to_json"]

log = logging.getLogger("policyrouter")


def result_to_json(r: Result) -> str:
    u = r.usage
    return json.dumps(
        {
            "text": r.text,
            "model": r.model,
            "provider": r.provider,
            "usage": {  # every field spelled out: the stored format does not follow the class by accident
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cached_input_tokens": u.cached_input_tokens,
                "cache_write_tokens": u.cache_write_tokens,
                "estimated": u.estimated,
                "tool_uses": [list(pair) for pair in u.tool_uses],
                "reasoning_tokens": u.reasoning_tokens,
                "cache_write_1h_tokens": u.cache_write_1h_tokens,
            },
            "finish_reason": r.finish_reason,
            "tool_calls": list(r.tool_calls),
            "route": r.route,
            "task": r.task,
            "cost_usd": r.cost_usd,  # what the answer cost when it was made (a hit's ledger row needs it)
        }
    )


def result_from_json(raw: str) -> Result:
    d = json.loads(raw)
    usage = d["usage"]
    uses = tuple((str(name), int(count)) for name, count in usage.pop("tool_uses", ()))  # absent before tool fees
    return Result(
        text=d["text"],
        model=d["model"],
        provider=d["provider"],
        usage=Usage(**usage, tool_uses=uses),
        cost_usd=d.get("cost_usd", 0.0),  # entries stored before it was kept: 0.0
        cache_hit=True,
        route=d["route"],
        attempts=(),
        latency_s=0.0,
        task=d["task"],
        finish_reason=d["finish_reason"],
        tool_calls=tuple(d["tool_calls"]),
    )


def cacheable_json(r: Result) -> str | None:
    """``result_to_json``, or ``None`` (with a warning) for an answer JSON cannot hold (a
    custom provider's non-JSON tool-call value): the answer is served, just not cached."""
    try:
        return result_to_json(r)
    except (TypeError, ValueError) as exc:
        log.warning("policyrouter: an answer of task %r is not cached: %s", r.task, type(exc).__name__)
        return None
