"""A server that reports no token usage (some OpenAI-compatible gateways) is never free:
usage and cost are estimated from the prompt and the answer, streamed or not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyrouter.testing import MockLLMServer
from tests._shapes_kit import GPT, make_router


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer(report_usage=False) as s:
        yield s


def test_no_usage_is_estimated_not_free(
    server: MockLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_reply(GPT, text="one two three four five six seven eight")
    router = make_router(server, tmp_path)
    with caplog.at_level(logging.WARNING, logger="policyrouter"):
        r = router.complete("chat_gpt", "please answer this question " * 20)
    assert "usage" not in server.requests_for(GPT)[-1].body  # the request is normal
    assert r.usage.input_tokens > 100 and r.usage.output_tokens > 5
    assert r.cost_usd == pytest.approx((r.usage.input_tokens * 0.40 + r.usage.output_tokens * 1.60) / 1e6)
    assert "reported no token usage" in caplog.text
    assert "sk-test-SECRET" not in caplog.text

    chunks = list(router.stream("chat_gpt", "please answer this question " * 20))
    final = chunks[-1].result
    assert final is not None
    assert final.usage == r.usage and final.cost_usd == pytest.approx(r.cost_usd)
