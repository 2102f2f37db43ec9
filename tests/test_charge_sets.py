"""``ChargeSets``: a task's budgets resolved per request scope, once per scope and window; and
the memory backend's binding of a ``ChargeSet`` to its counters, which a sweep invalidates."""

from __future__ import annotations

import pytest
from _state_kit import WALL

from policyrouter.plan import BudgetPlan
from policyrouter.stages.budget import ChargeSet, ChargeSets
from policyrouter.state.base import BudgetCharge
from policyrouter.state.memory import SWEEP_INTERVAL_S, MemoryState

DAY = 86400.0


def budget(name: str, scope: str, window: str = "day", key: str | None = None, limit: float = 5.0) -> BudgetPlan:
    return BudgetPlan(name, scope, key, window, "UTC", limit, None, None)


def keys(cs: ChargeSet) -> list[str]:
    return [spec[1] for spec in cs.specs]


def test_one_set_per_scope_value_while_the_windows_last() -> None:
    sets = ChargeSets("summarize", (budget("all", "global"), budget("per-tenant", "tenant", "month")))
    acme = sets.get("acme", "u1", "mini", None, WALL)
    assert keys(acme) == ["all|2026-01-01|*", "per-tenant|2026-01|acme"]
    assert (acme.start, acme.until) == (WALL, WALL + DAY)  # the shorter window bounds the set
    assert sets.get("acme", "u2", "big", {"feature": "x"}, WALL + 60) is acme  # only the tenant is read
    assert keys(sets.get("beta", "u1", "mini", None, WALL)) == ["all|2026-01-01|*", "per-tenant|2026-01|beta"]
    assert keys(sets.get(None, None, "mini", None, WALL)) == ["all|2026-01-01|*", "per-tenant|2026-01|(none)"]
    tomorrow = sets.get("acme", "u1", "mini", None, WALL + DAY)
    assert tomorrow is not acme and keys(tomorrow) == ["all|2026-01-02|*", "per-tenant|2026-01|acme"]


@pytest.mark.parametrize(
    ("scope", "key", "expected"),
    [
        ("global", None, "b|2026-01-01|*"),
        ("task", None, "b|2026-01-01|summarize"),
        ("user", None, "b|2026-01-01|u1"),
        ("model", None, "b|2026-01-01|mini"),
        ("metadata", "feature", "b|2026-01-01|search"),
    ],
)
def test_each_scope_reads_its_own_value(scope: str, key: str | None, expected: str) -> None:
    sets = ChargeSets("summarize", (budget("b", scope, key=key),))
    cs = sets.get("acme", "u1", "mini", {"feature": "search"}, WALL)
    assert keys(cs) == [expected]
    other = sets.get("beta", "u2", "big", {"feature": "chat"}, WALL)
    assert (keys(other) == [expected]) == (scope in ("global", "task"))


def test_mixed_scopes_key_on_every_value() -> None:
    sets = ChargeSets("t", (budget("u", "user"), budget("f", "metadata", key="feature", window="hour")))
    a = sets.get("acme", "u1", "mini", {"feature": "search"}, WALL)
    assert keys(a) == ["u|2026-01-01|u1", "f|2026-01-01T00|search"]
    assert sets.get("beta", "u1", "big", {"feature": "search"}, WALL + 1) is a
    assert keys(sets.get("acme", "u1", "mini", {"feature": "chat"}, WALL)) == [
        "u|2026-01-01|u1",
        "f|2026-01-01T00|chat",
    ]
    assert keys(sets.get("acme", "u1", "mini", None, WALL)) == ["u|2026-01-01|u1", "f|2026-01-01T00|(none)"]


def test_charges_are_the_budget_charges_of_the_set() -> None:
    cs = ChargeSets("t", (budget("all", "global", limit=7.0),)).get(None, None, "m", None, WALL)
    assert cs.charges(0.5) == [BudgetCharge("all", "all|2026-01-01|*", 0.5, 7.0, WALL + DAY)]


def test_a_set_bound_before_a_sweep_counts_on_the_live_counter() -> None:
    """Memory binds a ChargeSet to its counter objects; once a sweep drops a counter, the next
    hold resolves the keys again, so nothing is counted on a counter the state no longer has."""
    state = MemoryState()
    cs = ChargeSet((("m", "m|w1|*", 10.0, WALL + 60),), WALL, WALL + 60)
    state.budget_settle(state.budget_hold(cs, 1.0, WALL, 30), 1.0, WALL)
    later = WALL + 60 + SWEEP_INTERVAL_S + 1  # the counter's window ended: the next sweep drops it
    assert state.budget_used("m|w1|*", later) == (0.0, 0.0)
    assert state.budget_counters("m|") == []
    rid = state.budget_hold(cs, 2.0, later, 30)
    assert state.budget_used("m|w1|*", later) == (0.0, 2.0)
    state.budget_settle(rid, 1.5, later)
    assert state.budget_counters("m|") == [("m|w1|*", 1.5, 0.0)]


