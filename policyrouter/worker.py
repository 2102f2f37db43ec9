"""Workers: drain the policy's queues through the same engine as ``Router.complete``.

``Worker(router, queues=["background"], concurrency=4).run()`` takes jobs in the queue's order
(priority, aging, tenant turns; see ``policyrouter.queue.base``), runs each with
``router.complete(..., request_id=job_id)`` (budgets, limits, breakers, cache and ledger as for
any request; the ledger row carries the job id), renews the job's lease while it runs, and
stores the result or the error with its trace. SIGTERM (or ``stop()``) drains: no new job is
taken, jobs in flight finish within ``drain_s``, and those still running then are handed back.

A redelivered job (its worker died) whose job id already has an ``ok`` ledger row was answered
and charged before the crash: it is completed from that row (``recovered: true``, no text),
never called and charged again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from policyrouter.errors import PolicyRouterError, RouterError, StateUnavailable
from policyrouter.queue.base import Delivery, QueueView, dumps
from policyrouter.queue.jobs import Jobs, payload_of
from policyrouter.queue.webhook import Webhook
from policyrouter.router import Router

__all__ = ["FINAL_KINDS", "Worker"]

log = logging.getLogger("policyrouter")

# Failures that a new delivery would repeat: the job fails at once instead of going back.
FINAL_KINDS = frozenset(
    {"invalid_request", "input_too_long", "guard_blocked", "bad_request", "invalid_output", "context_length",
     "content_filter", "auth", "not_found"}
)  # fmt: skip


class Worker:
    """Runs jobs of ``queues`` (default: every queue of the policy), ``concurrency`` at a time."""

    def __init__(
        self,
        router: Router,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        poll_s: float = 0.2,
        drain_s: float = 30.0,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._router = router
        self._jobs: Jobs = router.jobs()
        names = list(queues) if queues else sorted(self._jobs.views)
        unknown = [n for n in names if n not in self._jobs.views]
        if unknown or not names:
            from policyrouter.errors import ConfigurationError

            known = ", ".join(sorted(self._jobs.views)) or "none"
            raise ConfigurationError(
                f"unknown queue(s) {', '.join(unknown) or '(none defined)'}; the policy has: {known}"
            )
        self._queues: list[QueueView] = [self._jobs.views[n] for n in names]
        env = environ if environ is not None else os.environ
        self._webhooks = {  # a missing URL or secret fails here, at start, not at the first job's end
            n: Webhook.from_spec(router.plan.queues[n].webhook, env) for n in names if router.plan.queues[n].webhook
        }
        self.webhooks_sent = 0
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._drain_s = drain_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._stop = threading.Event()
        self._held: dict[str, tuple[QueueView, str]] = {}  # job id -> (queue, token)
        self._held_lock = threading.Lock()
        self._handed_back: set[str] = set()  # jobs given back at the drain deadline: their late answers are dropped
        self.processed = 0

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Work until ``stop()`` or SIGTERM/SIGINT (when called on the main thread), then drain."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        threads = [threading.Thread(target=self._loop, name=f"pr-worker-{i}", daemon=True)
                   for i in range(self._concurrency)]  # fmt: skip
        renewer = threading.Thread(target=self._renew_loop, name="pr-worker-lease", daemon=True)
        for t in (*threads, renewer):
            t.start()
        self._stop.wait()
        self._drain(threads)

    async def arun(self) -> None:
        """``run`` for asyncio: the worker's threads run beside the event loop until ``stop()``;
        cancelling ``arun`` stops and drains the worker, then re-raises."""
        import asyncio

        running = asyncio.ensure_future(asyncio.to_thread(self.run))
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:
            self.stop()
            await running
            raise

    def stop(self) -> None:
        """Take no new job; the ones in flight finish (``run`` returns after the drain)."""
        self._stop.set()

    def run_one(self) -> bool:
        """Take and run one job, if one is ready (for tests and scripts); True when one ran."""
        d = self._jobs.engine.take(self._queues, self.name, self._router.clock.wall())
        if d is None:
            return False
        self._handle(d)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                d = self._jobs.engine.take(self._queues, self.name, self._router.clock.wall())
            except StateUnavailable as exc:  # the queue's store is down: wait and try again, keep running
                log.warning("policyrouter: worker %s cannot reach its queue: %s", self.name, exc)
                self._stop.wait(max(self._poll_s, 1.0))
                continue
            if d is None:
                self._stop.wait(self._poll_s)
                continue
            try:
                self._handle(d)
            except Exception:  # a store outage while ending the job: its lease brings it back; keep running
                log.exception("policyrouter: worker %s could not end job %s; its lease returns it", self.name, d.id)

    def _drain(self, threads: list[threading.Thread]) -> None:
        deadline = self._router.clock.now() + self._drain_s
        for t in threads:
            t.join(max(0.0, deadline - self._router.clock.now()))
        with self._held_lock:
            left = list(self._held.items())
        for job_id, (_, token) in left:  # still running past the deadline: hand back
            self._handed_back.add(job_id)
            self._jobs.engine.release(job_id, token, self._router.clock.wall())
            log.warning("policyrouter: worker %s handed job %s back after the drain deadline", self.name, job_id)

    def _renew_loop(self) -> None:
        every = min(q.lease_s for q in self._queues) / 3
        while not self._stop.wait(every):
            with self._held_lock:
                held = list(self._held.items())
            for job_id, (q, token) in held:
                try:
                    renewed = self._jobs.engine.renew(job_id, token, self._router.clock.wall() + q.lease_s)
                except StateUnavailable as exc:  # try again next round, before the lease runs out
                    log.warning("policyrouter: worker %s cannot renew job %s: %s", self.name, job_id, exc)
                    continue
                if not renewed:
                    log.warning("policyrouter: worker %s lost the lease of job %s", self.name, job_id)

    # ------------------------------------------------------------------ one job
    def _handle(self, d: Delivery) -> None:
        q = next(v for v in self._queues if v.name == d.queue)
        with self._held_lock:
            self._held[d.id] = (q, d.token)
        try:
            self._run(q, d)
        finally:
            with self._held_lock:
                self._held.pop(d.id, None)
                self.processed += 1

    def _run(self, q: QueueView, d: Delivery) -> None:
        engine, wall = self._jobs.engine, self._router.clock.wall
        if d.deliveries > 1:  # delivered before (a crash, a lost lease, a drain hand-back): never call twice
            recovered = self._from_ledger(d)
            if recovered is not None:
                if engine.complete(q, d.id, d.token, dumps(recovered), wall()):
                    self._emit(d, "done", recovered=True)
                    self._notify(d)
                return
        args = payload_of(d.payload)
        try:
            result = self._router.complete(
                args["task"], args.get("input"), messages=args.get("messages"), user=args.get("user"),
                tenant=args.get("tenant"), metadata=args.get("metadata"), request_id=d.id,
            )  # fmt: skip
        except PolicyRouterError as exc:
            if d.id in self._handed_back:
                return
            error = _error(exc)
            status = engine.fail(q, d.id, d.token, dumps(error), wall(), retry=error["kind"] not in FINAL_KINDS)
            self._emit(d, status or "lost", error_kind=error["kind"])
            if status in ("failed", "dead"):
                self._notify(d)
            return
        if d.id in self._handed_back:
            return
        stored = engine.complete(q, d.id, d.token, dumps(result.to_dict()), wall())
        self._emit(d, "done" if stored else "lost")
        if stored:
            self._notify(d)

    def _notify(self, d: Delivery) -> None:
        hook = self._webhooks.get(d.queue)
        if hook is None:
            return
        info = self._jobs.engine.get(d.id, self._router.clock.wall())
        if info is not None and hook.send(info, self._router.clock.wall(), self._router.clock.sleep):
            self.webhooks_sent += 1

    def _from_ledger(self, d: Delivery) -> dict[str, Any] | None:
        """The answer a previous delivery got and was charged for, from its ledger row."""
        for row in self._router.state.ledger_rows(since_wall=d.enqueued_at):
            if row.request_id == d.id and row.outcome == "ok":
                return {"recovered": True, "text": None, "task": row.task, "model": row.model, "route": row.route,
                        "cost_usd": row.cost_usd, "request_id": row.request_id,
                        "usage": {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens}}  # fmt: skip
        return None

    def _emit(self, d: Delivery, status: str, **extra: Any) -> None:
        self._router.events.emit(
            "job",
            {"request_id": d.id, "job_id": d.id, "queue": d.queue, "task": d.task, "outcome": status,
             "deliveries": d.deliveries, "wait_s": max(0.0, d.started_at - d.enqueued_at), **extra},
        )  # fmt: skip


def _error(exc: PolicyRouterError) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": exc.kind, "message": str(exc)[:2000], "type": type(exc).__name__}
    if isinstance(exc, RouterError):
        out["attempts"] = [a.to_dict() for a in exc.attempts]
    return out
