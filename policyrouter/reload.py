"""Hot reload: compile a changed policy and swap it into a running router, atomically.

``Router.reload()`` loads and compiles the router's policy paths again (``compile_again``). A valid
policy becomes the router's plan in one reference assignment, so every request sees
either the old plan or the new one, never a mix: a request already running keeps the
``TaskPlan`` and chain it started with and finishes on them. An invalid policy changes
nothing: the last good plan keeps serving, and an ``error`` event (kind
``invalid_policy``) carries every diagnostic.

What survives a reload: the state backend (budget counters and reservations, breakers,
rate windows, the cache) and the provider clients whose settings did not change
(connection pools, and the keys they set aside after a 401/403). A provider that is new
or whose settings changed gets a new client (its keys start afresh);
one the new policy no longer names stays open until the router closes, so a request
still running on the old plan can finish. Providers passed to ``Router.from_path(...,
providers=)`` are kept as given. A changed ``state:`` section is not applied (state is
the one thing a reload must not drop); the result says so in ``notes``.

``PolicyWatcher`` polls the policy files (name, size, mtime) and reloads on a change once
two polls in a row saw the same files (a file still being written is not applied half-way;
writers should still replace files by atomic rename); ``Router.from_path(..., watch=True)``
starts one. Whatever a reload or a poll raises becomes an ``error`` event: the watcher and
``reload()`` never raise on a bad policy.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from policyrouter.clock import Clock
from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.engine import EventBus
from policyrouter.errors import PolicyError
from policyrouter.plan import Plan
from policyrouter.providers.base import Provider

if TYPE_CHECKING:
    import random

__all__ = ["PolicyWatcher", "ReloadResult", "Reloaded", "compile_again", "policy_files_signature"]

log = logging.getLogger("policyrouter")


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did. ``ok`` false: the old plan is still serving; see ``diagnostics``."""

    ok: bool
    changed: bool
    fingerprint: str
    previous_fingerprint: str
    diagnostics: tuple[Diagnostic, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Reloaded:
    """A valid policy compiled again: its plan and the provider clients it needs (a superset
    of the old ones, so requests still running on the old plan find theirs), and the
    ``reload`` event to emit once it is swapped in."""

    plan: Plan
    providers: dict[str, Provider]
    result: ReloadResult
    event: dict[str, Any]


def compile_again(
    paths: Sequence[str | Path],
    old: Plan,
    providers: Mapping[str, Provider],
    overrides: Mapping[str, Provider],
    *,
    environ: Mapping[str, str],
    clock: Clock,
    events: EventBus,
    rng: random.Random | None = None,
) -> Reloaded | ReloadResult:
    """Compile the policy at ``paths`` for ``old``'s environment. Valid: what to swap in
    (``Router.reload`` does, atomically, then emits its ``reload`` event). Invalid: the
    failed ``ReloadResult``, after an ``error`` event with every diagnostic; nothing changes."""
    from policyrouter.compile import compile_policy
    from policyrouter.policy.loader import load_policy
    from policyrouter.providers.factory import create_provider

    try:
        policy = load_policy(paths[0] if len(paths) == 1 else list(paths), old.env)
        plan = compile_policy(policy, old.env)
    except PolicyError as exc:
        diagnostics = tuple(d for d in exc.diagnostics if d.severity == "error") or tuple(exc.diagnostics)
        return _rejected(paths, old, events, exc.kind, str(exc), diagnostics)
    except Exception as exc:  # any other failure (a RecursionError from a deep $ref) is reported, not raised
        return _rejected(paths, old, events, "invalid_policy", repr(exc), (_raised(paths, exc),))
    notes: list[str] = []
    if plan.state != old.state:
        notes.append("the state section changed; a reload keeps the running state backend")
    if plan.fingerprint == old.fingerprint and plan.providers == old.providers:
        return ReloadResult(True, False, plan.fingerprint, old.fingerprint, (), tuple(notes))
    clients = dict(providers)
    try:
        for name, spec in plan.providers.items():
            if name in overrides:
                continue
            if name not in clients or old.providers.get(name) != spec:
                clients[name] = create_provider(name, spec, environ=environ, clock=clock, rng=rng, events=events.emit)
    except Exception as exc:  # a client that cannot be built (a missing SDK): the old plan keeps serving
        return _rejected(paths, old, events, "invalid_policy", repr(exc), (_raised(paths, exc),))
    event = {
        "paths": [os.fspath(p) for p in paths],
        "fingerprint": plan.fingerprint,
        "previous_fingerprint": old.fingerprint,
        "notes": notes,
    }
    result = ReloadResult(True, True, plan.fingerprint, old.fingerprint, (), tuple(notes))
    return Reloaded(plan, clients, result, event)


def _raised(paths: Sequence[str | Path], exc: BaseException) -> Diagnostic:
    """A reload that raised something other than ``PolicyError``, as a diagnostic."""
    where = Location(os.fspath(paths[0]) if paths else "<policy>")
    return Diagnostic("error", "reload-failed", f"the policy could not be loaded: {type(exc).__name__}", where)


def _rejected(
    paths: Sequence[str | Path],
    old: Plan,
    events: EventBus,
    kind: str,
    message: str,
    diagnostics: tuple[Diagnostic, ...],
) -> ReloadResult:
    """The reload failed: log it, emit the ``error`` event, and keep the old plan."""
    log.error("policyrouter: policy reload rejected, the previous plan keeps serving: %s", message)
    events.emit(
        "error",
        {
            "kind": kind,
            "reload": True,
            "paths": [os.fspath(p) for p in paths],
            "message": message.splitlines()[0] if message else "invalid policy",
            "diagnostics": [d.to_dict() for d in diagnostics],
            "fingerprint": old.fingerprint,
        },
    )
    return ReloadResult(False, False, old.fingerprint, old.fingerprint, diagnostics)


def policy_files_signature(paths: Sequence[str | Path]) -> tuple[tuple[str, int, int], ...]:
    """``(path, size, mtime_ns)`` of every policy file the loader would read from ``paths``
    (missing files appear with size -1, so a deletion is a change too)."""
    from policyrouter.policy.loader import collect_files

    files, problems = collect_files(paths)
    out: list[tuple[str, int, int]] = []
    for display, p in files:
        try:
            st = p.stat()
            out.append((display, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((display, -1, 0))
    out.extend((d.location.file, -1, 0) for d in problems)
    return tuple(sorted(out))


class Reloadable(Protocol):
    """What a watcher needs of a router."""

    @property
    def source_paths(self) -> tuple[str | Path, ...]: ...
    @property
    def events(self) -> EventBus: ...
    def reload(self) -> ReloadResult: ...


class PolicyWatcher:
    """Polls a router's policy files every ``interval_s`` and reloads on a change, once two
    polls in a row saw the same changed files (so a change lands one to two polls late).

    ``check()`` is one poll (what the thread runs; tests call it directly). ``start()``
    runs the polls on a daemon thread until ``stop()``; whatever a poll raises is logged and
    emitted as an ``error`` event, and the next poll runs.
    """

    def __init__(self, router: Reloadable, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._router = router
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature = policy_files_signature(router.source_paths)
        self._settling: tuple[tuple[str, int, int], ...] | None = None  # a change seen once, not yet stable
        self.last_result: ReloadResult | None = None

    def check(self) -> ReloadResult | None:
        """Reload if the files changed and the last poll saw them as they are now; else ``None``."""
        signature = policy_files_signature(self._router.source_paths)
        if signature == self._signature:
            self._settling = None
            return None
        if signature != self._settling:  # changed since the last poll: maybe still being written
            self._settling = signature
            return None
        self._signature, self._settling = signature, None
        self.last_result = self._router.reload()
        return self.last_result

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # the watcher outlives any poll; the failure is reported
                log.warning("policyrouter: policy watcher poll failed: %r", exc)
                self._router.events.emit("error", {"kind": "watch_failed", "reload": True, "message": repr(exc)})

    def start(self) -> PolicyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policyrouter-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
