"""``policyrouter spend`` and ``status`` read the state a deployment writes, with the policy's
settings: a real SQLite file and a real redis-server under a key prefix; memory state is not
inspectable from outside; cache hits are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyrouter import Router
from policyrouter.cli.main import main

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 2.0}, context_window: 10000}
tiers:
  t: [m]
budgets:
  daily: {scope: global, window: day, limit_usd: 5}
state: STATE
tasks:
  s: {tier: t, max_input_tokens: 2000, max_output_tokens: 100, temperature: 0, cache: {ttl_s: 3600}}
"""
LONG_TENANT = "tenant-" + "x" * 150  # wider than any terminal: a CI log must show it whole


def write_policy(directory: Path, state: str) -> Path:
    p = directory / "policy.yaml"
    p.write_text(POLICY.replace("STATE", state))
    return p


def serve_traffic(policy: Path, environ: dict[str, str]) -> None:
    """Five requests: acme asks twice twice (two cache hits), the long tenant once."""
    with Router.from_path(policy, environ=environ) as router:
        for text in ("one", "two", "one", "two"):
            router.complete(task="s", input=text, tenant="acme")
        assert router.complete(task="s", input="one", tenant="acme").cache_hit
        router.complete(task="s", input="three", tenant=LONG_TENANT)


@pytest.fixture
def sqlite_policy(tmp_path: Path) -> Path:
    policy = write_policy(tmp_path, "{backend: sqlite, path: state/spend.sqlite}")
    serve_traffic(policy, {})
    return policy


