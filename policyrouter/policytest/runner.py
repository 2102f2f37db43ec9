"""Run policy test cases through the compiled plan, offline and instantly.

Each case gets a fresh :class:`~policyrouter.state.memory.MemoryState`, a
:class:`~policyrouter.clock.FakeClock` and one scripted
:class:`~policyrouter.providers.mock.MockProvider` per policy provider, whose handler
answers by upstream model id from the case's script. The request goes through the real
:class:`~policyrouter.Router` (routes, degrade, budgets, breakers, retries, fallback),
so a case exercises exactly what production runs, minus the network.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from policyrouter.diagnostics import Diagnostic
from policyrouter.errors import PolicyError, ProviderError, RouterError
from policyrouter.plan import Chain, Plan, TaskPlan
from policyrouter.policy.names import closest
from policyrouter.policytest.model import (
    SUFFIXES,
    CaseSpec,
    Expect,
    Fixture,
    RequestSpec,
    StepSpec,
    TestFile,
    TestFileError,
    load_test_file,
)
from policyrouter.providers.classify import PROVIDER_ERROR_KINDS, kind_for_status
from policyrouter.providers.mock import MockProvider
from policyrouter.stages import budget as budget_stage
from policyrouter.tokens import MESSAGE_OVERHEAD, REPLY_OVERHEAD, count_messages, count_text
from policyrouter.types import Attempt, ProviderRequest, ProviderResponse, Result, Usage

__all__ = [
    "ATTEMPT_KINDS",
    "CaseResult",
    "FileResult",
    "PlanCache",
    "Problem",
    "RunReport",
    "Trace",
    "discover",
    "router_error_kinds",
    "run_case",
    "run_file",
    "run_paths",
]

Status = Literal["passed", "failed", "error"]

ATTEMPT_KINDS = frozenset({"ok", "circuit_open", *PROVIDER_ERROR_KINDS})
"""What an attempt may show: ``ok``, a provider error kind, or why it was skipped."""

DEFAULT_WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLOCK_START = 1_000_000.0
DEFAULT_INPUT = "Policy test input."
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})


def router_error_kinds() -> frozenset[str]:
    """The ``kind`` of every :class:`RouterError` subclass (what ``expect.error`` may name)."""
    kinds: set[str] = set()
    todo: list[type[RouterError]] = [RouterError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not RouterError:
            kinds.add(cls.kind)
    return frozenset(kinds)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Problem:
    """One expectation that did not hold."""

    field: str
    expected: str
    actual: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "expected": self.expected, "actual": self.actual}


@dataclass(frozen=True)
class Trace:
    """What actually happened to the case's (last) request."""

    route: str | None
    tier: str | None
    chain: tuple[str, ...]
    degraded: str | None
    model: str | None
    attempts: tuple[Attempt, ...]
    error: str | None
    error_message: str | None
    budget: str | None
    cost_usd: float
    input_tokens: int | None
    cache_hit: bool
    sleeps: tuple[float, ...] = ()
    variant: str | None = None

    @property
    def calls(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    def to_dict(self) -> dict[str, Any]:
        variant = {"variant": self.variant} if self.variant is not None else {}  # only where an experiment ran
        return {
            **variant,
            "route": self.route,
            "tier": self.tier,
            "chain": list(self.chain),
            "degraded": self.degraded,
            "model": self.model,
            "attempts": [
                {
                    "model": a.model,
                    "outcome": a.outcome,
                    "kind": attempt_kind(a),
                    "status_code": a.status_code,
                    "cost_usd": a.cost_usd,
                }
                for a in self.attempts
            ],
            "calls": self.calls,
            "error": self.error,
            "error_message": self.error_message,
            "budget": self.budget,
            "cost_usd": self.cost_usd,
            "input_tokens": self.input_tokens,
            "cache_hit": self.cache_hit,
            "sleeps": [round(s, 6) for s in self.sleeps],
        }


@dataclass(frozen=True)
class CaseResult:
    file: str
    name: str
    line: int
    status: Status
    problems: tuple[Problem, ...] = ()
    errors: tuple[str, ...] = ()
    trace: Trace | None = None
    request: RequestSpec | None = None
    duration_s: float = 0.0

    @property
    def nodeid(self) -> str:
        return f"{self.file}::{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "name": self.name,
            "line": self.line,
            "status": self.status,
            "problems": [p.to_dict() for p in self.problems],
            "errors": list(self.errors),
            "request": self.request.model_dump(exclude_none=True) if self.request is not None else None,
            "actual": self.trace.to_dict() if self.trace is not None else None,
        }


