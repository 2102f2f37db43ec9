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
unused-definition           warning  a tier, model, provider, retry policy or circuit breaker
                                     that nothing references
provider-no-key             error    an openai/anthropic/openai_compatible provider without
                                     ``api_key_env``: no way to get its key
provider-setting-ignored    warning  ``mock`` settings on a non-mock provider, or
                                     ``organization_env`` on a provider that does not use it
insecure-base-url           warning  ``base_url`` over plain http to a non-local host: the key
                                     travels in clear text
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
tpm-below-request           error    one worst-case request needs more tokens than a reachable
                                     model's ``limits.tpm`` allows per minute
missing-pricing             error    a model a budgeted task can reach has no ``pricing``
budget-unbounded-input      warning  a budgeted task without ``max_input_tokens``: its worst
                                     case cannot be computed
budget-below-request        error    a budget smaller than one worst-case request of a task
                                     it covers
degrade-not-cheaper         warning  ``on_soft_limit.degrade_to`` a tier that is not cheaper
                                     than the tiers it replaces
response-schema-invalid     error    ``response_schema`` is not a usable JSON Schema
capability-missing          warning  a task with ``response_schema`` can reach a model whose
                                     declared capabilities have no json_schema/json_mode
invalid-regex               error    a guard pattern (``guards.block``, ``guards.redact.patterns``)
                                     that is not a valid Python regular expression
log-content-unredacted      warning  ``log_content: true`` without ``guards.redact``: prompts and
                                     answers reach your logs with their PII
internal-check-error        error    a check crashed (a policyrouter bug); the others still ran
=========================== ======== ===========================================================

Assumptions shared with the runtime: a task with no ``retry`` and no retry policy
named ``default`` makes one attempt per model; routes are matched on the input token
count the input guard sees, so a route needing more than ``max_input_tokens`` never
serves a request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from policyrouter.policy.diagnostics import Diagnostic, Location, Severity
from policyrouter.policy.models import InputTokensCondition, ModelSpec, Policy, RouteWhen, Task
from policyrouter.policy.names import closest
from policyrouter.policy.source import PathKey, SourceMap, dotted

__all__ = ["CHECKS", "CODES", "check_policy", "scan_secrets", "secret_spans"]

CODES: Mapping[str, tuple[Severity, str]] = {
    "unknown-reference": ("error", "a referenced name is not defined"),
    "empty-tier": ("error", "a tier with no models"),
    "duplicate-tier-member": ("error", "a model listed twice in one tier"),
    "unused-definition": ("warning", "a tier, model, provider, retry policy or breaker nothing uses"),
    "provider-no-key": ("error", "a provider with no way to get its API key"),
    "provider-setting-ignored": ("warning", "a provider setting its kind does not use"),
    "insecure-base-url": ("warning", "plain-http base_url to a non-local host"),
    "literal-secret": ("error", "a credential written in the policy"),
    "unpinned-model": ("warning", "a model id alias that can move under you"),
    "model-provider-mismatch": ("warning", "a model id of another vendor than its provider"),
    "state-no-url": ("error", "redis state without url_env"),
    "state-setting-ignored": ("warning", "a state setting its backend does not use"),
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
    "tpm-below-request": ("error", "one request needs more tokens than the model's tpm"),
    "missing-pricing": ("error", "a model a budgeted task can reach has no pricing"),
    "budget-unbounded-input": ("warning", "a budgeted task without max_input_tokens"),
    "budget-below-request": ("error", "a budget smaller than one worst-case request"),
    "degrade-not-cheaper": ("warning", "degrade_to a tier that is not cheaper"),
    "response-schema-invalid": ("error", "response_schema is not a usable JSON Schema"),
    "capability-missing": ("warning", "a structured-output task reaches a model without json support"),
    "invalid-regex": ("error", "a guard pattern that is not a valid regular expression"),
    "log-content-unredacted": ("warning", "log_content without guards.redact"),
    "internal-check-error": ("error", "a check crashed (a policyrouter bug)"),
}
"""Every code this module emits: code -> (severity, one-line meaning)."""

RETRY_STORM_LIMIT = 10
"""Worst-case upstream calls of one request above which ``retry-storm`` warns."""

# --------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    """What every pass reads: the policy, where its nodes are, and derived facts.

    Facts are computed once (``_derive``) from known names only, so passes never trip
    over an unknown reference; ``unknown-reference`` reports those.
    """

    policy: Policy
    source: SourceMap
    env: str | None
    # task -> {tier: how the task reaches it}
    task_tiers: dict[str, dict[str, str]] = field(default_factory=dict)
    # task -> budgets counting it
    task_budgets: dict[str, list[str]] = field(default_factory=dict)
    # budget -> tasks it covers
    budget_tasks: dict[str, list[str]] = field(default_factory=dict)
    _models: dict[str, dict[str, str]] = field(default_factory=dict)
    _worst: dict[str, tuple[float, str] | None] = field(default_factory=dict)

    def diag(
        self,
        severity: Severity,
        code: str,
        message: str,
        path: PathKey,
        hint: str = "",
        *,
        key: bool = False,
    ) -> Diagnostic:
        return Diagnostic(
            severity=severity,
            code=code,
            message=message,
            location=self.source.locate(path, key=key),
            path=dotted(path),
            hint=hint,
            env=self.env,
        )

    def task_models(self, task: str) -> dict[str, str]:
        """Known models the task can reach -> the tier it reaches them through (memoized)."""
        out = self._models.get(task)
        if out is None:
            out = {}
            for tier in self.task_tiers.get(task, {}):
                for member in self.policy.tiers.get(tier, ()):
                    if member in self.policy.models:
                        out.setdefault(member, tier)
            self._models[task] = out
        return out

    def via(self, task: str, tier: str) -> str:
        """How ``task`` reaches ``tier``, for messages: "tier `x` (route `long`)"."""
        how = self.task_tiers.get(task, {}).get(tier, "its tier")
        return f"tier `{tier}`" + ("" if how == "its tier" else f" ({how})")

    def task_chains(self, task: str) -> list[list[str]]:
        """Known model chains (deduplicated, in order) of the task's reachable tiers."""
        chains = []
        for tier in self.task_tiers.get(task, {}):
            chain = list(dict.fromkeys(m for m in self.policy.tiers.get(tier, ()) if m in self.policy.models))
            chains.append(chain)
        return chains

    def worst_request(self, task: str) -> tuple[float, str] | None:
        """(cost, model) of the task's most expensive single attempt, if computable (memoized)."""
        if task not in self._worst:
            spec = self.policy.tasks[task]
            costs = [
                (cost, m)
                for m in self.task_models(task)
                if (cost := _request_cost(spec, self.policy.models[m])) is not None
            ]
            self._worst[task] = max(costs) if costs else None
        return self._worst[task]


