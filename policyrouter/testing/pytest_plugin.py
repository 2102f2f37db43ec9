"""pytest plugin for policyrouter (entry point ``pytest11: policyrouter``).

Fixtures:
    mock_llm_server: a started :class:`~policyrouter.testing.MockLLMServer`, one per
        test, stopped afterwards::

            def test_fallback(mock_llm_server):
                mock_llm_server.script("gpt-4o", [529])
                client = openai.OpenAI(base_url=mock_llm_server.openai_base_url, api_key="t")
                ...

Policy tests: every ``*.policytest.yaml`` file pytest meets while collecting becomes a
file of items, one per case, run exactly as ``policyrouter test`` runs them (a failure
shows expected vs actual and the actual trace). ``pytest policies/`` runs them.

The server and policy-test modules are imported on use, so loading the plugin costs
nothing for test sessions that never use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from policyrouter.plan import Plan
    from policyrouter.policytest.model import TestFile
    from policyrouter.testing.mock_server import MockLLMServer

__all__ = ["PolicyTestFile", "PolicyTestItem", "mock_llm_server", "pytest_collect_file"]


@pytest.fixture
def mock_llm_server() -> Iterator[MockLLMServer]:
    """A running ``MockLLMServer`` on 127.0.0.1 with a free port; stopped after the test."""
    from policyrouter.testing.mock_server import MockLLMServer

    with MockLLMServer() as server:
        yield server


# --------------------------------------------------------------------------- policy tests


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``*.policytest.yaml`` files: one pytest item per policy test case."""
    from policyrouter.policytest.model import SUFFIXES

    if file_path.name.endswith(SUFFIXES):
        return PolicyTestFile.from_parent(parent, path=file_path)
    return None


class PolicyTestFile(pytest.File):
    """A policy test file; its cases run through the compiled plan, offline."""

    def collect(self) -> Iterator[pytest.Item]:
        from policyrouter.errors import PolicyError
        from policyrouter.policytest.model import TestFileError, load_test_file
        from policyrouter.policytest.runner import PlanCache

        try:
            tf = load_test_file(self.path)
        except TestFileError as exc:
            raise PolicyTestCollectError("\n".join(d.one_line() for d in exc.diagnostics)) from None
        try:
            plan = PlanCache().get(tf.policy_path(), tf.env)
        except PolicyError as exc:
            errors = [d.one_line() for d in exc.diagnostics if d.severity == "error"]
            raise PolicyTestCollectError("\n".join(errors) or str(exc)) from None
        for i, case in enumerate(tf.cases):
            item = PolicyTestItem.from_parent(self, name=case.name, index=i, test_file=tf, plan=plan)
            yield item


class PolicyTestCollectError(Exception):
    """A policy test file or its policy cannot be used."""


class PolicyTestFailure(Exception):
    """A policy test case whose expectations did not hold (or that cannot run as written)."""


class PolicyTestItem(pytest.Item):
    def __init__(self, *, index: int, test_file: TestFile, plan: Plan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index = index
        self._tf = test_file
        self._plan = plan

    def runtest(self) -> None:
        from policyrouter.policytest.report import case_text
        from policyrouter.policytest.runner import run_case

        case = self._tf.cases[self._index]
        result = run_case(self._tf, case, self._plan, line=self._tf.lines.get(self._index, 0))
        if result.status != "passed":
            raise PolicyTestFailure(case_text(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, PolicyTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self._tf.lines.get(self._index, 0)
        return self.path, (line - 1 if line else None), f"policy test: {self.name}"