@dataclass
class FileResult:
    path: str
    cases: list[CaseResult] = field(default_factory=list)
    errors: tuple[Diagnostic, ...] = ()  # the file (or its policy) could not be used


@dataclass
class RunReport:
    files: list[FileResult] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def cases(self) -> list[CaseResult]:
        return [c for f in self.files for c in f.cases]

    def count(self, status: Status) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def passed(self) -> int:
        return self.count("passed")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def errors(self) -> int:
        """Cases that could not run as written, plus files that could not be used."""
        return self.count("error") + sum(1 for f in self.files if f.errors)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and bool(self.files)


# --------------------------------------------------------------------------- discovery


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Policy test files under ``paths``: a file is taken as is; a directory is searched
    recursively for ``*.policytest.yaml``/``.yml`` (hidden directories skipped), sorted."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in paths:
        display = os.fspath(raw)
        p = Path(raw)
        if p.is_dir():
            found: list[str] = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
                found.extend(os.path.join(root, f) for f in files if f.endswith(SUFFIXES) and not f.startswith("."))
            candidates = sorted(found)
        elif p.exists():
            candidates = [display]
        else:
            raise FileNotFoundError(2, "no such file or directory", display)
        for c in candidates:
            key = os.path.realpath(c)
            if key not in seen:
                seen.add(key)
                out.append(os.path.normpath(c) if c != display else c)
    return out


