"""Shared helpers of the benchmark scripts (not part of the library, not a test).

Each script runs as ``python bench/<name>.py``, so this directory is ``sys.path[0]``
and the scripts import this module as ``_benchlib``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A model whose every response reports what is left of a limit no bench reaches, in OpenAI's
# rate-limit headers (what overhead.py's adaptive plan reads).
REPORTING_MODEL = "gpt-4.1-nano-2025-04-14"
_REPORTING: dict[str, Any] = {"rpm": 10**9, "tpm": 10**12, "window_s": 1.0, "report_headers": True}

# The mock server in its own process: it prints its port, then serves until its stdin
# closes (so it also dies with the benchmark if that is killed).
_SERVER_CODE = """
import sys
from policyrouter.testing.mock_server import MockLLMServer
server = MockLLMServer(port=0, record_requests=False).start()
server.enforce_limits({model!r}, **{limits!r})
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def mock_server(mode: str = "subprocess") -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:N``) of a running ``MockLLMServer``.

    ``subprocess`` (default) serves from another process, so server CPU does not share
    the client's GIL; ``inprocess`` serves from threads of this process.
    """
    if mode == "inprocess":
        from policyrouter.testing import MockLLMServer

        with MockLLMServer(record_requests=False) as server:
            server.enforce_limits(REPORTING_MODEL, **_REPORTING)
            yield server.url
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_CODE.format(model=REPORTING_MODEL, limits=_REPORTING)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"mock server subprocess did not start (got {line!r})")
        yield f"http://127.0.0.1:{line}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linear interpolation."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean of latency samples in seconds, returned in microseconds."""
    s = sorted(samples_s)
    return {
        "n": len(s),
        "p50_us": percentile(s, 50) * 1e6,
        "p90_us": percentile(s, 90) * 1e6,
        "p99_us": percentile(s, 99) * 1e6,
        "mean_us": statistics.fmean(s) * 1e6 if s else float("nan"),
    }


def per_call_us(fn: Callable[[], object], iterations: int) -> tuple[float, float]:
    """Wall and CPU (this thread) microseconds per call of ``fn`` over one block of
    ``iterations`` calls. On a shared machine the CPU time is the steadier of the two:
    it leaves out the time this process waited for a core."""
    perf, cpu = time.perf_counter, time.thread_time
    t0, c0 = perf(), cpu()
    for _ in range(iterations):
        fn()
    c1, t1 = cpu(), perf()
    return (t1 - t0) / iterations * 1e6, (c1 - c0) / iterations * 1e6


def interleaved_blocks(
    fns: dict[str, Callable[[], object]], iterations: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Time each function in ``repeats`` blocks, rotating the order every block, and
    return the median and best per-call microseconds of each, wall and CPU."""
    names = list(fns)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            wall, cpu = per_call_us(fns[name], iterations)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        n: {
            "median_us": statistics.median(walls[n]),
            "best_us": min(walls[n]),
            "cpu_median_us": statistics.median(cpus[n]),
            "cpu_best_us": min(cpus[n]),
            "blocks": len(walls[n]),
        }
        for n in names
    }


def litellm_status() -> str | None:
    """``None`` when LiteLLM can be imported, else why not (``"not installed"``)."""
    import importlib.util

    if importlib.util.find_spec("litellm") is None:
        return "not installed"
    return None


def import_litellm() -> Any:
    """Import LiteLLM offline and quiet: the local model cost map, no telemetry, no
    per-call logging (its defaults fetch a price list over the network at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import logging

    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def machine_info() -> dict[str, Any]:
    """Where and under what load the numbers were taken."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    from importlib import metadata

    versions = {}
    for dist in ("policyrouter", "openai", "anthropic", "litellm", "httpx", "httpx2", "aiohttp"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    info["versions"] = versions
    return info


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        print(f"results written to {path}")


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "[green]ok[/green]" if ok else "[red]MISS[/red]"


def load_line(info: dict[str, Any]) -> str:
    v = info.get("versions", {})
    parts = [f"python {info['python']}", f"{info['cpus']} cpus"]
    if "loadavg" in info:
        parts.append("load {:.2f} {:.2f} {:.2f}".format(*info["loadavg"]))
    parts += [f"{k} {val}" for k, val in v.items()]
    return ", ".join(parts)
