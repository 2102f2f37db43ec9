"""Small helpers shared by CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    """``@path`` reads a file (``@-`` is stdin); anything else is the text itself."""
    if value == "@-":
        import sys

        return sys.stdin.read()
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8")
    return value
