"""Model ids: pinned to a dated snapshot, and of their provider's vendor."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context
from policyrouter.policy.models import ModelSpec

__all__ = ["check_model_ids"]

_OPENAI_ID = re.compile(r"^(gpt-|o\d|chatgpt-|text-|davinci|babbage|dall-e|whisper|tts-|omni-|computer-use)")
_CLAUDE_ID = re.compile(r"(^|[./])claude-")
_OPENAI_PINNED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{4})$|^ft:")
_CLAUDE_PINNED = re.compile(r"[-@]20\d{6}(\b|$)")  # claude-...-20250929, Vertex's claude-...@20250929
_GENERIC_PINNED = re.compile(r"20\d{2}-?[01]\d-?[0-3]\d")
_LATEST = re.compile(r"(^|[-_.:/@])latest($|[-_.:/@])", re.IGNORECASE)


def _pin_problem(model: ModelSpec, kind: str) -> str | None:
    """Why ``model.model`` is not pinned, or None when it is (or cannot move)."""
    mid = model.model
    if _LATEST.search(mid):
        return f"`{mid}` is a -latest alias: it always moves to the newest snapshot"
    if model.pinned or kind == "mock":
        return None
    if _CLAUDE_ID.search(mid):
        return None if _CLAUDE_PINNED.search(mid) else f"`{mid}` is an alias without a -YYYYMMDD snapshot date"
    if kind == "openai" or _OPENAI_ID.match(mid):
        return None if _OPENAI_PINNED.search(mid) else f"`{mid}` is an alias without a -YYYY-MM-DD snapshot date"
    if _GENERIC_PINNED.search(mid):
        return None
    return f"cannot tell whether `{mid}` is pinned to a fixed version"


def check_model_ids(ctx: Context) -> Iterator[Diagnostic]:
    """Model ids are pinned snapshots and belong to their provider's vendor."""
    p = ctx.policy
    for name, model in p.models.items():
        prov = p.providers.get(model.provider)
        kind = prov.kind if prov is not None else "unknown"
        problem = _pin_problem(model, kind)
        if problem is not None:
            yield ctx.diag(
                "warning",
                "unpinned-model",
                f"model `{name}`: {problem}",
                ("models", name, "model"),
                "pin a dated snapshot (gpt-4.1-mini-2025-04-14, claude-sonnet-4-5-20250929) so "
                "behaviour and price do not change under you; set `pinned: true` if the id is pinned",
            )
        mid = model.model
        vendor = None
        if kind == "openai" and _CLAUDE_ID.search(mid):
            vendor = "an Anthropic model"
        elif kind == "anthropic" and _OPENAI_ID.match(mid):
            vendor = "an OpenAI model"
        if vendor is not None:
            yield ctx.diag(
                "warning",
                "model-provider-mismatch",
                f"model `{name}` looks like {vendor} (`{mid}`) but provider `{model.provider}` is kind {kind}",
                ("models", name, "provider"),
                "point the model at a provider of its vendor (or an openai_compatible gateway)",
            )
