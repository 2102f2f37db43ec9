"""The README's MockLLMServer sample, exactly as printed (checked against README.md), run
from the repository root where its relative ``policies/`` path points."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policyrouter import FakeClock, Router
from policyrouter.testing import Fault

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the sample's "policies/" is relative, as in a user's own repo


def test_fallback(mock_llm_server):  # the fixture comes from the policyrouter pytest plugin
    # gpt-mini fails three times (its retry policy allows 3 attempts), then haiku answers
    mock_llm_server.script("gpt-4.1-mini-2025-04-14", [429, Fault(status=529, retry_after_s=2), 503])
    environ = {
        "OPENAI_API_KEY": "test",
        "ANTHROPIC_API_KEY": "test",
        "GATEWAY_API_KEY": "test",
        "OPENAI_BASE_URL": mock_llm_server.openai_base_url,  # the `test` environment reads these
        "ANTHROPIC_BASE_URL": mock_llm_server.anthropic_base_url,
        "GATEWAY_BASE_URL": mock_llm_server.openai_base_url,
    }
    clock = FakeClock()  # backoff and Retry-After waits take no real time
    router = Router.from_path("policies/", env="test", environ=environ, clock=clock)

    result = router.complete("summarize", "The printer in room 4 is on fire again.")

    assert result.model == "haiku"
    assert [a.outcome for a in result.attempts] == ["error", "error", "error", "ok"]
    assert mock_llm_server.count_429 == 1
    assert 2.0 in clock.sleeps  # the 529's Retry-After was respected
    assert result.text.startswith("mock answer from claude-haiku-4-5-20251001")


def test_the_readme_prints_this_sample_verbatim() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your policies: `MockLLMServer`", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    sample = block.group(1)
    imports, _, body = sample.partition("\n\n\n")
    source = Path(__file__).read_text(encoding="utf-8")
    assert imports.splitlines() == [line for line in source.splitlines() if line.startswith("from policyrouter")]
    assert body.startswith("def test_fallback(") and body in source
