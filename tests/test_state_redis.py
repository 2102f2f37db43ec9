"""Shared state on a real redis-server: budgets, limits and breakers across processes.

Worker processes are started with ``spawn`` (fresh interpreters, nothing inherited but
arguments) and talk to the redis-server and the MockLLMServer started by the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, free_port
from test_budgets import MAX_IN, MAX_OUT, WORST, long_input, policy, worst_case_handler

from policyrouter import BudgetExceeded, ProviderRequest, ProviderResponse, Router, StateUnavailable, Usage
from policyrouter.cli.main import main
from policyrouter.compile import compile_policy
from policyrouter.engine import LEASE_MARGIN_S
from policyrouter.providers.mock import MockProvider
from policyrouter.state.base import BudgetCharge
from policyrouter.state.redis import RedisState
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

JOIN_S = 120


def _spawn(target: Any, *args: Any) -> multiprocessing.Process:
    p = multiprocessing.get_context("spawn").Process(target=target, args=args)
    p.start()
    return p


def _join(procs: list[multiprocessing.Process]) -> None:
    for p in procs:
        p.join(JOIN_S)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


# ---------------------------------------------------------------- budgets across processes
def _budget_worker(url: str, prefix: str, n: int, out: Any) -> None:
    router = Router(
        compile_policy(policy(WORST * 40)),
        {"p": MockProvider("p", worst_case_handler)},
        RedisState(url, key_prefix=prefix),
    )
    ok = denied = 0
    for _ in range(n):
        try:
            router.complete("s", long_input())
            ok += 1
        except BudgetExceeded:
            denied += 1
    out.put((ok, denied))


def test_budget_holds_across_4_processes_x_50_requests(redis_url: str, redis_prefix: str) -> None:
    limit = WORST * 40
    q = multiprocessing.get_context("spawn").Queue()
    procs = [_spawn(_budget_worker, redis_url, redis_prefix, 50, q) for _ in range(4)]
    _join(procs)
    results = [q.get(timeout=5) for _ in procs]
    assert sum(ok for ok, _ in results) == 40
    assert sum(d for _, d in results) == 160
    state = RedisState(redis_url, key_prefix=redis_prefix)
    [(_, spent, reserved)] = state.budget_counters("daily|")
    assert spent <= limit + 1e-9 and reserved == 0.0
    assert spent == pytest.approx(limit)
    rows = state.ledger_rows()
    assert len(rows) == 40 and len({r.request_id for r in rows}) == 40
    assert math.fsum(r.cost_usd for r in rows) == pytest.approx(spent)
    assert state.open_reservations() == 0


# ---------------------------------------------------------------- shared rpm limit
RPM = 10

LIMITED = """
version: 1
providers:
  oa: {{kind: openai, api_key_env: K, base_url: "{base}"}}
models:
  m:
    provider: oa
    model: lim-2025-01-01
    limits: {{rpm: {rpm}, on_limit: spill}}
  spare: {{provider: oa, model: spare-2025-01-01}}
tiers:
  t: [m, spare]
state: {{backend: redis, url_env: REDIS_URL, key_prefix: "{prefix}"}}
tasks:
  s: {{tier: t, max_output_tokens: 20, timeout_s: 10}}
"""


def _policy_worker(path: str, url: str, n: int, out: Any) -> None:
    router = Router.from_path(path, environ={"K": "sk-test-x", "REDIS_URL": url})
    models = [router.complete("s", f"q{i}").model for i in range(n)]
    out.put(models)


def test_shared_rpm_limit_keeps_server_429_at_zero(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.enforce_limits("lim-2025-01-01", rpm=RPM)
        path = tmp_path / "p.yaml"
        path.write_text(LIMITED.format(base=server.openai_base_url, rpm=RPM, prefix=redis_prefix))
        q = multiprocessing.get_context("spawn").Queue()
        procs = [_spawn(_policy_worker, str(path), redis_url, RPM, q) for _ in range(4)]
        _join(procs)
        models = [m for _ in procs for m in q.get(timeout=5)]
        assert server.count_429 == 0
        assert len(server.requests_for("lim-2025-01-01")) == RPM  # one shared window, not one per process
        assert models.count("m") == RPM and models.count("spare") == 3 * RPM


# ---------------------------------------------------------------- breaker across processes
BREAKER = """
version: 1
providers:
  oa: {{kind: openai, api_key_env: K, base_url: "{base}"}}