class PlanCache:
    """Compiled plans by (policy path, env), shared by the files of one run."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str | None], Plan | PolicyError] = {}

    def get(self, path: str, env: str | None) -> Plan:
        from policyrouter.compile import compile_policy
        from policyrouter.policy.loader import load_policy

        key = (os.path.realpath(path), env)
        hit = self._plans.get(key)
        if hit is None:
            try:
                hit = compile_policy(load_policy(path, env), env)
            except PolicyError as exc:
                hit = exc
            self._plans[key] = hit
        if isinstance(hit, PolicyError):
            raise hit
        return hit


def run_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    select: str | None = None,
    env: str | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> RunReport:
    """Discover and run every policy test file under ``paths``.

    ``select`` keeps cases whose ``file::name`` contains it (case-insensitive);
    ``env`` overrides each file's ``env:``; ``on_case`` sees each result as it lands.
    """
    t0 = time.perf_counter()
    report = RunReport()
    plans = PlanCache()
    for path in discover(paths):
        report.files.append(run_file(path, plans=plans, select=select, env=env, on_case=on_case))
    report.duration_s = time.perf_counter() - t0
    return report


def run_file(
    path: str,
    *,
    plans: PlanCache | None = None,
    select: str | None = None,
    env: str | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> FileResult:
    result = FileResult(path)
    try:
        tf = load_test_file(path)
    except TestFileError as exc:
        result.errors = exc.diagnostics
        return result
    try:
        plan = (plans or PlanCache()).get(tf.policy_path(), env if env is not None else tf.env)
    except PolicyError as exc:
        result.errors = tuple(d for d in exc.diagnostics if d.severity == "error") or exc.diagnostics
        return result
    seen: set[str] = set()
    needle = select.lower() if select else None
    for i, case in enumerate(tf.cases):
        if needle is not None and needle not in f"{path}::{case.name}".lower():
            continue
        if case.name in seen:
            cr = CaseResult(path, case.name, tf.lines.get(i, 0), "error", errors=("duplicate case name",))
        else:
            cr = run_case(tf, case, plan, line=tf.lines.get(i, 0))
        seen.add(case.name)
        result.cases.append(cr)
        if on_case is not None:
            on_case(cr)
    return result


# --------------------------------------------------------------------------- one case


def run_case(tf: TestFile, case: CaseSpec, plan: Plan, *, line: int = 0) -> CaseResult:
    """Run one case against ``plan`` and compare with its expectations."""
    from policyrouter.clock import FakeClock
    from policyrouter.router import Router
    from policyrouter.state.memory import MemoryState

    t0 = time.perf_counter()

    def done(status: Status, **kw: Any) -> CaseResult:
        return CaseResult(
            tf.path, case.name, line, status, request=case.request, duration_s=time.perf_counter() - t0, **kw
        )

    req = case.request
    stale = _stale(tf, case, plan)
    if stale:
        return done("error", errors=tuple(stale))
    if req.variant is not None:
        plan = plan.pin_variant(req.task, req.variant)
    tp = plan.tasks[req.task]
    fixture = _merged_fixture(tf, case)
    try:
        wall = _wall(fixture.time)
        text = _input_text(tp, req)
    except ValueError as exc:
        return done("error", errors=(str(exc),))
    clock = FakeClock(start=CLOCK_START, wall_start=wall)
    state = MemoryState()
    fixture_errors = _apply_fixture(fixture, plan, tp, req, state, clock)
    if fixture_errors:
        return done("error", errors=tuple(fixture_errors))
    scripts = _Scripts(plan, case, clock, req.output_tokens)
    if scripts.errors:
        return done("error", errors=tuple(scripts.errors))
    router = Router(plan, scripts.providers(), state, clock=clock, rng=random.Random(tf.seed))
    outcome: Result | RouterError | None = None
    for _ in range(case.repeat):
        try:
            outcome = router.complete(
                req.task,
                text,
                user=req.user,
                tenant=req.tenant,
                metadata=req.metadata,
                temperature=req.temperature,
                max_output_tokens=req.max_output_tokens,
                cache=req.cache,
            )
        except RouterError as exc:
            outcome = exc
    assert outcome is not None
    variant = outcome.variant if isinstance(outcome, Result) else _assigned(tp, req, clock.wall())
    served = tp
    if tp.experiment is not None:  # the variant's (or, not enrolled, the control's) plan served it
        v = tp.experiment.variant(variant) if variant is not None else None
        served = (v or tp.experiment.control).task
    trace = replace(_trace(plan, served, outcome, scripts.last_input_tokens, tuple(clock.sleeps)), variant=variant)
    problems = _compare(case, trace, plan, tp)
    problems += scripts.unused(trace)
    return done("failed" if problems else "passed", problems=tuple(problems), trace=trace)


def _assigned(tp: TaskPlan, req: RequestSpec, wall: float) -> str | None:
    """The variant a failed request was assigned (a failure carries no ``Result.variant``)."""
    if tp.experiment is None:
        return None
    v = tp.experiment.assign(req.user, req.tenant, wall)
    return v.name if v is not None else None


def _merged_fixture(tf: TestFile, case: CaseSpec) -> Fixture:
    budgets: dict[str, Any] = {}
    breakers: dict[str, Any] = {}
    when: str | float | None = None
    parts = [tf.fixtures[name] for name in case.given]
    if case.state is not None:
        parts.append(case.state)
    for f in parts:
        budgets.update(f.budgets)
        breakers.update(f.breakers)
        if f.time is not None:
            when = f.time
    return Fixture(budgets=budgets, breakers=breakers, time=when)


def _wall(value: str | float | None) -> float:
    if value is None:
        return DEFAULT_WALL
    if isinstance(value, (int, float)):
        return float(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time: {value!r} is not an ISO 8601 date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _input_text(tp: TaskPlan, req: RequestSpec) -> str:
    """The request text; for ``input_tokens: N``, a text the router counts as exactly N."""
    if req.input is not None:
        return req.input
    if req.input_tokens is None:
        return DEFAULT_INPUT
    overhead = REPLY_OVERHEAD + MESSAGE_OVERHEAD
    if tp.system:
        overhead += MESSAGE_OVERHEAD + count_text(tp.system)
    want = req.input_tokens - overhead
    if want < 0:
        raise ValueError(
            f"request.input_tokens: {req.input_tokens} is below the {overhead} tokens task {tp.name!r} "
            "counts for its prompt framing alone"
        )
    n_chars = math.floor(want * 3.5)
    reps = n_chars // len(_FILLER) + 1
    text = (_FILLER * reps)[:n_chars]
    assert count_messages(({"role": "user", "content": text},), tp.system) == req.input_tokens
    return text


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    match = closest(word, options)
    return f"; did you mean {match!r}?" if match is not None else ""


def _tiers(plan: Plan) -> dict[str, Chain]:
    chains: dict[str, Chain] = {}
    for task in plan.tasks.values():
        variants = task.experiment.variants if task.experiment is not None else ()
        for tp in (task, *(v.task for v in variants)):
            for r in (*tp.routes, tp.default):
                chains[r.chain.tier] = r.chain
    for b in plan.budgets.values():
        if b.degrade_to is not None:
            chains[b.degrade_to.tier] = b.degrade_to
    return chains


def _stale(tf: TestFile, case: CaseSpec, plan: Plan) -> list[str]:
    """Every name in the case that the compiled plan does not have."""
    env = f" (env {plan.env})" if plan.env else ""
    tp = plan.tasks.get(case.request.task)
    out: list[str] = []
    if tp is None:
        task = case.request.task
        out.append(f"request.task: unknown task {task!r}{env}{_did_you_mean(task, plan.tasks)}")
    out += _stale_given(tf, case, plan, env)
    out += [
        f"script: unknown model {m!r}{env}{_did_you_mean(m, plan.models)}" for m in case.script if m not in plan.models
    ]
    if tp is not None:
        out += _stale_variants(case, tp, env)
    out += _stale_expected_names(case.expect, plan, tp, env)
    out += _stale_attempts(case.expect, plan)
    out += _stale_errors(case.expect, plan, tp, env)
    return out


def _stale_given(tf: TestFile, case: CaseSpec, plan: Plan, env: str) -> list[str]:
    """Unknown fixture names, then stale budgets and breakers in the fixtures and the case's own state."""
    out = [
        f"given: unknown fixture {name!r}{_did_you_mean(name, tf.fixtures)}"
        for name in case.given
        if name not in tf.fixtures
    ]
    fixtures = [tf.fixtures[n] for n in case.given if n in tf.fixtures]
    if case.state is not None:
        fixtures.append(case.state)
    for f in fixtures:
        out += _stale_fixture(f, plan, env)
    return out


