"""Nothing stays stuck: a half-open probe whose holder hangs or dies is given back by its lease
(memory, SQLite; Redis had one), a probe refused by the budget decides nothing, and SQLite keeps
breaker and rate-window times on the wall clock, so a reboot or a clock step ends no cooldown late."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from policyrouter import CircuitOpen, PolicyRouterError, Router
from policyrouter.errors import ProviderError
from policyrouter.providers.mock import MockProvider
from policyrouter.state.memory import MemoryState
from policyrouter.state.sqlite import SqliteState
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderResponse, Usage

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01, pricing: {input: 1.0, output: 2.0}, circuit_breaker: cb, LIMITS}
tiers:
  t: [a]
retry_policies:
  default: {max_attempts: 1}
circuit_breakers:
  cb: {failure_threshold: 1, window_s: 60, cooldown_s: 10}
budgets:
  daily: {scope: global, window: day, limit_usd: MAXUSD}
tasks:
  s: {tier: t, max_output_tokens: 50}
"""

W = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def policy(tmp_path: Path, limit: float = 10.0, limits: str = "") -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(POLICY.replace("MAXUSD", str(limit)).replace(", LIMITS", limits))
    return f


def failing_then(answer: dict[str, Any]) -> MockProvider:
    """Fails while ``answer["fail"]``; else answers (or blocks on ``answer["gate"]`` when set)."""

    def h(req: Any) -> ProviderResponse:
        if answer.get("fail"):
            raise ProviderError("server_error", "down")
        gate = answer.get("gate")
        if gate is not None:
            answer["entered"].set()
            gate.wait(30)
        return ProviderResponse(text="ok", usage=Usage(1, 1))

    return MockProvider("p", h)


# ---------------------------------------------------------------- the probe lease


def test_memory_a_hung_probe_is_given_back_by_its_lease(tmp_path: Path) -> None:
    """The probe's call hangs (its thread never comes back): after ``probe_lease_s`` the next
    request probes instead of every request failing with CircuitOpen."""
    clock = FakeClock()
    mode: dict[str, Any] = {"fail": True}
    router = Router.from_path(
        policy(tmp_path), state=MemoryState(probe_lease_s=60), clock=clock, providers={"p": failing_then(mode)}
    )
    with pytest.raises(PolicyRouterError):
        router.complete("s", "x")  # a trips open
    clock.advance(11)
    mode.update(fail=False, gate=threading.Event(), entered=threading.Event())
    hung = threading.Thread(target=lambda: router.complete("s", "x"), daemon=True)
    hung.start()  # the half-open probe, stuck in its call
    assert mode["entered"].wait(10)
    mode["gate_for_hung"], mode["gate"] = mode["gate"], None
    with pytest.raises(CircuitOpen):
        router.complete("s", "x")  # the probe is still in its lease
    clock.advance(61)
    assert router.complete("s", "x").text == "ok"  # the lease ran out: this request probed, and closed it
    mode["gate_for_hung"].set()
    hung.join(10)


CHILD = """
import sys, time
from policyrouter import Router
from policyrouter.providers.mock import MockProvider
from policyrouter.state.sqlite import SqliteState
from policyrouter.types import ProviderResponse

def h(req):
    print("probing", flush=True)
    time.sleep(60)  # killed here, mid-probe
    return ProviderResponse(text="late")

router = Router.from_path(sys.argv[1], state=SqliteState(sys.argv[2]), providers={"p": MockProvider("p", h)})
router.complete("s", "x")
"""


def test_sqlite_a_probe_of_a_killed_process_expires(tmp_path: Path) -> None:
    """Another process takes the half-open probe and is SIGKILLed mid-call: its probe is never
    given back, but it expires after ``probe_lease_s`` (wall clock, shared through the file)."""
    db = tmp_path / "s.db"
    clock = FakeClock(wall_start=time.time() - 100)  # this process is 100 s behind the child
    mode: dict[str, Any] = {"fail": True}
    router = Router.from_path(
        policy(tmp_path), state=SqliteState(db, probe_lease_s=120), clock=clock, providers={"p": failing_then(mode)}
    )
    with pytest.raises(PolicyRouterError):
        router.complete("s", "x")  # a trips open, 100 s ago for the child: its cooldown is over
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "p.yaml"), str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "probing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    mode["fail"] = False
    clock.advance(time.time() - clock.wall())  # now: the child's probe is in flight, and its holder is dead
    with pytest.raises(CircuitOpen):
        router.complete("s", "x")
    clock.advance(121)  # past the probe's lease
    assert router.complete("s", "x").text == "ok"
    assert router.complete("s", "x").text == "ok"  # that probe closed the breaker


# ---------------------------------------------------------------- a probe refused by the budget


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_probe_refused_by_the_budget_decides_nothing(tmp_path: Path, backend: str) -> None:
    """The probe's reservation is refused: no call was made, so the breaker neither closes (the
    model may still be down) nor keeps a probe in flight."""
    clock = FakeClock()
    mode: dict[str, Any] = {"fail": True}
    state = MemoryState() if backend == "memory" else SqliteState(tmp_path / "s.db")
    router = Router.from_path(policy(tmp_path, 0.01), state=state, clock=clock, providers={"p": failing_then(mode)})
    with pytest.raises(PolicyRouterError):
        router.complete("s", "x")
    clock.advance(11)
    state.budget_add_spent("daily|2026-01-01|*", 0.00999)
    with pytest.raises(PolicyRouterError):
        router.complete("s", "x")  # the probe is refused by the budget: a was never called
    rec = state.breaker_get("a")
    assert rec.status == "half_open" and not rec.probe_in_flight


