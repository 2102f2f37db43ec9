"""Policy tests: reviewed YAML tables of requests and what the policy must do with them.

A policy test file is named ``*.policytest.yaml`` (or ``.yml``) and usually sits beside
the policies it tests (policy loading skips these files). ``policyrouter test PATH``
runs every case through the *compiled plan* with scripted in-process providers, a fake
clock and fresh in-memory state per case: no network, no keys, no sleeping.

File format::

    policy: .            # policy file or directory, relative to this file (default: its directory)
    env: offline         # environment overlay to compile (default: the base policy)
    seed: 0              # seed of the jitter RNG (default 0)

    fixtures:            # named states a case can start from (``given: [...]``)
      daily_95:
        budgets: {daily: {used_fraction: 0.95}}    # or {spent_usd: 190}; scope_value: acme
      mini_open:
        breakers: {gpt-mini: open}                 # open | half_open | closed
      new_year:
        time: "2026-12-31T23:59:00Z"               # wall clock at the start (ISO or epoch)

    defaults:            # merged into every case's request
      tenant: acme

    cases:
      - name: a 429 is retried on the same model
        request:
          task: summarize
          input_tokens: 1200          # or input: "text"; counted as the router counts
          output_tokens: 100          # what a plain `ok` answers with (default 100)
          tenant: acme
          user: u-1
          metadata: {customer_tier: enterprise}
        given: [daily_95]             # fixtures, applied in order
        state: {breakers: {haiku: open}}   # an inline fixture
        repeat: 1                     # run the request N times; the last one is checked
        script:                       # per policy model name, consumed call by call
          gpt-mini: [429, ok]
          haiku: [500, {status: 529, retry_after_s: 2}, timeout,
                  {ok: {input_tokens: 100, output_tokens: 20}}]
        expect:
          route: default              # route name (`default`: the task's tier)
          tier: simple
          model: gpt-mini             # the model that answered
          attempts: [{gpt-mini: rate_limited}, {gpt-mini: ok}]   # or {model: .., kind: ..}
          calls: 2                    # upstream calls made
          error: budget_exceeded      # or {kind: budget_exceeded, budget: daily}
          cost_usd: 0.0012
          input_tokens: 1200          # counted input after truncation
          cache_hit: false
          degraded: false             # or true, or the budget's name

Script entries: ``ok``; an HTTP status (``429``, ``500``, ``529``, ``400``, ``413`` ...,
classified as the adapters do); an error kind (``rate_limited``, ``overloaded``,
``server_error``, ``timeout``, ``connection``, ``auth``, ``not_found``, ``bad_request``,
``context_length``, ``content_filter``); or a mapping ``{status: N | error: KIND,
retry_after_s, latency_s, usage: {...}}`` / ``{ok: {input_tokens, output_tokens,
cached_input_tokens, cache_write_tokens, text}, latency_s}``. A ``timeout`` moves the
fake clock by the call's timeout; ``latency_s`` moves it by that much. A model whose
script is used up answers ``ok``. A plain ``ok`` reports the request's counted input
tokens and ``output_tokens`` (capped at the request's max output), so costs are easy to
compute by hand.

The default expectation is the safe one: a case that does not say otherwise must
succeed, undegraded, without a cache hit. Every other ``expect`` key is checked only
when given. A name that does not exist in the compiled plan (task, model, route, tier,
budget, fixture, error kind) is an *error*, not a silent pass: a stale expectation
fails the run. So does a script for a model outside the chain the request used.
"""

from __future__ import annotations

from policyrouter.policytest.model import CaseSpec, TestFile, TestFileError, load_test_file
from policyrouter.policytest.runner import (
    CaseResult,
    FileResult,
    Problem,
    RunReport,
    discover,
    run_case,
    run_file,
    run_paths,
)

__all__ = [
    "CaseResult",
    "CaseSpec",
    "FileResult",
    "Problem",
    "RunReport",
    "TestFile",
    "TestFileError",
    "discover",
    "load_test_file",
    "run_case",
    "run_file",
    "run_paths",
]
