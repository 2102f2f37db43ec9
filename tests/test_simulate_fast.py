"""The fast replay loop and the router's own retry loop produce the same report."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from policyrouter.compile import compile_policy
from policyrouter.policy.loader import load_policy
from policyrouter.simulate import (
    FaultModel,
    Outage,
    TrafficError,
    generate_traffic,
    read_traffic,
    simulate,
    write_traffic,
)
from policyrouter.simulate.traffic import parse_record

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()

# Four busy hours through every rule the loop applies: routes on tokens and metadata, a soft limit that degrades,
# a global budget that runs out in the fourth hour, per-tenant and per-model budgets, a breaker
# that trips in outages, rpm limits that make requests wait (m) and spill (n), a total
# attempt cap, retries with jitter, truncation and rejection of long inputs.
POLICY = """
version: 1
providers:
  p: {kind: mock}
  q: {kind: mock}
  g: {kind: mock}
models:
  m:
    provider: p
    model: m-2025-01-01
    pricing: {input: 1.0, output: 2.0, cached_input: 0.25}
    context_window: 100000
    limits: {rpm: 3, tpm: 9000, on_limit: wait, max_wait_s: 30}
  n:
    provider: q
    model: n-2025-01-01
    pricing: {input: 3.0, output: 6.0}
    context_window: 100000
    limits: {rpm: 2, concurrency: 4, on_limit: spill}
  k:
    provider: g
    model: k-2025-01-01
    pricing: {input: 0.5, output: 0.5}
    context_window: 8000
    circuit_breaker: tight
tiers:
  cheap: [k, m]
  both: [m, n]
  best: [n, m, k]
retry_policies:
  default: {max_attempts: 3, backoff: {initial_s: 1, multiplier: 2, max_s: 8, jitter: full}}
circuit_breakers:
  tight: {failure_threshold: 2, window_s: 600, cooldown_s: 900}
budgets:
  daily:
    scope: global
    window: day
    limit_usd: 2.5
    soft_limit: 0.5
    on_soft_limit: {degrade_to: cheap}
  per-tenant: {scope: tenant, window: day, limit_usd: 0.8}
  per-model: {scope: model, window: hour, limit_usd: 0.5}
tasks:
  s:
    tier: both
    max_input_tokens: 4000
    on_input_overflow: truncate_end
    max_output_tokens: 300
    routes:
      - name: vip
        when: {metadata: {tier: vip}}
        tier: best
  c: {tier: cheap, max_input_tokens: 3000, on_input_overflow: reject, max_output_tokens: 50, max_total_attempts: 3}
"""


def traffic(tmp_path: Path, n: int = 3000) -> Path:
    path = tmp_path / "day.jsonl"
    records = generate_traffic(
        n,
        start=DAY,
        duration_s=14_400.0,
        tasks={"s": (2500, 250), "c": (2000, 20), "unknown": (10, 10)},
        tenants=["a", "b", "c", "d"],
        metadata=[None, {"tier": "vip"}, None],
        seed=3,
    )
    write_traffic(records, path)
    return path


@pytest.mark.parametrize(
    "faults",
    [
        FaultModel(),
        FaultModel(rate=0.2, seed=5),
        FaultModel(
            rate=0.05,
            seed=1,
            outages=(
                Outage("g", DAY + 3600, DAY + 2 * 3600),
                Outage("p", DAY + 2.5 * 3600, DAY + 2.75 * 3600, "server_error"),
                Outage("q", DAY + 3 * 3600, DAY + 3.5 * 3600, "context_length"),
            ),
        ),
    ],
)
def test_fast_and_full_paths_agree(tmp_path: Path, faults: FaultModel) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "policy.yaml").write_text(POLICY)
    plan = compile_policy(load_policy(tmp_path / "p"), None)
    path = traffic(tmp_path)
    fast, full = (
        simulate([("p", plan)], read_traffic(path), faults=faults, seed=11, fast=flag)[0] for flag in (True, False)
    )
    assert json.dumps(fast.to_dict()) == json.dumps(full.to_dict())
    # the case is not vacuous: the budget runs out, the soft limit degrades, calls retry
    assert any(b.exhausted_at is not None for b in fast.budgets.values())
    assert fast.degraded > 0 and fast.answered > 0 and fast.rejected_total > 0
    if faults.rate:
        assert fast.retried > 0 and fast.fallbacks > 0


def test_batched_reader_matches_line_by_line_parsing(tmp_path: Path) -> None:
    """Odd lines leave the scanner's fast path and parse exactly as ``json.loads`` +
    ``parse_record`` parse them, with the right line number on an error."""
    lines = [
        b'{"ts":1.5,"task":"s","input_tokens":3,"output_tokens":1,"cached_input_tokens":0,"tenant":"a","user":null}',
        b'{"ts": 2.5, "task": "s", "input_tokens": 4, "output_tokens": 2}\r',  # CRLF
        b"",
        b"   ",
        b'  {"ts": 3, "task": "s", "metadata": {"tier": "vip"}}  ',  # padded, int ts
        '{"ts": 4.0, "task": "s\u2028x", "tenant": "caf\u00e9", "metadata": "{}"}'.encode(),
        b'{"event": "attempt", "task": "s"}',
        b'{"ts": 5.0, "task": "s", "input_tokens": 1, "output_tokens": 1, "usage": {"input_tokens": 9}}',
        b'{"time": "2026-03-02T01:00:00Z", "task": "s", "metadata": {}}',
        b'{"ts": 6.0, "task": "s", "input_tokens": 7, "output_tokens": 0, "metadata": {"k": 1}}',
    ]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [
        parse_record(json.loads(raw), "x") for raw in lines if raw.strip() and parse_record(json.loads(raw), "x")
    ]
    got = list(read_traffic(path))
    assert got == expected and len(got) == 7
    assert got[4].input_tokens == 9 and got[2].metadata == {"tier": "vip"} and got[3].metadata is None

    path.write_bytes(b"\n".join([*lines, b'{"ts": 1.0, "task": "s"} x']) + b"\n")
    with pytest.raises(TrafficError, match=f"odd.jsonl:{len(lines) + 1}: not JSON"):
        list(read_traffic(path))
    path.write_bytes(b"\n".join([*lines, b'{"ts": 1.0, "task": "\xff"}']) + b"\n")
    with pytest.raises(TrafficError, match=f"odd.jsonl:{len(lines) + 1}: not JSON"):
        list(read_traffic(path))
