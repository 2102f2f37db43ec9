"""How a cached answer is stored by the backends that serialize it (SQLite, Redis): JSON text."""

from __future__ import annotations

import json

from policyrouter.types import Result, Usage

__all__ = ["result_from_json", "result_to_json"]


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
            },
            "finish_reason": r.finish_reason,
            "tool_calls": list(r.tool_calls),
            "route": r.route,
            "task": r.task,
        }
    )


def result_from_json(raw: str) -> Result:
    d = json.loads(raw)
    return Result(
        text=d["text"],
        model=d["model"],
        provider=d["provider"],
        usage=Usage(**d["usage"]),
        cost_usd=0.0,
        cache_hit=True,
        route=d["route"],
        attempts=(),
        latency_s=0.0,
        task=d["task"],
        finish_reason=d["finish_reason"],
        tool_calls=tuple(d["tool_calls"]),
    )
