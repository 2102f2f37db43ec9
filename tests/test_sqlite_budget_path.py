"""The in-process budget hot paths (memory and SQLite): late settlements, and reservations made
by one ``SqliteState`` and settled by another (another process, or a state reopened after a
restart), which read their charges back from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyrouter.state.base import BudgetCharge
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState

WALL = 1_767_225_600.0
DAILY = "daily|2026-01-01|*"
TENANT = "tenant|2026-01|acme"


def _charges(amount: float) -> list[BudgetCharge]:
    return [
        BudgetCharge("daily", DAILY, amount, 10.0, WALL + 86400),
        BudgetCharge("tenant", TENANT, amount, 10.0, WALL + 86400),
    ]


def test_a_reservation_settles_and_releases_through_another_state_on_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    a, b = SqliteState(db), SqliteState(db)
    try:
        warm = a.budget_reserve(_charges(1.0), WALL, 60)  # creates the counters
        first = a.budget_reserve(_charges(1.0), WALL, 60)  # the path for existing counters
        assert warm.ok and first.ok and warm.reservation_id and first.reservation_id
        assert warm.reservation_id != first.reservation_id
        assert b.budget_used(DAILY, WALL) == (0.0, 2.0)
        b.budget_settle(warm.reservation_id, 0.25, WALL)
        b.budget_release(first.reservation_id)
        a.budget_settle(first.reservation_id, 0.5, WALL)  # released by b already: nothing happens
        for key in (DAILY, TENANT):
            assert a.budget_used(key, WALL) == pytest.approx((0.25, 0.0))
        assert a.open_reservations() == 0
    finally:
        a.close()
        b.close()


def test_a_refusal_on_existing_counters_leaves_the_file_unchanged(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.sqlite")
    try:
        held = state.budget_reserve(_charges(6.0), WALL, 60)
        assert held.ok
        denied = state.budget_reserve(_charges(6.0), WALL, 60)
        assert (denied.ok, denied.denied_budget, denied.used, denied.limit) == (False, "daily", 6.0, 10.0)
        assert state.budget_counters("") == [(DAILY, 0.0, 6.0), (TENANT, 0.0, 6.0)]
        assert state.open_reservations() == 1
    finally:
        state.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_settling_a_lease_that_expired_and_was_reclaimed_leaves_the_new_hold(backend: str, tmp_path: Path) -> None:
    state = MemoryState() if backend == "memory" else SqliteState(tmp_path / "state.sqlite")
    try:
        one = [BudgetCharge("daily", DAILY, 1.0, 1.5, WALL + 86400)]
        old = state.budget_reserve(one, WALL, 10)
        assert old.ok and old.reservation_id
        new = state.budget_reserve(one, WALL + 11, 10)  # reclaims the expired lease, then holds its own
        assert new.ok and new.reservation_id
        state.budget_settle(old.reservation_id, 0.5, WALL + 12)  # late: its amount went back, its spend counts
        assert state.budget_used(DAILY, WALL + 12) == (0.5, 1.0)
        state.budget_settle(old.reservation_id, 0.5, WALL + 12)  # once
        state.budget_settle(new.reservation_id, 0.5, WALL + 12)
        assert state.budget_used(DAILY, WALL + 12) == pytest.approx((1.0, 0.0))
    finally:
        state.close()


def test_wal_checkpoints_run_on_their_own_thread_and_copy_every_committed_page(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    state = SqliteState(db)
    ckpt = state._checkpointer
    assert ckpt is not None and ckpt.checkpoints == 0
    try:
        for _ in range(ckpt.every):  # each reserve + settle: two commits
            res = state.budget_reserve(_charges(0.001), WALL, 60)
            assert res.ok and res.reservation_id
            state.budget_settle(res.reservation_id, 0.001, WALL)
        assert ckpt.checkpointed.wait(timeout=30)  # a bounded wait for the thread, not a timing assertion
        assert ckpt.checkpoints >= 1
    finally:
        state.close()
    reopened = SqliteState(db)
    try:
        assert reopened.budget_used(DAILY, WALL) == pytest.approx((0.001 * ckpt.every, 0.0))
        assert reopened.open_reservations() == 0
    finally:
        reopened.close()


def test_an_in_memory_sqlite_state_has_no_checkpoint_thread() -> None:
    state = SqliteState(":memory:")
    try:
        assert state._checkpointer is None
        res = state.budget_reserve(_charges(1.0), WALL, 60)
        assert res.ok and res.reservation_id
        state.budget_settle(res.reservation_id, 0.5, WALL)
        assert state.budget_used(DAILY, WALL) == (0.5, 0.0)
    finally:
        state.close()
