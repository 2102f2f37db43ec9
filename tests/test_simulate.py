"""`policyrouter simulate`: traffic replayed through the plan; costs reproduced by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter import Router
from policyrouter.cli.main import main
from policyrouter.compile import compile_policy
from policyrouter.policy.loader import load_policy
from policyrouter.providers.mock import MockProvider
from policyrouter.simulate import (
    FaultModel,
    Outage,
    TrafficError,
    TrafficRecord,
    export_ledger,
    read_traffic,
    simulate,
    write_traffic,
)
from policyrouter.testing.clock import FakeClock

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
HALF_HOUR = 1800.0

# m: $1 in / $2 out per 1M tokens; n: $3 / $6. One request of 1000 in + 200 out costs
# 1000 x 1e-6 + 200 x 2e-6 = $0.0014 on m and 1000 x 3e-6 + 200 x 6e-6 = $0.0042 on n.
POLICY = """
version: 1
providers:
  p: {kind: mock}
  q: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: PRICE_M_IN, output: 2.0}, context_window: 100000}
  n: {provider: q, model: n-2025-01-01, pricing: {input: 3.0, output: 6.0}, context_window: 100000}
tiers:
  ONLY: [m]
  both: [m, n]
retry_policies:
  default: {max_attempts: 2, backoff: {initial_s: 1, multiplier: 2, max_s: 4, jitter: none}}
budgets:
  daily: {scope: global, window: day, limit_usd: LIMIT}
tasks:
  s: {tier: TIER, max_input_tokens: 4000, max_output_tokens: 200}
"""


def policy(tmp_path: Path, name: str, *, tier: str = "only", limit: float = 0.05, price_m_in: float = 1.0) -> Path:
    p = tmp_path / name
    p.mkdir()
    text = POLICY.replace("ONLY", "only").replace("TIER", tier).replace("LIMIT", str(limit))
    (p / "policy.yaml").write_text(text.replace("PRICE_M_IN", str(price_m_in)))
    return p


def one_day(tmp_path: Path) -> Path:
    """48 requests, one every 30 minutes from midnight, alternating tenants a and b."""
    path = tmp_path / "day.jsonl"
    records = [TrafficRecord(DAY + i * HALF_HOUR, "s", 1000, 200, 0, "ab"[i % 2], f"u{i % 5}", None) for i in range(48)]
    assert write_traffic(records, path) == 48
    return path


def plan_of(path: Path) -> object:
    return compile_policy(load_policy(path), None)


def test_hand_computed_cost_and_budget_exhaustion(tmp_path: Path) -> None:
    # The daily $0.05 budget reserves $0.0014 per request: 35 fit (35 x 0.0014 = $0.049),
    # the 36th would make $0.0504. So 35 answered, 13 refused, the first at 35 x 30 min = 17:30.
    [r] = simulate([("p", plan_of(policy(tmp_path, "p")))], read_traffic(one_day(tmp_path)))  # type: ignore[list-item]
    assert r.requests == 48 and r.answered == 35
    assert r.rejected == {"budget_exceeded": 13}
    assert round(r.cost_usd, 12) == round(35 * 0.0014, 12)
    assert round(r.by_tenant["a"].cost_usd, 12) == round(18 * 0.0014, 12)  # records 0, 2, .., 34
    assert round(r.by_tenant["b"].cost_usd, 12) == round(17 * 0.0014, 12)
    daily = r.budgets["daily"]
    assert daily.exhausted_at == DAY + 35 * HALF_HOUR and daily.refusals == 13
    assert r.cumulative()[-1][1] == pytest.approx(r.cost_usd)


def test_outage_falls_back_at_hand_computed_cost(tmp_path: Path) -> None:
    # p is down 10:00-11:00: the 10:00 and 10:30 requests try m twice (1 s backoff), then n.
    candidate = plan_of(policy(tmp_path, "p", tier="both", limit=100))
    outage = Outage("p", DAY + 10 * 3600, DAY + 11 * 3600)
    [r] = simulate([("p", candidate)], read_traffic(one_day(tmp_path)), faults=FaultModel(outages=(outage,)))  # type: ignore[list-item]
    assert r.answered == 48 and r.fallbacks == 2 and r.retried == 2
    assert r.calls == 46 + 2 * 3
    assert round(r.cost_usd, 12) == round(46 * 0.0014 + 2 * 0.0042, 12)
    assert round(r.by_model["n"].cost_usd, 12) == round(2 * 0.0042, 12)


def test_fault_rate_is_seeded(tmp_path: Path) -> None:
    plan = plan_of(policy(tmp_path, "p", tier="both", limit=100))
    runs = [
        simulate([("p", plan)], read_traffic(one_day(tmp_path)), faults=FaultModel(rate=0.3, seed=7))[0]  # type: ignore[list-item]
        for _ in range(2)
    ]
    assert runs[0].to_dict() == runs[1].to_dict()
    assert runs[0].retried > 0 and runs[0].calls > 48


def test_ledger_replays_to_the_same_cost(tmp_path: Path) -> None:
    """Real traffic, recorded by the router's ledger, replays to what it cost."""
    from policyrouter import ProviderRequest, ProviderResponse, Usage

    def handler(request: ProviderRequest) -> ProviderResponse:
        return ProviderResponse("ok", Usage(700, 150), "stop", "r", request.model)

    clock = FakeClock(wall_start=DAY)
    router = Router.from_path(
        policy(tmp_path, "p", limit=100), clock=clock, providers={"p": MockProvider("p", handler)}
    )
    total = 0.0
    for i in range(20):
        total += router.complete("s", f"request {i}", tenant="t", cache=False).cost_usd
        clock.advance(60)
    traffic = tmp_path / "ledger.jsonl"
    assert export_ledger(router.state, traffic) == 20
    [r] = simulate([("p", router.plan)], read_traffic(traffic))
    assert r.answered == 20 and round(r.cost_usd, 12) == round(total, 12)


