"""The deadline bounds the whole attempt, whatever the upstream's bytes are doing, and a
response larger than ``max_response_bytes`` is refused while it is read.

Real openai/anthropic SDKs over HTTP to MockLLMServer's hostile faults. These tests run
on the system clock on purpose: what they check is wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import anthropic  # noqa: F401  # imported up front: a first call's SDK import is not the upstream's time
import openai  # noqa: F401
import pytest

from policyrouter import Router, RouterError, StreamInterrupted
from policyrouter.state.memory import MemoryState
from policyrouter.testing import Fault, MockLLMServer

KEYS = {"OPENAI_API_KEY": "sk-test-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-456"}
DEADLINE_S = 0.6
SLACK_S = 0.5
PACE_S = 0.1
GIVE_UP_S = 4.0  # the server's own limit: before the fix every hostile case ran this long

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  gpt:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 8000
    limits: {{concurrency: 4}}
  claude:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 8000
    limits: {{concurrency: 4}}
tiers:
  gpt: [gpt]
  claude: [claude]
retry_policies:
  default: {{max_attempts: 1}}
tasks:
  gpt: {{tier: gpt, max_output_tokens: 50, timeout_s: {deadline}, deadline_s: {deadline}}}
  claude: {{tier: claude, max_output_tokens: 50, timeout_s: {deadline}, deadline_s: {deadline}}}
  gpt_small: {{tier: gpt, max_output_tokens: 50, max_response_bytes: 65536}}
  claude_small: {{tier: claude, max_output_tokens: 50, max_response_bytes: 65536}}
"""

UPSTREAM = {"gpt": "gpt-mini-2025-01-01", "claude": "claude-haiku-20250101"}
MODES = ("complete", "acomplete", "stream", "astream")


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.fixture(scope="module", autouse=True)
def warm(server: MockLLMServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """One honest call per SDK and mode first: a process's first client pays one-time setup
    (TLS trust store, SDK imports) that is no part of the deadline under test."""
    path = tmp_path_factory.mktemp("warm") / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url, deadline=30))
    with Router.from_path(path, environ=KEYS) as r:
        for model in UPSTREAM:
            for mode in MODES:
                _call(r, model, mode)


@pytest.fixture
def state() -> MemoryState:
    return MemoryState()


@pytest.fixture
def router(server: MockLLMServer, state: MemoryState, tmp_path: Path) -> Iterator[Router]:
    path = tmp_path / "policy.yaml"
    text = POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url, deadline=DEADLINE_S)
    path.write_text(text)
    r = Router.from_path(path, environ=KEYS, state=state)
    yield r
    r.close()


def _call(router: Router, task: str, mode: str) -> str:
    """One request in ``mode``; the text it produced (it is expected to fail)."""
    if mode == "complete":
        return router.complete(task, "hi").text
    if mode == "acomplete":
        return asyncio.run(router.acomplete(task, "hi")).text
    if mode == "stream":
        return "".join(c.text or "" for c in router.stream(task, input="hi"))

    async def consume() -> str:
        return "".join([c.text or "" async for c in router.astream(task, input="hi")])

    return asyncio.run(consume())


def _assert_released(state: MemoryState, model: str) -> None:
    assert state.open_reservations() == 0
    assert state.slots_in_use(model) == 0


CASES = [
    (kind, model, mode)
    for kind in ("trickle_headers", "trickle_body", "endless_stream", "keepalive_stream")
    for model in ("gpt", "claude")
    for mode in MODES
    if kind in ("trickle_headers", "trickle_body") or mode in ("stream", "astream")
]


@pytest.mark.parametrize(("kind", "model", "mode"), CASES)
def test_the_deadline_cuts_a_hostile_upstream(
    server: MockLLMServer, router: Router, state: MemoryState, kind: str, model: str, mode: str
) -> None:
    server.script(UPSTREAM[model], [Fault(kind=kind, pace_s=PACE_S, seconds=GIVE_UP_S)])  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(RouterError) as info:
        _call(router, model, mode)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S + SLACK_S, f"{kind} {mode} ran {elapsed:.2f}s past a {DEADLINE_S}s deadline"
    kinds = [a.error_kind for a in info.value.attempts]
    assert kinds[-1] == "timeout" or info.value.kind == "timeout", kinds
    if kind == "endless_stream":  # deltas were delivered before the deadline
        assert isinstance(info.value, StreamInterrupted)
    _assert_released(state, model)


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("mode", MODES)
def test_a_huge_answer_is_refused_while_it_is_read(
    server: MockLLMServer, router: Router, state: MemoryState, model: str, mode: str
) -> None:
    server.script(UPSTREAM[model], [Fault(kind="huge_body", size_bytes=100_000_000, seconds=30)])
    tracemalloc.start()
    try:
        with pytest.raises(RouterError) as info:
            _call(router, f"{model}_small", mode)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [a.error_kind for a in info.value.attempts] == ["response_too_large"]
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB: the answer was buffered"
    _assert_released(state, model)


def test_the_default_limit_refuses_a_100_mb_answer(server: MockLLMServer, router: Router, state: MemoryState) -> None:
    server.script(UPSTREAM["gpt"], [Fault(kind="huge_body", size_bytes=100_000_000, seconds=30)])
    tracemalloc.start()
    try:
        with pytest.raises(RouterError) as info:
            router.complete("gpt", "hi")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [a.error_kind for a in info.value.attempts] == ["response_too_large"]
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 16 MiB limit"
    _assert_released(state, "gpt")


@pytest.mark.parametrize("mode", MODES)
def test_an_honest_answer_still_arrives(server: MockLLMServer, router: Router, mode: str) -> None:
    server.script(UPSTREAM["claude"], ["ok"])
    assert _call(router, "claude", mode)


@pytest.fixture
def unreachable() -> Iterator[str]:
    """A loopback port whose accept queue is full: a connect to it hangs, nothing is ever sent."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue, so the next connect waits for good
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1"
    for c in fillers:
        c.close()
    listener.close()


@pytest.mark.parametrize("mode", ["complete", "acomplete"])
def test_a_deadline_spent_connecting_bills_nothing(
    unreachable: str, server: MockLLMServer, state: MemoryState, tmp_path: Path, mode: str
) -> None:
    """The deadline ran out before the request reached the upstream: a timeout, but nothing
    was sent, so nothing is billed (on_unknown_usage applies only to calls that were sent)."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=unreachable, anthropic=server.anthropic_base_url, deadline=DEADLINE_S))
    with Router.from_path(path, environ=KEYS, state=state) as router, pytest.raises(RouterError) as info:
        _call(router, "gpt", mode)
    (attempt,) = info.value.attempts
    assert attempt.error_kind == "timeout" and attempt.billed_as is None and attempt.cost_usd == 0
    _assert_released(state, "gpt")
