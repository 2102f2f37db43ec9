"""The tpm wait of the sliding window, shared by the memory and SQLite backends."""

from __future__ import annotations

import pytest

from policyrouter.stages.rate import WINDOW_S, tpm_wait


def test_tokens_that_fit_wait_nothing() -> None:
    assert tpm_wait([(0.0, 400)], 400, 600, 1000, 10.0) == 0.0


def test_waits_until_the_oldest_entries_that_make_room_leave_the_window() -> None:
    log = [(0.0, 300), (5.0, 300), (9.0, 300)]
    # 900 in the window, 400 more under 1,000: 300 must leave, the first entry (t=0) frees them
    assert tpm_wait(log, 900, 400, 1000, 10.0) == pytest.approx(0.0 + WINDOW_S - 10.0)
    # 700 must leave: the first three entries' 900 do it at the third, t=9
    assert tpm_wait(log, 900, 800, 1000, 10.0) == pytest.approx(9.0 + WINDOW_S - 10.0)


def test_an_empty_window_cannot_make_room() -> None:
    assert tpm_wait([], 0, 5000, 1000, 10.0) == 0.0