def _covers(budget_name: str, tasks_filter: Set[str] | None, task_name: str, task: Task) -> bool:
    if tasks_filter is not None and task_name not in tasks_filter:
        return False
    return task.budgets is None or budget_name in task.budgets


def _derive(ctx: _Ctx) -> None:
    p = ctx.policy
    ctx.task_budgets = {t: [] for t in p.tasks}
    for b_name, budget in p.budgets.items():
        filter_ = None if budget.tasks is None else set(budget.tasks)
        covered = [t for t, task in p.tasks.items() if _covers(b_name, filter_, t, task)]
        ctx.budget_tasks[b_name] = covered
        for t in covered:
            ctx.task_budgets[t].append(b_name)
    for t_name, task in p.tasks.items():
        budgets = ctx.task_budgets[t_name]
        tiers: dict[str, str] = {}
        if task.tier in p.tiers:
            tiers[task.tier] = "its tier"
        for i, route in enumerate(task.routes):
            if route.tier in p.tiers:
                tiers.setdefault(route.tier, f"route {_route_label(route.name, i)}")
        for b in budgets:
            action = p.budgets[b].on_soft_limit
            if action is not None and action.degrade_to in p.tiers:
                tiers.setdefault(action.degrade_to, f"budget `{b}` degrade_to")
        ctx.task_tiers[t_name] = tiers


def _route_label(name: str | None, index: int) -> str:
    return f"`{name}`" if name else f"#{index}"


