"""OpenTelemetry spans (in-memory exporter) and Prometheus metrics (a real registry, scraped)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from policyrouter import AllModelsFailed, GuardBlocked, Router
from policyrouter.metrics import PrometheusMetrics
from policyrouter.otel import OpenTelemetryTracing
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}
MINI, HAIKU = "gpt-mini-2025-01-01", "claude-haiku-20250101"

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  mini:
    provider: openai
    model: gpt-mini-2025-01-01
    pricing: {{input: 1.0, output: 2.0}}
    circuit_breaker: strict
  haiku:
    provider: anthropic
    model: claude-haiku-20250101
    pricing: {{input: 2.0, output: 4.0}}
tiers:
  simple: [mini, haiku]
retry_policies:
  default:
    max_attempts: 2
    backoff: {{initial_s: 0.5, multiplier: 2, max_s: 8, jitter: none}}
circuit_breakers:
  strict: {{failure_threshold: 2, window_s: 60, cooldown_s: 30, trip_on: [server_error]}}
budgets:
  daily: {{scope: global, window: day, limit_usd: 1.0}}
  tenants: {{scope: tenant, window: month, limit_usd: 0.5}}
tasks:
  chat:
    tier: simple
    max_output_tokens: 50
    cache: {{ttl_s: 60, force: true}}
    guards:
      block: [{{name: no-passwords, regex: 'password\\s*[:=]'}}]
      redact: {{}}
"""


@pytest.fixture
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as s:
        yield s


@pytest.fixture
def router(server: MockLLMServer, tmp_path: Path) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(openai=server.openai_base_url, anthropic=server.anthropic_base_url))
    return Router.from_path(path, environ=KEYS, clock=FakeClock(), rng=random.Random(5))


def scripted_run(server: MockLLMServer, router: Router) -> None:
    """1: ok on mini. 2: 429 then ok on mini (a retry). 3: the same prompt as 1, from the cache.
    4: two 500s open mini's breaker, haiku answers (a fallback). 5: mini skipped (open), haiku 500 x2:
    AllModelsFailed. 6: blocked by a guard."""
    server.set_reply(MINI, text="m", usage={"input": 100, "output": 10})
    server.set_reply(HAIKU, text="h", usage={"input": 200, "output": 20})
    router.complete("chat", "first, from ann@example.com", tenant="acme")
    server.script(MINI, [429, "ok"])
    router.complete("chat", "second", tenant="acme")
    router.complete("chat", "first, from ann@example.com", tenant="acme")
    server.script(MINI, [500, 500])
    router.complete("chat", "third", tenant="globex")
    server.script(HAIKU, [500, 500])
    with pytest.raises(AllModelsFailed):
        router.complete("chat", "fourth", tenant="globex")
    with pytest.raises(GuardBlocked):
        router.complete("chat", "password: x", tenant="acme")


# ---------------------------------------------------------------------- OpenTelemetry


def test_span_tree_per_request_with_attempts_as_children(server: MockLLMServer, router: Router) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenTelemetryTracing(provider).attach(router)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as handler:
        scripted_run(server, router)
    spans = exporter.get_finished_spans()
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        by_parent.setdefault(s.parent.span_id if s.parent else None, []).append(s)
    requests = by_parent[handler.get_span_context().span_id]
    assert [s.name for s in requests] == ["policyrouter chat"] * 6
    tree = [[(c.name, c.attributes.get("error.type")) for c in by_parent.get(r.context.span_id, [])] for r in requests]
    assert tree == [
        [("chat gpt-mini-2025-01-01", None)],
        [("chat gpt-mini-2025-01-01", "rate_limited"), ("chat gpt-mini-2025-01-01", None)],
        [],  # cache hit: no upstream call
        [
            ("chat gpt-mini-2025-01-01", "server_error"),
            ("chat gpt-mini-2025-01-01", "server_error"),
            ("chat claude-haiku-20250101", None),
        ],
        [("chat claude-haiku-20250101", "server_error"), ("chat claude-haiku-20250101", "server_error")],
        [],  # blocked: nothing sent
    ]
    ok = requests[0]
    assert ok.kind == trace.SpanKind.INTERNAL and ok.status.status_code == trace.StatusCode.UNSET
    assert {k: ok.attributes[k] for k in ("gen_ai.operation.name", "gen_ai.response.model", "policyrouter.task")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.response.model": MINI,
        "policyrouter.task": "chat",
    }
    assert (ok.attributes["gen_ai.usage.input_tokens"], ok.attributes["gen_ai.usage.output_tokens"]) == (100, 10)
    call = by_parent[ok.context.span_id][0]
    assert call.kind == trace.SpanKind.CLIENT
    assert dict(call.attributes) | {"policyrouter.cost_usd": 0} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": MINI,
        "gen_ai.response.model": MINI,
        "gen_ai.response.id": call.attributes["gen_ai.response.id"],
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
        "policyrouter.model": "mini",
        "policyrouter.provider": "openai",
        "policyrouter.attempt": 1,
        "policyrouter.cost_usd": 0,
    }
    assert str(call.attributes["gen_ai.response.id"]).startswith("req_mock_")
    # the retry's span starts after the 0.5 s backoff, inside its request span
    retry = by_parent[requests[1].context.span_id]
    assert retry[1].start_time - retry[0].start_time == pytest.approx(0.5e9, abs=1e6)
    assert requests[1].start_time <= retry[0].start_time and retry[1].end_time <= requests[1].end_time
    assert retry[0].status.status_code == trace.StatusCode.ERROR
    assert retry[0].attributes["http.response.status_code"] == 429
    failed = requests[4]
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "all_models_failed"
    assert [e.name for e in failed.events] == ["policyrouter.skipped", "exception"]
    assert failed.events[0].attributes == {"policyrouter.model": "mini", "policyrouter.reason": "circuit_open"}
    assert requests[5].attributes["error.type"] == "guard_blocked"
    assert all("ann@example.com" not in str(dict(s.attributes)) for s in spans)


