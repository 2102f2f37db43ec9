"""Test helpers for policyrouter and for users testing their own policies.

``MockLLMServer`` is a local OpenAI + Anthropic compatible HTTP server with scripted
faults; see :mod:`policyrouter.testing.mock_server`. The ``mock_llm_server`` pytest
fixture comes from the ``policyrouter`` pytest plugin.

Names are imported lazily, so importing this package (as the pytest plugin does)
stays cheap and ``python -m policyrouter.testing.mock_server`` runs cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policyrouter.testing.mock_server import Fault, MockLLMServer, MockScriptError, RecordedRequest

__all__ = ["Fault", "MockLLMServer", "MockScriptError", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from policyrouter.testing import mock_server

        return getattr(mock_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
