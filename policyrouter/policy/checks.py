"""Semantic checks of a schema-valid policy (filled in by the validation work)."""

from __future__ import annotations

from policyrouter.policy.diagnostics import Diagnostic
from policyrouter.policy.models import Policy
from policyrouter.policy.source import SourceMap


def check_policy(policy: Policy, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """Every semantic problem of ``policy``; never raises."""
    return []