# ---------------------------------------------------------------------- Prometheus


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_scraped_after_a_scripted_run(server: MockLLMServer, router: Router) -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry).attach(router)
    scripted_run(server, router)
    m = scrape(registry)

    def get(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert get("policyrouter_requests_total", task="chat", model="mini", outcome="ok") == 3  # 2 calls + 1 cached
    assert get("policyrouter_requests_total", task="chat", model="haiku", outcome="ok") == 1
    assert get("policyrouter_requests_total", task="chat", model="haiku", outcome="all_models_failed") == 1
    assert get("policyrouter_requests_total", task="chat", model="", outcome="guard_blocked") == 1
    assert get("policyrouter_cache_hits_total", task="chat") == 1
    assert get("policyrouter_retries_total", task="chat", model="mini") == 2  # 429 -> ok, 500 -> 500
    assert get("policyrouter_retries_total", task="chat", model="haiku") == 1
    assert (
        get("policyrouter_fallbacks_total", task="chat", from_model="mini", to_model="haiku", reason="server_error")
        == 1
    )
    assert (
        get("policyrouter_fallbacks_total", task="chat", from_model="mini", to_model="haiku", reason="circuit_open")
        == 1
    )
    assert (
        get("policyrouter_attempts_total", task="chat", model="mini", outcome="error", error_kind="server_error") == 2
    )
    assert (
        get("policyrouter_attempts_total", task="chat", model="mini", outcome="skipped", error_kind="circuit_open") == 1
    )
    assert get("policyrouter_tokens_total", task="chat", model="mini", direction="input") == 200
    assert get("policyrouter_tokens_total", task="chat", model="haiku", direction="output") == 20
    assert get("policyrouter_cost_usd_total", task="chat", model="mini") == pytest.approx(2 * (100e-6 + 10 * 2e-6))
    assert get("policyrouter_guard_actions_total", task="chat", action="redact", rule="email") == 2
    assert get("policyrouter_guard_actions_total", task="chat", action="block", rule="no-passwords") == 1
    assert get("policyrouter_breaker_opened_total", model="mini") == 1
    assert get("policyrouter_breaker_state", model="mini") == 2  # open
    assert get("policyrouter_request_duration_seconds_count", task="chat", outcome="ok") == 4
    # on the fake clock only backoff takes time: requests 1 and 3 take 0 s, 2 and 4 wait 0.5 s
    assert get("policyrouter_request_duration_seconds_bucket", task="chat", outcome="ok", le="0.25") == 2
    assert get("policyrouter_request_duration_seconds_bucket", task="chat", outcome="ok", le="0.5") == 4
    assert get("policyrouter_request_duration_seconds_sum", task="chat", outcome="ok") == pytest.approx(1.0)
    assert get("policyrouter_request_duration_seconds_bucket", task="chat", outcome="ok", le="+Inf") == 4
    spent = 2 * (100e-6 + 10 * 2e-6) + (200 * 2e-6 + 20 * 4e-6)
    assert get("policyrouter_budget_used_ratio", budget="daily", key="*") == pytest.approx(spent / 1.0)
    acme = 2 * (100e-6 + 10 * 2e-6)
    assert get("policyrouter_budget_used_ratio", budget="tenants", key="acme") == pytest.approx(acme / 0.5)


def test_missing_extra_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from policyrouter import ConfigurationError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"policyrouter\[prometheus\]"):
        PrometheusMetrics(CollectorRegistry())
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"policyrouter\[otel\]"):
        OpenTelemetryTracing()


def test_one_metrics_object_per_registry_serves_many_routers(
    server: MockLLMServer, router: Router, tmp_path: Path
) -> None:
    from policyrouter import ConfigurationError

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry).attach(router)
    with pytest.raises(ConfigurationError, match="already registered"):
        PrometheusMetrics(registry)
    offline_path = tmp_path / "offline.yaml"
    offline_path.write_text(
        "version: 1\nproviders: {offline: {kind: mock}}\nmodels: {m: {provider: offline, model: m-2025-01-01}}\n"
        "tiers: {t: [m]}\ntasks: {x: {tier: t}}\n"
    )
    offline = Router.from_path(offline_path)
    metrics.attach(offline)
    router.complete("chat", "hi")
    offline.complete("x", "hi")
    m = scrape(registry)
    assert m[("policyrouter_requests_total", (("model", "mini"), ("outcome", "ok"), ("task", "chat")))] == 1
    assert m[("policyrouter_requests_total", (("model", "m"), ("outcome", "ok"), ("task", "x")))] == 1
