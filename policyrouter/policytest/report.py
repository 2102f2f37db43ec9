"""Render a policy test run: pytest-like text, JSON, or JUnit XML for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from policyrouter.policytest.runner import CaseResult, RunReport, describe_request, describe_trace

__all__ = ["case_text", "render", "render_json", "render_junit", "render_text", "summary_line"]

WIDTH = 80
_MARK = {"passed": ".", "failed": "F", "error": "E"}


def _banner(title: str, char: str = "=") -> str:
    title = f" {title} "
    left = max(2, (WIDTH - len(title)) // 2)
    right = max(2, WIDTH - len(title) - left)
    return f"{char * left}{title}{char * right}"


def summary_line(report: RunReport) -> str:
    parts = [f"{report.passed} passed", f"{report.failed} failed"]
    if report.errors:
        parts.append(f"{report.errors} error" + ("s" if report.errors != 1 else ""))
    return ", ".join(parts)


def _case_block(c: CaseResult) -> list[str]:
    lines = [_banner(c.nodeid, "_"), f"{c.file}:{c.line}" if c.line else c.file]
    if c.request is not None:
        lines.append(f"request: {describe_request(c.request)}")
    if c.errors:
        lines.append("")
        lines += [f"  error: {e}" for e in c.errors]
    if c.problems:
        lines.append("")
        width = max(len(p.field) for p in c.problems)
        for p in c.problems:
            lines.append(f"  {p.field:<{width}}  expected  {p.expected}")
            lines.append(f"  {'':<{width}}  actual    {p.actual}")
    if c.trace is not None:
        lines += ["", "actual trace:"]
        lines += [f"  {line}" for line in describe_trace(c.trace)]
    return lines


def render_text(report: RunReport) -> str:
    """Dots per file, then errors and failures with expected vs actual, then the summary."""
    out: list[str] = []
    total = len(report.cases)
    done = 0
    for f in report.files:
        marks = "E" if f.errors else "".join(_MARK[c.status] for c in f.cases)
        done += len(f.cases)
        pct = f"[{100 * done // total:3d}%]" if total else "[  0%]"
        pad = max(1, WIDTH - len(f.path) - 1 - len(marks) - len(pct))
        out.append(f"{f.path} {marks}{' ' * pad}{pct}")
    broken = [f for f in report.files if f.errors]
    errored = [c for c in report.cases if c.status == "error"]
    if broken or errored:
        out += ["", _banner("ERRORS")]
        for f in broken:
            out.append(_banner(f.path, "_"))
            out += [d.one_line() + (f"\n  hint: {d.hint}" if d.hint else "") for d in f.errors]
        for c in errored:
            out += _case_block(c)
    failed = [c for c in report.cases if c.status == "failed"]
    if failed:
        out += ["", _banner("FAILURES")]
        for c in failed:
            out += _case_block(c)
            out.append("")
    if failed or errored or broken:
        out.append(_banner("short test summary info"))
        for f in broken:
            out.append(f"ERROR {f.path} - {f.errors[0].message if f.errors else ''}")
        for c in errored:
            out.append(f"ERROR {c.nodeid} - {c.errors[0] if c.errors else ''}")
        for c in failed:
            fields = ", ".join(p.field for p in c.problems)
            out.append(f"FAILED {c.nodeid} - {fields}")
    if not report.files:
        out.append("no policy test files found (*.policytest.yaml)")
    out.append(_banner(summary_line(report)))
    return "\n".join(out) + "\n"


def _json(report: RunReport) -> dict[str, Any]:
    return {
        "summary": {
            "passed": report.passed,
            "failed": report.failed,
            "errors": report.errors,
            "total": len(report.cases),
        },
        "files": [
            {
                "path": f.path,
                "errors": [d.to_dict() for d in f.errors],
                "cases": [c.to_dict() for c in f.cases],
            }
            for f in report.files
        ],
    }


def render_json(report: RunReport) -> str:
    return json.dumps(_json(report), indent=2, sort_keys=True) + "\n"


def case_text(c: CaseResult) -> str:
    """One failed or errored case as text: request, expected vs actual, actual trace."""
    return "\n".join(_case_block(c)[1:])


def _failure_text(c: CaseResult) -> str:
    return "\n".join(_case_block(c)[1:])


def render_junit(report: RunReport) -> str:
    """JUnit XML: one ``testsuite`` per file, one ``testcase`` per case."""
    root = ET.Element(
        "testsuites",
        name="policyrouter",
        tests=str(len(report.cases)),
        failures=str(report.failed),
        errors=str(report.errors),
        time=f"{report.duration_s:.3f}",
    )
    for f in report.files:
        n_fail = sum(1 for c in f.cases if c.status == "failed")
        n_err = sum(1 for c in f.cases if c.status == "error") + (1 if f.errors else 0)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f.path,
            tests=str(len(f.cases) + (1 if f.errors else 0)),
            failures=str(n_fail),
            errors=str(n_err),
            time=f"{sum(c.duration_s for c in f.cases):.3f}",
        )
        if f.errors:
            tc = ET.SubElement(suite, "testcase", classname=f.path, name="(load)", file=f.path)
            err = ET.SubElement(tc, "error", message=f.errors[0].message if f.errors else "invalid file")
            err.text = "\n".join(d.one_line() for d in f.errors)
        for c in f.cases:
            tc = ET.SubElement(
                suite,
                "testcase",
                classname=f.path,
                name=c.name,
                file=c.file,
                line=str(c.line),
                time=f"{c.duration_s:.4f}",
            )
            if c.status == "failed":
                node = ET.SubElement(tc, "failure", message=", ".join(p.field for p in c.problems))
                node.text = _failure_text(c)
            elif c.status == "error":
                node = ET.SubElement(tc, "error", message=c.errors[0] if c.errors else "error")
                node.text = _failure_text(c)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(fmt: str, report: RunReport) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "junit":
        return render_junit(report)
    return render_text(report)
