"""Prometheus metrics (extra ``prometheus``), fed by the router's events.

    from prometheus_client import CollectorRegistry
    from policyrouter.metrics import PrometheusMetrics

    metrics = PrometheusMetrics(registry).attach(router)   # registry default: the global REGISTRY

Counters and the latency histogram are updated from ``attempt``, ``result``, ``error``,
``breaker_open`` and ``key_set_aside`` events. Breaker state and budget use are gauges read from the
router's state backend at scrape time, so with sqlite or redis they are the fleet's.

=====================================================  ==========================================
metric                                                 labels
=====================================================  ==========================================
``policyrouter_requests_total``                        task, model, outcome (``ok`` / error kind)
``policyrouter_request_duration_seconds`` (histogram)  task, outcome
``policyrouter_cache_hits_total``                      task
``policyrouter_attempts_total``                        task, model, outcome, error_kind
``policyrouter_tokens_total``                          task, model, direction (input / output)
``policyrouter_cost_usd_total``                        task, model
``policyrouter_retries_total``                         task, model
``policyrouter_fallbacks_total``                       task, from_model, to_model, reason
``policyrouter_experiment_requests_total``             task, experiment, variant, outcome
``policyrouter_experiment_cost_usd_total``             task, experiment, variant
``policyrouter_experiment_request_duration_seconds``   task, experiment, variant (histogram)
``policyrouter_guard_actions_total``                   task, action (redact / block / max_chars), rule
``policyrouter_breaker_opened_total``                  model
``policyrouter_keys_set_aside_total``                  provider, key_env (the variable's name, never the key)
``policyrouter_breaker_state``                         model (0 closed, 1 half open, 2 open)
``policyrouter_budget_used_ratio``                     budget, key ((spent + reserved) / limit, the larger of two)
``policyrouter_provider_limit_remaining``              model, dimension (requests / tokens / input_tokens /
                                                       output_tokens): what the provider's headers said was
                                                       left, last response (``limits: {adaptive: true}``)
``policyrouter_jobs_total``                            queue, outcome (done / queued: retried / failed /
                                                       dead / lost: the lease was gone)
``policyrouter_job_wait_seconds`` (histogram)          queue (submit to start of the delivery)
``policyrouter_queue_jobs``                            queue, status (queued / running / dead), read
                                                       from the queue at scrape time
``policyrouter_queue_oldest_wait_seconds``             queue
=====================================================  ==========================================

Label values come from the policy (task, model, budget names, error kinds) and, for
``budget_used_ratio``, the budget's scope value (the tenant, for a per-tenant budget).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from policyrouter.errors import ConfigurationError
from policyrouter.types import LIMIT_DIMENSIONS

if TYPE_CHECKING:
    from policyrouter.router import Router

__all__ = ["BREAKER_STATES", "PrometheusMetrics"]

BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def _import() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            "Prometheus metrics need prometheus-client; install the extra: pip install 'policyrouter[prometheus]'"
        ) from exc
    return prometheus_client


class PrometheusMetrics:
    """The router's metrics on ``registry`` (default: ``prometheus_client.REGISTRY``)."""

    def __init__(self, registry: Any = None, *, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        pc = _import()
        reg = registry if registry is not None else pc.REGISTRY
        kw: dict[str, Any] = {"registry": reg}
        # registration order is exposition order: keep it
        self._register_request_metrics(pc, kw, buckets)
        self._register_attempt_metrics(pc, kw)
        self._register_guard_and_provider_metrics(pc, kw)
        self._register_experiment_metrics(pc, kw, buckets)
        self._register_job_metrics(pc, kw)
        self._routers: list[Router] = []
        self._children: dict[tuple[Any, ...], Any] = {}
        from prometheus_client.core import GaugeMetricFamily

        self._gauge_family = GaugeMetricFamily
        reg.register(_StateCollector(self))

    def _register_request_metrics(self, pc: Any, kw: dict[str, Any], buckets: tuple[float, ...]) -> None:
        """Requests, their latency and cache hits; the first registration detects a reused registry."""
        try:
            self.requests = pc.Counter(
                "policyrouter_requests", "Requests by outcome.", ["task", "model", "outcome"], **kw
            )
        except ValueError as exc:  # prometheus_client: "Duplicated timeseries in CollectorRegistry"
            raise ConfigurationError(
                "policyrouter metrics are already registered on this registry: build one PrometheusMetrics "
                "per registry and attach() every router to it"
            ) from exc
        self.latency = pc.Histogram(
            "policyrouter_request_duration_seconds",
            "Request latency, all attempts included.",
            ["task", "outcome"],
            buckets=buckets,
            **kw,
        )
        self.cache_hits = pc.Counter("policyrouter_cache_hits", "Requests answered from the cache.", ["task"], **kw)

    def _register_attempt_metrics(self, pc: Any, kw: dict[str, Any]) -> None:
        """Per-attempt counters: outcomes, tokens, cost, retries and fallbacks."""
        self.attempts = pc.Counter(
            "policyrouter_attempts",
            "Trace entries: calls made and models skipped.",
            ["task", "model", "outcome", "error_kind"],
            **kw,
        )
        self.tokens = pc.Counter("policyrouter_tokens", "Tokens billed.", ["task", "model", "direction"], **kw)
        self.cost = pc.Counter("policyrouter_cost_usd", "USD billed, failed calls included.", ["task", "model"], **kw)
        self.retries = pc.Counter("policyrouter_retries", "Retries on the same model.", ["task", "model"], **kw)
        self.fallbacks = pc.Counter(
            "policyrouter_fallbacks", "Moves to the next model.", ["task", "from_model", "to_model", "reason"], **kw
        )

    def _register_guard_and_provider_metrics(self, pc: Any, kw: dict[str, Any]) -> None:
        """Guard actions, tripped breakers, refused keys and the providers' reported limits."""
        self.guards = pc.Counter("policyrouter_guard_actions", "Input guard actions.", ["task", "action", "rule"], **kw)
        self.breaker_opened = pc.Counter("policyrouter_breaker_opened", "Breakers tripped open.", ["model"], **kw)
        self.keys_set_aside = pc.Counter(
            "policyrouter_keys_set_aside", "API keys the provider refused (401/403).", ["provider", "key_env"], **kw
        )
        self.provider_remaining = pc.Gauge(
            "policyrouter_provider_limit_remaining",
            "What the provider's rate-limit headers said was left (adaptive models), last response.",
            ["model", "dimension"],
            **kw,
        )

    def _register_experiment_metrics(self, pc: Any, kw: dict[str, Any], buckets: tuple[float, ...]) -> None:
        """Requests, cost and latency per experiment variant."""
        self.variant_requests = pc.Counter(
            "policyrouter_experiment_requests",
            "Requests assigned in an experiment, by variant and outcome.",
            ["task", "experiment", "variant", "outcome"],
            **kw,
        )
        self.variant_cost = pc.Counter(
            "policyrouter_experiment_cost_usd",
            "USD billed for requests assigned in an experiment.",
            ["task", "experiment", "variant"],
            **kw,
        )
        self.variant_latency = pc.Histogram(
            "policyrouter_experiment_request_duration_seconds",
            "Latency of requests assigned in an experiment.",
            ["task", "experiment", "variant"],
            buckets=buckets,
            **kw,
        )

    def _register_job_metrics(self, pc: Any, kw: dict[str, Any]) -> None:
        """Queue job deliveries and their wait."""
        self.jobs = pc.Counter("policyrouter_jobs", "Job deliveries ended, by outcome.", ["queue", "outcome"], **kw)
        self.job_wait = pc.Histogram(
            "policyrouter_job_wait_seconds",
            "Wait of a job from submit to the start of its delivery.",
            ["queue"],
            buckets=(1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0),
            **kw,
        )

    def attach(self, router: Router) -> PrometheusMetrics:
        """Subscribe to ``router``'s events and report its state. Returns ``self``."""
        self._routers.append(router)
        router.on("attempt", self._on_attempt)
        router.on("result", self._on_request)
        router.on("error", self._on_request)
        router.on("breaker_open", self._on_breaker_open)
        router.on("key_set_aside", self._on_key_set_aside)
        router.on("limit_learned", self._on_limit_learned)
        router.on("job", self._on_job)
        return self

    # ------------------------------------------------------------------ events
    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoized: the client's own lookup validates and locks
        on every call, which is most of the per-request cost."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _on_attempt(self, ev: dict[str, Any]) -> None:
        task, model = ev["task"], ev["model"]
        self._child(self.attempts, task, model, ev["outcome"], ev["error_kind"] or "").inc()
        if ev["outcome"] == "skipped":
            return
        if ev["input_tokens"]:
            self._child(self.tokens, task, model, "input").inc(ev["input_tokens"])
        if ev["output_tokens"]:
            self._child(self.tokens, task, model, "output").inc(ev["output_tokens"])
        if ev["cost_usd"]:
            self._child(self.cost, task, model).inc(ev["cost_usd"])

    def _on_request(self, ev: dict[str, Any]) -> None:
        task, outcome = ev["task"], ev["outcome"]
        self._child(self.requests, task, ev["model"] or "", outcome).inc()
        self._child(self.latency, task, outcome).observe(ev["latency_s"])
        if ev["cache_hit"]:
            self._child(self.cache_hits, task).inc()
        if ev["variant"] is not None:
            arm = (task, ev["experiment"], ev["variant"])
            self._child(self.variant_requests, *arm, outcome).inc()
            self._child(self.variant_latency, *arm).observe(ev["latency_s"])
            if ev["cost_usd"]:
                self._child(self.variant_cost, *arm).inc(ev["cost_usd"])
        attempts = ev["attempts"]
        for prev, cur in itertools.pairwise(attempts):
            if prev["model"] == cur["model"]:
                self._child(self.retries, task, cur["model"]).inc()
        for f in ev["fallbacks"]:
            self._child(self.fallbacks, task, f["from"], f["to"], f["reason"] or "").inc()
        g = ev["guards"]
        if g is not None:
            for rule, n in g["redacted"].items():
                self._child(self.guards, task, "redact", rule).inc(n)
            if g["blocked"]:
                self._child(self.guards, task, "block", g["blocked"]).inc()
            if g["max_chars_exceeded"]:
                self._child(self.guards, task, "max_chars", "").inc()

    def _on_breaker_open(self, ev: dict[str, Any]) -> None:
        self._child(self.breaker_opened, ev["model"]).inc()

    def _on_key_set_aside(self, ev: dict[str, Any]) -> None:
        self._child(self.keys_set_aside, ev["provider"], ev["key_env"]).inc()

    def _on_limit_learned(self, ev: dict[str, Any]) -> None:
        for dim in LIMIT_DIMENSIONS:
            remaining = ev.get(f"remaining_{dim}")
            if remaining is not None:
                self._child(self.provider_remaining, ev["model"], dim).set(remaining)

    def _on_job(self, ev: dict[str, Any]) -> None:
        self._child(self.jobs, ev["queue"], ev["outcome"]).inc()
        self._child(self.job_wait, ev["queue"]).observe(ev["wait_s"])

    # ------------------------------------------------------------------ scrape-time gauges
    def collect_state(self) -> Iterator[Any]:
        from policyrouter.spend import budget_usage

        breakers = self._gauge_family(
            "policyrouter_breaker_state", "Circuit breaker state (0 closed, 1 half open, 2 open).", labels=["model"]
        )
        used = self._gauge_family(
            "policyrouter_budget_used_ratio",
            "(spent + reserved) / limit in the current window.",
            labels=["budget", "key"],
        )
        seen_models: set[str] = set()
        seen: set[tuple[str, str]] = set()
        for router in self._routers:
            plan, state, wall = router.plan, router.state, router.clock.wall()
            for m in plan.models.values():
                if m.breaker is not None and m.name not in seen_models:
                    seen_models.add(m.name)
                    breakers.add_metric([m.name], BREAKER_STATES.get(state.breaker_get(m.name).status, 0.0))
            for u in budget_usage(plan, state, wall):
                if (u.budget, u.key) not in seen:
                    seen.add((u.budget, u.key))
                    used.add_metric([u.budget, u.key], u.percent / 100.0)
        yield breakers
        yield used
        yield from self._queue_gauges()

    def _queue_gauges(self) -> Iterator[Any]:
        depth = self._gauge_family("policyrouter_queue_jobs", "Jobs in a queue by status.", labels=["queue", "status"])
        oldest = self._gauge_family(
            "policyrouter_queue_oldest_wait_seconds", "Wait of the oldest queued job.", labels=["queue"]
        )
        seen: set[str] = set()
        for router in self._routers:
            if not router.plan.queues or router.plan.state.backend == "memory":
                continue  # no queue another process could fill
            jobs, wall = router.jobs(), router.clock.wall()
            for name, view in jobs.views.items():
                if name in seen:
                    continue
                seen.add(name)
                st = jobs.engine.stats(view, wall)
                for status, n in (("queued", st.queued), ("running", st.running), ("dead", st.dead)):
                    depth.add_metric([name, status], float(n))
                oldest.add_metric([name], st.oldest_wait_s or 0.0)
        yield depth
        yield oldest


class _StateCollector:
    """A custom collector: prometheus_client calls ``collect`` at every scrape."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics.collect_state()

    def describe(self) -> list[Any]:
        return []  # no router state read at registration
