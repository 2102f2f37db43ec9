"""Queue engine conformance: the SQLite file engine and the Redis engine (a real redis-server)
obey one protocol (``policyrouter.queue.base``), on the test's own times (``now`` is an argument)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from policyrouter.queue.base import NewJob, QueueEngine, QueueView, new_job_id

T0 = 1_767_225_600.0
Q = QueueView(name="bg", level=10, fair=True, max_wait_s=None, max_deliveries=3, lease_s=30.0, result_ttl_s=3600.0,
              backoff_initial_s=5.0, backoff_multiplier=2.0, backoff_max_s=60.0, demote=1)  # fmt: skip


@pytest.fixture(params=["sqlite", "redis"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueEngine]:
    from policyrouter.queue.redis import RedisQueue
    from policyrouter.queue.sqlite import SqliteQueue

    e: QueueEngine
    if request.param == "sqlite":
        e = SqliteQueue(tmp_path / "q.sqlite")
    else:
        e = RedisQueue(request.getfixturevalue("redis_url"), key_prefix=request.getfixturevalue("redis_prefix"))
    yield e
    e.close()


def job(prio: int = 5, tenant: str | None = "a", key: str | None = None, not_after: float | None = None) -> NewJob:
    return NewJob(new_job_id(), "s", '{"task":"s","input":"x"}', prio, tenant, key, not_after)


def submit(e: QueueEngine, q: QueueView = Q, now: float = T0, **kw: object) -> str:
    jid, created = e.submit(q, job(**kw), now)  # type: ignore[arg-type]
    assert created
    return jid


def drain(e: QueueEngine, q: QueueView = Q, now: float = T0) -> list[str]:
    out = []
    while (d := e.take([q], "w", now)) is not None:
        assert e.complete(q, d.id, d.token, "{}", now)
        out.append(d.id)
    return out


def test_submit_take_complete_and_read_back(engine: QueueEngine) -> None:
    jid = submit(engine)
    info = engine.get(jid, T0)
    assert info is not None and info.status == "queued" and info.position == 0 and info.priority == 5
    d = engine.take([Q], "w1", T0 + 1)
    assert d is not None and d.id == jid and d.deliveries == 1 and d.lease_until == T0 + 31
    assert engine.get(jid, T0 + 1).status == "running"  # type: ignore[union-attr]
    assert engine.take([Q], "w2", T0 + 1) is None  # nobody else gets it
    assert engine.complete(Q, jid, d.token, '{"text":"hi"}', T0 + 2)
    done = engine.get(jid, T0 + 3)
    assert done is not None and done.status == "done" and done.result == {"text": "hi"} and done.done
    assert engine.get(jid, T0 + 2 + 3600 + 1) is None  # past result_ttl_s


def test_same_idempotency_key_gives_the_same_job(engine: QueueEngine) -> None:
    first = submit(engine, key="order-7")
    again, created = engine.submit(Q, job(key="order-7"), T0 + 5)
    assert (again, created) == (first, False)
    assert drain(engine) == [first]  # one job, not two


def test_priority_classes_then_submission_order(engine: QueueEngine) -> None:
    q = replace(Q, fair=False)
    free = [submit(engine, q, prio=5) for _ in range(3)]
    ent = [submit(engine, q, prio=1) for _ in range(3)]
    assert drain(engine, q) == ent + free


def test_a_tenants_backlog_does_not_hold_back_another_tenants_first_job(engine: QueueEngine) -> None:
    backlog = [submit(engine, tenant="A") for _ in range(500)]
    for _ in range(7):
        d = engine.take([Q], "w", T0)
        assert d is not None and d.id in backlog
        engine.complete(Q, d.id, d.token, "{}", T0)
    b_first = submit(engine, tenant="B")
    d = engine.take([Q], "w", T0)
    assert d is not None and d.id == b_first  # within one dispatch of its arrival


def test_aging_bounds_how_many_newer_high_priority_jobs_overtake(engine: QueueEngine) -> None:
    q = replace(Q, fair=False)
    old_free = submit(engine, q, prio=5)
    order = []
    for _ in range(80):  # a steady stream of enterprise jobs, one per dispatch
        submit(engine, q, prio=1)
        d = engine.take([q], "w", T0)
        assert d is not None
        engine.complete(q, d.id, d.token, "{}", T0)
        order.append(d.id)
    # class 5 vs class 1 with 10 dispatches per class: at most 4 * 10 newer jobs go first
    assert old_free in order and order.index(old_free) <= 4 * q.level


def test_a_job_past_max_wait_is_served_next(engine: QueueEngine) -> None:
    q = replace(Q, max_wait_s=60.0, fair=False)
    old = submit(engine, q, prio=9)
    for _ in range(20):
        submit(engine, q, now=T0 + 30, prio=1)
    d = engine.take([q], "w", T0 + 61)
    assert d is not None and d.id == old


def test_an_expired_lease_hands_the_job_back_then_dead_letters_it(engine: QueueEngine) -> None:
    jid = submit(engine)
    now = T0
    for n in (1, 2, 3):
        d = engine.take([Q], f"w{n}", now)
        assert d is not None and d.id == jid and d.deliveries == n
        stale = d
        now += Q.lease_s + 1  # the worker died: no renewal
    assert engine.take([Q], "w4", now) is None  # max_deliveries=3 reached: dead, not delivered again
    info = engine.get(jid, now)
    assert info is not None and info.status == "dead" and info.error and info.error["kind"] == "lease_expired"
    assert not engine.complete(Q, jid, stale.token, "{}", now)  # a late worker cannot overwrite it
    assert [j.id for j in engine.dead(Q)] == [jid]
    assert engine.retry_dead(Q, jid, now)
    d = engine.take([Q], "w5", now)
    assert d is not None and d.id == jid and d.deliveries == 1


def test_renewal_keeps_the_lease(engine: QueueEngine) -> None:
    jid = submit(engine)
    d = engine.take([Q], "w", T0)
    assert d is not None
    assert engine.renew(jid, d.token, T0 + 100)
    assert engine.take([Q], "w2", T0 + 50) is None
    assert not engine.renew(jid, "someone-else", T0 + 200)


def test_a_failed_delivery_backs_off_demoted_and_a_final_failure_stays(engine: QueueEngine) -> None:
    jid = submit(engine, prio=2)
    d = engine.take([Q], "w", T0)
    assert d is not None
    assert engine.fail(Q, jid, d.token, '{"kind":"rate_limited"}', T0, retry=True) == "queued"
    assert engine.take([Q], "w", T0 + 4.9) is None  # backoff 5 s
    d = engine.take([Q], "w", T0 + 5)
    assert d is not None and d.id == jid
    info = engine.get(jid, T0 + 5)
    assert info is not None and info.priority == 3  # demoted one class
    assert engine.fail(Q, jid, d.token, '{"kind":"bad_request"}', T0 + 6, retry=False) == "failed"
    info = engine.get(jid, T0 + 6)
    assert info is not None and info.status == "failed" and info.error == {"kind": "bad_request"}
    assert engine.fail(Q, jid, d.token, "{}", T0 + 7, retry=True) is None  # no longer held


def test_release_hands_back_and_the_next_delivery_knows_it_may_have_been_sent(engine: QueueEngine) -> None:
    jid = submit(engine)
    d = engine.take([Q], "w", T0)
    assert d is not None and engine.release(jid, d.token, T0)
    d = engine.take([Q], "w", T0)
    assert d is not None and d.id == jid and d.deliveries == 2  # the worker checks the ledger before calling


def test_cancel_only_a_waiting_job(engine: QueueEngine) -> None:
    waiting, running = submit(engine), submit(engine)
    d = engine.take([Q], "w", T0)
    assert d is not None and d.id == waiting
    assert engine.cancel(running, T0)
    assert not engine.cancel(waiting, T0)  # running: it finishes
    assert engine.get(running, T0).status == "cancelled"  # type: ignore[union-attr]
    assert engine.take([Q], "w", T0) is None


def test_not_after_expires_a_job_never_started(engine: QueueEngine) -> None:
    jid = submit(engine, not_after=T0 + 10)
    assert engine.take([Q], "w", T0 + 11) is None
    info = engine.get(jid, T0 + 11)
    assert info is not None and info.status == "expired"


def test_stats_and_purge(engine: QueueEngine) -> None:
    for _ in range(4):
        submit(engine)
    d = engine.take([Q], "w", T0 + 10)
    assert d is not None
    s = engine.stats(Q, T0 + 20)
    assert (s.queued, s.running, s.dead) == (3, 1, 0) and s.oldest_wait_s == 20.0
    engine.complete(Q, d.id, d.token, "{}", T0 + 20)
    assert engine.stats(Q, T0 + 30).per_minute == 1
    assert engine.purge(Q, T0 + 30) == 3
    assert engine.stats(Q, T0 + 30).queued == 0


def test_position_counts_the_jobs_ahead(engine: QueueEngine) -> None:
    ids = [submit(engine, tenant=None) for _ in range(5)]
    info = engine.get(ids[3], T0)
    assert info is not None and info.position == 3