def _stale_fixture(f: Fixture, plan: Plan, env: str) -> list[str]:
    """A fixture's budgets and breakers the plan lacks, or spends in a unit the budget has no limit in."""
    out: list[str] = []
    for b, spec in f.budgets.items():
        if b not in plan.budgets:
            out.append(f"budgets: unknown budget {b!r}{env}{_did_you_mean(b, plan.budgets)}")
        elif spec.spent_usd is not None and plan.budgets[b].limit_usd is None:
            out.append(f"budgets.{b}.spent_usd: budget {b!r} has no limit_usd{env}; use spent_tokens")
        elif spec.spent_tokens is not None and plan.budgets[b].limit_tokens is None:
            out.append(f"budgets.{b}.spent_tokens: budget {b!r} has no limit_tokens{env}; use spent_usd")
    for m in f.breakers:
        if m not in plan.models:
            out.append(f"breakers: unknown model {m!r}{env}{_did_you_mean(m, plan.models)}")
        elif plan.models[m].breaker is None:
            out.append(f"breakers: model {m!r} has no circuit breaker{env}")
    return out


def _stale_variants(case: CaseSpec, tp: TaskPlan, env: str) -> list[str]:
    """Requested or expected experiment variants the task's experiment does not have."""
    out: list[str] = []
    experiment = tp.experiment
    for where, wanted in (("request.variant", case.request.variant), ("expect.variant", case.expect.variant)):
        if wanted is None:
            continue
        if experiment is None:
            out.append(f"{where}: task {tp.name!r} has no experiment{env}")
        elif experiment.variant(wanted) is None:
            names = [v.name for v in experiment.variants]
            out.append(
                f"{where}: experiment {experiment.name!r} has no variant {wanted!r} "
                f"(variants: {', '.join(names)}){_did_you_mean(wanted, names)}"
            )
    return out