@pytest.fixture
def redis_policy(tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = write_policy(tmp_path, f"{{backend: redis, url_env: APP_REDIS, key_prefix: {redis_prefix}}}")
    serve_traffic(policy, {"APP_REDIS": redis_url})
    monkeypatch.setenv("APP_REDIS", redis_url)
    return policy


def spend_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["spend", *argv, "--by", "tenant", "--format", "json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def assert_traffic(out: dict[str, object]) -> None:
    assert (out["requests"], out["cache_hits"], out["hit_rate"], out["empty"]) == (6, 3, 0.5, False)
    groups = {g["key"]: g for g in out["groups"]}  # type: ignore[attr-defined]
    assert (groups["acme"]["requests"], groups["acme"]["cache_hits"], groups["acme"]["hit_rate"]) == (5, 3, 0.6)
    assert (groups[LONG_TENANT]["requests"], groups[LONG_TENANT]["cache_hits"]) == (1, 0)
    daily = [b for b in out["budgets"] if b["budget"] == "daily"]  # type: ignore[attr-defined]
    assert (
        daily[0]["spent_usd"] == pytest.approx(sum(g["cost_usd"] for g in groups.values()))
        and daily[0]["spent_usd"] > 0
    )


def test_spend_reads_the_policys_sqlite_state_from_any_directory(
    sqlite_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the policy's relative state.path is beside the policy, not here
    out = spend_json(capsys, str(sqlite_policy))
    assert_traffic(out)
    assert out["state"] == f"sqlite {tmp_path / 'state' / 'spend.sqlite'}"
    assert_traffic(
        spend_json(capsys, str(sqlite_policy), "--state", f"sqlite:///{tmp_path / 'state' / 'spend.sqlite'}")
    )


def test_spend_takes_the_policys_redis_url_and_key_prefix(
    redis_policy: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_traffic(spend_json(capsys, str(redis_policy)))  # URL from the policy's url_env
    out = spend_json(capsys, str(redis_policy), "--state", redis_url)  # --state: still the policy's key_prefix
    assert_traffic(out)
    assert redis_prefix in str(out["state"])


def test_a_key_prefix_in_the_url_wins(redis_policy: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spend", str(redis_policy), "--state", f"{redis_url}?key_prefix=another-app", "--format", "json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["empty"] is True and out["requests"] == 0 and "'another-app'" in out["state"]
    assert "nothing recorded" in captured.err


def test_nothing_found_is_a_warning_and_with_require_data_a_failure(
    redis_policy: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # no policy: the default prefix `policyrouter`, where this deployment wrote nothing
    assert main(["spend", "--state", redis_url]) == 0
    captured = capsys.readouterr()
    assert "spend by task" in captured.out
    assert captured.err.startswith("policyrouter spend: warning: nothing recorded in redis redis://127.0.0.1:")
    assert "key prefix 'policyrouter'" in captured.err
    assert main(["spend", "--state", redis_url, "--require-data"]) == 1
    assert main(["spend", str(redis_policy), "--require-data"]) == 0  # the policy's prefix has data


def test_spend_text_shows_hits_and_is_not_truncated_off_a_terminal(
    sqlite_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spend", str(sqlite_policy), "--by", "tenant"]) == 0
    captured = capsys.readouterr()
    assert "cache hits" in captured.out and "hit rate" in captured.out and "60.0%" in captured.out
    assert LONG_TENANT in captured.out  # whole, in one piece
    assert "6 request(s), 3 cache hit(s) (50.0%)" in captured.out
    assert captured.err == ""


def test_memory_state_is_not_inspectable_from_outside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(tmp_path, "{backend: memory}")
    assert main(["spend", str(policy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("policyrouter spend: error: the policy's state backend is memory")
    assert "cannot be inspected from outside" in err
    assert main(["status", str(policy)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("status    UNKNOWN\n") and "cannot be inspected from outside" in out
    assert " ok" not in out.split("providers")[0] and "$0" not in out
    assert main(["status", str(policy), "--ping", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "cannot be inspected" in report["unknown"]
    assert report["breakers"] == [] and report["budgets"] == []
    assert [(p["provider"], p["status"]) for p in report["providers"]] == [("p", "ok")]  # --ping still works


def test_status_reads_the_policys_sqlite_state(sqlite_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(sqlite_policy), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["unknown"] is None
    assert report["budgets"][0]["spent_usd"] > 0


def test_status_and_spend_never_create_the_policys_missing_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, "{backend: sqlite, path: never/ran.sqlite}")
    for command in ("status", "spend"):
        assert main([command, str(policy)]) == 1
        err = capsys.readouterr().err
        assert "no state file" in err and str(tmp_path / "never" / "ran.sqlite") in err
    assert not (tmp_path / "never").exists()


def test_redis_policy_without_its_url_variable_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_REDIS", raising=False)
    policy = write_policy(tmp_path, "{backend: redis, url_env: APP_REDIS}")
    assert main(["spend", str(policy)]) == 1
    assert "$APP_REDIS" in capsys.readouterr().err


def test_spend_without_policy_or_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spend"]) == 2
    assert capsys.readouterr().err.startswith("policyrouter spend: error: give a policy PATH or --state URL")


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_a_cache_hit_of_an_unbudgeted_task_that_costs_money_is_in_the_ledger(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    text = POLICY.replace("budgets:\n  daily: {scope: global, window: day, limit_usd: 5}\n", "")
    state, environ = f"{{backend: {backend}}}", {}
    if backend == "redis":
        state = f"{{backend: redis, url_env: R, key_prefix: {request.getfixturevalue('redis_prefix')}}}"
        environ = {"R": request.getfixturevalue("redis_url")}
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("STATE", state))
    with Router.from_path(policy, environ=environ) as router:
        router.complete(task="s", input="one")
        assert router.complete(task="s", input="one").cache_hit
        rows = router.state.ledger_rows()
    assert [(r.outcome, r.cost_usd > 0) for r in rows] == [("ok", True), ("cache_hit", False)]


def test_an_unreachable_redis_is_an_error_even_when_the_policy_fails_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_server import free_port

    monkeypatch.setenv("APP_REDIS", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    policy = write_policy(tmp_path, "{backend: redis, url_env: APP_REDIS, on_unavailable: fail_open}")
    assert main(["spend", str(policy), "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "unavailable" in captured.err  # never $0 from an empty local fallback
