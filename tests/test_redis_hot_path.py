"""The router on Redis state: two round trips per request, and what they change.

* The cache lookup rides with the first attempt's admission: a hit admits nothing, a stale
  entry still answers a request that fails (``stale_if_error``).
* The soft-limit check reads the budget totals this process's last reservation or settle
  returned (no round trip): a crossing caused by other processes is seen at this process's
  next reservation, or after ``soft_refresh_s``; the ``budget_soft_limit`` event still fires
  once across all processes, and hard limits stay exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_budgets import WORST, long_input, policy, worst_case_handler
from test_limits_cache import Counting, cache_policy

from policyrouter import AllModelsFailed, Router
from policyrouter.compile import compile_policy
from policyrouter.policy.models import Policy
from policyrouter.providers.mock import MockProvider
from policyrouter.stages.circuit import BreakerSettings
from policyrouter.state.redis import RedisState
from policyrouter.testing.clock import FakeClock


def soft_policy() -> Policy:
    doc = policy(1.0).model_dump()
    doc["budgets"] = {
        "daily": {
            "scope": "global",
            "window": "day",
            "limit_usd": WORST * 10,
            "soft_limit": 0.5,  # crossed by the 5th worst-case request
            "on_soft_limit": {"degrade_to": "cheap"},
        }
    }
    return Policy.model_validate(doc)


def process(url: str, prefix: str, clock: FakeClock, events: list[dict[str, Any]]) -> Router:
    """One "process": its own RedisState (its own recent totals) on the shared server."""
    state = RedisState(url, key_prefix=prefix, clock=clock)
    router = Router(compile_policy(soft_policy()), {"p": MockProvider("p", worst_case_handler)}, state, clock=clock)
    router.on("budget_soft_limit", events.append)
    return router


def test_soft_limit_degrades_across_processes_within_the_documented_lag(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    events: list[dict[str, Any]] = []
    a, b = (process(redis_url, redis_prefix, clock, events) for _ in range(2))
    assert b.complete("s", long_input()).model == "main"  # b last saw 1 worst case spent
    assert [a.complete("s", long_input()).model for _ in range(4)] == ["main"] * 4  # 5 spent: crossed
    # b decides on the totals its own settle returned (1 spent): one request late, and that
    # request's reservation brings the shared totals back
    assert b.complete("s", long_input()).model == "main"
    degraded = b.complete("s", long_input())
    assert degraded.model == "cheap" and degraded.route.endswith("degraded:daily")
    assert a.complete("s", long_input()).model == "cheap"  # a saw the crossing in its last settle
    fresh = process(redis_url, redis_prefix, clock, events)
    assert fresh.complete("s", long_input()).model == "cheap"  # a new process reads the exact totals
    assert [e["budget"] for e in events] == ["daily"]  # once, across all of them


def test_recent_totals_are_read_again_after_soft_refresh_s(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    mine = RedisState(redis_url, key_prefix=redis_prefix, clock=clock, soft_refresh_s=1.0)
    other = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    key = "daily|2026-01-01|*"
    assert mine.budget_used_recent(key, clock.wall()) == (0.0, 0.0)
    other.budget_add_spent(key, 3.0)
    assert mine.budget_used_recent(key, clock.wall()) == (0.0, 0.0)  # what it saw, within soft_refresh_s
    assert mine.budget_used(key, clock.wall()) == (3.0, 0.0)  # the exact read is never stale
    other.budget_add_spent(key, 1.0)
    clock.advance(1.0)
    assert mine.budget_used_recent(key, clock.wall()) == (4.0, 0.0)


def test_hard_limit_stays_exact_whatever_the_soft_totals(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    router = Router(compile_policy(policy(WORST * 3)), {"p": MockProvider("p", worst_case_handler)}, state, clock=clock)
    other = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    assert router.complete("s", long_input()).model == "main"
    [(key, _, _)] = other.budget_counters("daily|")
    other.budget_add_spent(key, WORST * 2)  # another process spent the rest
    with pytest.raises(Exception, match="budget 'daily'"):
        router.complete("s", long_input())


def cache_process(url: str, prefix: str, clock: FakeClock, handler: Counting) -> tuple[Router, RedisState]:
    state = RedisState(url, key_prefix=prefix, clock=clock)
    pol = cache_policy(stale_if_error_s=300).model_dump()
    pol["models"]["m"]["limits"] = {"rpm": 2, "concurrency": 1}
    pol["circuit_breakers"] = {"default": {"failure_threshold": 1, "window_s": 60, "cooldown_s": 30}}
    router = Router(compile_policy(Policy.model_validate(pol)), {"p": MockProvider("p", handler)}, state, clock=clock)
    return router, state


def test_a_cache_hit_admits_nothing(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    handler = Counting()
    router, state = cache_process(redis_url, redis_prefix, clock, handler)
    first = router.complete("s", "q")
    breaker = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    assert state.breaker_record("m", breaker, clock.now(), False, "server_error", False).status == "open"
    clock.advance(31)  # past the cooldown: the next admission would be the half-open probe
    hits = [router.complete("s", "q") for _ in range(3)]
    assert all(h.cache_hit and h.text == first.text and h.attempts == () for h in hits)
    assert handler.calls == 1
    rec = state.breaker_get("m")
    assert (rec.status, rec.probe_in_flight) == ("open", False)  # no probe taken by a hit
    assert state.slots_in_use("m") == 0 and state.open_reservations() == 0
    before = clock.now()
    assert router.complete("s", "another").text == "answer 2"  # the probe, and the minute's 2nd request: free
    assert clock.now() == before  # no wait for the rate window: the hits took no request of it


def test_a_stale_entry_answers_a_failed_request(redis_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    handler = Counting()
    router, _ = cache_process(redis_url, redis_prefix, clock, handler)
    fresh = router.complete("s", "q")
    clock.advance(61)  # expired; the folded lookup does not serve it and admits the attempt
    handler.fail = True
    stale = router.complete("s", "q")
    assert stale.cache_hit and stale.stale and stale.text == fresh.text and handler.calls == 2
    clock.advance(400)  # beyond stale_if_error
    with pytest.raises(AllModelsFailed):
        router.complete("s", "q")


def test_a_value_holding_the_argument_separator_still_counts(redis_url: str, redis_prefix: str) -> None:
    # the hot-path scripts join their arguments with 0x1e; a tenant holding it sends them one by one
    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    tenant_budget = {"per-tenant": {"scope": "tenant", "window": "month", "limit_usd": WORST * 2}}
    pol = policy(WORST * 10, extra_budgets=tenant_budget)
    router = Router(compile_policy(pol), {"p": MockProvider("p", worst_case_handler)}, state, clock=clock)
    odd = "acme\x1ebeta"
    assert [router.complete("s", long_input(), tenant=odd).model for _ in range(2)] == ["main", "main"]
    with pytest.raises(Exception, match="budget 'per-tenant'"):
        router.complete("s", long_input(), tenant=odd)
    [(key, spent, reserved)] = state.budget_counters("per-tenant|")
    assert key.endswith("|" + odd) and (spent, reserved) == (pytest.approx(WORST * 2), 0.0)


def test_a_reservation_sent_twice_reserves_once(redis_url: str, redis_prefix: str) -> None:
    # RedisState sends a script once more on a fresh connection when the first one broke, and the
    # first may have run: the same reservation id takes its amount once
    from policyrouter.state.base import BudgetCharge

    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    key = "daily|2026-01-01|*"
    stage = state._reserve_stage([BudgetCharge("daily", key, 1.0, 1.5, clock.wall() + 86400)], clock.wall(), 60, "r1")
    assert state._script(stage).startswith(b"1 ")
    assert state._script(stage).startswith(b"1 ")  # the retry: it stands, nothing more reserved
    assert state.budget_used(key, clock.wall()) == (0.0, 1.0)
    state.budget_settle("r1", 0.5, clock.wall())
    assert state.budget_used(key, clock.wall()) == (0.5, 0.0)


def worst_case_router(state: RedisState, clock: FakeClock) -> Router:
    return Router(compile_policy(policy(WORST * 10)), {"p": MockProvider("p", worst_case_handler)}, state, clock=clock)


def test_the_finish_is_answered_before_the_next_operation(redis_url: str, redis_prefix: str) -> None:
    # the after-call script (settle, cache store, ledger row) is sent before complete() returns and its
    # reply read before this state's next operation: every later read, here or in another process, sees it
    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    router = worst_case_router(state, clock)
    other = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    result = router.complete("s", long_input())
    [(_, spent, reserved)] = other.budget_counters("daily|")
    assert (spent, reserved) == (pytest.approx(WORST), 0.0)
    assert [r.request_id for r in other.ledger_rows()] == [result.request_id]
    assert [r.request_id for r in state.ledger_rows()] == [result.request_id]
    state.close()  # reads what is left unread


def test_the_first_finish_on_a_server_without_our_scripts_is_not_left_unread(redis_url: str, redis_prefix: str) -> None:
    """A script the server does not know yet is sent and its reply read at once (a first send
    left unread would fail NOSCRIPT unseen, and apply only at this state's next operation)."""
    import redis

    redis.Redis.from_url(redis_url).script_flush()  # as after a server restart: no script loaded
    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    router = worst_case_router(state, clock)
    other = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    result = router.complete("s", long_input())
    [(_, spent, reserved)] = other.budget_counters("daily|")  # read without this state's next operation
    assert (spent, reserved) == (pytest.approx(WORST), 0.0)
    assert [r.request_id for r in other.ledger_rows()] == [result.request_id]
    second = router.complete("s", long_input())  # from now on sent without waiting, as before
    assert state._pending and not other.open_reservations() and second.cost_usd == pytest.approx(WORST)
    state.close()


def test_after_the_server_lost_its_scripts_the_next_finish_is_waited_for(redis_url: str, redis_prefix: str) -> None:
    """A reservation that finds the server without its scripts (a restart, ``SCRIPT FLUSH``)
    means none is known there any more: the finish after it is sent and read at once too."""
    import redis

    clock = FakeClock()
    state = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    router = worst_case_router(state, clock)
    other = RedisState(redis_url, key_prefix=redis_prefix, clock=clock)
    router.complete("s", long_input())
    router.complete("s", long_input())  # every script known: this finish was left unread
    redis.Redis.from_url(redis_url).script_flush()
    third = router.complete("s", long_input())
    [(_, spent, reserved)] = other.budget_counters("daily|")  # read before this state's next operation
    assert (spent, reserved) == (pytest.approx(3 * WORST), 0.0)
    assert third.request_id in [r.request_id for r in other.ledger_rows()]
    state.close()


def breaking_connection() -> Any:
    """A redis-py connection class (for a real server) whose next ``fails`` replies are lost:
    the connection drops as each is read."""
    import redis

    class Breaking(redis.Connection):
        fails = 0

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            if Breaking.fails:
                Breaking.fails -= 1
                self.disconnect()
                raise redis.ConnectionError("connection lost")
            return super().read_response(*args, **kwargs)

    return Breaking


def test_a_finish_that_fails_after_the_request_returned_is_logged(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    Breaking = breaking_connection()
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, connection_class=Breaking))
    clock = FakeClock()
    state = RedisState(client=client, key_prefix=redis_prefix, clock=clock)
    router = worst_case_router(state, clock)
    router.complete("s", long_input())
    result = router.complete("s", long_input())
    Breaking.fails = 1  # the reply of that request's finish is lost
    with caplog.at_level("ERROR", logger="policyrouter"):
        assert router.complete("s", long_input()).model == "main"  # this request reads it first, then goes on
    messages = [r.getMessage() for r in caplog.records]
    [lost] = [m for m in messages if f"finish of request {result.request_id} failed after it returned" in m]
    assert f"settled spend ${result.cost_usd:.6f}" in lost  # its spend, named


def test_a_first_finish_that_fails_is_logged_like_one_read_later(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The finish after a script flush is still the finish of a request that was answered: a
    lost reply is logged with the spend (when it is read, at the latest at ``close()``), not raised."""
    import redis

    Breaking = breaking_connection()

    def handler(req: Any) -> Any:
        Breaking.fails = 2  # after the reservation: the finish's send and its one retry lose their replies
        return worst_case_handler(req)

    redis.Redis.from_url(redis_url).script_flush()
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, connection_class=Breaking))
    clock = FakeClock()
    state = RedisState(client=client, key_prefix=redis_prefix, clock=clock)
    router = Router(compile_policy(policy(WORST * 10)), {"p": MockProvider("p", handler)}, state, clock=clock)
    with caplog.at_level("ERROR", logger="policyrouter"):
        result = router.complete("s", long_input())
        state.close()  # reads what is left unread
    assert result.model == "main"
    messages = [r.getMessage() for r in caplog.records]
    [lost] = [m for m in messages if f"finish of request {result.request_id} failed after it returned" in m]
    assert f"settled spend ${result.cost_usd:.6f}" in lost
