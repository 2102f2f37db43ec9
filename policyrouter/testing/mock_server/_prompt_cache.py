"""The providers' prompt caches as the mock keeps them, on the mock's clock.

Anthropic: a request marks up to four ``cache_control`` breakpoints over its prefix (tools,
then system, then messages). The longest prefix ending at a breakpoint, or at one of the 20
blocks before it, that was written before and has not expired is read
(``cache_read_input_tokens``); the prefix from there to each later breakpoint is written with
that breakpoint's ``ttl`` (``cache_creation_input_tokens`` and its ``cache_creation``
breakdown). A prefix shorter than the model's minimum (2048 tokens for Haiku, 1024 otherwise)
is neither read nor written. A read renews the entry's lifetime. More than four marks: 400.

OpenAI: every prompt of 1024 tokens and more is cached by itself, in 128-token steps; the
longest step seen before (same model and ``prompt_cache_key``, within 10 minutes, or 24 hours
with ``prompt_cache_retention: 24h``) is reported as ``prompt_tokens_details.cached_tokens``.

Tokens here are the mock's: characters // 4, tool definitions counted as their JSON.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheUse", "PromptCaches", "TooManyBreakpoints", "check_breakpoints"]

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
OPENAI_MIN = 1024
OPENAI_STEP = 128
_TTL_S = {"5m": 300.0, "1h": 3600.0}
_OPENAI_RETENTION_S = {"in_memory": 600.0, "24h": 86400.0}


class TooManyBreakpoints(ValueError):
    """A request with more ``cache_control`` marks than the API takes (its message is the API's)."""


@dataclass(frozen=True)
class CacheUse:
    """What one request read from and wrote to the cache, in tokens, and the prompt's size."""

    prompt: int
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0


def _tokens(text: str) -> int:
    return len(text) // 4


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part) for part in content)
    if isinstance(content, Mapping):
        return str(content.get("text") or "") + _text(content.get("content"))
    return ""


def _anthropic_blocks(body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The prompt's blocks in cache order, as (canonical text, the ttl of a mark on it or None)."""
    blocks: list[tuple[str, str | None]] = []

    def add(block: Any, text: str) -> None:
        mark = block.get("cache_control") if isinstance(block, Mapping) else None
        ttl = str(mark.get("ttl") or "5m") if isinstance(mark, Mapping) else None
        blocks.append((text, ttl))

    for tool in body.get("tools") or ():
        if isinstance(tool, Mapping):
            add(tool, json.dumps({k: v for k, v in tool.items() if k != "cache_control"}, sort_keys=True))
    system = body.get("system")
    for block in system if isinstance(system, list) else [system] if system else []:
        add(block, _text(block))
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            add(part, f"{message.get('role')}:{_text(part)}")
    return blocks


def check_breakpoints(body: Mapping[str, Any]) -> None:
    """Raise :class:`TooManyBreakpoints` for an Anthropic request with more than four marks."""
    found = sum(1 for _, ttl in _anthropic_blocks(body) if ttl is not None)
    if found > MAX_BREAKPOINTS:
        raise TooManyBreakpoints(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )


class PromptCaches:
    """The prefixes written per protocol, each with its expiry and lifetime; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, float]] = {}  # prefix digest -> (expires at, lifetime)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def anthropic(self, model: str, body: Mapping[str, Any]) -> CacheUse | None:
        """The request's cache reads and writes; ``None`` when it marks no breakpoint."""
        check_breakpoints(body)
        blocks = _anthropic_blocks(body)
        marks = [i for i, (_, ttl) in enumerate(blocks) if ttl is not None]
        if not marks:
            return None
        least = 2048 if "haiku" in model.lower() else 1024
        digest = hashlib.sha256(model.encode())
        ends: list[tuple[bytes, int]] = []  # per block: digest of the prefix through it, its tokens
        total = 0
        for text, _ in blocks:
            digest.update(text.encode() + b"\0")
            total += _tokens(text)
            ends.append((digest.digest(), total))
        now = self._clock()
        with self._lock:
            read, hit = 0, None
            for mark in marks:
                for i in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                    entry = self._entries.get(ends[i][0])
                    if ends[i][1] >= least and entry is not None and entry[0] > now and ends[i][1] > read:
                        read, hit = ends[i][1], ends[i][0]
                        break
            if hit is not None:
                self._entries[hit] = (now + self._entries[hit][1], self._entries[hit][1])
            written = {"5m": 0, "1h": 0}
            done = read
            for mark in marks:
                key, tokens = ends[mark]
                ttl = blocks[mark][1] or "5m"
                if tokens < least or tokens <= done:
                    continue
                lifetime = _TTL_S.get(ttl, 300.0)
                self._entries[key] = (now + lifetime, lifetime)
                written["1h" if ttl == "1h" else "5m"] += tokens - done
                done = tokens
        return CacheUse(prompt=total, read=read, write_5m=written["5m"], write_1h=written["1h"])

    def openai(self, model: str, body: Mapping[str, Any]) -> CacheUse:
        """The request's cached prefix (128-token steps from 1024); every step is written for next time."""
        key = body.get("prompt_cache_key")
        lifetime = _OPENAI_RETENTION_S.get(str(body.get("prompt_cache_retention")), 600.0)
        messages = [[m.get("role"), _text(m.get("content"))] for m in body.get("messages") or () if isinstance(m, dict)]
        prompt = json.dumps([body.get("tools") or [], messages], sort_keys=True)
        total = _tokens(prompt)
        if total < OPENAI_MIN:
            return CacheUse(prompt=total)
        digest = hashlib.sha256(f"{model}\0{key or ''}\0".encode())
        steps: list[tuple[bytes, int]] = []
        done = 0
        for step in range(OPENAI_MIN, total + 1, OPENAI_STEP):
            digest.update(prompt[done * 4 : step * 4].encode())
            done = step
            steps.append((digest.copy().digest(), step))
        now = self._clock()
        with self._lock:
            read = max((n for d, n in steps if (e := self._entries.get(d)) is not None and e[0] > now), default=0)
            for d, _ in steps:
                self._entries[d] = (now + lifetime, lifetime)
        return CacheUse(prompt=total, read=read)