def _stale_expected_names(exp: Expect, plan: Plan, tp: TaskPlan | None, env: str) -> list[str]:
    """An expected model, route or tier the plan does not have."""
    out: list[str] = []
    if exp.model is not None and exp.model not in plan.models:
        out.append(f"expect.model: unknown model {exp.model!r}{env}{_did_you_mean(exp.model, plan.models)}")
    if exp.route is not None and tp is not None:
        names = ["default", *(r.name for r in tp.routes)]
        if exp.route not in names:
            out.append(
                f"expect.route: task {tp.name!r} has no route {exp.route!r} "
                f"(routes: {', '.join(names)}){_did_you_mean(exp.route, names)}"
            )
    tiers = _tiers(plan)
    if exp.tier is not None and exp.tier not in tiers:
        out.append(f"expect.tier: no task uses tier {exp.tier!r}{env}{_did_you_mean(exp.tier, tiers)}")
    return out


def _stale_attempts(exp: Expect, plan: Plan) -> list[str]:
    """Expected attempts on unknown models or with unknown kinds."""
    out: list[str] = []
    for i, a in enumerate(exp.attempts or ()):
        if a.model not in plan.models:
            out.append(f"expect.attempts[{i}]: unknown model {a.model!r}{_did_you_mean(a.model, plan.models)}")
        if a.kind is not None and a.kind not in ATTEMPT_KINDS:
            out.append(
                f"expect.attempts[{i}]: unknown kind {a.kind!r}; one of ok, circuit_open, "
                f"{', '.join(PROVIDER_ERROR_KINDS)}"
            )
    return out


def _stale_errors(exp: Expect, plan: Plan, tp: TaskPlan | None, env: str) -> list[str]:
    """An expected error kind, error budget or degrading budget the plan does not have (or that misses the task)."""
    out: list[str] = []
    kinds = router_error_kinds()
    if exp.error_kind is not None and exp.error_kind not in kinds:
        out.append(
            f"expect.error: unknown error kind {exp.error_kind!r}; one of {', '.join(sorted(kinds))}"
            + _did_you_mean(exp.error_kind, kinds)
        )
    if exp.error_budget is not None and exp.error_budget not in plan.budgets:
        out.append(f"expect.error.budget: unknown budget {exp.error_budget!r}{env}")
    if isinstance(exp.degraded, str) and exp.degraded not in plan.budgets:
        out.append(f"expect.degraded: unknown budget {exp.degraded!r}{env}{_did_you_mean(exp.degraded, plan.budgets)}")
    degraded_budget = isinstance(exp.degraded, str) and tp is not None and exp.degraded in plan.budgets
    if degraded_budget and tp is not None and all(b.name != exp.degraded for b in tp.budgets):
        out.append(f"expect.degraded: budget {exp.degraded!r} does not cover task {tp.name!r}")
    return out