def test_a_set_shared_by_two_memory_states_counts_on_each() -> None:
    a, b = MemoryState(), MemoryState()
    cs = ChargeSet((("m", "m|k", 1.0, WALL + 60),), WALL, WALL + 60)
    a.budget_hold(cs, 1.0, WALL, 30)
    b.budget_settle(b.budget_hold(cs, 0.5, WALL, 30), 0.5, WALL)  # b's own counter, not a's
    assert a.budget_used("m|k", WALL) == (0.0, 1.0) and b.budget_used("m|k", WALL) == (0.5, 0.0)


def test_a_backend_missing_part_of_the_protocol_is_refused_when_the_router_is_built() -> None:
    from policyrouter import ConfigurationError, Router
    from policyrouter.compile import compile_policy
    from policyrouter.policy.models import Policy
    from policyrouter.providers.mock import MockProvider

    class Partial:  # a backend written before ``budget_hold`` joined the protocol
        def __getattr__(self, name: str) -> object:
            if name == "budget_hold":
                raise AttributeError(name)
            return getattr(MemoryState(), name)

    doc = {
        "version": 1,
        "providers": {"p": {"kind": "mock"}},
        "models": {"m": {"provider": "p", "model": "m-1", "pricing": {"input": 1.0, "output": 1.0}}},
        "tiers": {"t": ["m"]},
        "tasks": {"s": {"tier": "t"}},
    }
    plan = compile_policy(Policy.model_validate(doc))
    with pytest.raises(ConfigurationError, match=r"state backend Partial lacks budget_hold: .*StateBackend"):
        Router(plan, {"p": MockProvider("p")}, Partial())  # type: ignore[arg-type]


def test_overlapping_reservations_leave_no_float_dust_that_keeps_a_counter() -> None:
    """0.1 and 0.2 reserved together, then settled, leave 2.8e-17 by plain float arithmetic: a
    counter that never reads 0 again would outlive its window. Below the tolerance it is 0."""
    state = MemoryState()
    cs = ChargeSet((("m", "m|w1|*", 10.0, WALL + 60),), WALL, WALL + 60)
    a = state.budget_hold(cs, 0.1, WALL, 30)
    b = state.budget_hold(cs, 0.2, WALL, 30)
    state.budget_settle(a, 0.1, WALL)
    state.budget_settle(b, 0.2, WALL)
    assert state.budget_used("m|w1|*", WALL) == pytest.approx((0.3, 0.0)) and state.budget_used("m|w1|*", WALL)[1] == 0
    later = WALL + 60 + SWEEP_INTERVAL_S + 1
    state.budget_used("m|w1|*", later)  # the sweep after the window ended
    assert state.budget_counters("m|") == []


def test_a_counter_a_reservation_still_names_outlives_its_window() -> None:
    """A zero-amount hold (a free model) reserves nothing, yet its settle counts on the counter:
    the sweep keeps a counter that an open reservation names."""
    state = MemoryState()
    cs = ChargeSet((("m", "m|w1|*", 10.0, WALL + 60),), WALL, WALL + 60)
    rid = state.budget_hold(cs, 0.0, WALL, 600)
    later = WALL + 60 + SWEEP_INTERVAL_S + 1
    assert state.budget_used("m|w1|*", later) == (0.0, 0.0)  # the sweep ran
    state.budget_settle(rid, 0.4, later)
    assert state.budget_counters("m|") == [("m|w1|*", 0.4, 0.0)]


def test_the_simulation_state_holds_settles_and_finishes_on_its_no_op_lock() -> None:
    from policyrouter.simulate.fastloop import SimState

    state = SimState()
    cs = ChargeSet((("m", "m|k", 1.0, WALL + 60),), WALL, WALL + 60)
    state.budget_settle(state.budget_hold(cs, 0.5, WALL, 30), 0.25, WALL)
    res = state.budget_reserve(cs.charges(0.5), WALL, 30)
    state.attempt_finish("x", False, res.reservation_id, 0.25, None, 0.0, WALL, True, None, False)
    assert state.budget_used("m|k", WALL) == (0.5, 0.0)
