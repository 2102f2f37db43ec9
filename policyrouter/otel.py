"""OpenTelemetry tracing (extra ``otel``): a span per request, a child span per upstream call.

    from opentelemetry.sdk.trace import TracerProvider
    from policyrouter.otel import OpenTelemetryTracing

    OpenTelemetryTracing(tracer_provider).attach(router)

It subscribes to the router's ``attempt``, ``result`` and ``error`` events, so it sees
exactly what the logs see (never prompt or completion text). Spans are written when the
request ends, with start and end times taken from the router's clock; the request span
is a child of whatever span is current where the request ran (your web handler's).

Request span (``INTERNAL``), named ``policyrouter <task>``: ``gen_ai.operation.name``
(``chat``), ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, and ``policyrouter.*`` (``task``, ``route``, ``request_id``,
``cost_usd``, ``cache_hit``, ``attempts``, ``retries``, ``fallbacks``); on failure its
status is ``ERROR``, ``error.type`` is the error kind and an ``exception`` event names
the class. Models skipped without a call (open breaker, client-side limit) are span
events ``policyrouter.skipped``.

Attempt spans (``CLIENT``), named ``chat <upstream model>`` per the GenAI semantic
conventions: ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and the older
``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.response.id`` (the provider's
request id), ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``policyrouter.model``,
``policyrouter.attempt``, ``policyrouter.cost_usd``; a failed call has status ``ERROR``
and ``error.type`` set to its error kind (``rate_limited``, ``timeout``, ...).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from policyrouter.errors import ConfigurationError

if TYPE_CHECKING:
    from policyrouter.router import Router

__all__ = ["OpenTelemetryTracing"]

_SYSTEMS = {
    "openai": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "mock": "policyrouter.mock",
    "azure_openai": "az.ai.openai",  # the GenAI semantic conventions' names for the clouds
    "anthropic_bedrock": "aws.bedrock",
    "anthropic_vertex": "gcp.vertex_ai",
}


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigurationError(
            "OpenTelemetry tracing needs opentelemetry-api; install the extra: pip install 'policyrouter[otel]'"
        ) from exc
    return trace


class OpenTelemetryTracing:
    """Turns router events into spans on ``tracer_provider`` (default: the global one)."""

    def __init__(self, tracer_provider: Any = None, *, tracer_name: str = "policyrouter") -> None:
        from importlib.metadata import version

        trace = _import_trace()
        self._trace = trace
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer(tracer_name, version("policyrouter"))
        self._lock = threading.Lock()
        self._attempts: dict[str, list[dict[str, Any]]] = {}
        self._routers: list[Router] = []

    def attach(self, router: Router) -> OpenTelemetryTracing:
        """Subscribe to ``router``'s events. Returns ``self``."""
        self._routers.append(router)

        def on_request(ev: dict[str, Any]) -> None:
            self._on_request(ev, router.plan)  # read per event: the plan may be reloaded

        router.on("attempt", self._on_attempt)
        router.on("result", on_request)
        router.on("error", on_request)
        return self

    def _on_attempt(self, ev: dict[str, Any]) -> None:
        with self._lock:
            self._attempts.setdefault(str(ev["request_id"]), []).append(ev)

    def _on_request(self, ev: dict[str, Any], plan: Any) -> None:
        trace = self._trace
        with self._lock:
            attempts = self._attempts.pop(str(ev["request_id"]), [])
        end = time.time_ns()
        start = end - int(ev["latency_s"] * 1e9)
        ok = ev["event"] == "result"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "policyrouter.task": ev["task"],
            "policyrouter.route": ev["route"] or "",
            "policyrouter.request_id": ev["request_id"] or "",
            "policyrouter.outcome": ev["outcome"],
            "policyrouter.cost_usd": float(ev["cost_usd"]),
            "policyrouter.cache_hit": bool(ev["cache_hit"]),
            "policyrouter.attempts": len(ev["attempts"]),
            "policyrouter.retries": int(ev["retries"]),
            "policyrouter.fallbacks": len(ev["fallbacks"]),
            "gen_ai.usage.input_tokens": int(ev["input_tokens"]),
            "gen_ai.usage.output_tokens": int(ev["output_tokens"]),
        }
        if ev["variant"] is not None:
            attrs["policyrouter.experiment"] = ev["experiment"]
            attrs["policyrouter.variant"] = ev["variant"]
        if ok:
            m = plan.models.get(ev["model"])
            attrs["gen_ai.response.model"] = m.upstream if m is not None else ev["model"]
            attrs["policyrouter.model"] = ev["model"]
            attrs["gen_ai.response.finish_reasons"] = (ev["finish_reason"],)
        else:
            attrs["error.type"] = ev["outcome"]
        span = self._tracer.start_span(
            f"policyrouter {ev['task']}", kind=trace.SpanKind.INTERNAL, start_time=start, attributes=attrs
        )
        parent = trace.set_span_in_context(span)
        for a in attempts:
            a_start = start + int(a["started_s"] * 1e9)
            if a["outcome"] == "skipped":
                span.add_event(
                    "policyrouter.skipped",
                    {"policyrouter.model": a["model"], "policyrouter.reason": a["error_kind"] or ""},
                    timestamp=a_start,
                )
                continue
            self._attempt_span(a, plan, parent, a_start)
        if not ok:
            span.add_event(
                "exception",
                {"exception.type": ev.get("error", ""), "exception.message": ev.get("message", "")},
                timestamp=end,
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(ev.get("message", ""))[:200]))
        span.end(end_time=end)

    def _attempt_span(self, a: dict[str, Any], plan: Any, parent: Any, start: int) -> None:
        trace = self._trace
        m = plan.models.get(a["model"])
        upstream = m.upstream if m is not None else a["model"]
        system = _SYSTEMS.get(m.provider_kind if m is not None else "", a["provider"])
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
            "gen_ai.request.model": upstream,
            "gen_ai.usage.input_tokens": int(a["input_tokens"]),
            "gen_ai.usage.output_tokens": int(a["output_tokens"]),
            "policyrouter.model": a["model"],
            "policyrouter.provider": a["provider"],
            "policyrouter.attempt": int(a["attempt"]),
            "policyrouter.cost_usd": float(a["cost_usd"]),
        }
        if a["provider_request_id"]:
            attrs["gen_ai.response.id"] = a["provider_request_id"]
        if a["outcome"] == "ok":
            attrs["gen_ai.response.model"] = upstream
        else:
            attrs["error.type"] = a["error_kind"] or "unknown"
            if a["status_code"]:
                attrs["http.response.status_code"] = int(a["status_code"])
        span = self._tracer.start_span(
            f"chat {upstream}", context=parent, kind=trace.SpanKind.CLIENT, start_time=start, attributes=attrs
        )
        if a["outcome"] != "ok":
            span.set_status(trace.Status(trace.StatusCode.ERROR, a["error_kind"] or "error"))
        span.end(end_time=start + int(a["latency_s"] * 1e9))