def _apply_fixture(fx: Fixture, plan: Plan, tp: TaskPlan, req: RequestSpec, state: Any, clock: Any) -> list[str]:
    errors: list[str] = []
    wall = clock.wall()
    for name, spec in fx.budgets.items():
        b = plan.budgets[name]
        if spec.scope_value is not None:
            values = [spec.scope_value]
        elif b.scope == "model":
            values = sorted(plan.models)
        else:
            values = [budget_stage.scope_value(b, tp.name, req.tenant, req.user, None, req.metadata)]
        for unit, limit in budget_stage.limits(b):
            given = spec.spent_usd if unit == "usd" else spec.spent_tokens
            amount = given if given is not None else (spec.used_fraction or 0.0) * limit
            for value in values:
                key, _ = budget_stage.counter_key(b, value, wall, unit)
                state.budget_add_spent(key, amount)
    for model, status in fx.breakers.items():
        settings = plan.models[model].breaker
        assert settings is not None
        if status == "closed":
            continue
        if not settings.trip_on:
            errors.append(f"breakers: breaker of {model!r} trips on nothing; it cannot be opened")
            continue
        kind = sorted(settings.trip_on)[0]
        at = clock.now() - (settings.cooldown_s if status == "half_open" else 0.0)
        for _ in range(settings.failure_threshold):
            state.breaker_record(model, settings, at, False, kind, False)
    return errors


# --------------------------------------------------------------------------- scripted providers


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # "ok" or a provider error kind
    status: int | None = None
    retry_after_s: float | None = None
    latency_s: float = 0.0
    usage: Usage | None = None  # failures: billed usage
    input_tokens: int | None = None  # ok: overrides
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    text: str | None = None


def _step(raw: int | str | StepSpec) -> _Step:
    if isinstance(raw, int):
        return _Step(kind_for_status(raw), status=raw)
    if isinstance(raw, str):
        return _Step(raw)
    if raw.ok is not None:
        o = raw.ok
        return _Step(
            "ok",
            latency_s=raw.latency_s,
            input_tokens=o.input_tokens,
            output_tokens=o.output_tokens,
            cached_input_tokens=o.cached_input_tokens,
            cache_write_tokens=o.cache_write_tokens,
            text=o.text,
        )
    usage = None
    if raw.usage is not None:
        u = raw.usage
        usage = Usage(u.input_tokens or 0, u.output_tokens or 0, u.cached_input_tokens, u.cache_write_tokens)
    if raw.status is not None:
        return _Step(kind_for_status(raw.status), raw.status, raw.retry_after_s, raw.latency_s, usage)
    assert raw.error is not None
    return _Step(raw.error, None, raw.retry_after_s, raw.latency_s, usage)


