"""Cold starts: building a provider's client (importing the SDK, reading the key, making the
HTTP client) is never counted as an attempt's latency, and ``router.warm()`` / ``awarm()`` /
``from_path(..., warm=True)`` build the clients and open their connections ahead of the first
request, with a request that bills nothing. Real SDKs against MockLLMServer."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from policyrouter import ConfigurationError, MockProvider, RequestTimeout, Router
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock
from policyrouter.types import ProviderResponse, Result, Usage

KEYS = {"OPENAI_API_KEY": "sk-test-warm-1", "ANTHROPIC_API_KEY": "sk-ant-test-warm-2"}
BUILD_S = 7.0  # what building a client "takes" on the fake clock (an SDK import, a TLS context)

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
  spare: {{kind: openai, api_key_env: SPARE_KEY, base_url: "{openai}"}}
models:
  gpt:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
  claude:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
tiers:
  gpt_first: [gpt, claude]
  claude_first: [claude, gpt]
tasks:
  ask_gpt: {{tier: gpt_first, max_output_tokens: 50, timeout_s: 30}}
  ask_claude: {{tier: claude_first, max_output_tokens: 50, timeout_s: 30}}
"""


class SlowKeys(Mapping[str, str]):
    """The environment, where reading an API key (the first step of building a client) moves
    the fake clock on by ``BUILD_S``: a client build that takes time, seen by the engine's clock."""

    def __init__(self, clock: FakeClock, values: Mapping[str, str] = KEYS) -> None:
        self.clock = clock
        self.values = dict(values)
        self.reads = 0
        self.build_s = BUILD_S

    def __getitem__(self, key: str) -> str:
        if key.endswith("_API_KEY"):
            self.reads += 1
            self.clock.advance(self.build_s)
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def policy(server: MockLLMServer, tmp_path: Path, openai_url: str | None = None) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=openai_url or server.openai_base_url, anthropic=server.anthropic_base_url))
    return path


def run(router: Router, mode: str, task: str) -> Result:
    if mode == "complete":
        return router.complete(task, "hello there")
    if mode == "acomplete":
        return asyncio.run(router.acomplete(task, "hello there"))
    if mode == "stream":
        chunks = list(router.stream(task, "hello there"))
    else:

        async def consume() -> list[Any]:
            return [c async for c in router.astream(task, "hello there")]

        chunks = asyncio.run(consume())
    final = chunks[-1].result
    assert final is not None
    return final


@pytest.mark.parametrize("mode", ["complete", "acomplete", "stream", "astream"])
@pytest.mark.parametrize("first", ["gpt", "claude"])
def test_the_client_build_is_not_the_attempts_latency(
    server: MockLLMServer, tmp_path: Path, first: str, mode: str
) -> None:
    clock = FakeClock()
    keys = SlowKeys(clock)
    router = Router.from_path(policy(server, tmp_path), environ=keys, clock=clock, rng=random.Random(1))
    events: list[dict[str, Any]] = []
    router.on("attempt", events.append)
    result = run(router, mode, f"ask_{first}")
    assert keys.reads == 1  # the client was built during this request, on the engine's clock
    (attempt,) = result.attempts
    assert attempt.model == first and attempt.outcome == "ok"
    # the attempt started after the build and its latency is the call's alone (no fake time passes in it)
    assert attempt.started_s == pytest.approx(BUILD_S) and attempt.latency_s == 0
    assert result.latency_s == pytest.approx(BUILD_S)  # the request's own latency still shows the cold start
    assert (events[0]["started_s"], events[0]["latency_s"]) == (pytest.approx(BUILD_S), 0)


def test_warm_builds_the_clients_and_opens_one_connection_each(server: MockLLMServer, tmp_path: Path) -> None:
    clock = FakeClock()
    keys = SlowKeys(clock)
    router = Router.from_path(policy(server, tmp_path), environ=keys, clock=clock)
    assert server.connections_opened == 0
    assert router.warm() == {}
    assert keys.reads == 2 and server.connections_opened == 2  # openai and anthropic; "spare" has no model
    assert [(r.protocol, r.path) for r in server.requests] == [("models", "/v1/models")] * 2
    assert router.state.ledger_rows() == []  # nothing billed
    t = clock.now()
    for task in ("ask_gpt", "ask_claude"):
        result = router.complete(task, "hello there")
        assert result.latency_s == 0 and result.attempts[0].started_s == 0
    assert clock.now() == t and keys.reads == 2  # no client built by the requests
    assert server.connections_opened == 2  # the requests reused the warm connections