models:
  a: {{provider: oa, model: a-2025-01-01}}
  b: {{provider: oa, model: b-2025-01-01}}
tiers:
  t: [a, b]
retry_policies:
  default: {{max_attempts: 1}}
circuit_breakers:
  default: {{failure_threshold: 2, window_s: 600, cooldown_s: 600}}
state: {{backend: redis, url_env: REDIS_URL, key_prefix: "{prefix}"}}
tasks:
  s: {{tier: t, max_output_tokens: 20, timeout_s: 10}}
"""


def _breaker_worker(path: str, url: str, n: int, out: Any) -> None:
    router = Router.from_path(path, environ={"K": "sk-test-x", "REDIS_URL": url})
    out.put([[(a.model, a.outcome, a.error_kind) for a in router.complete("s", f"q{i}").attempts] for i in range(n)])


def test_breaker_opened_in_one_process_is_skipped_by_another(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    with MockLLMServer() as server:
        server.script("a-2025-01-01", [500, 500, 500, 500])
        path = tmp_path / "p.yaml"
        path.write_text(BREAKER.format(base=server.openai_base_url, prefix=redis_prefix))
        q = multiprocessing.get_context("spawn").Queue()
        _join([_spawn(_breaker_worker, str(path), redis_url, 2, q)])  # process A trips a's breaker
        a_traces = q.get(timeout=5)
        assert a_traces == [[("a", "error", "server_error"), ("b", "ok", None)]] * 2
        assert len(server.requests_for("a-2025-01-01")) == 2
        _join([_spawn(_breaker_worker, str(path), redis_url, 3, q)])  # process B
        b_traces = q.get(timeout=5)
        assert b_traces == [[("a", "skipped", "circuit_open"), ("b", "ok", None)]] * 3
        assert len(server.requests_for("a-2025-01-01")) == 2  # B never called a
        assert len(server.requests_for("b-2025-01-01")) == 5


# ---------------------------------------------------------------- durability
def test_restart_with_appendonly_loses_no_settled_spend(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        state = RedisState(server.url, key_prefix="durable")
        router = Router(compile_policy(policy(WORST * 100)), {"p": MockProvider("p", worst_case_handler)}, state)
        for i in range(7):
            router.complete("s", long_input(), tenant=f"t{i % 2}")
        before = (state.budget_counters("daily|"), state.ledger_rows())
        state.close()
        server.kill()  # SIGKILL: no shutdown save; only the append-only file remains
        server.start()
        again = RedisState(server.url, key_prefix="durable")
        after = (again.budget_counters("daily|"), again.ledger_rows())
        assert after == before
        [(_, spent, reserved)] = after[0]
        assert (spent, reserved) == (pytest.approx(7 * WORST), 0.0)
        assert len(after[1]) == 7
        again.close()
    finally:
        server.kill()


# ---------------------------------------------------------------- redis down
def _down_router(url: str, on_unavailable: str, **kw: Any) -> tuple[Router, RedisState]:
    state = RedisState(url, key_prefix="down", on_unavailable=on_unavailable, **kw)  # type: ignore[arg-type]
    router = Router(compile_policy(policy(WORST * 3)), {"p": MockProvider("p", worst_case_handler)}, state)
    return router, state


def test_redis_down_fail_closed_raises_state_unavailable() -> None:
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"  # nothing listens there
    router, _ = _down_router(url, "fail_closed")
    with pytest.raises(StateUnavailable) as info:
        router.complete("s", "hello")
    message = str(info.value)
    assert "unavailable" in message and "fail_closed" in message and f"127.0.0.1:{port}" in message
    assert "hunter2" not in message and "hunter2" not in repr(router.state)
    assert info.value.kind == "state_unavailable"


def test_redis_down_fail_open_proceeds_reports_and_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # port chosen, not started yet
    router, state = _down_router(server.url, "fail_open", retry_interval_s=0.0)
    events: list[dict[str, Any]] = []
    router.on("state_unavailable", events.append)
    router.on("state_restored", events.append)
    r = router.complete("s", long_input())
    assert r.text == "ok" and state.degraded
    assert [e["event"] for e in events] == ["state_unavailable"]
    assert events[0]["fail_open"] is True
    # local limits still hold while degraded: the budget fits 3 worst cases
    router.complete("s", long_input())
    router.complete("s", long_input())
    with pytest.raises(BudgetExceeded):
        router.complete("s", long_input())
    assert [e["event"] for e in events] == ["state_unavailable"]  # reported once per outage
    server.start()
    try:
        router.complete("s", long_input())  # Redis is back: shared counters again
        assert not state.degraded
        assert [e["event"] for e in events] == ["state_unavailable", "state_restored"]
        assert state.budget_counters("daily|")[0][1] == pytest.approx(WORST)
    finally:
        server.kill()


def test_cli_spend_against_a_down_redis_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["spend", "--state", f"redis://127.0.0.1:{free_port()}/0?key_prefix=x"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("policyrouter: error: redis state at redis://127.0.0.1:") and "Traceback" not in err


def test_cli_spend_reads_redis_counters(redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    state = RedisState(redis_url, key_prefix=redis_prefix)
    router = Router(compile_policy(policy(10.0)), {"p": MockProvider("p", worst_case_handler)}, state)
    router.complete("s", long_input(), tenant="acme")
    code = main(["spend", "--state", f"{redis_url}?key_prefix={redis_prefix}", "--by", "tenant", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    [group] = json.loads(out)["groups"]
    assert (group["key"], group["requests"], group["cost_usd"]) == ("acme", 1, pytest.approx(WORST))


# ---------------------------------------------------------------- SIGKILL mid-request
def _hang_worker(url: str, prefix: str, marker: str) -> None:
    def hang(req: ProviderRequest) -> ProviderResponse:
        Path(marker).write_text("in flight")
        time.sleep(600)  # the test kills this process while it "waits on the provider"
        return ProviderResponse("late", Usage(MAX_IN, MAX_OUT))

    router = Router(
        compile_policy(policy(WORST * 1.5)), {"p": MockProvider("p", hang)}, RedisState(url, key_prefix=prefix)
    )
    router.complete("s", long_input())


def test_sigkill_mid_request_reservation_expires_and_budget_recovers(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    marker = tmp_path / "in-flight"
    p = _spawn(_hang_worker, redis_url, redis_prefix, str(marker))
    deadline = time.monotonic() + JOIN_S
    while not marker.exists():  # startup sync only: no assertion on how long it took
        assert p.is_alive() and time.monotonic() < deadline, "worker never reached the provider"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
    p.join(JOIN_S)
    assert p.exitcode == -signal.SIGKILL
    now = RedisState(redis_url, key_prefix=redis_prefix)
    [(key, spent, reserved)] = now.budget_counters("daily|")
    assert (spent, reserved) == (0.0, pytest.approx(WORST, rel=0.01))  # the dead process still holds its lease
    router = Router(compile_policy(policy(WORST * 1.5)), {"p": MockProvider("p", worst_case_handler)}, now)
    with pytest.raises(BudgetExceeded):
        router.complete("s", long_input())
    # A process whose clock is past the lease (deadline_s + margin) sees it expired: no waiting in the test.
    lease_s = router.plan.tasks["s"].deadline_s + LEASE_MARGIN_S
    later = FakeClock(wall_start=time.time() + lease_s + 1)
    after = RedisState(redis_url, key_prefix=redis_prefix, clock=later)
    assert after.budget_used(key, later.wall()) == (0.0, 0.0)
    assert after.open_reservations() == 0
    r = Router(compile_policy(policy(WORST * 1.5)), {"p": MockProvider("p", worst_case_handler)}, after).complete(
        "s", long_input()
    )
    assert r.cost_usd == pytest.approx(WORST)
    assert after.budget_counters("daily|") == [(key, pytest.approx(WORST), 0.0)]


# ---------------------------------------------------------------- threads, asyncio, late settle
def test_budget_holds_under_100_threads_and_100_asyncio_tasks_on_redis(redis_url: str, redis_prefix: str) -> None:
    limit = WORST * 20
    state = RedisState(redis_url, key_prefix=redis_prefix)
    router = Router(compile_policy(policy(limit)), {"p": MockProvider("p", worst_case_handler)}, state)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            router.complete("s", long_input())
            outcome = "ok"
        except BudgetExceeded:
            outcome = "denied"
        with lock:
            outcomes.append(outcome)

    async def one() -> str:
        try:
            await router.acomplete("s", long_input())
            return "ok"
        except BudgetExceeded:
            return "denied"

    async def tasks() -> list[str]:
        return list(await asyncio.gather(*(one() for _ in range(100))))

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    outcomes += asyncio.run(tasks())
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 20 and outcomes.count("denied") == 180
    [(_, spent, reserved)] = state.budget_counters("daily|")
    assert (spent, reserved) == (pytest.approx(limit), 0.0)
    assert len(state.ledger_rows()) == 20 and state.open_reservations() == 0


def test_settle_after_the_lease_expired_counts_once(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock(wall_start=time.time())
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    key = "daily|2026-01-01|*"
    res = state.budget_reserve([BudgetCharge("daily", key, 1.0, 1.5, clock.wall() + 86400)], clock.wall(), 10)
    assert res.reservation_id
    clock.advance(11)
    assert state.budget_used(key, clock.wall()) == (0.0, 0.0)  # the lease ended: reserved given back
    state.budget_settle(res.reservation_id, 0.4, clock.wall())  # the worker was only slow: its spend counts
    state.budget_settle(res.reservation_id, 0.4, clock.wall())
    state.budget_release(res.reservation_id)
    assert state.budget_used(key, clock.wall()) == (pytest.approx(0.4), 0.0)


# ---------------------------------------------------------------- round trips
HOT_PATH = """
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-1, pricing: {input: 1, output: 1}, limits: {rpm: 1000, concurrency: 8}}
tiers:
  t: [m]
