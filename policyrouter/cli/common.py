"""Small helpers shared by CLI commands."""

from __future__ import annotations

import argparse
from typing import Any

MAX_INPUT_BYTES = 64 << 20
"""Largest ``--input @FILE`` read (64 MiB: far above any model's context window)."""


def parse_metadata(items: list[str] | None) -> dict[str, Any] | None:
    """``["customer_tier=enterprise", "n=3"]`` -> ``{"customer_tier": "enterprise", "n": 3}``."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--metadata expects KEY=VALUE, got {item!r}")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def read_input(value: str) -> str:
    """``@path`` reads a file through the safe reader (a regular file of at most
    ``MAX_INPUT_BYTES``: raises ``FileRefused``); ``@-`` is stdin; anything else is the text itself."""
    if value == "@-":
        import sys

        return sys.stdin.read()
    if value.startswith("@"):
        from policyrouter.policy.files import read_bytes

        return read_bytes(value[1:], max_bytes=MAX_INPUT_BYTES).decode("utf-8")
    return value
