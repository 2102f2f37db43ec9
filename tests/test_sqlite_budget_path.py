"""The SQLite budget hot path: a refusal on existing counters, and reservations made
by one ``SqliteState`` and settled by another (another process, or a state reopened after a
restart), which read their charges back from the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from _state_kit import WALL

from policyrouter.state.base import BudgetCharge
from policyrouter.state.sqlite import SqliteState

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