class _Scripts:
    """One queue per (provider, upstream model id); handlers answer from them."""

    def __init__(self, plan: Plan, case: CaseSpec, clock: Any, output_tokens: int) -> None:
        self._plan = plan
        self._clock = clock
        self._output_tokens = output_tokens
        self.errors: list[str] = []
        self.queues: dict[tuple[str, str], deque[_Step]] = {}
        self._owner: dict[tuple[str, str], str] = {}
        self.called: set[tuple[str, str]] = set()
        self.last_input_tokens: int | None = None
        for name, steps in case.script.items():
            m = plan.models[name]
            key = (m.provider, m.upstream)
            if key in self._owner:
                self.errors.append(
                    f"script: models {self._owner[key]!r} and {name!r} are the same upstream model "
                    f"({m.provider}:{m.upstream}); script one of them"
                )
                continue
            self._owner[key] = name
            self.queues[key] = deque(_step(s) for s in steps)

    def providers(self) -> dict[str, MockProvider]:
        return {name: MockProvider(name, self._handler(name)) for name in self._plan.providers}

    def _handler(self, provider: str) -> Callable[[ProviderRequest], ProviderResponse]:
        def handle(request: ProviderRequest) -> ProviderResponse:
            key = (provider, request.model)
            self.called.add(key)
            counted = count_messages(request.messages, request.system)
            self.last_input_tokens = counted
            queue = self.queues.get(key)
            step = queue.popleft() if queue else _Step("ok")
            if step.latency_s:
                self._clock.advance(step.latency_s)
            if step.kind == "ok":
                out = step.output_tokens if step.output_tokens is not None else self._output_tokens
                usage = Usage(
                    step.input_tokens if step.input_tokens is not None else counted,
                    min(out, request.max_output_tokens),
                    step.cached_input_tokens,
                    step.cache_write_tokens,
                )
                text = step.text if step.text is not None else f"[{request.model}] ok"
                return ProviderResponse(text, usage, "stop", f"script-{len(self.called)}", request.model)
            if step.kind == "timeout" and step.status is None:
                self._clock.advance(request.timeout_s or 0.0)
            detail = f"HTTP {step.status}" if step.status is not None else step.kind
            raise ProviderError(
                step.kind,
                f"{detail} (scripted)",
                status_code=step.status,
                retry_after_s=step.retry_after_s,
                usage=step.usage,
            )

        return handle

    def unused(self, trace: Trace) -> list[Problem]:
        """Scripts for models the request could never reach: the script is stale."""
        if trace.route is None:
            return []
        out = []
        for key, name in sorted(self._owner.items(), key=lambda kv: kv[1]):
            if key not in self.called and name not in trace.chain and self.queues[key]:
                out.append(
                    Problem(
                        f"script.{name}",
                        f"{name} in the chain used",
                        f"chain {trace.tier}: [{', '.join(trace.chain)}] (the script is never used)",
                    )
                )
        return out


# --------------------------------------------------------------------------- compare


def attempt_kind(a: Attempt) -> str:
    return "ok" if a.outcome == "ok" else (a.error_kind or a.outcome)


def _trace(
    plan: Plan,
    tp: TaskPlan,
    outcome: Result | RouterError,
    input_tokens: int | None,
    sleeps: tuple[float, ...],
) -> Trace:
    route_full = outcome.route
    route, degraded = None, None
    if route_full is not None:
        route, _, degraded_part = route_full.partition(">degraded:")
        degraded = degraded_part or None
    chain: Chain | None = None
    if degraded is not None and degraded in plan.budgets:
        chain = plan.budgets[degraded].degrade_to
    elif route is not None:
        chain = next((r.chain for r in (*tp.routes, tp.default) if r.name == route), None)
    if isinstance(outcome, Result):
        return Trace(
            route,
            chain.tier if chain else None,
            tuple(m.name for m in chain.models) if chain else (),
            degraded,
            outcome.model,
            outcome.attempts,
            None,
            None,
            None,
            outcome.cost_usd,
            input_tokens,
            outcome.cache_hit,
            sleeps,
        )
    return Trace(
        route,
        chain.tier if chain else None,
        tuple(m.name for m in chain.models) if chain else (),
        degraded,
        None,
        outcome.attempts,
        outcome.kind,
        str(outcome).split(" [attempts:")[0],
        getattr(outcome, "budget", None),
        sum(a.cost_usd for a in outcome.attempts),
        input_tokens,
        False,
        sleeps,
    )


def fmt_cost(x: float) -> str:
    return f"${x:.10f}".rstrip("0").rstrip(".") if x else "$0"


def fmt_attempts(items: Sequence[tuple[str, str | None]]) -> str:
    return "[" + ", ".join(f"{m}: {k or '*'}" for m, k in items) + "]"


