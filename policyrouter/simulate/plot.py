"""Cumulative spend over time as PNG or SVG (extra ``plot``: matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from policyrouter.errors import ConfigurationError
from policyrouter.simulate.engine import BUCKET_S, SimulationReport

__all__ = ["plot_cumulative_spend"]


def plot_cumulative_spend(reports: Sequence[SimulationReport], path: str | os.PathLike[str]) -> None:
    """One line per report (baseline, candidate): spend so far at the end of each hour.
    The format follows the file name (``.png``, ``.svg``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("the spend chart needs matplotlib: pip install 'policyrouter[plot]'") from None
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        for r in reports:
            points = r.cumulative()
            xs: Any = [datetime.fromtimestamp(h + BUCKET_S, timezone.utc) for h, _ in points]
            ys = [c for _, c in points]
            ax.step(xs, ys, where="post", label=f"{r.label} (${r.cost_usd:,.2f})")
        ax.set_title("Cumulative spend (simulated)")
        ax.set_ylabel("USD")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(os.fspath(path))
    finally:
        plt.close(fig)
