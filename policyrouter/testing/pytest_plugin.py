"""pytest plugin for policyrouter (entry point ``pytest11: policyrouter``).

Fixtures:
    mock_llm_server: a started :class:`~policyrouter.testing.MockLLMServer`, one per
        test, stopped afterwards::

            def test_fallback(mock_llm_server):
                mock_llm_server.script("gpt-4o", [529])
                client = openai.OpenAI(base_url=mock_llm_server.openai_base_url, api_key="t")
                ...

The server module is imported inside the fixture, so loading the plugin costs nothing
for test sessions that never use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from policyrouter.testing.mock_server import MockLLMServer

__all__ = ["mock_llm_server"]


@pytest.fixture
def mock_llm_server() -> Iterator[MockLLMServer]:
    """A running ``MockLLMServer`` on 127.0.0.1 with a free port; stopped after the test."""
    from policyrouter.testing.mock_server import MockLLMServer

    with MockLLMServer() as server:
        yield server