def test_awarm_warms_the_event_loops_clients(server: MockLLMServer, tmp_path: Path) -> None:
    router = Router.from_path(policy(server, tmp_path), environ=KEYS)

    async def main() -> tuple[int, int]:
        assert await router.awarm() == {}
        opened = server.connections_opened
        await asyncio.gather(router.acomplete("ask_gpt", "hi"), router.acomplete("ask_claude", "hi"))
        after = server.connections_opened
        await router.aclose()
        return opened, after

    opened, after = asyncio.run(main())
    assert opened == 2 and after == 2
    assert sum(r.protocol == "models" for r in server.requests) == 2


def test_from_path_warm(server: MockLLMServer, tmp_path: Path) -> None:
    router = Router.from_path(policy(server, tmp_path), environ=KEYS, warm=True)
    assert server.connections_opened == 2 and len(server.requests) == 2
    router.close()


def test_warm_needs_every_key_a_model_uses(server: MockLLMServer, tmp_path: Path) -> None:
    path = policy(server, tmp_path)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        Router.from_path(path, environ={"OPENAI_API_KEY": "sk-x"}, warm=True)
    router = Router.from_path(path, environ={"OPENAI_API_KEY": "sk-x"})  # lazy: nothing read yet
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        router.warm()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_provider_is_reported_not_raised(
    server: MockLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = policy(server, tmp_path, openai_url=f"http://127.0.0.1:{free_port()}/v1")
    with caplog.at_level(logging.WARNING, logger="policyrouter"):
        router = Router.from_path(path, environ=KEYS, warm=True)
    assert "provider 'openai' could not be warmed (connection" in caplog.text
    assert KEYS["OPENAI_API_KEY"] not in caplog.text
    unreachable = router.warm(timeout_s=2.0)
    assert list(unreachable) == ["openai"] and unreachable["openai"].kind == "connection"
    assert router.complete("ask_gpt", "hi").model == "claude"  # requests still fall back as usual


def test_a_provider_without_warm_is_refused_when_the_router_is_built(server: MockLLMServer, tmp_path: Path) -> None:
    class Partial:
        name, kind = "p", "custom"

        def complete(self, request: Any) -> ProviderResponse:
            return ProviderResponse("ok", Usage(1, 1))

    router = Router.from_path(policy(server, tmp_path), environ=KEYS)
    with pytest.raises(ConfigurationError, match=r"provider 'openai' \(Partial\) lacks .*awarm.*warm"):
        Router(router.plan, {"openai": Partial(), "anthropic": MockProvider("anthropic")})  # type: ignore[dict-item]


def test_the_cold_start_bench_runs(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "cold.json"
    bench = Path(__file__).resolve().parent.parent / "bench" / "cold_start.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--runs", "1", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data) == {"cold", "warm"} and all(v["attempt_latency_ms"] >= 0 for v in data.values())


def test_a_build_that_outlasts_the_deadline_sends_nothing(server: MockLLMServer, tmp_path: Path) -> None:
    clock = FakeClock()
    keys = SlowKeys(clock)
    router = Router.from_path(policy(server, tmp_path), environ=keys, clock=clock)
    keys.build_s = router.plan.tasks["ask_gpt"].deadline_s + 1
    with pytest.raises(RequestTimeout, match="deadline") as caught:
        router.complete("ask_gpt", "hi")
    assert keys.reads == 1 and caught.value.attempts == ()
    assert server.requests == [] and router.state.open_reservations() == 0  # type: ignore[attr-defined]


def test_a_client_that_cannot_be_built_fails_the_attempt_and_falls_back(tmp_path: Path, server: MockLLMServer) -> None:
    class Broken(MockProvider):
        def warm(self, *, connect: bool = True, timeout_s: float = 5.0) -> None:
            raise RuntimeError("no client today")

    base = Router.from_path(policy(server, tmp_path), environ=KEYS)
    router = Router(base.plan, {"openai": Broken("openai"), "anthropic": MockProvider("anthropic")})
    result = router.complete("ask_gpt", "hi")
    assert result.model == "claude"
    assert [(a.model, a.outcome, a.error_kind) for a in result.attempts] == [
        ("gpt", "error", "unknown"),
        ("claude", "ok", None),
    ]
