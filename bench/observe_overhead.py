"""What observability and guards cost per request, on the in-process mock provider.

    pip install -e '.[dev]'          # otel and prometheus extras included
    python bench/observe_overhead.py [--n 3000] [--repeats 7] [--json results.json]

One policy on ``kind: mock`` (no network: only the router's own work), one router per
configuration, timed in blocks of ``N`` sequential ``complete`` calls with the order
rotated every block so machine noise hits every configuration alike:

* ``off``: no hook, the ``policyrouter.events`` logger at WARNING (no event is built);
* ``events``: the logger at INFO into a ``NullHandler`` (every event built and logged);
* ``otel``: ``OpenTelemetryTracing`` on an SDK ``TracerProvider`` whose exporter drops
  spans (``SimpleSpanProcessor``: spans are built and ended on the request's thread);
* ``prometheus``: ``PrometheusMetrics`` on its own ``CollectorRegistry``;
* ``all``: events + otel + prometheus;
* ``guards``: ``off`` on a task with redaction (emails, phones, cards; reversible) of a
  prompt holding one email, one phone number and one card number.

Times are this process's CPU time per request (``time.process_time``; ``--clock wall``
for wall time): on a machine shared with other jobs, CPU time is what the router
spends and barely moves with the load. Read the ratios (vs ``off``, same run), not the
microseconds.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _benchlib as bl

PROMPT = (
    "Summarize this ticket: the export button does nothing since the last update. "
    "Customer ann.lee@example.com, phone +14155552671, card 4111 1111 1111 1111. " * 2
)

POLICY = """
version: 1
providers:
  offline: {kind: mock}
models:
  mini:
    provider: offline
    model: gpt-4.1-mini-2025-04-14
    pricing: {input: 0.4, output: 1.6}
    circuit_breaker: standard
tiers:
  solo: [mini]
circuit_breakers:
  standard: {failure_threshold: 5, window_s: 60, cooldown_s: 30}
budgets:
  daily: {scope: global, window: day, limit_usd: 100000}
tasks:
  plain:
    tier: solo
    max_output_tokens: 64
  guarded:
    tier: solo
    max_output_tokens: 64
    guards:
      redact: {reversible: true}
"""

EVENTS_LOGGER = logging.getLogger("policyrouter.events")


class _DropExporter:
    """A span exporter that keeps nothing (the cost measured is building spans)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def build(tmp: Path) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (one request, events logger level during its blocks)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from prometheus_client import CollectorRegistry

    from policyrouter import Router
    from policyrouter.metrics import PrometheusMetrics
    from policyrouter.otel import OpenTelemetryTracing

    path = tmp / "policy.yaml"
    path.write_text(POLICY)

    def router() -> Router:
        return Router.from_path(path)

    def tracer_provider() -> Any:
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(_DropExporter()))  # type: ignore[arg-type]
        return tp

    off, events, otel, prom, every, guarded = (router() for _ in range(6))
    OpenTelemetryTracing(tracer_provider()).attach(otel)
    PrometheusMetrics(CollectorRegistry()).attach(prom)
    OpenTelemetryTracing(tracer_provider()).attach(every)
    PrometheusMetrics(CollectorRegistry()).attach(every)
    quiet, loud = logging.WARNING, logging.INFO
    return {
        "off": (lambda: off.complete("plain", PROMPT, tenant="acme"), quiet),
        "events": (lambda: events.complete("plain", PROMPT, tenant="acme"), loud),
        "otel": (lambda: otel.complete("plain", PROMPT, tenant="acme"), quiet),
        "prometheus": (lambda: prom.complete("plain", PROMPT, tenant="acme"), quiet),
        "all": (lambda: every.complete("plain", PROMPT, tenant="acme"), loud),
        "guards": (lambda: guarded.complete("guarded", PROMPT, tenant="acme"), quiet),
    }


def per_call_us(fn: Callable[[], object], n: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n * 1e6


def measure(
    configs: dict[str, tuple[Callable[[], object], int]], n: int, repeats: int, clock: Callable[[], float]
) -> dict[str, dict[str, float]]:
    names = list(configs)
    blocks: dict[str, list[float]] = {name: [] for name in names}
    for fn, level in configs.values():  # warm up
        EVENTS_LOGGER.setLevel(level)
        for _ in range(max(20, n // 10)):
            fn()
    gc.collect()
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, level = configs[name]
            EVENTS_LOGGER.setLevel(level)
            blocks[name].append(per_call_us(fn, n, clock))
    return {name: {"median_us": statistics.median(v), "best_us": min(v)} for name, v in blocks.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per block")
    parser.add_argument("--repeats", type=int, default=7, help="blocks per configuration")
    parser.add_argument("--json", default=None, help="write results to this file")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall time")
    args = parser.parse_args(argv)

    EVENTS_LOGGER.addHandler(logging.NullHandler())
    EVENTS_LOGGER.propagate = False  # the null handler only: measure building and logging, not I/O
    info = bl.machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        res = measure(build(Path(tmp)), args.n, args.repeats, clock)
    base = res["off"]["median_us"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"per-request {args.clock} time, in-process mock provider (N={args.n} x {args.repeats} blocks)")
    for col in ("configuration", "median us/request", "best us/request", "overhead us", "ratio vs off"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    rows = {}
    for name, r in res.items():
        ratio = r["median_us"] / base
        rows[name] = {**r, "overhead_us": r["median_us"] - base, "ratio_vs_off": ratio}
        table.add_row(
            name, bl.fmt(r["median_us"], 1), bl.fmt(r["best_us"], 1), bl.fmt(r["median_us"] - base, 1), f"{ratio:.2f}x"
        )
    console = Console()
    console.print(table)
    console.print(bl.load_line(info))
    payload = {"machine": info, "n": args.n, "repeats": args.repeats, "clock": args.clock, "results": rows}
    bl.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