# ---------------------------------------------------------------- SQLite keeps wall-clock times


def sqlite_router(tmp_path: Path, clock: FakeClock, mode: dict[str, Any], limits: str = "") -> Router:
    state = SqliteState(tmp_path / "s.db")
    return Router.from_path(
        policy(tmp_path, limits=limits), state=state, clock=clock, providers={"p": failing_then(mode)}
    )


@pytest.mark.parametrize("wall_after", [W + 11, W - 86_400], ids=["reboot", "clock-stepped-back"])
def test_sqlite_a_cooldown_survives_a_reboot_and_a_clock_step(tmp_path: Path, wall_after: float) -> None:
    """The breaker opened on a machine up for 12 days; after a reboot (monotonic time starts
    again) the 10 s cooldown ends 10 s later on the wall clock, and an opened_at a day in the
    future (the wall clock stepped back) has run out rather than lasting a day."""
    mode: dict[str, Any] = {"fail": True}
    before = sqlite_router(tmp_path, FakeClock(start=1_000_000.0, wall_start=W), mode)
    with pytest.raises(PolicyRouterError):
        before.complete("s", "x")  # a trips open
    mode["fail"] = False
    after = sqlite_router(tmp_path, FakeClock(start=5.0, wall_start=wall_after), mode)
    assert after.complete("s", "x").text == "ok"


def test_sqlite_the_rate_window_survives_a_reboot(tmp_path: Path) -> None:
    """The minute's one request was taken before a reboot; a minute later (on the wall clock)
    the window has room again, whatever monotonic time says."""
    mode: dict[str, Any] = {}
    limits = ", limits: {rpm: 1, on_limit: spill}"
    before = sqlite_router(tmp_path, FakeClock(start=1_000_000.0, wall_start=W), mode, limits)
    assert before.complete("s", "x").text == "ok"
    after = sqlite_router(tmp_path, FakeClock(start=5.0, wall_start=W + 61), mode, limits)
    assert after.complete("s", "x").text == "ok"


def test_a_time_stored_ahead_of_the_clock_has_run_out(state: Any) -> None:
    """Every backend: an opened_at or a probe lease more than its span ahead of ``now`` (a wall
    clock stepped back; Redis uses the server's) does not hold the breaker for that long."""
    from policyrouter.stages.circuit import BreakerSettings

    s = BreakerSettings(failure_threshold=1, window_s=60, cooldown_s=30)
    assert state.breaker_record("m", s, W, False, "server_error", False).status == "open"
    assert state.breaker_admit("m", s, W - 10) == "open"  # a little behind: still cooling down
    assert state.breaker_admit("m", s, W - 86_400) == "probe"  # a day behind: the cooldown ran out
    assert state.breaker_admit("m", s, W - 2 * 86_400) == "probe"  # the probe's lease is a day ahead too


# ---------------------------------------------------------------- the cache agrees with validate


def test_a_task_without_temperature_is_not_cached_as_validate_warns(tmp_path: Path) -> None:
    """``validate`` warns that a cached task with no temperature caches nothing (the providers
    sample at 1.0): the runtime agrees; a temperature of 0 caches."""
    from policyrouter.policy.loader import validate_paths

    f = tmp_path / "p.yaml"
    f.write_text(
        POLICY.replace("MAXUSD", "10").replace(", LIMITS", "")
        + "  c: {tier: t, max_output_tokens: 50, cache: {ttl_s: 60}}\n"
        + "  z: {tier: t, max_output_tokens: 50, temperature: 0, cache: {ttl_s: 60}}\n"
    )
    codes = [(d.code, d.location) for d in validate_paths(f).diagnostics if d.code == "cache-nondeterministic"]
    assert len(codes) == 1
    router = Router.from_path(f, clock=FakeClock(), providers={"p": failing_then({})})
    router.complete("c", "q")
    assert not router.complete("c", "q").cache_hit
    router.complete("z", "q")
    assert router.complete("z", "q").cache_hit


# ---------------------------------------------------------------- numbers the runtime can hold

BOUNDED = """version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01}
tiers:
  t: [a]
retry_policies:
  default:
    backoff: {initial_s: .inf, max_s: 1.0e+300, multiplier: .nan}
circuit_breakers:
  default: {cooldown_s: .inf}
tasks:
  s:
    tier: t
    timeout_s: .inf
    cache: {ttl_s: 1.0e+300, max_entries: 10000000000000000}
"""


def test_validate_bounds_every_duration_and_size(tmp_path: Path) -> None:
    """Infinite, NaN or absurd durations and sizes (``ttl_s: 1e300`` overflows a Redis expiry,
    ``timeout_s: .inf`` fails every request) are schema errors with file:line:col."""
    from policyrouter.policy.loader import validate_paths

    f = tmp_path / "p.yaml"
    f.write_text(BOUNDED)
    found = [d for d in validate_paths(f).diagnostics if d.severity == "error"]
    errors = {(d.location.line, d.location.col) for d in found}
    assert errors == {(10, 26), (10, 39), (10, 61), (12, 25), (16, 16), (17, 20), (17, 43)}
