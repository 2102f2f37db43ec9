"""Render simulation reports: terminal tables (rich), markdown for a pull request, JSON.

With two reports the first is the baseline and the second the candidate: every table
shows both and the change.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime, timezone

from policyrouter.simulate.engine import BudgetStats, Group, SimulationReport

__all__ = ["render_json", "render_markdown", "render_table", "sections"]

TOP_TENANTS = 10
Row = list[str]
Section = tuple[str, Row, list[Row]]


def usd(x: float) -> str:
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return "$" + f"{x:.6f}".rstrip("0").rstrip(".")


def pct(x: float) -> str:
    return f"{x:.1%}"


def limit(b: BudgetStats) -> str:
    """A budget's limits: USD, tokens, or both."""
    parts = [usd(b.limit_usd)] if b.limit_usd is not None else []
    if b.limit_tokens is not None:
        parts.append(f"{b.limit_tokens:,} tokens")
    return " / ".join(parts)


def when(ts: float | None, short: bool = False) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%SZ")


def change(old: float, new: float, money: bool = True) -> str:
    delta = new - old
    if abs(delta) < 1e-12:
        return "="
    sign = "+" if delta > 0 else "-"
    shown = usd(abs(delta)) if money else f"{abs(delta):,.0f}"
    rel = f" ({sign}{abs(delta) / old:.1%})" if old else ""
    return f"{sign}{shown}{rel}"


def _summary(r: SimulationReport) -> list[tuple[str, str, float, bool]]:
    """(metric, shown, raw value, is money) rows of one report."""
    rows: list[tuple[str, str, float, bool]] = [
        ("requests", f"{r.requests:,}", r.requests, False),
        ("answered", f"{r.answered:,} ({pct(r.rate(r.answered))})", r.answered, False),
        ("rejected", f"{r.rejected_total:,} ({pct(r.rate(r.rejected_total))})", r.rejected_total, False),
    ]
    for kind in sorted(r.rejected):
        n = r.rejected[kind]
        rows.append((f"  {kind}", f"{n:,} ({pct(r.rate(n))})", n, False))
    rows += [
        ("upstream calls", f"{r.calls:,}", r.calls, False),
        ("retried or fell back", f"{r.retried:,} ({pct(r.rate(r.retried))})", r.retried, False),
        ("answered by a fallback", f"{r.fallbacks:,} ({pct(r.rate(r.fallbacks))})", r.fallbacks, False),
        ("degraded (soft limit)", f"{r.degraded:,} ({pct(r.rate(r.degraded))})", r.degraded, False),
        ("total cost", usd(r.cost_usd), r.cost_usd, True),
        ("cost per answered request", usd(r.cost_usd / r.answered if r.answered else 0.0), 0.0, True),
    ]
    if r.prompt_cache_read_tokens or r.prompt_cache_write_tokens:  # shown once the provider cache was used
        rows += [
            ("prompt cache read tokens", f"{r.prompt_cache_read_tokens:,}", r.prompt_cache_read_tokens, False),
            ("prompt cache write tokens", f"{r.prompt_cache_write_tokens:,}", r.prompt_cache_write_tokens, False),
            ("prompt cache saved", usd(r.prompt_cache_saved_usd), r.prompt_cache_saved_usd, True),
        ]
    return rows


def _groups(title: str, key: str, reports: Sequence[SimulationReport], pick: str, limit: int | None) -> Section:
    maps: list[dict[str, Group]] = [getattr(r, pick) for r in reports]
    names = sorted({k for m in maps for k in m}, key=lambda k: (-maps[-1].get(k, Group()).cost_usd, k))
    if limit is not None:
        names = names[:limit]
    if len(reports) == 1:
        header = [key, "calls" if pick == "by_model" else "requests", "answered", "cost", "share"]
        total = reports[0].cost_usd
        rows = []
        for k in names:
            g = maps[0][k]
            rows.append(
                [k, f"{g.requests:,}", f"{g.answered:,}", usd(g.cost_usd), pct(g.cost_usd / total if total else 0)]
            )
        return title, header, rows
    header = [key, f"{reports[0].label} cost", f"{reports[1].label} cost", "change"]
    rows = []
    for k in names:
        a, b = maps[0].get(k, Group()), maps[1].get(k, Group())
        rows.append([k, usd(a.cost_usd), usd(b.cost_usd), change(a.cost_usd, b.cost_usd)])
    return title, header, rows