circuit_breakers:
  default: {failure_threshold: 5, window_s: 60, cooldown_s: 30}
budgets:
  daily: {scope: global, window: day, limit_usd: 100, soft_limit: 0.8}
  per-tenant: {scope: tenant, window: month, limit_usd: 10}
tasks:
  s: {tier: t, max_output_tokens: 50, temperature: 0, cache: {ttl_s: 60}}
"""


def counting_client(url: str, trips: list[str]) -> Any:
    """A redis-py client whose connections log each round trip (one write to the socket) by command."""
    import redis

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            head = command if isinstance(command, (bytes, str)) else command[0]
            head = head.encode() if isinstance(head, str) else head
            trips.append(head.split(b"\r\n")[2].decode().upper())  # *N, $len, NAME
            super().send_packed_command(command, check_health)

    return redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, connection_class=Counting))


def test_two_round_trips_per_request(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    trips: list[str] = []
    state = RedisState(client=counting_client(redis_url, trips), key_prefix=redis_prefix)
    path = tmp_path / "p.yaml"
    path.write_text(HOT_PATH)
    router = Router.from_path(path, state=state)
    router.complete("s", "warm up: loads the scripts, reads the soft-limit totals once", tenant="acme")
    trips.clear()
    assert not router.complete("s", "a miss", tenant="acme").cache_hit
    # one script before the call (cache lookup, breaker, slot, rate, reserve), one after it (slot release,
    # settle, cache store, ledger row); the soft-limit check reads the totals the last reservation returned
    assert trips == ["EVALSHA", "EVALSHA"]
    trips.clear()
    assert router.complete("s", "a miss", tenant="acme").cache_hit
    # the lookup, which admits nothing on a fresh entry; then the hit's ledger row, sent and not waited for
    assert trips == ["EVALSHA", "EVALSHA"]
    assert state.open_reservations() == 0 and state.slots_in_use("m") == 0


def test_ledger_keeps_rows_for_its_retention(redis_url: str, redis_prefix: str) -> None:
    from policyrouter.state.base import LedgerRow

    state = RedisState(redis_url, key_prefix=redis_prefix, ledger_retain_s=10)
    for i, ts in enumerate((1000.0, 1005.0, 1012.0)):
        state.ledger_append(LedgerRow(ts, f"r{i}", "t", "r", "m", None, None, 1, 1, 0, 0.1, "", "ok", 1))
    assert [r.request_id for r in state.ledger_rows()] == ["r1", "r2"]  # r0 is older than 10 s before r2


def test_one_half_open_probe_across_many_clients(redis_url: str, redis_prefix: str) -> None:
    from policyrouter.stages.circuit import BreakerSettings

    settings = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    clock = FakeClock()
    opener = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    assert opener.breaker_record("m", settings, clock.now(), False, "server_error", False).status == "open"
    clients = [RedisState(redis_url, key_prefix=redis_prefix, clock=clock) for _ in range(16)]  # 16 "processes"
    clock.advance(31)
    barrier = threading.Barrier(len(clients))
    verdicts: list[str] = []
    lock = threading.Lock()

    def admit(state: RedisState) -> None:
        barrier.wait()
        verdict = state.breaker_admit("m", settings, clock.now())
        with lock:
            verdicts.append(verdict)

    threads = [threading.Thread(target=admit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(verdicts) == ["open"] * 15 + ["probe"]


def test_a_counter_that_is_gone_is_not_re_created_by_a_release_or_an_expired_lease(
    redis_url: str, redis_prefix: str
) -> None:
    """A counter key evicted (or past its retention) while a reservation held it: giving the
    amount back must not leave a hash with no window and no TTL, which would stay forever."""
    import redis

    raw = redis.Redis.from_url(redis_url)
    clock = FakeClock(wall_start=time.time())
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    released, expired = "daily|2026-01-01|a", "daily|2026-01-01|b"
    for key in (released, expired):
        assert raw.ttl(state._k("bc", key)) == -2  # not there yet
    first = state.budget_reserve([BudgetCharge("daily", released, 1.0, 5.0, clock.wall() + 86400)], clock.wall(), 60)
    state.budget_reserve([BudgetCharge("daily", expired, 1.0, 5.0, clock.wall() + 86400)], clock.wall(), 10)
    assert first.reservation_id and raw.ttl(state._k("bc", released)) > 0  # a window, and a TTL
    raw.delete(state._k("bc", released), state._k("bc", expired))  # evicted
    state.budget_release(first.reservation_id)
    clock.advance(11)
    assert state.open_reservations() == 0  # the expired lease was swept
    assert raw.exists(state._k("bc", released), state._k("bc", expired)) == 0
    state.close()


def test_a_cache_entry_in_another_format_is_a_typed_error(redis_url: str, redis_prefix: str) -> None:
    """A key under our prefix that something else wrote is named, not a bare traceback."""
    import redis

    state = RedisState(redis_url, key_prefix=redis_prefix)
    redis.Redis.from_url(redis_url).set(state._k("ce", "k"), b"not ours")
    with pytest.raises(StateUnavailable, match="not in this library's format"):
        state.cache_get("k")
    state.close()
