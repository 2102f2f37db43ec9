"""WAL checkpoints of a SQLite state file, on a thread of their own.

SQLite copies the WAL back into the database file at a checkpoint, which (with
``synchronous=NORMAL`` or ``FULL``) syncs both files to disk. Left to the writing
connection (``wal_autocheckpoint``), one commit in a few hundred pays those syncs: on a
VM disk, several milliseconds, which averaged over the commits was most of the wall time
of a budget reservation. Here the writing connection only counts its commits and wakes a
daemon thread every ``every`` of them; the thread runs a ``PASSIVE`` checkpoint on its own
connection, which never blocks writers and holds no Python lock while SQLite syncs (the
sqlite3 module releases the GIL around each step).

Durability does not change: a commit is as durable as before the moment it returns (the
WAL holds it); the checkpoint only moves committed pages into the main file, with the same
syncs. The writing connection keeps SQLite's own ``wal_autocheckpoint`` (1000 pages): with
this thread ahead of it, it finds little left to copy, and it still bounds the WAL if the
thread falls behind or its checkpoints fail.
"""

from __future__ import annotations

import sqlite3
import threading

CHECKPOINT_EVERY_COMMITS = 200  # ~400 WAL pages at the 2 pages of a budget commit


class Checkpointer:
    """Wake a background ``PASSIVE`` checkpoint every ``every`` commits of the owner's connection.

    The thread starts with the first checkpoint due, so a short-lived state never starts one.
    """

    def __init__(self, path: str, *, every: int = CHECKPOINT_EVERY_COMMITS, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self.every = every
        self.busy_timeout_s = busy_timeout_s
        self.commits = 0
        self.checkpoints = 0  # completed checkpoint calls (for tests and diagnostics)
        self.checkpointed = threading.Event()  # set after each completed checkpoint
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def committed(self) -> None:
        """Count one commit; every ``every``-th wakes the checkpoint thread. Call under the owner's lock."""
        self.commits += 1
        if self.commits >= self.every:
            self.commits = 0
            self.wake()

    def wake(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name="policyrouter-sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error:
            return  # the writer's wal_autocheckpoint still bounds the WAL
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # busy or failed: the next wake (or the writer's safety net) retries
                self.checkpoints += 1
                self.checkpointed.set()
        finally:
            conn.close()

    def stop(self) -> threading.Thread | None:
        """Tell the thread to end (after the checkpoint it may be running); returns it, if started."""
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        return thread

    def close(self) -> None:
        """Stop the thread and wait for it."""
        thread = self.stop()
        if thread is not None:
            thread.join()