def _did_you_mean(name: str, candidates: Iterable[str], what: str) -> str:
    names = sorted(candidates)
    if not names:
        return f"no {what} is defined; define it or fix the name"
    match = closest(name, names)
    if match is not None:
        return f"did you mean `{match}`?"
    shown = ", ".join(f"`{n}`" for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return f"defined {what}s: {shown}"


def _fmt_usd(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


# --------------------------------------------------------------------------- references


# what an ``unknown-reference`` names, and the section that would define it
REFERENCE_SECTIONS: Mapping[str, str] = {
    "provider": "providers",
    "circuit breaker": "circuit_breakers",
    "model": "models",
    "tier": "tiers",
    "retry policy": "retry_policies",
    "budget": "budgets",
    "task": "tasks",
}
_UNKNOWN = re.compile(r"refers to unknown (" + "|".join(REFERENCE_SECTIONS) + r") `([^`]+)`$")


def referenced(d: Diagnostic) -> tuple[str, str] | None:
    """(section, name) an ``unknown-reference`` diagnostic says is missing, else ``None``."""
    found = _UNKNOWN.search(d.message) if d.code == "unknown-reference" else None
    return (REFERENCE_SECTIONS[found.group(1)], found.group(2)) if found else None


def check_references(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Every name used is defined (``unknown-reference``), with a did-you-mean hint."""
    p = ctx.policy

    def ref(name: str, defined: Mapping[str, object], what: str, path: PathKey, user: str) -> Iterator[Diagnostic]:
        if name not in defined:
            yield ctx.diag(
                "error",
                "unknown-reference",
                f"{user} refers to unknown {what} `{name}`",
                path,
                _did_you_mean(name, defined, what),
            )

    for m_name, model in p.models.items():
        yield from ref(model.provider, p.providers, "provider", ("models", m_name, "provider"), f"model `{m_name}`")
        if model.circuit_breaker is not None:
            yield from ref(
                model.circuit_breaker,
                p.circuit_breakers,
                "circuit breaker",
                ("models", m_name, "circuit_breaker"),
                f"model `{m_name}`",
            )
    for tier, members in p.tiers.items():
        for i, member in enumerate(members):
            yield from ref(member, p.models, "model", ("tiers", tier, i), f"tier `{tier}`")
    for t_name, task in p.tasks.items():
        where = f"task `{t_name}`"
        yield from ref(task.tier, p.tiers, "tier", ("tasks", t_name, "tier"), where)
        for i, route in enumerate(task.routes):
            yield from ref(route.tier, p.tiers, "tier", ("tasks", t_name, "routes", i, "tier"), where)
        if task.retry is not None:
            yield from ref(task.retry, p.retry_policies, "retry policy", ("tasks", t_name, "retry"), where)
        for i, b in enumerate(task.budgets or ()):
            yield from ref(b, p.budgets, "budget", ("tasks", t_name, "budgets", i), where)
    for b_name, budget in p.budgets.items():
        where = f"budget `{b_name}`"
        for i, t in enumerate(budget.tasks or ()):
            yield from ref(t, p.tasks, "task", ("budgets", b_name, "tasks", i), where)
        if budget.on_soft_limit is not None and budget.on_soft_limit.degrade_to is not None:
            yield from ref(
                budget.on_soft_limit.degrade_to,
                p.tiers,
                "tier",
                ("budgets", b_name, "on_soft_limit", "degrade_to"),
                where,
            )


# --------------------------------------------------------------------------- definitions


def check_tiers(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Chains are non-empty and list each model once."""
    for tier, members in ctx.policy.tiers.items():
        if not members:
            yield ctx.diag(
                "error",
                "empty-tier",
                f"tier `{tier}` has no models",
                ("tiers", tier),
                "list at least one model; the tier is an ordered fallback chain",
            )
        seen: dict[str, int] = {}
        for i, member in enumerate(members):
            if member in seen:
                yield ctx.diag(
                    "error",
                    "duplicate-tier-member",
                    f"model `{member}` is listed twice in tier `{tier}` (first at position {seen[member]})",
                    ("tiers", tier, i),
                    "remove the repeat; to retry a model more, raise its retry policy's max_attempts",
                )
            else:
                seen[member] = i


def check_unused(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Definitions nothing references (``default`` retry policies and breakers apply implicitly)."""
    p = ctx.policy
    used_tiers = {t.tier for t in p.tasks.values()}
    used_tiers |= {r.tier for t in p.tasks.values() for r in t.routes}
    used_tiers |= {
        b.on_soft_limit.degrade_to
        for b in p.budgets.values()
        if b.on_soft_limit is not None and b.on_soft_limit.degrade_to is not None
    }
    used_models = {m for members in p.tiers.values() for m in members}
    used_providers = {m.provider for m in p.models.values()}
    used_retry = {t.retry for t in p.tasks.values()} | {"default"}
    used_breakers = {m.circuit_breaker for m in p.models.values()} | {"default"}
    sections: tuple[tuple[str, str, Iterable[str], set[Any], str], ...] = (
        (
            "tiers",
            "tier",
            p.tiers,
            used_tiers,
            "use it as a task's `tier`, a route's `tier` or a `degrade_to`",
        ),
        ("models", "model", p.models, used_models, "add it to a tier"),
        ("providers", "provider", p.providers, used_providers, "reference it from a model's `provider`"),
        ("retry_policies", "retry policy", p.retry_policies, used_retry, "name it in a task's `retry`"),
        (
            "circuit_breakers",
            "circuit breaker",
            p.circuit_breakers,
            used_breakers,
            "name it in a model's `circuit_breaker`",
        ),
    )
    for section, what, names, used, how in sections:
        for name in names:
            if name not in used:
                yield ctx.diag(
                    "warning",
                    "unused-definition",
                    f"{what} `{name}` is never used",
                    (section, name),
                    f"{how}, or delete it",
                    key=True,
                )


# --------------------------------------------------------------------------- providers


_KEYED_KINDS = ("openai", "anthropic", "openai_compatible")
_LOCAL_HOSTS = re.compile(
    r"^(localhost|127(\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0|host\.docker\.internal|[^/:]+\.local|[^/:]+\.localhost)$"
)


def check_provider_keys(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Each real provider names the environment variable holding its key."""
    for name, prov in ctx.policy.providers.items():
        if prov.kind in _KEYED_KINDS and not prov.api_key_env:
            yield ctx.diag(
                "error",
                "provider-no-key",
                f"provider `{name}` (kind {prov.kind}) has no way to get its API key",
                ("providers", name),
                "set `api_key_env` to the environment variable holding the key, e.g. "
                f"api_key_env: {name.upper().replace('-', '_')}_API_KEY",
                key=True,
            )


def check_provider_settings(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Settings the provider kind ignores, and keys sent over plain http."""
    for name, prov in ctx.policy.providers.items():
        if prov.mock is not None and prov.kind != "mock":
            yield ctx.diag(
                "warning",
                "provider-setting-ignored",
                f"provider `{name}` has `mock` settings but its kind is {prov.kind}",
                ("providers", name, "mock"),
                "remove `mock`, or set `kind: mock`",
                key=True,
            )
        if prov.organization_env is not None and prov.kind not in ("openai", "openai_compatible"):
            yield ctx.diag(
                "warning",
                "provider-setting-ignored",
                f"provider `{name}` (kind {prov.kind}) does not use `organization_env`",
                ("providers", name, "organization_env"),
                "remove it; only OpenAI-style providers send an organization id",
                key=True,
            )
        if prov.base_url and prov.base_url.startswith("http://") and prov.kind != "mock":
            host = prov.base_url[len("http://") :].split("/", 1)[0].rsplit("@", 1)[-1]
            host = host if host.startswith("[") else host.split(":", 1)[0]
            if not _LOCAL_HOSTS.match(host.lower()):
                yield ctx.diag(
                    "warning",
                    "insecure-base-url",
                    f"provider `{name}` sends its API key over plain http to `{host}`",
                    ("providers", name, "base_url"),
                    "use https:// (plain http is only fine for localhost)",
                )


# --------------------------------------------------------------------------- models


_OPENAI_ID = re.compile(r"^(gpt-|o\d|chatgpt-|text-|davinci|babbage|dall-e|whisper|tts-|omni-|computer-use)")
_CLAUDE_ID = re.compile(r"(^|[./])claude-")
_OPENAI_PINNED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{4})$|^ft:")
_CLAUDE_PINNED = re.compile(r"-20\d{6}(\b|$)")
_GENERIC_PINNED = re.compile(r"20\d{2}-?[01]\d-?[0-3]\d")
_LATEST = re.compile(r"(^|[-_.:/@])latest($|[-_.:/@])", re.IGNORECASE)


def _pin_problem(model: ModelSpec, kind: str) -> str | None:
    """Why ``model.model`` is not pinned, or None when it is (or cannot move)."""
    mid = model.model
    if _LATEST.search(mid):
        return f"`{mid}` is a -latest alias: it always moves to the newest snapshot"
    if model.pinned or kind == "mock":
        return None
    if _CLAUDE_ID.search(mid):
        return None if _CLAUDE_PINNED.search(mid) else f"`{mid}` is an alias without a -YYYYMMDD snapshot date"
    if kind == "openai" or _OPENAI_ID.match(mid):
        return None if _OPENAI_PINNED.search(mid) else f"`{mid}` is an alias without a -YYYY-MM-DD snapshot date"
    if _GENERIC_PINNED.search(mid):
        return None
    return f"cannot tell whether `{mid}` is pinned to a fixed version"


def check_model_ids(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Model ids are pinned snapshots and belong to their provider's vendor."""
    p = ctx.policy
    for name, model in p.models.items():
        prov = p.providers.get(model.provider)
        kind = prov.kind if prov is not None else "unknown"
        problem = _pin_problem(model, kind)
        if problem is not None:
            yield ctx.diag(
                "warning",
                "unpinned-model",
                f"model `{name}`: {problem}",
                ("models", name, "model"),
                "pin a dated snapshot (gpt-4.1-mini-2025-04-14, claude-sonnet-4-5-20250929) so "
                "behaviour and price do not change under you; set `pinned: true` if the id is pinned",
            )
        mid = model.model
        vendor = None
        if kind == "openai" and _CLAUDE_ID.search(mid):
            vendor = "an Anthropic model"
        elif kind == "anthropic" and _OPENAI_ID.match(mid):
            vendor = "an OpenAI model"
        if vendor is not None:
            yield ctx.diag(
                "warning",
                "model-provider-mismatch",
                f"model `{name}` looks like {vendor} (`{mid}`) but provider `{model.provider}` is kind {kind}",
                ("models", name, "provider"),
                "point the model at a provider of its vendor (or an openai_compatible gateway)",
            )


# --------------------------------------------------------------------------- state, retry


def check_state(ctx: _Ctx) -> Iterator[Diagnostic]:
    """The state backend has what it needs, and nothing it ignores."""
    state = ctx.policy.state
    if state.backend == "redis" and not state.url_env:
        yield ctx.diag(
            "error",
            "state-no-url",
            "state backend redis has no way to get its URL",
            ("state", "backend"),
            "set `url_env` to the environment variable holding the Redis URL (e.g. REDIS_URL)",
        )
    ignored = []
    if state.path is not None and state.backend != "sqlite":
        ignored.append("path")
    if state.url_env is not None and state.backend != "redis":
        ignored.append("url_env")
    for setting in ignored:
        yield ctx.diag(
            "warning",
            "state-setting-ignored",
            f"state `{setting}` is ignored by backend {state.backend}",
            ("state", setting),
            "remove it (in an environment overlay, set it to null)",
            key=True,
        )


_NON_TRANSIENT = (
    "bad_request",
    "auth",
    "not_found",
    "context_length",
    "content_filter",
    "invalid_output",
    "circuit_open",
    "budget_exceeded",
)


def check_retry_policies(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Retries only what a retry can fix, with a sane backoff."""
    for name, rp in ctx.policy.retry_policies.items():
        for i, kind in enumerate(rp.retry_on):
            if kind in _NON_TRANSIENT:
                yield ctx.diag(
                    "warning",
                    "retry-non-transient",
                    f"retry policy `{name}` retries `{kind}`, which fails the same way again",
                    ("retry_policies", name, "retry_on", i),
                    "retry only transient kinds (rate_limited, overloaded, server_error, timeout, "
                    "connection); the others fall back to the next model",
                )
        if rp.backoff.initial_s > rp.backoff.max_s:
            yield ctx.diag(
                "warning",
                "backoff-inverted",
                f"retry policy `{name}`: backoff.initial_s ({rp.backoff.initial_s:g}) is above "
                f"backoff.max_s ({rp.backoff.max_s:g})",
                ("retry_policies", name, "backoff", "initial_s"),
                "every delay is capped at max_s; lower initial_s or raise max_s",
            )


# --------------------------------------------------------------------------- budgets


def check_soft_limits(ctx: _Ctx) -> Iterator[Diagnostic]:
    """``soft_limit`` is a fraction in (0, 1) and comes with an action."""
    for name, b in ctx.policy.budgets.items():
        path: PathKey = ("budgets", name)
        if b.soft_limit is not None and not 0 < b.soft_limit < 1:
            yield ctx.diag(
                "error",
                "soft-limit-range",
                f"budget `{name}`: soft_limit {b.soft_limit:g} is outside (0, 1)",
                (*path, "soft_limit"),
                "soft_limit is a fraction of limit_usd: 0.8 means at 80% of the limit",
            )
        has_action = b.on_soft_limit is not None and b.on_soft_limit.degrade_to is not None
        if b.on_soft_limit is not None and b.soft_limit is None:
            yield ctx.diag(
                "error",
                "soft-limit-action-unused",
                f"budget `{name}` has on_soft_limit but no soft_limit, so the action never fires",
                (*path, "on_soft_limit"),
                "add `soft_limit: 0.8` (a fraction of limit_usd), or remove on_soft_limit",
                key=True,
            )
        elif b.soft_limit is not None and not has_action:
            yield ctx.diag(
                "warning",
                "soft-limit-no-action",
                f"budget `{name}` has soft_limit but no on_soft_limit action",
                (*path, "soft_limit"),
                "add `on_soft_limit: {degrade_to: <cheaper tier>}`, or remove soft_limit",
                key=True,
            )


def check_budget_settings(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Budget key, timezone, and that the budget covers some task."""
    for name, b in ctx.policy.budgets.items():
        if b.key is not None and b.scope != "metadata":
            yield ctx.diag(
                "warning",
                "budget-key-ignored",
                f"budget `{name}` has `key` but scope {b.scope} does not use it",
                ("budgets", name, "key"),
                "set `scope: metadata` to budget per metadata value, or remove `key`",
                key=True,
            )
        if not _valid_timezone(b.timezone):
            yield ctx.diag(
                "error",
                "invalid-timezone",
                f"budget `{name}`: `{b.timezone}` is not an IANA timezone",
                ("budgets", name, "timezone"),
                "use a zone name such as UTC, Europe/Berlin or America/New_York",
            )
        if ctx.policy.tasks and not ctx.budget_tasks.get(name):
            yield ctx.diag(
                "warning",
                "budget-covers-nothing",
                f"budget `{name}` covers no task",
                ("budgets", name),
                "check its `tasks` list and the tasks' `budgets` lists",
                key=True,
            )


def _valid_timezone(tz: str) -> bool:
    import zoneinfo

    if tz == "UTC":
        return True
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        try:  # no tz database on this machine: cannot tell, do not complain
            zoneinfo.ZoneInfo("UTC")
        except (zoneinfo.ZoneInfoNotFoundError, OSError):
            return True
        return False
    return True


# --------------------------------------------------------------------------- routes


def _token_range(cond: InputTokensCondition | None) -> tuple[float, float]:
    """Inclusive integer range ``[lo, hi]`` of input token counts the condition admits."""
    lo: float = 0
    hi: float = math.inf
    if cond is None:
        return lo, hi
    if cond.gt is not None:
        lo = max(lo, cond.gt + 1)
    if cond.gte is not None:
        lo = max(lo, cond.gte)
    if cond.lt is not None:
        hi = min(hi, cond.lt - 1)
    if cond.lte is not None:
        hi = min(hi, cond.lte)
    return lo, hi


def _meta_sets(when: RouteWhen) -> dict[str, frozenset[tuple[str, object]]]:
    out: dict[str, frozenset[tuple[str, object]]] = {}
    for k, v in (when.metadata or {}).items():
        values = v if isinstance(v, list) else [v]
        out[k] = frozenset((type(x).__name__, x) for x in values)
    return out


def _never_matches(when: RouteWhen, task: Task) -> str | None:
    lo, hi = _token_range(when.input_tokens)
    if lo > hi:
        return "its input_tokens range is empty"
    if task.max_input_tokens is not None and lo > task.max_input_tokens:
        return f"it needs more than {int(lo) - 1} input tokens but max_input_tokens is {task.max_input_tokens}"
    if when.tenant is not None and not when.tenant:
        return "its tenant list is empty"
    empty = [k for k, s in _meta_sets(when).items() if not s]
    if empty:
        return f"metadata `{empty[0]}` must be one of an empty list"
    return None


def _subsumes(a: RouteWhen, b: RouteWhen) -> bool:
    """Every request matching ``b`` also matches ``a``."""
    a_lo, a_hi = _token_range(a.input_tokens)
    b_lo, b_hi = _token_range(b.input_tokens)
    if not (a_lo <= b_lo and b_hi <= a_hi):
        return False
    a_meta, b_meta = _meta_sets(a), _meta_sets(b)
    if any(k not in b_meta or not b_meta[k] <= allowed for k, allowed in a_meta.items()):
        return False
    return a.tenant is None or (b.tenant is not None and set(b.tenant) <= set(a.tenant))


def check_routes(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Routes that can never match, or that an earlier route always wins."""
    for t_name, task in ctx.policy.tasks.items():
        live: list[int] = []
        for i, route in enumerate(task.routes):
            path: PathKey = ("tasks", t_name, "routes", i)
            label = _route_label(route.name, i)
            why = _never_matches(route.when, task)
            if why is not None:
                yield ctx.diag(
                    "warning",
                    "route-never-matches",
                    f"task `{t_name}`: route {label} can never match: {why}",
                    (*path, "when"),
                    "fix the condition or delete the route",
                )
                continue
            shadow = next((j for j in live if _subsumes(task.routes[j].when, route.when)), None)
            if shadow is not None:
                yield ctx.diag(
                    "warning",
                    "route-shadowed",
                    f"task `{t_name}`: route {label} is shadowed by route "
                    f"{_route_label(task.routes[shadow].name, shadow)}, which matches every request it would",
                    (*path, "when"),
                    "routes are tried in order and the first match wins: move the narrower route first",
                )
            live.append(i)


# --------------------------------------------------------------------------- tasks


def _attempts_per_model(ctx: _Ctx, task: Task) -> int | None:
    name = task.retry if task.retry is not None else "default"
    if name in ctx.policy.retry_policies:
        return ctx.policy.retry_policies[name].max_attempts
    return 1 if task.retry is None else None


def check_task_settings(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Cache determinism, deadline vs timeout, settings without effect."""
    for t_name, task in ctx.policy.tasks.items():
        cache = task.cache
        if cache is not None and not cache.force:
            temp = task.temperature
            if temp is None or temp > cache.max_temperature:
                shown = "unset (provider default 1.0)" if temp is None else f"{temp:g}"
                yield ctx.diag(
                    "warning",
                    "cache-nondeterministic",
                    f"task `{t_name}` is cached but its temperature is {shown}, above "
                    f"cache.max_temperature {cache.max_temperature:g}: nothing will be cached",
                    ("tasks", t_name, "cache"),
                    "set a low `temperature` (e.g. 0), or `cache.force: true` to cache sampled answers",
                    key=True,
                )
        if task.deadline_s is not None and task.deadline_s < task.timeout_s:
            yield ctx.diag(
                "warning",
                "deadline-below-timeout",
                f"task `{t_name}`: deadline_s {task.deadline_s:g} is shorter than timeout_s {task.timeout_s:g}",
                ("tasks", t_name, "deadline_s"),
                "the deadline covers all attempts; make it at least timeout_s (default 4 x timeout_s)",
            )
        if task.max_input_tokens is None and task.on_input_overflow != "reject":
            yield ctx.diag(
                "warning",
                "task-setting-ignored",
                f"task `{t_name}`: on_input_overflow {task.on_input_overflow} has no effect without max_input_tokens",
                ("tasks", t_name, "on_input_overflow"),
                "set `max_input_tokens`",
                key=True,
            )


def check_attempts(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Worst-case upstream calls per request: retries x chain length."""
    for t_name, task in ctx.policy.tasks.items():
        chains = ctx.task_chains(t_name)
        longest = max((len(c) for c in chains), default=0)
        per_model = _attempts_per_model(ctx, task)
        if not longest or per_model is None:
            continue
        if task.max_total_attempts is None:
            worst = per_model * longest
            if worst > RETRY_STORM_LIMIT:
                yield ctx.diag(
                    "warning",
                    "retry-storm",
                    f"task `{t_name}` may make {worst} upstream calls for one request "
                    f"({per_model} attempts x {longest} models)",
                    ("tasks", t_name),
                    "set `max_total_attempts` on the task, or lower the retry policy's max_attempts",
                    key=True,
                )
        elif task.max_total_attempts < longest:
            yield ctx.diag(
                "warning",
                "unreachable-fallback",
                f"task `{t_name}`: max_total_attempts {task.max_total_attempts} is smaller than its "
                f"{longest}-model chain, so the last models are never tried",
                ("tasks", t_name, "max_total_attempts"),
                f"raise max_total_attempts to at least {longest}, or shorten the tier",
            )


# --------------------------------------------------------------------------- capacity


def _worst_tokens_path(t_name: str, task: Task) -> PathKey:
    return ("tasks", t_name, "max_input_tokens" if task.max_input_tokens is not None else "max_output_tokens")


def check_context_windows(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Input + output limits fit the context window of every reachable model."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        need = (task.max_input_tokens or 0) + task.max_output_tokens
        over = []
        for m, tier in ctx.task_models(t_name).items():
            window = p.models[m].context_window
            # without max_input_tokens, output alone must leave room for some input
            if window is not None and (need > window if task.max_input_tokens is not None else need >= window):
                over.append((window, m, tier))
        if not over:
            continue
        window, model, tier = min(over)
        what = (
            f"max_input_tokens + max_output_tokens ({need})"
            if task.max_input_tokens is not None
            else f"max_output_tokens ({need}) leaves no room for input and"
        )
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        yield ctx.diag(
            "error",
            "context-overflow",
            f"task `{t_name}`: {what} exceeds the {window}-token context window of model `{model}`"
            f"{more}, reachable through {ctx.via(t_name, tier)}",
            _worst_tokens_path(t_name, task),
            f"lower max_input_tokens/max_output_tokens to fit {window} tokens, or move `{model}` out of "
            "the task's tiers",
        )


def check_output_limits(ctx: _Ctx) -> Iterator[Diagnostic]:
    """``max_output_tokens`` is within every reachable model's output limit."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        over = sorted(
            ((p.models[m].max_output_tokens or 0), m, tier)
            for m, tier in ctx.task_models(t_name).items()
            if p.models[m].max_output_tokens is not None
            and task.max_output_tokens > (p.models[m].max_output_tokens or 0)
        )
        if over:
            limit, model, tier = over[0]
            yield ctx.diag(
                "error",
                "output-over-model-limit",
                f"task `{t_name}`: max_output_tokens {task.max_output_tokens} is over the "
                f"{limit}-token output limit of model `{model}`, reachable through {ctx.via(t_name, tier)}",
                ("tasks", t_name, "max_output_tokens"),
                f"lower max_output_tokens to {limit} or less",
            )


def check_rate_limits(ctx: _Ctx) -> Iterator[Diagnostic]:
    """One worst-case request fits a reachable model's tokens-per-minute limit."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        if task.max_input_tokens is None:
            continue
        need = task.max_input_tokens + task.max_output_tokens
        for m, tier in ctx.task_models(t_name).items():
            limits = p.models[m].limits
            if limits is not None and limits.tpm is not None and need > limits.tpm:
                yield ctx.diag(
                    "error",
                    "tpm-below-request",
                    f"task `{t_name}`: one request may need {need} tokens but model `{m}` "
                    f"({ctx.via(t_name, tier)}) "
                    f"allows {limits.tpm} tokens per minute, so it can never serve it",
                    ("tasks", t_name, "max_input_tokens"),
                    f"lower the task's token limits, or raise models.{m}.limits.tpm",
                )


# --------------------------------------------------------------------------- cost


def _request_cost(task: Task, model: ModelSpec) -> float | None:
    if model.pricing is None or task.max_input_tokens is None:
        return None
    pr = model.pricing
    return (task.max_input_tokens * pr.input + task.max_output_tokens * pr.output) / 1_000_000


def check_pricing(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Every model a budgeted task can reach has a price."""
    p = ctx.policy
    reported: set[str] = set()
    for t_name in p.tasks:
        budgets = ctx.task_budgets.get(t_name)
        if not budgets:
            continue
        for m in ctx.task_models(t_name):
            if p.models[m].pricing is None and m not in reported:
                reported.add(m)
                yield ctx.diag(
                    "error",
                    "missing-pricing",
                    f"model `{m}` has no pricing, but budget `{budgets[0]}` covers task `{t_name}`, which can reach it",
                    ("models", m),
                    "add `pricing: {input: ..., output: ...}` in USD per 1M tokens (the provider's list price)",
                    key=True,
                )


def check_unbounded_input(ctx: _Ctx) -> Iterator[Diagnostic]:
    """A budgeted task needs ``max_input_tokens`` for its worst case to be known."""
    for t_name, task in ctx.policy.tasks.items():
        budgets = ctx.task_budgets.get(t_name)
        if budgets and task.max_input_tokens is None:
            names = ", ".join(f"`{b}`" for b in budgets)
            yield ctx.diag(
                "warning",
                "budget-unbounded-input",
                f"task `{t_name}` has no max_input_tokens, so the worst case of budget {names} cannot be computed",
                ("tasks", t_name),
                "set `max_input_tokens` (and `on_input_overflow`) on the task",
                key=True,
            )


def check_budget_fits_request(ctx: _Ctx) -> Iterator[Diagnostic]:
    """A hard budget can pay for one worst-case request of every task it covers."""
    p = ctx.policy
    for b_name, budget in p.budgets.items():
        too_big: list[tuple[float, str, str]] = []
        for t_name in ctx.budget_tasks.get(b_name, ()):
            found = ctx.worst_request(t_name)
            if found is not None and budget.limit_usd < found[0]:
                too_big.append((found[0], t_name, found[1]))
        if not too_big:
            continue
        worst, t_name, model = max(too_big)
        task = p.tasks[t_name]
        more = f"; {len(too_big) - 1} other task(s) too" if len(too_big) > 1 else ""
        yield ctx.diag(
            "error",
            "budget-below-request",
            f"budget `{b_name}` ({_fmt_usd(budget.limit_usd)}) is smaller than one worst-case "
            f"request of task `{t_name}`: {task.max_input_tokens} input + {task.max_output_tokens} "
            f"output tokens on `{model}` cost {_fmt_usd(worst)}{more}",
            ("budgets", b_name, "limit_usd"),
            f"raise limit_usd above {_fmt_usd(worst)}, lower the task's token limits, or keep "
            "expensive models out of its tiers",
        )


def _tier_output_price(ctx: _Ctx, tier: str) -> tuple[float, str] | None:
    p = ctx.policy
    prices = [
        (pr.output, m) for m in p.tiers.get(tier, ()) if m in p.models and (pr := p.models[m].pricing) is not None
    ]
    return max(prices) if prices else None


def check_degrade_cheaper(ctx: _Ctx) -> Iterator[Diagnostic]:
    """``degrade_to`` names a tier cheaper than the tiers it replaces (by max output price)."""
    p = ctx.policy
    for b_name, budget in p.budgets.items():
        target = budget.on_soft_limit.degrade_to if budget.on_soft_limit is not None else None
        if target is None or target not in p.tiers:
            continue
        target_price = _tier_output_price(ctx, target)
        replaced: set[str] = set()
        for t_name in ctx.budget_tasks.get(b_name, ()):
            task = p.tasks[t_name]
            replaced |= {t for t in (task.tier, *(r.tier for r in task.routes)) if t in p.tiers and t != target}
        prices = [(pr, t) for t in sorted(replaced) if (pr := _tier_output_price(ctx, t)) is not None]
        if target_price is None or not prices:
            continue
        (top, _), top_tier = max(prices)
        if target_price[0] >= top:
            yield ctx.diag(
                "warning",
                "degrade-not-cheaper",
                f"budget `{b_name}` degrades to tier `{target}` "
                f"(up to ${target_price[0]:g}/1M output tokens), "
                f"which is not cheaper than the tiers it replaces (most expensive: `{top_tier}`, "
                f"${top:g}/1M)",
                ("budgets", b_name, "on_soft_limit", "degrade_to"),
                "degrade to a tier of cheaper models",
            )


# --------------------------------------------------------------------------- structured output


_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _schema_problems(node: object, path: PathKey, depth: int = 0) -> Iterator[tuple[PathKey, str]]:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        yield path, "a schema must be a mapping"
        return
    if depth > 64:
        return
    t = node.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        bad = [x for x in types if not isinstance(x, str) or x not in _JSON_TYPES]
        if bad:
            yield (*path, "type"), f"`type` must be one of {', '.join(sorted(_JSON_TYPES))}"
    props = node.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            yield (*path, "properties"), "`properties` must map property names to schemas"
        else:
            for k, sub in props.items():
                yield from _schema_problems(sub, (*path, "properties", str(k)), depth + 1)
    req = node.get("required")
    if req is not None and not (isinstance(req, list) and all(isinstance(x, str) for x in req)):
        yield (*path, "required"), "`required` must be a list of property names"
    items = node.get("items")
    if items is not None:
        yield from _schema_problems(items, (*path, "items"), depth + 1)
    enum = node.get("enum")
    if enum is not None and not isinstance(enum, list):
        yield (*path, "enum"), "`enum` must be a list"
    for kw in ("anyOf", "oneOf", "allOf"):
        subs = node.get(kw)
        if subs is not None:
            if not isinstance(subs, list) or not subs:
                yield (*path, kw), f"`{kw}` must be a non-empty list of schemas"
            else:
                for i, sub in enumerate(subs):
                    yield from _schema_problems(sub, (*path, kw, i), depth + 1)


def check_response_schemas(ctx: _Ctx) -> Iterator[Diagnostic]:
    """``response_schema`` is a structurally valid JSON Schema (a light check, no jsonschema import)."""
    for t_name, task in ctx.policy.tasks.items():
        if task.response_schema is None:
            continue
        for path, problem in _schema_problems(task.response_schema, ("tasks", t_name, "response_schema")):
            yield ctx.diag(
                "error",
                "response-schema-invalid",
                f"task `{t_name}`: response_schema: {problem}",
                path,
                "response_schema is a JSON Schema (draft 2020-12) of the model's output",
            )


def check_capabilities(ctx: _Ctx) -> Iterator[Diagnostic]:
    """A structured-output task reaches models that declare JSON support."""
    p = ctx.policy
    for t_name, task in p.tasks.items():
        if task.response_schema is None:
            continue
        lacking = [
            m
            for m in ctx.task_models(t_name)
            if p.models[m].capabilities and not {"json_schema", "json_mode"} & set(p.models[m].capabilities)
        ]
        if lacking:
            yield ctx.diag(
                "warning",
                "capability-missing",
                f"task `{t_name}` has a response_schema but model `{lacking[0]}` declares "
                "neither json_schema nor json_mode",
                ("tasks", t_name, "response_schema"),
                "add `json_schema` or `json_mode` to the model's capabilities if it supports "
                "them, or keep it out of this task's tiers",
                key=True,
            )


# --------------------------------------------------------------------------- guards


def check_guards(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Guard patterns compile; logged content is redacted."""
    for t_name, task in ctx.policy.tasks.items():
        guards = task.guards
        rules: list[tuple[PathKey, str, str]] = []
        if guards is not None:
            rules += [(("tasks", t_name, "guards", "block", i), r.name, r.regex) for i, r in enumerate(guards.block)]
            if guards.redact is not None:
                rules += [
                    (("tasks", t_name, "guards", "redact", "patterns", i), r.name, r.regex)
                    for i, r in enumerate(guards.redact.patterns)
                ]
        for path, name, regex in rules:
            try:
                re.compile(regex)
            except re.error as exc:
                where = f" at position {exc.pos}" if exc.pos is not None else ""
                yield ctx.diag(
                    "error",
                    "invalid-regex",
                    f"task `{t_name}`: pattern `{name}` is not a valid regular expression: {exc.msg}{where}",
                    (*path, "regex"),
                    "patterns use Python `re` syntax; in YAML, single-quote them so backslashes stay as written",
                )
        if task.log_content and (guards is None or guards.redact is None):
            yield ctx.diag(
                "warning",
                "log-content-unredacted",
                f"task `{t_name}` logs prompt and answer text without redaction",
                ("tasks", t_name, "log_content"),
                "add `guards: {redact: {}}` (emails, phones and cards by default), or turn log_content off",
                key=True,
            )


# --------------------------------------------------------------------------- secrets


_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an Anthropic API key", re.compile(r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{16,}")),
    ("an OpenAI project API key", re.compile(r"(?<![A-Za-z0-9_-])sk-proj-[A-Za-z0-9_-]{16,}")),
    ("an OpenAI API key", re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}")),
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("a Google API key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
    (
        "a GitHub token",
        re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    (
        "a bearer token",
        re.compile(r"(?<![A-Za-z])(?i:bearer)\s+(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{8,}"),
    ),
    (
        "a URL with an embedded password",
        re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    ),
)
_ANY_SECRET = re.compile("|".join(f"(?:{pattern.pattern})" for _what, pattern in _SECRET_PATTERNS))
_SECRET_KEYS = frozenset(
    {
        "apikey",
        "token",
        "accesstoken",
        "authtoken",
        "bearertoken",
        "sessiontoken",
        "refreshtoken",
        "secret",
        "secretkey",
        "clientsecret",
        "secretaccesskey",
        "awssecretaccesskey",
        "password",
        "passwd",
        "privatekey",
        "authorization",
        "proxyauthorization",
        "xapikey",
    }
)
_SECRETISH_KEY = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$|^env:[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HINT = "put it in an environment variable and reference it with api_key_env"


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _pattern_secret(text: str) -> tuple[str, int] | None:
    """(what it looks like, offset) of the first secret pattern in ``text``."""
    if _ANY_SECRET.search(text) is None:  # one scan for the common case: no secret at all
        return None
    for what, pattern in _SECRET_PATTERNS:
        m = pattern.search(text)
        if m is not None:
            return what, m.start()
    return None


def secret_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` offsets of every credential pattern in ``text`` (for redaction)."""
    if _ANY_SECRET.search(text) is None:
        return
    for _what, pattern in _SECRET_PATTERNS:
        for m in pattern.finditer(text):
            yield m.start(), m.end()


def _value_secret(key: str | None, value: str) -> str | None:
    """What the string ``value`` (under mapping key ``key``) looks like, if it is a credential."""
    found = _pattern_secret(value)
    if found is not None:
        return found[0]
    if key is None:
        return None
    stripped = value.strip()
    if not stripped or _ENV_REFERENCE.match(stripped):
        return None
    norm = _norm_key(key)
    if norm in _SECRET_KEYS:
        return f"a literal credential under `{key}`"
    if (
        _SECRETISH_KEY.search(key)
        and not norm.endswith("env")
        and len(stripped) >= 20
        and not any(c.isspace() for c in stripped)
        and any(c.isdigit() for c in stripped)
        and any(c.isalpha() for c in stripped)
        and _entropy(stripped) >= 3.5
    ):
        return f"a high-entropy credential under `{key}`"
    return None


def _secret_diag(what: str, location: Location, path: PathKey, env: str | None) -> Diagnostic:
    overlay = path[1] if len(path) >= 3 and path[0] == "environments" else None
    if env is None and isinstance(overlay, str):
        # a raw overlay value: report it as the merged policy of that environment sees it, so
        # it matches what check_policy finds there (and the loader reports it once)
        path, env = path[2:], overlay
    return Diagnostic(
        severity="error",
        code="literal-secret",
        message=f"this looks like {what}; secrets must not be written in policy files",
        location=location,
        path=dotted(path),
        hint=_SECRET_HINT,
        env=env,
    )


def _walk_secrets(
    data: object, source: SourceMap, env: str | None, root: PathKey = (), root_key: str | None = None
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[int] = set()
    stack: list[tuple[PathKey, str | None, object]] = [(root, root_key, data)]
    while stack:
        path, key, node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:  # YAML aliases can share or even nest nodes
                continue
            seen.add(id(node))
            if isinstance(node, dict):
                for k, v in node.items():
                    k_str = k if isinstance(k, str) else None
                    if k_str is not None and (found := _pattern_secret(k_str)) is not None:
                        out.append(_secret_diag(found[0], source.locate((*path, k_str), key=True), path, env))
                    stack.append(((*path, k if isinstance(k, (str, int)) else str(k)), k_str, v))
            else:
                stack.extend(((*path, i), key, v) for i, v in enumerate(node))
        elif isinstance(node, str):
            what = _value_secret(key, node)
            if what is not None:
                out.append(_secret_diag(what, source.locate(path), path, env))
    return out


def scan_secrets(data: object, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """Literal secrets in raw policy data and in the source text (comments included).

    ``data`` is the raw YAML data (before schema validation: an ``api_key:`` field is a
    schema error, but the key it holds must still be reported as ``literal-secret``).
    The source text of every file in ``source.lines`` is scanned too, so a key pasted in a
    comment is found; one report per line. Messages never repeat the secret. Never raises.
    """
    found = _walk_secrets(data, source, env)  # iterative: no depth limit to hit
    lines_hit = {(d.location.file, d.location.line) for d in found}
    for file, lines in source.lines.items():
        for lineno, text in enumerate(lines, start=1):
            if (file, lineno) in lines_hit:
                continue
            hit = _pattern_secret(text)
            if hit is not None:
                lines_hit.add((file, lineno))
                found.append(_secret_diag(hit[0], Location(file, lineno, hit[1] + 1), (), env))
    return sorted(set(found), key=Diagnostic.sort_key)


def check_typed_secrets(ctx: _Ctx) -> Iterator[Diagnostic]:
    """Credentials in the free-text fields the schema accepts: provider URLs and headers,
    model ids, prompts, route metadata and response schemas."""
    p = ctx.policy
    fields: list[tuple[PathKey, object]] = []
    for name, prov in p.providers.items():
        fields += [(("providers", name, "base_url"), prov.base_url), (("providers", name, "headers"), prov.headers)]
        if prov.mock is not None:
            fields.append((("providers", name, "mock", "reply"), prov.mock.reply))
    for name, model in p.models.items():
        fields.append((("models", name, "model"), model.model))
    for name, task in p.tasks.items():
        fields += [(("tasks", name, "system"), task.system), (("tasks", name, "description"), task.description)]
        fields.append((("tasks", name, "response_schema"), task.response_schema))
        for i, route in enumerate(task.routes):
            fields.append((("tasks", name, "routes", i, "when", "metadata"), route.when.metadata))
    for path, value in fields:
        if value:
            yield from _walk_secrets(value, ctx.source, ctx.env, path, str(path[-1]))


# --------------------------------------------------------------------------- driver


Check = Callable[[_Ctx], Iterable[Diagnostic]]

CHECKS: tuple[tuple[str, Check], ...] = (
    # names first: later passes only follow references that resolve
    ("references", check_references),
    ("tiers", check_tiers),
    ("unused", check_unused),
    ("provider-keys", check_provider_keys),
    ("provider-settings", check_provider_settings),
    ("secrets", check_typed_secrets),
    ("model-ids", check_model_ids),
    ("state", check_state),
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
    ("pricing", check_pricing),
    ("unbounded-input", check_unbounded_input),
    ("budget-fits-request", check_budget_fits_request),
    ("degrade-cheaper", check_degrade_cheaper),
    ("response-schemas", check_response_schemas),
    ("capabilities", check_capabilities),
    ("guards", check_guards),
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
    ctx = _Ctx(policy=policy, source=source, env=env)
    out: list[Diagnostic] = []
    try:
        _derive(ctx)
    except Exception as exc:  # a bug here must not hide the schema-level report
        return [_internal("derive", exc, env, source)]
    for name, check in CHECKS:
        try:
            out.extend(check(ctx))
        except Exception as exc:  # reported as a diagnostic, not swallowed
            out.append(_internal(name, exc, env, source))
    return sorted(out, key=Diagnostic.sort_key)