def _budgets(reports: Sequence[SimulationReport]) -> Section:
    names = sorted({n for r in reports for n in r.budgets})
    if len(reports) == 1:
        header = ["budget", "scope", "limit", "soft limit reached (UTC)", "first refusal (UTC)", "refusals"]
        rows = []
        for n in names:
            b = reports[0].budgets[n]
            rows.append(
                [
                    n,
                    f"{b.scope}/{b.window}",
                    limit(b),
                    when(b.soft_at, True),
                    when(b.exhausted_at, True),
                    f"{b.refusals:,}",
                ]
            )
        return "Budgets", header, rows
    base, cand = reports[0].label, reports[1].label
    header = ["budget", f"{base} limit", f"{cand} limit", "soft limit reached (UTC)", "first refusal (UTC)", "refusals"]
    rows = []
    for n in names:
        a, c = reports[0].budgets.get(n), reports[1].budgets.get(n)
        rows.append(
            [
                n,
                limit(a) if a else "-",
                limit(c) if c else "-",
                f"{when(a.soft_at, True) if a else '-'} → {when(c.soft_at, True) if c else '-'}",
                f"{when(a.exhausted_at, True) if a else '-'} → {when(c.exhausted_at, True) if c else '-'}",
                f"{a.refusals if a else 0:,} → {c.refusals if c else 0:,}",
            ]
        )
    return "Budgets", header, rows


def sections(reports: Sequence[SimulationReport]) -> list[Section]:
    """The report as titled tables (one report, or baseline then candidate)."""
    if len(reports) == 1:
        summary: Section = ("Summary", ["metric", "value"], [[m, shown] for m, shown, _, _ in _summary(reports[0])])
    else:
        a, b = _summary(reports[0]), _summary(reports[1])
        by_metric = {m: (shown, raw, money) for m, shown, raw, money in b}
        rows = []
        seen = set()
        for m, shown, raw, money in a:
            seen.add(m)
            other = by_metric.get(m, ("0", 0.0, money))
            rows.append([m, shown, other[0], change(raw, other[1], money) if m != "cost per answered request" else ""])
        for m, shown, raw, money in b:
            if m not in seen:
                rows.append([m, "0", shown, change(0.0, raw, money)])
        cpa = [
            r.cost_usd / r.answered if r.answered else 0.0 for r in reports
        ]  # the change of a ratio, computed from the ratios
        for row in rows:
            if row[0] == "cost per answered request":
                row[3] = change(cpa[0], cpa[1])
        summary = ("Summary", ["metric", reports[0].label, reports[1].label, "change"], rows)
    return [
        summary,
        _groups("Cost by task", "task", reports, "by_task", None),
        _groups("Cost by model", "model", reports, "by_model", None),
        _groups(f"Cost by tenant (top {TOP_TENANTS})", "tenant", reports, "by_tenant", TOP_TENANTS),
        _budgets(reports),
    ] + (
        [_groups("Cost by experiment variant", "variant", reports, "by_variant", None)]
        if any(r.by_variant for r in reports)
        else []
    )


def _period(reports: Sequence[SimulationReport]) -> str:
    r = reports[0]
    return f"{when(r.first_ts)} .. {when(r.last_ts)}"


def _title(reports: Sequence[SimulationReport]) -> str:
    if len(reports) == 1:
        env = f" (env {reports[0].env})" if reports[0].env else ""
        return f"Simulation of {reports[0].label}{env}: {reports[0].requests:,} requests, {_period(reports)}"
    return (
        f"Simulation: {reports[1].label} vs baseline {reports[0].label}: "
        f"{reports[0].requests:,} requests, {_period(reports)}"
    )


def render_table(reports: Sequence[SimulationReport], *, width: int = 110, color: bool = False) -> str:
    """Terminal tables (rich); plain text unless ``color``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="standard" if color else None, force_terminal=color)
    console.print(_title(reports), highlight=False)
    for title, header, rows in sections(reports):
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", highlight=False)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(reports: Sequence[SimulationReport]) -> str:
    """GitHub-flavoured markdown, for a pull-request comment."""
    out = [f"### {_title(reports)}", ""]
    for title, header, rows in sections(reports):
        out.append(f"**{title}**")
        out.append("")
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in rows:
            out.append("| " + " | ".join(_md_cell(c.replace("  ", "&nbsp;&nbsp;", 1)) for c in row) + " |")
        out.append("")
    return "\n".join(out)


def render_json(reports: Sequence[SimulationReport]) -> str:
    return json.dumps([r.to_dict() for r in reports], indent=2, sort_keys=True) + "\n"
