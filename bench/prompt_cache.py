"""What provider prompt caching saves on a day of traffic that shares a 3,000-token system prompt.

    python bench/prompt_cache.py [--requests 20000] [--seed 0]

A generated day of `support` traffic (requests spread over 24 hours, a business-hours peak,
each sharing one 3,000-token system prompt plus 100 to 700 tokens of its own, answers of
100 to 300 tokens) is replayed by `simulate` (the router's one engine, the policy's prices)
through the same policy four ways: on Claude Sonnet without `prompt_cache`, with
`prompt_cache: {ttl: 5m}` and with `{ttl: 1h}`, and on GPT-4.1 mini with `prompt_cache`
(its cache key). Printed: cost, cache tokens read and written, and the saving against
uncached prices (the write premium deducted). Not a test: the numbers depend on the
traffic's shape (how often the prefix is reused within a lifetime).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator

from policyrouter.compile import compile_policy
from policyrouter.policy.models import Policy
from policyrouter.simulate import simulate
from policyrouter.simulate.traffic import TrafficRecord

DAY = 1_772_409_600.0  # 2026-03-02T00:00:00Z
PREFIX_TOKENS = 3_000

POLICY = {
    "version": 1,
    "providers": {
        "anthropic": {"kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
        "openai": {"kind": "openai", "api_key_env": "OPENAI_API_KEY"},
    },
    "models": {
        "sonnet": {
            "provider": "anthropic",
            "model": "claude-sonnet-4-20250514",
            "pricing": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
            "context_window": 200_000,
        },
        "mini": {
            "provider": "openai",
            "model": "gpt-4.1-mini-2025-04-14",
            "pricing": {"input": 0.4, "output": 1.6, "cached_input": 0.1},
            "context_window": 1_047_576,
        },
    },
    "tiers": {"claude": ["sonnet"], "gpt": ["mini"]},
}


def policy(tier: str, prompt_cache: dict[str, object] | None) -> Policy:
    task: dict[str, object] = {"tier": tier, "max_input_tokens": 8000, "max_output_tokens": 400}
    if prompt_cache is not None:
        task["prompt_cache"] = prompt_cache
    return Policy.model_validate({**POLICY, "tasks": {"support": task}})


def traffic(n: int, seed: int) -> Iterator[TrafficRecord]:
    """``n`` requests over one day, two thirds of them between 08:00 and 20:00 UTC, in time order."""
    rng = random.Random(seed)
    times = sorted(
        DAY + (8 * 3600 + rng.random() * 12 * 3600 if rng.random() < 2 / 3 else rng.random() * 86_400) for _ in range(n)
    )
    for ts in times:
        own = rng.randint(100, 700)
        yield TrafficRecord(
            ts,
            "support",
            PREFIX_TOKENS + own,
            rng.randint(100, 300),
            tenant="acme",
            prefix="support-system-v1",
            prefix_tokens=PREFIX_TOKENS,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = [
        ("sonnet, no prompt_cache", policy("claude", None)),
        ("sonnet, prompt_cache ttl 5m", policy("claude", {"ttl": "5m"})),
        ("sonnet, prompt_cache ttl 1h", policy("claude", {"ttl": "1h"})),
        ("gpt-4.1-mini, no prompt_cache", policy("gpt", None)),
        ("gpt-4.1-mini, prompt_cache", policy("gpt", {})),
    ]
    records = list(traffic(args.requests, args.seed))
    reports = simulate([(label, compile_policy(p)) for label, p in runs], records)
    print(f"{args.requests:,} requests over one day, a shared {PREFIX_TOKENS:,}-token system prompt")
    header = f"{'policy':<32}{'cost USD':>12}{'cache read':>14}{'cache write':>14}{'saved USD':>12}{'vs none':>10}"
    print(header)
    print("-" * len(header))
    base = {"sonnet": reports[0].cost_usd, "gpt-4.1-mini": reports[3].cost_usd}
    for (label, _), r in zip(runs, reports, strict=True):
        none = base[label.split(",")[0]]
        delta = f"{(r.cost_usd - none) / none:+.1%}" if none else "-"
        print(
            f"{label:<32}{r.cost_usd:>12,.2f}{r.prompt_cache_read_tokens:>14,}"
            f"{r.prompt_cache_write_tokens:>14,}{r.prompt_cache_saved_usd:>12,.2f}{delta:>10}"
        )


if __name__ == "__main__":
    main()
