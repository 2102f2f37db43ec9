"""The ``queues:`` section: validated like the rest of the language (schema and checks, with
file:line:col), and the ``worker`` / ``jobs`` commands over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyrouter import Router, load_policy
from policyrouter.cli.main import main
from policyrouter.errors import PolicyError

POLICY = """version: 1
providers:
  p: {kind: mock}
models:
  a: {provider: p, model: a-2025-01-01}
tiers:
  t: [a]
state: {backend: sqlite, path: state.sqlite}
tasks:
  s: {tier: t}
  u: {tier: t}
queues:
QUEUES
"""


def write(tmp_path: Path, queues: str) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(POLICY.replace("QUEUES", queues))
    return f


def diagnostics(tmp_path: Path, queues: str) -> list[str]:
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, queues))
    return [d.one_line() for d in err.value.diagnostics]


def test_an_unknown_task_is_named_at_its_place(tmp_path: Path) -> None:
    (line,) = diagnostics(tmp_path, "  q: {tasks: [s, nope]}")
    assert "p.yaml:13:" in line and "unknown-reference" in line and "'nope'" in line


def test_a_task_in_two_queues_is_an_error(tmp_path: Path) -> None:
    (line,) = diagnostics(tmp_path, "  q1: {tasks: [s]}\n  q2: {tasks: [u, s]}")
    assert "task-in-two-queues" in line and "p.yaml:14:" in line


def test_shape_errors_all_at_once(tmp_path: Path) -> None:
    found = diagnostics(
        tmp_path, "  q: {tasks: [], max_deliveries: 0, fairness: random, priority: {default: '1'}, lease: 5}"
    )
    assert len(found) == 5, found


def test_max_wait_below_lease_warns(tmp_path: Path) -> None:
    f = write(tmp_path, "  q: {tasks: [s], lease_s: 120, aging: {max_wait_s: 60}}")
    assert main(["validate", str(f)]) == 0
    assert main(["validate", str(f), "--strict"]) == 1


def test_jobs_lists_queues_and_shows_a_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "  q: {tasks: [s]}")
    with Router.from_path(f) as r:
        jid = r.submit("s", "hello", tenant="t1")
    capsys.readouterr()
    assert main(["jobs", str(f), "--format", "json"]) == 0
    (stats,) = json.loads(capsys.readouterr().out)
    assert (stats["name"], stats["queued"], stats["running"]) == ("q", 1, 0)
    assert main(["jobs", str(f), "--show", jid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert main(["jobs", str(f), "--show", "job-none"]) == 1
    assert main(["jobs", str(f), "--dead", "nope"]) == 2
    assert main(["jobs", str(f), "--purge", "q"]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 1}


def test_worker_refuses_an_unknown_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "  q: {tasks: [s]}")
    assert main(["worker", str(f), "--queues", "other"]) == 1
    assert "unknown queue(s) other" in capsys.readouterr().err


def test_explain_shows_the_queue_of_a_task(tmp_path: Path) -> None:
    f = write(tmp_path, "  q: {tasks: [s], aging: {max_wait_s: 900}, fairness: none}")
    with Router.from_path(f) as r:
        e = r.explain("s")
        assert "queue     q: classes default 5, +1 per 50 dispatches waited, served by 900s, fairness none" in str(e)
        assert e.to_dict()["queue"]["max_deliveries"] == 5
        assert "queue" not in r.explain("u").to_dict() and "queue " not in str(r.explain("u"))
