"""Shared setup of the streaming / structured-output / tools tests: one policy with an
OpenAI and an Anthropic model on ``MockLLMServer``, reached through the real SDKs."""

from __future__ import annotations

import random
from pathlib import Path

from policyrouter import Router
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

KEYS = {"OPENAI_API_KEY": "sk-test-SECRET-openai-123", "ANTHROPIC_API_KEY": "sk-ant-test-SECRET-456"}
GPT = "gpt-4.1-mini-2025-04-14"
CLAUDE = "claude-haiku-4-5-20251001"
PLAIN = "gpt-plain-2025-01-01"
UPSTREAM = {"gpt": GPT, "claude": CLAUDE, "plain": PLAIN}

POLICY = """
version: 1
providers:
  openai: {{kind: openai, api_key_env: OPENAI_API_KEY, base_url: "{openai}"}}
  anthropic: {{kind: anthropic, api_key_env: ANTHROPIC_API_KEY, base_url: "{anthropic}"}}
models:
  gpt:
    provider: openai
    model: {gpt}
    pricing: {{input: 0.40, output: 1.60, cached_input: 0.10}}
    capabilities: [json_schema, tools, streaming]
  claude:
    provider: anthropic
    model: {claude}
    pricing: {{input: 1.00, output: 5.00, cached_input: 0.10, cache_write: 1.25}}
    capabilities: [json_schema, tools, streaming]
  plain:
    provider: openai
    model: {plain}
    pricing: {{input: 0.40, output: 1.60}}
tiers:
  gpt_first: [gpt, claude]
  claude_first: [claude, gpt]
  plain: [plain]
  gpt_only: [gpt]
  claude_only: [claude]
retry_policies:
  default:
    max_attempts: 1
budgets:
  daily: {{scope: global, window: day, limit_usd: 100}}
tasks:
  chat_gpt: {{tier: gpt_first, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: 10}}
  chat_claude: {{tier: claude_first, max_input_tokens: 4000, max_output_tokens: 200, timeout_s: 10}}
  chat_cached: {{tier: gpt_first, max_input_tokens: 4000, max_output_tokens: 200, temperature: 0, cache: {{ttl_s: 60}}}}
  restart_gpt:
    tier: gpt_first
    max_input_tokens: 4000
    max_output_tokens: 200
    on_stream_failure: restart
  restart_claude:
    tier: claude_first
    max_input_tokens: 4000
    max_output_tokens: 200
    on_stream_failure: restart
  fast_gpt:
    tier: gpt_first
    max_input_tokens: 4000
    max_output_tokens: 200
    stream: {{first_token_timeout_s: 1.0}}
  fast_claude:
    tier: claude_first
    max_input_tokens: 4000
    max_output_tokens: 200
    stream: {{first_token_timeout_s: 1.0}}
  idle_gpt:
    tier: gpt_first
    max_input_tokens: 4000
    max_output_tokens: 200
    stream: {{first_token_timeout_s: 1.0, idle_timeout_s: 0.5}}
  idle_claude:
    tier: claude_first
    max_input_tokens: 4000
    max_output_tokens: 200
    stream: {{first_token_timeout_s: 1.0, idle_timeout_s: 0.5}}
  extract_gpt:
    tier: gpt_first
    max_output_tokens: 200
    output: {{max_repairs: 1}}
    response_schema:
      type: object
      properties:
        city: {{type: string}}
        population: {{type: integer, minimum: 0}}
      required: [city, population]
      additionalProperties: false
  extract_claude:
    tier: claude_first
    max_output_tokens: 200
    output: {{max_repairs: 1}}
    response_schema:
      type: object
      properties:
        city: {{type: string}}
        population: {{type: integer, minimum: 0}}
      required: [city, population]
      additionalProperties: false
  extract_gpt_solo: {{tier: gpt_only, max_output_tokens: 200}}
  extract_claude_solo: {{tier: claude_only, max_output_tokens: 200}}
  extract_plain: {{tier: plain, max_output_tokens: 200}}
"""

PROVIDERS = ("gpt", "claude")
"""The first model of each ``*_gpt`` / ``*_claude`` task; the other one is its fallback."""


def other(first: str) -> str:
    return "claude" if first == "gpt" else "gpt"


def make_router(
    server: MockLLMServer, tmp_path: Path, clock: FakeClock | None = None, environ: dict[str, str] = KEYS
) -> Router:
    path = tmp_path / "policy.yaml"
    path.write_text(
        POLICY.format(
            openai=server.openai_base_url, anthropic=server.anthropic_base_url, gpt=GPT, claude=CLAUDE, plain=PLAIN
        )
    )
    return Router.from_path(path, environ=environ, clock=clock or FakeClock(), rng=random.Random(7))


def reserved(router: Router) -> float:
    """USD reserved (not yet settled) in the policy's daily budget."""
    return sum(r for _, _, r in router.state.budget_counters("daily"))


def spent(router: Router) -> float:
    return sum(s for _, s, _ in router.state.budget_counters("daily"))
