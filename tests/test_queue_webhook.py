"""The completion webhook against a real HTTP receiver on 127.0.0.1: signed, retried after a 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from policyrouter import Router, Worker
from policyrouter.errors import ConfigurationError
from policyrouter.queue.webhook import verify_signature
from policyrouter.testing.clock import FakeClock

SECRET = "whsec-test-1"
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
queues:
  q:
    tasks: [s]
    webhook: {url_env: HOOK_URL, secret_env: HOOK_SECRET, max_attempts: 3, backoff: {initial_s: 2, max_s: 5}}
"""


class Receiver:
    """Answers the scripted statuses in turn (then 200), keeping what it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500])
    t = threading.Thread(target=r.server.serve_forever, daemon=True)
    t.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_a_finished_job_is_posted_signed_and_retried_after_a_500(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    clock = FakeClock()
    env = {"HOOK_URL": receiver.url, "HOOK_SECRET": SECRET}
    with Router.from_path(tmp_path / "p.yaml", clock=clock) as router:
        jid = router.submit("s", "hello")
        worker = Worker(router, environ=env)
        before = clock.now()
        assert worker.run_one()
        assert worker.webhooks_sent == 1
    assert len(receiver.got) == 2  # the 500, then the retry
    assert clock.now() - before >= 2  # the backoff was waited (on the clock)
    headers, body = receiver.got[-1]
    assert verify_signature(SECRET, headers["X-Policyrouter-Timestamp"], body, headers["X-Policyrouter-Signature"])
    assert not verify_signature("wrong", headers["X-Policyrouter-Timestamp"], body, headers["X-Policyrouter-Signature"])
    sent = json.loads(body)
    assert (sent["job_id"], sent["status"]) == (jid, "done") and "hello" in sent["result"]["text"]
    assert SECRET.encode() not in body and all(SECRET not in v for v in headers.values())


def test_a_missing_secret_fails_when_the_worker_starts(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    with Router.from_path(tmp_path / "p.yaml") as router, pytest.raises(ConfigurationError, match="HOOK_SECRET"):
        Worker(router, environ={"HOOK_URL": "http://127.0.0.1:9/x"})
