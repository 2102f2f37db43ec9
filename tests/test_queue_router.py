"""The job API on Router (submit / job / wait / cancel) and the Worker, in one process, on a
real SQLite file; a FakeClock, so backoffs and waits never sleep."""

from __future__ import annotations

import statistics
import threading
from pathlib import Path
from typing import Any

import pytest

from policyrouter import Router
from policyrouter.errors import (
    ConfigurationError,
    InvalidRequest,
    JobNotFound,
    JobTimeout,
    ProviderError,
    StateUnavailable,
)
from policyrouter.providers.mock import MockProvider
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderResponse, Usage
from policyrouter.worker import Worker

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01, pricing: {input: 1.0, output: 2.0}}
tiers:
  t: [a]
state: {backend: sqlite, path: state.sqlite}
tasks:
  s: {tier: t, max_output_tokens: 20}
  direct: {tier: t}
queues:
  work:
    tasks: [s]
    priority:
      tenants: {vip: 2}
      metadata: {customer_tier: {enterprise: 1, free: 5}}
    aging: {dispatches_per_level: 50, max_wait_s: 3600}
    max_deliveries: 3
    retry: {backoff: {initial_s: 10, multiplier: 2, max_s: 60}, demote: 1}
"""


def _write(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(POLICY)
    return tmp_path / "p.yaml"


def router(tmp_path: Path, handler: Any = None, clock: FakeClock | None = None) -> Router:
    (tmp_path / "p.yaml").write_text(POLICY)
    providers = {"p": MockProvider("p", handler)} if handler is not None else None
    return Router.from_path(tmp_path / "p.yaml", clock=clock or FakeClock(), providers=providers)


def test_submit_runs_once_through_the_engine_and_the_ledger_names_the_job(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        jid = r.submit("s", "hello", tenant="acme", user="u1", metadata={"customer_tier": "enterprise"})
        queued = r.job(jid)
        assert queued.status == "queued" and queued.priority == 1 and queued.position == 0
        assert Worker(r).run_one()
        info = r.wait(jid, timeout=1)
        assert info.status == "done" and info.result is not None and "hello" in info.result["text"]
        assert info.result["request_id"] == jid
        rows = [row for row in r.state.ledger_rows() if row.request_id == jid]
        assert len(rows) == 1 and rows[0].tenant == "acme" and rows[0].user == "u1"


def test_priority_rules_tenant_then_metadata_then_default_and_explicit_wins(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        assert r.job(r.submit("s", "x", tenant="vip", metadata={"customer_tier": "free"})).priority == 2
        assert r.job(r.submit("s", "x", metadata={"customer_tier": "free"})).priority == 5
        assert r.job(r.submit("s", "x")).priority == 5
        assert r.job(r.submit("s", "x", priority=3, tenant="vip")).priority == 3


def test_same_idempotency_key_same_job(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        assert r.submit("s", "x", idempotency_key="o-1") == r.submit("s", "other", idempotency_key="o-1")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"task": "direct", "input": "x"}, "task"),
        ({"task": "s"}, "input"),
        ({"task": "s", "input": "x", "messages": [{"role": "user", "content": "y"}]}, "input"),
        ({"task": "s", "input": "x", "priority": 0}, "priority"),
        ({"task": "s", "input": "x", "not_after": 1.0}, "not_after"),
        ({"task": "s", "input": "x", "metadata": {"k": object()}}, "metadata"),
    ],
)
def test_a_bad_submit_is_refused_with_the_argument_named(tmp_path: Path, kwargs: dict[str, Any], argument: str) -> None:
    with router(tmp_path) as r, pytest.raises(InvalidRequest) as err:
        r.submit(**kwargs)
    assert argument in err.value.arguments


def test_unknown_job_and_wait_timeout_are_typed(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        with pytest.raises(JobNotFound):
            r.job("job-nope")
        jid = r.submit("s", "x")
        with pytest.raises(JobTimeout) as err:
            r.wait(jid, timeout=5)
        assert err.value.job.status == "queued"


def test_memory_state_has_no_shared_queue(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY.replace("{backend: sqlite, path: state.sqlite}", "{backend: memory}"))
    with Router.from_path(tmp_path / "p.yaml") as r, pytest.raises(ConfigurationError, match="sqlite"):
        r.submit("s", "x")


def test_cancel_a_waiting_job(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        jid = r.submit("s", "x")
        assert r.cancel(jid) and r.job(jid).status == "cancelled"
        assert not Worker(r).run_one()


def test_a_transient_failure_retries_demoted_then_dead_letters_with_its_trace(tmp_path: Path) -> None:
    clock = FakeClock()

    def down(req: Any) -> ProviderResponse:
        raise ProviderError("server_error", "upstream down", status_code=500)

    with router(tmp_path, down, clock) as r:
        jid = r.submit("s", "x", metadata={"customer_tier": "enterprise"})
        w = Worker(r)
        assert w.run_one()
        info = r.job(jid)
        assert info.status == "queued" and info.priority == 2 and info.error is not None
        assert not w.run_one()  # backing off
        clock.advance(10)
        assert w.run_one()
        clock.advance(20)
        assert w.run_one()
        dead = r.job(jid)
        assert dead.status == "dead" and dead.deliveries == 3
        assert dead.error is not None and dead.error["attempts"][0]["error_kind"] == "server_error"


def test_a_request_that_would_fail_again_fails_at_once(tmp_path: Path) -> None:
    def refuse(req: Any) -> ProviderResponse:
        raise ProviderError("bad_request", "no", status_code=400)

    with router(tmp_path, refuse) as r:
        jid = r.submit("s", "x")
        assert Worker(r).run_one()
        info = r.job(jid)
        assert info.status == "failed" and info.error is not None and info.error["kind"] == "bad_request"


def test_a_redelivered_job_already_answered_is_not_called_or_charged_again(tmp_path: Path) -> None:
    clock = FakeClock()
    calls: list[int] = []

    def answer(req: Any) -> ProviderResponse:
        calls.append(1)
        return ProviderResponse(text="ok", usage=Usage(3, 4))

    with router(tmp_path, answer, clock) as r:
        jid = r.submit("s", "x")
        jobs = r.jobs()
        d = jobs.engine.take(list(jobs.views.values()), "crashing", clock.wall())
        assert d is not None
        r.complete("s", "x", request_id=jid)  # the worker answered and was charged, then died
        clock.advance(61)  # its lease runs out
        assert Worker(r).run_one()
        info = r.job(jid)
        assert info.status == "done" and info.result is not None and info.result["recovered"] is True
        assert len(calls) == 1
        assert sum(1 for row in r.state.ledger_rows() if row.request_id == jid) == 1


def test_enterprise_waits_less_than_free_and_a_job_past_max_wait_goes_next(tmp_path: Path) -> None:
    """A free backlog and a stream of enterprise jobs (one per two dispatches, a job every 20 s):
    enterprise p95 wait is below free's, and whenever a queued job has waited ``max_wait_s``
    (600 s here), the job served is the oldest one waiting."""
    clock = FakeClock()
    (tmp_path / "p.yaml").write_text(POLICY.replace("max_wait_s: 3600", "max_wait_s: 600"))
    with Router.from_path(tmp_path / "p.yaml", clock=clock) as r:
        tier_of: dict[str, str] = {}
        for i in range(120):
            tier_of[r.submit("s", f"f{i}", tenant=f"t{i % 5}", metadata={"customer_tier": "free"})] = "free"
        waiting = dict.fromkeys(tier_of, clock.wall())
        w, served_past_bound = Worker(r), 0
        for n in range(400):
            if n % 2 == 0 and n < 240:
                jid = r.submit("s", f"e{n}", tenant=f"t{n % 5}", metadata={"customer_tier": "enterprise"})
                tier_of[jid], waiting[jid] = "enterprise", clock.wall()
            if not waiting:
                break
            oldest = min(waiting.values())
            assert w.run_one()
            started = next(j for j in waiting if r.job(j).status == "done")
            if clock.wall() - oldest >= 600:
                assert waiting[started] == oldest  # past the bound: the oldest goes first
                served_past_bound += 1
            del waiting[started]
            clock.advance(20)
        assert not waiting and served_past_bound > 0
        waits: dict[str, list[float]] = {"enterprise": [], "free": []}
        for jid, tier in tier_of.items():
            info = r.job(jid)
            assert info.started_at is not None
            waits[tier].append(info.started_at - info.enqueued_at)
        p95 = {t: statistics.quantiles(v, n=20)[-1] for t, v in waits.items()}
        assert p95["enterprise"] < p95["free"]


def test_tenant_b_first_job_is_next_while_tenant_a_has_10000_queued(tmp_path: Path) -> None:
    with router(tmp_path) as r:
        jobs = r.jobs()
        for i in range(10_000):
            r.submit("s", f"a{i}", tenant="A")
        w = Worker(r)
        for _ in range(3):
            assert w.run_one()
        b = r.submit("s", "b0", tenant="B")
        assert r.job(b).position == 0
        d = jobs.engine.take(list(jobs.views.values()), "w", r.clock.wall())
        assert d is not None and d.id == b


def test_stop_drains_and_hands_back_a_job_past_the_deadline(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    calls: list[str] = []

    def slow(req: Any) -> ProviderResponse:
        calls.append("call")
        entered.set()
        gate.wait(30)
        return ProviderResponse(text="late", usage=Usage(1, 1))

    (tmp_path / "p.yaml").write_text(POLICY)
    with Router.from_path(tmp_path / "p.yaml", providers={"p": MockProvider("p", slow)}) as r:
        jid = r.submit("s", "x")
        w = Worker(r, drain_s=0.2, poll_s=0.01)
        t = threading.Thread(target=w.run)
        t.start()
        assert entered.wait(10)
        w.stop()
        t.join(10)
        assert not t.is_alive()
        info = r.job(jid)
        assert info.status == "queued" and info.deliveries == 1  # handed back; the call may have been sent
        gate.set()  # the abandoned call returns and is recorded; the job stays handed back
        for thread in threading.enumerate():
            if thread.name.startswith("pr-worker-"):
                thread.join(10)
        assert r.job(jid).status == "queued"
        Worker(r, poll_s=0.01).run_one()  # the next delivery finds the ledger row: no second call
        done = r.job(jid)
        assert done.status == "done" and done.result is not None and done.result["recovered"] is True
        assert calls == ["call"]


def test_prometheus_job_counters_wait_histogram_and_queue_gauges(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from policyrouter.metrics import PrometheusMetrics

    clock = FakeClock()
    with router(tmp_path, clock=clock) as r:
        registry = CollectorRegistry()
        PrometheusMetrics(registry).attach(r)
        first = r.submit("s", "a")
        r.submit("s", "b")
        r.submit("s", "c")
        clock.advance(30)
        assert Worker(r).run_one()
        text = generate_latest(registry).decode()
        assert r.job(first).status == "done"
    assert 'policyrouter_jobs_total{outcome="done",queue="work"} 1.0' in text
    assert 'policyrouter_job_wait_seconds_sum{queue="work"} 30.0' in text
    assert 'policyrouter_queue_jobs{queue="work",status="queued"} 2.0' in text
    assert 'policyrouter_queue_oldest_wait_seconds{queue="work"} 30.0' in text


def test_arun_is_cancelled_into_a_drain(tmp_path: Path) -> None:
    import asyncio

    (tmp_path / "p.yaml").write_text(POLICY)

    async def scenario(r: Router) -> Worker:
        ids = [await r.asubmit("s", f"x{i}") for i in range(5)]
        w = Worker(r, concurrency=2, poll_s=0.01)
        task = asyncio.ensure_future(w.arun())
        done = await asyncio.gather(*(r.await_job(j, timeout=30, poll_s=0.01) for j in ids))
        assert [d.status for d in done] == ["done"] * 5
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return w

    with Router.from_path(tmp_path / "p.yaml") as r:
        assert asyncio.run(scenario(r)).processed == 5


def test_a_store_outage_while_ending_a_job_does_not_stop_the_worker(tmp_path: Path) -> None:
    with Router.from_path(_write(tmp_path), providers={"p": MockProvider("p")}) as r:
        first, second = r.submit("s", "a"), r.submit("s", "b")
        w = Worker(r, poll_s=0.01)
        engine = w._jobs.engine  # the queue store, made to fail once when the first job ends
        real, failed = engine.complete, []

        def flaky(*args: Any, **kwargs: Any) -> bool:
            if not failed:
                failed.append(True)
                raise StateUnavailable("down for a moment")
            return real(*args, **kwargs)

        engine.complete = flaky  # type: ignore[method-assign]
        t = threading.Thread(target=w.run)
        t.start()
        try:
            assert r.wait(second, timeout=10, poll_s=0.02).status == "done"  # the worker kept running
        finally:
            w.stop()
            t.join(10)
        assert failed and r.job(first).status in ("running", "queued", "done")  # its lease brings it back
