"""Semantic checks of a schema-valid policy.

The loader validates the shape of a policy (pydantic); the passes here check what the
shape cannot: that names resolve, that a task fits the models it can reach, that a
budget can pay for one request, that no secret is written down. Like OPA's compiler,
``check_policy`` runs small named passes in a fixed order (``CHECKS``), each a pure
function ``(ctx) -> iterable of Diagnostic``, and collects every problem instead of
stopping at the first. It never raises: a bug in a pass becomes an
``internal-check-error`` diagnostic naming the pass.

``scan_secrets(data, source)`` runs on the *raw* YAML data (and source text), before
schema validation, since a key like ``api_key:`` is rejected by the schema first.

Diagnostic codes (stable; the README copies this table):

=========================== ======== ===========================================================
code                        severity meaning
=========================== ======== ===========================================================
unknown-reference           error    a name (provider, model, tier, retry policy, circuit
                                     breaker, budget, task) that is not defined; hint: did you mean
empty-tier                  error    a tier with no models: requests routed to it cannot be served
duplicate-tier-member       error    a model listed twice in one tier
tier-weight-unused          warning  a model weight on a tier whose strategy is not weighted
unused-definition           warning  a tier, model, provider, retry policy or circuit breaker
                                     that nothing references
provider-no-key             error    an openai/anthropic/openai_compatible provider without
                                     ``api_key_env``: no way to get its key
key-list-empty              error    ``api_key_env: []``: a key list that names no variable
duplicate-key-env           error    a key variable listed twice in one ``api_key_env`` list
all-keys-drained            error    every key of an ``api_key_env`` list has ``weight: 0``
provider-setting-ignored    warning  ``mock`` settings on a non-mock provider, or
                                     ``organization_env`` on a provider that does not use it;
                                     Azure settings (``endpoint``, ``api_version``, ``auth``,
                                     a model's ``deployment``) outside ``azure_openai``; or
                                     ``region``/``project``/``aws_profile`` on a kind without them
base-url-conflict           error    a provider with both ``base_url`` and ``base_url_env``
provider-missing-setting    error    a setting its kind needs is missing (``azure_openai``: an
                                     endpoint, ``api_version``)
endpoint-conflict           error    an ``azure_openai`` provider with both ``endpoint`` and
                                     ``endpoint_env``, or with a ``base_url``
insecure-base-url           warning  ``base_url`` over plain http to a non-local host: the key
                                     travels in clear text
cloud-setting-missing       error    an ``anthropic_bedrock`` provider without ``region``, or an
                                     ``anthropic_vertex`` one without ``region`` or ``project``
cloud-credentials-conflict  error    an ``anthropic_bedrock`` provider with both ``aws_profile``
                                     and ``api_key_env`` (a Bedrock API key)
model-id-shape              warning  a model id not in its cloud's shape
                                     (``anthropic.claude-...-v1:0``, ``claude-...@20250929``)
literal-secret              error    an API key, token, password or credential written in the
                                     policy (the message never repeats it)
unpinned-model              warning  a model id that is an alias which can move under you
                                     (no date suffix, or ``-latest``)
model-provider-mismatch     warning  a Claude id on an openai provider, or a GPT id on anthropic
state-no-url                error    ``backend: redis`` without ``url_env``
state-setting-ignored       warning  ``path``/``url_env`` set for a backend that does not use it
retry-non-transient         warning  ``retry_on`` lists an error kind that repeats on retry
                                     (bad_request, auth, not_found, context_length, ...)
backoff-inverted            warning  ``backoff.initial_s`` greater than ``backoff.max_s``
soft-limit-range            error    ``soft_limit`` outside (0, 1)
soft-limit-action-unused    error    ``on_soft_limit`` without ``soft_limit``: it never fires
soft-limit-no-action        warning  ``soft_limit`` without an ``on_soft_limit`` action
budget-key-ignored          warning  ``key`` on a budget whose scope is not ``metadata``
invalid-timezone            error    a budget ``timezone`` that is not an IANA zone name
budget-covers-nothing       warning  a budget that no task counts against
route-never-matches         warning  a route whose conditions cannot hold (empty range, above
                                     ``max_input_tokens``, empty list)
route-shadowed              warning  a route that an earlier route always matches first
cache-nondeterministic      warning  a cached task whose temperature is above
                                     ``cache.max_temperature`` (and not ``force``)
deadline-below-timeout      warning  ``deadline_s`` shorter than ``timeout_s``
task-setting-ignored        warning  ``on_input_overflow`` truncation without ``max_input_tokens``
retry-storm                 warning  worst-case upstream calls of one request over 10, with no
                                     ``max_total_attempts``
unreachable-fallback        warning  ``max_total_attempts`` smaller than the task's chain: the
                                     last models are never tried
context-overflow            error    ``max_input_tokens + max_output_tokens`` over the context
                                     window of a model the task can reach
output-over-model-limit     error    ``max_output_tokens`` over a reachable model's output limit
tpm-below-request           warning  requests the task allows (input + output) above a reachable
                                     model's ``limits.tpm``: that model never serves them
reserve-without-adaptive    warning  ``limits.reserve`` on a model whose limits are not
                                     ``adaptive``: it does nothing
missing-pricing             error    a model a budgeted task can reach has no ``pricing``
budget-unbounded-input      warning  a budgeted task without ``max_input_tokens``: its worst
                                     case cannot be computed
budget-below-request        error    a budget smaller than one worst-case request of a task
                                     it covers
token-budget-below-request  warning  a ``limit_tokens`` smaller than one largest request (input
                                     cap + max output) of a task it covers
token-budget-never-fits     error    a ``limit_tokens`` at most a covered task's
                                     ``max_output_tokens``: no request of it ever fits
degrade-not-cheaper         warning  ``on_soft_limit.degrade_to`` a tier that is not cheaper
                                     than the tiers it replaces
response-schema-invalid     error    ``response_schema`` is not a usable JSON Schema
capability-missing          warning  a task with ``response_schema`` can reach a model whose
                                     declared capabilities have no json_schema/json_mode
invalid-regex               error    a guard pattern (``guards.block``, ``guards.redact.patterns``)
                                     that is not a valid Python regular expression
log-content-unredacted      warning  ``log_content: true`` without ``guards.redact``: prompts and
                                     answers reach your logs with their PII
reasoning-unsupported       error    reasoning or thinking asked of a tier with no model that
                                     declares the ``reasoning`` capability (or set on such a model)
reasoning-not-sent          warning  a model of a reasoning task's tier without ``reasoning``: it
                                     gets no effort or budget
thinking-budget-too-large   error    an Anthropic thinking budget not below the task's
                                     ``max_output_tokens`` (the API refuses it)
thinking-forced-tool        error    structured output (a forced tool call) on an Anthropic model
                                     with thinking, which the API refuses
temperature-dropped         warning  a task temperature that is not sent to its reasoning models
prompt-cache-no-effect      warning  a task with ``prompt_cache`` whose models are all on providers
                                     that get no cache parameters (mock, openai_compatible)
prompt-cache-setting-ignored warning a breakpoint listed twice, ``retention`` with no OpenAI model,
                                     or ``prompt_cache_min_tokens`` on a non-Anthropic model
experiment-conflict         error    two experiments on one task (a request can be in one)
experiment-window-empty     error    an experiment whose ``end`` is not after its ``start``
task-in-two-queues          error    a task listed by two queues: a submit would not know where
                                     its job goes
queue-max-wait-below-lease  warning  ``aging.max_wait_s`` below ``lease_s``: a job handed back
                                     after a lease expiry already waited past the bound
internal-check-error        error    a check crashed (a policyrouter bug); the others still ran
reload-failed               error    a reload raised something other than a policy error (a
                                     RecursionError from a deep ``$ref``, a client that cannot
                                     be built): ``reload()`` returns ``ok=False``, the old plan serves
=========================== ======== ===========================================================

Assumptions shared with the runtime: a task with no ``retry`` and no retry policy
named ``default`` makes one attempt per model; routes are matched on the input token
count the input guard sees, so a route needing more than ``max_input_tokens`` never
serves a request.

The passes live in one module per concern (``references``, ``providers``, ``keys``, ``clouds``, ``model_ids``,
``state``, ``retries``, ``budgets``, ``routes``, ``tasks``, ``capacity``, ``structured``,
``guards``, ``prompt_cache``, ``secrets``), all reading one :class:`~policyrouter.policy.checks.context.Context`;
this module orders them (``CHECKS``) and runs them (``check_policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from policyrouter.diagnostics import Diagnostic, Location, Severity
from policyrouter.policy.checks.budgets import (
    check_budget_fits_request,
    check_budget_settings,
    check_degrade_cheaper,
    check_pricing,
    check_soft_limits,
    check_token_budget_fits_request,
    check_unbounded_input,
)
from policyrouter.policy.checks.capacity import (
    check_adaptive_limits,
    check_context_windows,
    check_output_limits,
    check_rate_limits,
)
from policyrouter.policy.checks.clouds import check_cloud_model_ids, check_cloud_settings
from policyrouter.policy.checks.context import Context, derive
from policyrouter.policy.checks.experiments import check_experiments
from policyrouter.policy.checks.guards import check_guards
from policyrouter.policy.checks.keys import check_key_lists
from policyrouter.policy.checks.model_ids import check_model_ids
from policyrouter.policy.checks.prompt_cache import check_prompt_cache
from policyrouter.policy.checks.providers import check_azure_settings, check_provider_keys, check_provider_settings
from policyrouter.policy.checks.queues import check_queues
from policyrouter.policy.checks.reasoning import check_reasoning
from policyrouter.policy.checks.references import (
    REFERENCE_SECTIONS,
    check_references,
    check_tier_weights,
    check_tiers,
    check_unused,
    referenced,
)
from policyrouter.policy.checks.retries import RETRY_STORM_LIMIT, check_attempts, check_retry_policies
from policyrouter.policy.checks.routes import check_routes
from policyrouter.policy.checks.secrets import check_typed_secrets, scan_secrets, secret_spans
from policyrouter.policy.checks.state import check_state
from policyrouter.policy.checks.structured import check_capabilities, check_response_schemas
from policyrouter.policy.checks.tasks import check_task_settings
from policyrouter.policy.models import Policy
from policyrouter.policy.source import SourceMap

__all__ = [
    "CHECKS",
    "CODES",
    "REFERENCE_SECTIONS",
    "RETRY_STORM_LIMIT",
    "check_policy",
    "referenced",
    "scan_secrets",
    "secret_spans",
]

CODES: Mapping[str, tuple[Severity, str]] = {
    "unknown-reference": ("error", "a referenced name is not defined"),
    "empty-tier": ("error", "a tier with no models"),
    "duplicate-tier-member": ("error", "a model listed twice in one tier"),
    "tier-weight-unused": ("warning", "a model weight on a tier whose strategy is not weighted"),
    "unused-definition": ("warning", "a tier, model, provider, retry policy or breaker nothing uses"),
    "provider-no-key": ("error", "a provider with no way to get its API key"),
    "key-list-empty": ("error", "an api_key_env list that names no variable"),
    "duplicate-key-env": ("error", "a key variable listed twice in one api_key_env list"),
    "all-keys-drained": ("error", "every key of an api_key_env list has weight 0"),
    "provider-setting-ignored": ("warning", "a provider setting its kind does not use"),
    "base-url-conflict": ("error", "a provider with both base_url and base_url_env"),
    "provider-missing-setting": ("error", "a provider without a setting its kind needs"),
    "endpoint-conflict": ("error", "an azure_openai provider with two endpoints, or a base_url"),
    "insecure-base-url": ("warning", "plain-http base_url to a non-local host"),
    "cloud-setting-missing": ("error", "a Bedrock or Vertex provider without its region or project"),
    "cloud-credentials-conflict": ("error", "a Bedrock provider with both aws_profile and api_key_env"),
    "model-id-shape": ("warning", "a model id not in its cloud's shape (Bedrock, Vertex)"),
    "literal-secret": ("error", "a credential written in the policy"),
    "unpinned-model": ("warning", "a model id alias that can move under you"),
    "model-provider-mismatch": ("warning", "a model id of another vendor than its provider"),
    "state-no-url": ("error", "redis state without url_env"),
    "state-setting-ignored": ("warning", "a state setting its backend does not use"),
    "task-in-two-queues": ("error", "a task listed by two queues"),
    "queue-max-wait-below-lease": ("warning", "a queue's aging.max_wait_s below its lease_s"),
    "retry-non-transient": ("warning", "retry_on lists an error kind that repeats on retry"),
    "backoff-inverted": ("warning", "backoff.initial_s greater than backoff.max_s"),
    "soft-limit-range": ("error", "soft_limit outside (0, 1)"),
    "soft-limit-action-unused": ("error", "on_soft_limit without soft_limit"),
    "soft-limit-no-action": ("warning", "soft_limit without on_soft_limit"),
    "budget-key-ignored": ("warning", "budget key without scope: metadata"),
    "invalid-timezone": ("error", "budget timezone is not an IANA zone"),
    "budget-covers-nothing": ("warning", "a budget no task counts against"),
    "route-never-matches": ("warning", "a route whose conditions cannot hold"),
    "route-shadowed": ("warning", "a route an earlier route always matches first"),
    "cache-nondeterministic": ("warning", "caching a task sampled above cache.max_temperature"),
    "deadline-below-timeout": ("warning", "deadline_s shorter than timeout_s"),
    "task-setting-ignored": ("warning", "a task setting that has no effect"),
    "retry-storm": ("warning", "over 10 worst-case upstream calls without max_total_attempts"),
    "unreachable-fallback": ("warning", "max_total_attempts shorter than the chain"),
    "context-overflow": ("error", "input + output limits over a reachable context window"),
    "output-over-model-limit": ("error", "max_output_tokens over a reachable model's limit"),
    "tpm-below-request": ("warning", "requests the task allows above a reachable model's tpm"),
    "reserve-without-adaptive": ("warning", "limits.reserve on limits that are not adaptive"),
    "missing-pricing": ("error", "a model a budgeted task can reach has no pricing"),
    "budget-unbounded-input": ("warning", "a budgeted task without max_input_tokens"),
    "budget-below-request": ("error", "a budget smaller than one worst-case request"),
    "token-budget-below-request": ("warning", "a limit_tokens smaller than one largest request"),
    "token-budget-never-fits": ("error", "a limit_tokens at most a task's max_output_tokens"),
    "degrade-not-cheaper": ("warning", "degrade_to a tier that is not cheaper"),
    "response-schema-invalid": ("error", "response_schema is not a usable JSON Schema"),
    "capability-missing": ("warning", "a structured-output task reaches a model without json support"),
    "invalid-regex": ("error", "a guard pattern that is not a valid regular expression"),
    "log-content-unredacted": ("warning", "log_content without guards.redact"),
    "reasoning-unsupported": ("error", "reasoning asked of models that do not declare it"),
    "reasoning-not-sent": ("warning", "a model of a reasoning task without the reasoning capability"),
    "thinking-budget-too-large": ("error", "a thinking budget not below max_output_tokens"),
    "thinking-forced-tool": ("error", "structured output forcing a tool call while Anthropic thinks"),
    "temperature-dropped": ("warning", "a temperature not sent to the task's reasoning models"),
    "prompt-cache-no-effect": ("warning", "prompt_cache on a task whose providers get no cache parameters"),
    "prompt-cache-setting-ignored": ("warning", "a prompt cache setting that has no effect"),
    "experiment-conflict": ("error", "two experiments on one task"),
    "experiment-window-empty": ("error", "an experiment that ends before it starts"),
    "internal-check-error": ("error", "a check crashed (a policyrouter bug)"),
    "reload-failed": ("error", "a reload raised something other than a policy error (e.g. a deep $ref)"),
}
"""Every code the checks emit: code -> (severity, one-line meaning)."""

Check = Callable[[Context], Iterable[Diagnostic]]

CHECKS: tuple[tuple[str, Check], ...] = (
    # names first: later passes only follow references that resolve
    ("references", check_references),
    ("tiers", check_tiers),
    ("tier-weights", check_tier_weights),
    ("unused", check_unused),
    ("provider-keys", check_provider_keys),
    ("provider-settings", check_provider_settings),
    ("azure-settings", check_azure_settings),
    ("cloud-settings", check_cloud_settings),
    ("key-lists", check_key_lists),
    ("secrets", check_typed_secrets),
    ("model-ids", check_model_ids),
    ("cloud-model-ids", check_cloud_model_ids),
    ("state", check_state),
    ("queues", check_queues),
    ("retry-policies", check_retry_policies),
    ("soft-limits", check_soft_limits),
    ("budget-settings", check_budget_settings),
    ("routes", check_routes),
    ("task-settings", check_task_settings),
    ("attempts", check_attempts),
    # capacity, then cost: both read the task -> reachable model facts
    ("context-windows", check_context_windows),
    ("output-limits", check_output_limits),
    ("rate-limits", check_rate_limits),
    ("adaptive-limits", check_adaptive_limits),
    ("pricing", check_pricing),
    ("unbounded-input", check_unbounded_input),
    ("budget-fits-request", check_budget_fits_request),
    ("token-budget-fits-request", check_token_budget_fits_request),
    ("degrade-cheaper", check_degrade_cheaper),
    ("response-schemas", check_response_schemas),
    ("capabilities", check_capabilities),
    ("guards", check_guards),
    ("reasoning", check_reasoning),
    ("prompt-cache", check_prompt_cache),
    ("experiments", check_experiments),
)
"""The passes of ``check_policy``, in the order they run: (name, function)."""


def _internal(name: str, exc: BaseException, env: str | None, source: SourceMap) -> Diagnostic:
    return Diagnostic(
        severity="error",
        code="internal-check-error",
        message=f"check `{name}` crashed ({type(exc).__name__}); the other checks still ran",
        location=Location(source.default_file),
        hint="this is a policyrouter bug: please report it with the policy that triggers it",
        env=env,
    )


def check_policy(policy: Policy, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """Every semantic problem of ``policy``, sorted by location; never raises.

    ``source`` maps policy paths to ``file:line:col``; ``env`` names the environment
    whose merged policy this is (None: the base), and is stamped on each diagnostic.
    """
    ctx = Context(policy=policy, source=source, env=env)
    out: list[Diagnostic] = []
    try:
        derive(ctx)
    except Exception as exc:  # a bug here must not hide the schema-level report
        return [_internal("derive", exc, env, source)]
    for name, check in CHECKS:
        try:
            out.extend(check(ctx))
        except Exception as exc:  # reported as a diagnostic, not swallowed
            out.append(_internal(name, exc, env, source))
    return sorted(out, key=Diagnostic.sort_key)
