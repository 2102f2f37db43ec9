"""The bench scripts run end to end on tiny sizes, so they do not rot.

They run in a subprocess, as users run them (``python bench/<name>.py``), with the
interpreter of the test run. Nothing here asserts a speed: speed is read from the
scripts' full runs. LiteLLM is optional: without it the overhead table says so.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_script(name: str, *args: str, tmp_path: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text()), proc.stdout


def test_overhead_runs_every_section(tmp_path: Path) -> None:
    data, stdout = run_script(
        "overhead.py",
        *("--n", "6", "--per-round", "3", "--warmup", "2", "--async-requests", "8", "--async-rounds", "1"),
        *("--concurrency", "4", "--mock-iterations", "20", "--mock-repeats", "1", "--import-runs", "1"),
        tmp_path=tmp_path,
    )
    seq = data["sequential"]["clients"]
    assert {"raw openai.OpenAI", "policyrouter, 1-model plan", "policyrouter, prod plan"} <= set(seq)
    assert all(c["n"] == 6 and c["p50_us"] > 0 for c in seq.values())
    assert seq["raw openai.OpenAI"]["p50_ratio"] == 1.0
    clients = data["async"]["clients"]
    assert {"raw AsyncOpenAI (httpx)", "policyrouter, 1-model plan (httpx)"} <= set(clients)
    assert all(c["rps"] > 0 for c in clients.values())
    assert data["mock"]["sync"]["simple"]["median_us"] > 0 and data["mock"]["calibration_us"] > 0
    assert data["import"]["sdk_loaded"] == []  # the SDKs load lazily
    assert "policyrouter overhead vs the raw openai SDK and LiteLLM" in stdout
    if importlib.util.find_spec("litellm") is None:
        assert data["litellm"] == "not installed"
        assert "not installed" in stdout
        assert not any(name.startswith("LiteLLM") for name in [*seq, *clients])
    else:
        assert "LiteLLM Router" in seq and "LiteLLM Router (httpx)" in clients


def test_overhead_without_litellm_says_so(tmp_path: Path) -> None:
    data, stdout = run_script(
        "overhead.py", "--only", "import", "--import-runs", "1", "--no-litellm", tmp_path=tmp_path
    )
    assert data["litellm"] == "skipped (--no-litellm)" and "skipped (--no-litellm)" in stdout
    assert set(data) >= {"import", "machine", "targets"} and "sequential" not in data


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_chaos_books_balance(tmp_path: Path, backend: str) -> None:
    data, stdout = run_script("chaos.py", "--n", "300", "--state", backend, tmp_path=tmp_path)
    assert data["violations"] == []
    assert sum(data["outcomes"].values()) == 300
    assert not any(k.startswith("UNTYPED") for k in data["outcomes"])
    assert sum(data["faults_injected"].values()) > 0 and data["open_reservations"] == 0
    assert "ledger sum" in stdout


def test_adapter_overhead_runs(tmp_path: Path) -> None:
    data, stdout = run_script("adapter_overhead.py", "--blocks", "2", "--calls", "2", tmp_path=tmp_path)
    assert set(data["cpu_us"]) == {"raw openai SDK", "adapter", "1-model plan", "prod plan"}
    assert all(v > 0 for v in data["cpu_us"].values())
    assert set(data["over_adapter_us"]) == {"raw openai SDK", "1-model plan", "prod plan"}
    assert "CPU per call on the SDK path, vs the openai adapter alone" in stdout


def test_policyops_speed_runs(tmp_path: Path) -> None:
    data, _ = run_script("policyops_speed.py", "--records", "2000", "--cases", "20", tmp_path=tmp_path)
    notes = {r["name"]: r["note"] for r in data["results"]}
    assert notes["simulate, one policy"].startswith("$")
    assert notes["policy test run"] == "20 passed, 0 failed"
    assert all(r["seconds"] > 0 for r in data["results"])


def test_queue_throughput_runs(tmp_path: Path) -> None:
    data, stdout = run_script("queue_throughput.py", "--n", "40", "--concurrency", "2", tmp_path=tmp_path)
    for engine in ("sqlite", "redis"):
        assert data[engine]["submit_jobs_per_s"] > 0 and data[engine]["dispatch_jobs_per_s"] > 0
    if importlib.util.find_spec("arq") is None:
        assert data["arq"].startswith("not installed") and "not installed" in stdout
    else:
        assert data["arq"]["dispatch_jobs_per_s"] > 0
