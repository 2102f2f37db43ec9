"""Hot reload: atomic swap, invalid policies rejected, in-flight requests and state kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from policyrouter import ProviderRequest, ProviderResponse, Router, Usage
from policyrouter.errors import ConfigurationError, RouterError
from policyrouter.providers.mock import MockProvider
from policyrouter.reload import PolicyWatcher
from policyrouter.testing.clock import FakeClock

POLICY = """
version: 1
providers:
  p: {kind: mock}
models:
  m: {provider: p, model: m-2025-01-01, pricing: {input: 1.0, output: 2.0}, context_window: 100000}
  n: {provider: p, model: n-2025-01-01, pricing: {input: 3.0, output: 6.0}, context_window: 100000}
tiers:
  t: [TIER]
budgets:
  daily: {scope: global, window: day, limit_usd: LIMIT}
circuit_breakers:
  default: {failure_threshold: 2, window_s: 60, cooldown_s: 30}
tasks:
  s:
    tier: t
    max_input_tokens: 2000
    max_output_tokens: 100
    temperature: 0
    cache: {ttl_s: 3600}
"""


def write(path: Path, tier: str = "m", limit: float = 10.0) -> None:
    path.write_text(POLICY.replace("TIER", tier).replace("LIMIT", str(limit)))
    st = path.stat()  # make every rewrite visible to an mtime poll, however fast the filesystem
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    write(p)
    return p


def test_reload_swaps_the_plan(policy: Path) -> None:
    router = Router.from_path(policy, clock=FakeClock())
    events: list[dict[str, object]] = []
    router.on("reload", events.append)
    assert router.complete("s", "hello").model == "m"
    old = router.plan.fingerprint
    write(policy, tier="n")
    result = router.reload()
    assert result.ok and result.changed and result.previous_fingerprint == old != result.fingerprint
    assert router.plan.fingerprint == result.fingerprint
    assert router.complete("s", "hello again").model == "n"
    assert events and events[0]["fingerprint"] == result.fingerprint


def test_unchanged_policy_is_not_swapped(policy: Path) -> None:
    router = Router.from_path(policy, clock=FakeClock())
    plan = router.plan
    result = router.reload()
    assert result.ok and not result.changed
    assert router.plan is plan


def test_invalid_policy_keeps_the_old_plan_and_emits_diagnostics(policy: Path) -> None:
    router = Router.from_path(policy, clock=FakeClock())
    errors: list[dict[str, object]] = []
    router.on("error", errors.append)
    plan = router.plan
    policy.write_text(POLICY.replace("TIER", "missing_model").replace("LIMIT", "10"))
    result = router.reload()
    assert not result.ok and not result.changed
    assert router.plan is plan
    assert any(d.code == "unknown-reference" for d in result.diagnostics)
    assert errors and errors[0]["kind"] == "invalid_policy" and errors[0]["reload"] is True
    diags = errors[0]["diagnostics"]
    assert isinstance(diags, list) and diags and diags[0]["code"] == "unknown-reference"
    assert str(policy) in str(diags[0]) and "9" in str(diags[0])
    assert router.complete("s", "still served").model == "m"


def test_reload_needs_a_path_when_built_directly(policy: Path) -> None:
    built = Router.from_path(policy)
    router = Router(built.plan, built.providers)
    with pytest.raises(ConfigurationError, match="reload\\(path\\)"):
        router.reload()
    assert router.reload(policy).ok


def test_state_budgets_breakers_and_cache_survive(policy: Path) -> None:
    clock = FakeClock()
    fail = {"on": False}

    def handler(request: ProviderRequest) -> ProviderResponse:
        from policyrouter.errors import ProviderError

        if fail["on"] and request.model.startswith("n"):
            raise ProviderError("server_error", "down", status_code=500)
        return ProviderResponse("ok", Usage(1000, 100), "stop", "r", request.model)

    write(policy, tier="m, n")
    router = Router.from_path(policy, clock=clock, providers={"p": MockProvider("p", handler)})
    first = router.complete("s", "cache me")
    spent = router.state.budget_counters("")
    assert spent and spent[0][1] == pytest.approx(first.cost_usd)
    fail["on"] = True
    router.state.breaker_record("n", router.plan.models["n"].breaker, clock.now(), False, "server_error", False)  # type: ignore[arg-type]
    router.state.breaker_record("n", router.plan.models["n"].breaker, clock.now(), False, "server_error", False)  # type: ignore[arg-type]
    assert router.state.breaker_get("n").status == "open"

    write(policy, tier="m, n", limit=20.0)  # a budget change: same chains, same cache keys
    assert router.reload().changed
    assert router.plan.budgets["daily"].limit_usd == 20.0
    assert router.state.budget_counters("") == spent
    assert router.state.breaker_get("n").status == "open"
    again = router.complete("s", "cache me")
    assert again.cache_hit and again.text == first.text


def test_in_flight_request_finishes_on_its_plan(policy: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def handler(request: ProviderRequest) -> ProviderResponse:
        if request.model.startswith("m"):
            entered.set()
            assert release.wait(10)
        return ProviderResponse("ok", Usage(10, 10), "stop", "r", request.model)

    router = Router.from_path(policy, providers={"p": MockProvider("p", handler)})
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", router.complete("s", "slow one", cache=False)))
    worker.start()
    assert entered.wait(10)
    write(policy, tier="n")
    assert router.reload().changed
    assert router.complete("s", "new one", cache=False).model == "n"  # new requests: the new plan
    release.set()
    worker.join(10)
    slow = box["r"]
    assert getattr(slow, "model", None) == "m"  # the in-flight one: the plan it started on


def test_no_request_fails_during_reloads_under_concurrent_load(policy: Path) -> None:
    router = Router.from_path(policy, providers={"p": MockProvider("p", reply="ok")})
    failures: list[BaseException] = []
    served: list[int] = []
    models: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def load(k: int) -> None:
        n = 0
        while not stop.is_set() and n < 50_000:  # bounded even if the main thread stalls
            try:
                r = router.complete("s", f"request {k}-{n}", cache=False)
            except RouterError as exc:  # pragma: no cover - the assertion below reports it
                failures.append(exc)
            else:
                with lock:
                    models.add(r.model)
            n += 1
        with lock:
            served.append(n)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    results = []
    try:
        for i in range(30):  # every third reload is an invalid policy, rejected
            if i % 3 == 2:
                policy.write_text("version: 1\ntasks: {s: {tier: nope}}\n")
            else:
                write(policy, tier="n" if i % 3 else "m")
            results.append(router.reload())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures
    assert sum(r.changed for r in results) >= 10 and sum(not r.ok for r in results) == 10
    assert models == {"m", "n"}
    assert len(served) == 4 and sum(served) > 0
    assert router.state.budget_counters("")  # spend was recorded across all the swaps


def test_watcher_check_reloads_on_change_only(policy: Path) -> None:
    router = Router.from_path(policy, clock=FakeClock())
    watcher = PolicyWatcher(router, interval_s=60)
    assert watcher.check() is None
    write(policy, tier="n")
    assert watcher.check() is None  # seen once: maybe still being written
    result = watcher.check()  # the same files a poll later: applied
    assert result is not None and result.changed
    assert watcher.check() is None
    assert router.complete("s", "x").model == "n"


def test_watcher_applies_a_change_only_once_two_polls_agree(policy: Path) -> None:
    """A valid but half-written file (the budget line not yet rewritten) is not applied: only
    the files two polls in a row saw alike are."""
    router = Router.from_path(policy, clock=FakeClock())
    watcher = PolicyWatcher(router, interval_s=60)
    write(policy, tier="n", limit=0.0)  # the writer's first half: valid, and wrong
    assert watcher.check() is None
    write(policy, tier="n", limit=20.0)  # the rest of the write lands before the next poll
    assert watcher.check() is None
    assert router.complete("s", "x").model == "m"  # nothing applied yet
    result = watcher.check()
    assert result is not None and result.changed
    assert router.complete("s", "x").model == "n"  # under the 20 USD limit, never the half-written 0


def test_a_dangling_symlink_beside_the_policy_does_not_stop_reloads(policy: Path) -> None:
    router = Router.from_path(policy.parent, clock=FakeClock())
    watcher = PolicyWatcher(router, interval_s=60)
    (policy.parent / "stale.yaml").symlink_to(policy.parent / "removed.yaml")
    write(policy, tier="n")
    assert watcher.check() is None
    result = watcher.check()
    assert result is not None and result.ok and result.changed
    assert router.complete("s", "x").model == "n"


def test_reload_of_a_deep_ref_is_not_ok(policy: Path) -> None:
    """A response schema whose JSON nests deeper than Python recurses: ``reload()`` returns
    ``ok=False`` with the safe reader's diagnostic (no RecursionError) and an ``error`` event,
    and the old plan keeps serving."""
    router = Router.from_path(policy, clock=FakeClock())
    errors: list[dict[str, object]] = []
    router.on("error", errors.append)
    (policy.parent / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with policy.open("a") as f:
        f.write("  x: {tier: t, response_schema: {$ref: deep.json}}\n")
    result = router.reload()
    assert not result.ok and [d.code for d in result.diagnostics] == ["response-schema-invalid"]
    assert "json-too-deep" in result.diagnostics[0].message
    assert errors and errors[0]["reload"] is True
    assert router.complete("s", "x").model == "m"


class _Broken:
    """A router whose policy paths cannot even be listed (every poll raises, not an OSError)."""

    def __init__(self) -> None:
        from policyrouter.engine import EventBus

        self.events = EventBus()
        self.armed = False

    @property
    def source_paths(self) -> tuple[str | Path, ...]:
        if self.armed:
            raise RuntimeError("boom")
        return ()

    def reload(self) -> object:
        raise AssertionError("never reached")


def test_the_watcher_survives_any_exception_and_reports_it() -> None:
    broken = _Broken()
    seen = threading.Semaphore(0)
    broken.events.on("error", lambda event: seen.release())
    watcher = PolicyWatcher(broken, interval_s=0.01)  # type: ignore[arg-type]
    broken.armed = True
    watcher.start()
    try:
        assert seen.acquire(timeout=20) and seen.acquire(timeout=20)  # two failed polls: still polling
        assert watcher.running
    finally:
        watcher.stop()


def test_from_path_watch_reloads_in_the_background(policy: Path) -> None:
    router = Router.from_path(policy, watch=True, watch_interval_s=0.05)
    reloaded = threading.Event()
    router.on("reload", lambda event: reloaded.set())
    try:
        write(policy, tier="n")
        assert reloaded.wait(20), "the watcher never reloaded"
        assert router.complete("s", "x").model == "n"
    finally:
        router.close()
    assert router._watcher is not None and not router._watcher.running