def _compare(case: CaseSpec, t: Trace, plan: Plan, tp: TaskPlan) -> list[Problem]:
    exp = case.expect
    out: list[Problem] = []
    actual_error = t.error or "none"
    if (exp.error_kind or "none") != actual_error:
        detail = f" ({t.error_message})" if t.error_message else ""
        out.append(Problem("error", exp.error_kind or "none (the request succeeds)", actual_error + detail))
    if exp.error_budget is not None and exp.error_budget != t.budget:
        out.append(Problem("error.budget", exp.error_budget, str(t.budget)))
    if exp.route is not None and exp.route != t.route:
        out.append(Problem("route", exp.route, str(t.route)))
    if exp.tier is not None and exp.tier != t.tier:
        out.append(Problem("tier", exp.tier, str(t.tier)))
    if "model" in exp.model_fields_set and exp.model != t.model:
        out.append(Problem("model", str(exp.model), str(t.model)))
    if exp.attempts is not None:
        want = [(a.model, a.kind) for a in exp.attempts]
        got = [(a.model, attempt_kind(a)) for a in t.attempts]
        same = len(want) == len(got) and all(
            w[0] == g[0] and (w[1] is None or w[1] == g[1]) for w, g in zip(want, got, strict=True)
        )
        if not same:
            out.append(Problem("attempts", fmt_attempts(want), fmt_attempts(got)))
    if exp.calls is not None and exp.calls != t.calls:
        out.append(Problem("calls", str(exp.calls), str(t.calls)))
    if exp.cost_usd is not None and not math.isclose(exp.cost_usd, t.cost_usd, rel_tol=1e-9, abs_tol=1e-12):
        out.append(Problem("cost_usd", fmt_cost(exp.cost_usd), fmt_cost(t.cost_usd)))
    if exp.input_tokens is not None and exp.input_tokens != t.input_tokens:
        out.append(Problem("input_tokens", str(exp.input_tokens), str(t.input_tokens)))
    if "variant" in exp.model_fields_set and exp.variant != t.variant:
        out.append(Problem("variant", str(exp.variant or "none (not enrolled)"), str(t.variant or "none")))
    if exp.cache_hit != t.cache_hit:
        out.append(Problem("cache_hit", str(exp.cache_hit).lower(), str(t.cache_hit).lower()))
    want_degraded = exp.degraded
    if want_degraded is False and t.degraded is not None:
        out.append(Problem("degraded", "false", f"degraded by budget {t.degraded}"))
    elif want_degraded is True and t.degraded is None:
        out.append(Problem("degraded", "true", "false"))
    elif isinstance(want_degraded, str) and want_degraded != t.degraded:
        out.append(Problem("degraded", want_degraded, str(t.degraded or "false")))
    return out


def describe_request(req: RequestSpec) -> str:
    parts = [f"task={req.task}"]
    if req.input_tokens is not None:
        parts.append(f"input_tokens={req.input_tokens}")
    elif req.input is not None:
        shown = req.input if len(req.input) <= 40 else req.input[:37] + "..."
        parts.append(f"input={shown!r}")
    for name in ("tenant", "user", "temperature", "max_output_tokens"):
        value = getattr(req, name)
        if value is not None:
            parts.append(f"{name}={value}")
    if req.metadata:
        parts.append("metadata={" + ", ".join(f"{k}: {v}" for k, v in sorted(req.metadata.items())) + "}")
    return " ".join(parts)


def describe_trace(t: Trace) -> list[str]:
    lines = []
    route = t.route or "(none)"
    if t.degraded:
        route += f", degraded by budget {t.degraded}"
    chain = f"{t.tier}: [{', '.join(t.chain)}]" if t.tier else "(no chain)"
    lines.append(f"route {route} · chain {chain}")
    for i, a in enumerate(t.attempts, 1):
        kind = attempt_kind(a)
        status = f" ({a.status_code})" if a.status_code else ""
        cost = f"  {fmt_cost(a.cost_usd)}" if a.cost_usd else ""
        lines.append(f"  {i}. {a.model:<12} {a.outcome:<7} {kind}{status}{cost}")
    if not t.attempts:
        lines.append("  (no upstream call)" if not t.cache_hit else "  (served from cache)")
    if t.error:
        lines.append(f"error {t.error}: {t.error_message}")
    else:
        lines.append(f"answered by {t.model} · cost {fmt_cost(t.cost_usd)}" + (" · cache hit" if t.cache_hit else ""))
    return lines
