"""What the state-backend tests share: one time base, and the same backend on memory, SQLite and
Redis (the ``state`` fixture in ``conftest.py``)."""

from __future__ import annotations

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAR = WALL + 10 * 86400  # a window end well after every time the tests use
BACKENDS = ["memory", "sqlite", "redis"]