def test_event_log_lines_are_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"event": "attempt", "task": "s"},
        {
            "event": "result",
            "time": "2026-03-02T01:00:00Z",
            "task": "s",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        {"ts": DAY, "task": "s", "input_tokens": 3, "output_tokens": 1, "metadata": '{"k": "v"}'},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    records = list(read_traffic(path))
    assert [(r.ts, r.input_tokens, r.metadata) for r in records] == [(DAY + 3600, 10, None), (DAY, 3, {"k": "v"})]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"task": "s"}', "missing `ts`"),
        ('{"ts": 1, "task": "s", "input_tokens": -1}', "non-negative integer"),
        ('{"ts": 1}', "missing `task`"),
    ],
)
def test_bad_traffic_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"ts": 1, "task": "s"}\n' + line + "\n")
    with pytest.raises(TrafficError, match=f"t.jsonl:2: .*{message}"):
        list(read_traffic(path))


def test_cli_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    policy(tmp_path, "p")
    one_day(tmp_path)
    assert main(["simulate", "p", "--traffic", "day.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "$0.049" in out
    assert out == snapshot


def test_cli_baseline_diff_table_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    policy(tmp_path, "main", tier="both", limit=100)
    policy(tmp_path, "cheaper", tier="both", limit=100, price_m_in=0.5)
    one_day(tmp_path)
    args = [
        "simulate",
        "cheaper",
        "--baseline",
        "main",
        "--traffic",
        "day.jsonl",
        "--outage",
        "p@2026-03-02T10:00:00Z/2026-03-02T11:00:00Z",
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert main([*args, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    # 46 requests on m save 1000 x $0.5/1M each: $0.023 less
    assert "-$0.023 (" in table and "-$0.023 (" in markdown
    assert table == snapshot(name="table")
    assert markdown == snapshot(name="markdown")


def test_cli_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "spend.png"
    args = ["simulate", str(policy(tmp_path, "p")), "--traffic", str(one_day(tmp_path)), "--format", "json"]
    assert main([*args, "--plot", str(chart)]) == 0
    [data] = json.loads(capsys.readouterr().out)
    assert data["answered"] == 35 and data["budgets"]["daily"]["refusals"] == 13
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_outage_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", str(policy(tmp_path, "p")), "--traffic", str(one_day(tmp_path))]
    assert main([*args, "--outage", "nobody@1/2"]) == 2
    assert "unknown provider 'nobody'" in capsys.readouterr().err
    assert main([*args, "--outage", "p@2026"]) == 2
    assert "PROVIDER@START/END" in capsys.readouterr().err


def test_cli_progress_bar_goes_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    policy(tmp_path, "p")
    one_day(tmp_path)
    assert main(["simulate", "p", "--traffic", "day.jsonl", "--no-progress", "--format", "json"]) == 0
    plain = capsys.readouterr()
    assert main(["simulate", "p", "--traffic", "day.jsonl", "--progress", "--format", "json"]) == 0
    shown = capsys.readouterr()
    assert shown.out == plain.out  # the report is unchanged; the bar never touches stdout
    assert plain.err == ""


def test_a_strategy_tiers_draw_is_not_counted_as_a_fallback(tmp_path: Path) -> None:
    # both models healthy, a weighted tier: every answer comes from the model the draw picked
    path = policy(tmp_path, "p", tier="spread", limit=100)
    text = (path / "policy.yaml").read_text()
    (path / "policy.yaml").write_text(
        text.replace("  both: [m, n]", "  both: [m, n]\n  spread: {strategy: weighted, models: [m, n]}")
    )
    [r] = simulate([("p", plan_of(path))], read_traffic(one_day(tmp_path)))  # type: ignore[list-item]
    assert r.answered == 48 and r.by_model["n"].requests > 0  # the draw did send some to n
    assert r.fallbacks == 0
