"""An upstream error that echoes credentials never puts them in the trace, an event or a log.

Every provider and path (complete, acomplete, stream, astream), error bodies (JSON) and
``event: error`` inside a stream (SSE), through the real SDKs against MockLLMServer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _shapes_kit import PROVIDERS, UPSTREAM, make_router

from policyrouter import AllModelsFailed, Router, RouterError
from policyrouter.testing import Fault, MockLLMServer

KEYS = {"OPENAI_API_KEY": "gw-0penai-Kq7Zr2Vx9Lp4", "ANTHROPIC_API_KEY": "gw-anthr0pic-Mx3Tb8Wc1Ny6"}
"""Keys of no known shape: only the adapter knows them, so only it can take them out."""
KEY_ENV = {"gpt": "OPENAI_API_KEY", "claude": "ANTHROPIC_API_KEY"}
KEY_SHAPED = (
    "sk-proj-AbCdEf0123456789xyz",  # an OpenAI key
    "sk-ant-api03-ZyXw9876543210abc",  # an Anthropic key
    "Tk9Ub1NlY3JldEJlYXJlcg",  # after "Bearer "
    "a1b2c3d4e5f6a7b8c9d0",  # after "x-api-key: "
)


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


def leaky_message(provider: str) -> str:
    """What a careless upstream (or a proxy in front of it) might say."""
    return (
        f"Invalid credentials {KEYS[KEY_ENV[provider]]}; also tried {KEY_SHAPED[0]} and {KEY_SHAPED[1]}; "
        f"headers were Authorization: Bearer {KEY_SHAPED[2]}, x-api-key: {KEY_SHAPED[3]}"
    )


def run(router: Router, task: str, path: str) -> RouterError:
    """One request on ``path``; the error it ends with."""

    async def consume_async() -> None:
        if path == "acomplete":
            await router.acomplete(task, "hello")
        else:
            async for _ in router.astream(task, "hello"):
                pass

    with pytest.raises(RouterError) as info:
        if path == "complete":
            router.complete(task, "hello")
        elif path == "stream":
            for _ in router.stream(task, "hello"):
                pass
        else:
            asyncio.run(consume_async())
    return info.value


# an SSE error event needs a streamed call; a JSON error body reaches every path
SHAPES = [(path, "json") for path in ("complete", "acomplete", "stream", "astream")] + [
    ("stream", "sse"),
    ("astream", "sse"),
]


@pytest.mark.parametrize(("path", "shape"), SHAPES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_messages_never_carry_keys(
    server: MockLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, provider: str, path: str, shape: str
) -> None:
    fault = Fault(status=401, message=leaky_message(provider))
    if shape == "sse":
        fault = Fault(kind="stream_error", after_chunks=0, message=leaky_message(provider))
    server.script(UPSTREAM[provider], [fault])
    router = make_router(server, tmp_path, environ=KEYS)
    hooked: list[dict[str, Any]] = []
    router.on("attempt", hooked.append)
    caplog.set_level(logging.DEBUG, logger="policyrouter")

    error = run(router, f"extract_{provider}_solo", path)

    assert isinstance(error, AllModelsFailed)
    (attempt,) = error.attempts
    assert attempt.outcome == "error" and attempt.message
    assert "Invalid credentials ***" in attempt.message  # the rest of the message survives
    logged = "\n".join(
        r.getMessage() + json.dumps(getattr(r, "policyrouter", {}), default=str)
        for r in caplog.records
        if r.name.startswith("policyrouter")
    )
    assert '"message"' in logged  # the attempt event was logged
    seen = {
        "Attempt.message": attempt.message,
        "error": str(error),
        "attempt event": json.dumps(hooked, default=str),
        "log records": logged,
    }
    for secret in (*KEYS.values(), *KEY_SHAPED):
        for where, text in seen.items():
            assert secret not in text, f"{secret} in {where}"
    router.close()
