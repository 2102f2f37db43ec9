"""The policy test file as typed models (see :mod:`policyrouter.policytest` for the format).

Files are read with the policy loader's safe reader (regular files only, size checked
before reading, bounded aliases and depth), so every problem in a test
file is reported with ``file:line:col``, all of them at once, like a policy error.
Names are checked against the compiled plan later, by the runner: here only the shape.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.errors import PolicyRouterError
from policyrouter.policy.files import read_document
from policyrouter.policy.source import PathKey, dotted
from policyrouter.policy.yamlsrc import Positions
from policyrouter.providers.classify import PROVIDER_ERROR_KINDS

__all__ = [
    "SUFFIXES",
    "AttemptSpec",
    "BudgetFixture",
    "CaseSpec",
    "ErrorSpec",
    "Expect",
    "Fixture",
    "OkSpec",
    "RequestSpec",
    "StepSpec",
    "TestFile",
    "TestFileError",
    "UsageSpec",
    "load_test_file",
]

SUFFIXES = (".policytest.yaml", ".policytest.yml")
MAX_BYTES = 4 << 20

BreakerFixture = Literal["open", "half_open", "closed"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TestFileError(PolicyRouterError):
    """A policy test file cannot be read or does not have the documented shape."""

    __test__ = False  # not a pytest test class
    kind = "policytest_invalid"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics, key=Diagnostic.sort_key))
        first = self.diagnostics[0].one_line() if self.diagnostics else "invalid policy test file"
        more = f" (and {len(self.diagnostics) - 1} more)" if len(self.diagnostics) > 1 else ""
        super().__init__(first + more)


# --------------------------------------------------------------------------- fixtures


class BudgetFixture(_M):
    """How much of a budget's current window is already spent."""

    used_fraction: Annotated[float, Field(ge=0)] | None = None  # of each of the budget's limits
    spent_usd: Annotated[float, Field(ge=0)] | None = None
    spent_tokens: Annotated[int, Field(ge=0)] | None = None
    scope_value: str | None = Field(
        None, description="Counter to fill (tenant, user, ...). Default: the case request's."
    )

    @model_validator(mode="after")
    def _one(self) -> BudgetFixture:
        if [self.used_fraction, self.spent_usd, self.spent_tokens].count(None) != 2:
            raise ValueError("give exactly one of `used_fraction`, `spent_usd` or `spent_tokens`")
        return self


class Fixture(_M):
    """A named starting state."""

    budgets: dict[str, BudgetFixture] = Field(default_factory=dict)
    breakers: dict[str, BreakerFixture] = Field(default_factory=dict)
    time: str | float | None = Field(None, description="Wall clock at the start: ISO 8601 or epoch seconds.")


# --------------------------------------------------------------------------- requests and scripts


class RequestSpec(_M):
    task: str
    input: str | None = None
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    output_tokens: Annotated[int, Field(ge=0)] = 100
    tenant: str | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    max_output_tokens: Annotated[int, Field(gt=0)] | None = None
    cache: bool | None = None
    variant: str | None = None  # pin the task's experiment variant (whatever the user's assignment)

    @model_validator(mode="after")
    def _input(self) -> RequestSpec:
        if self.input is not None and self.input_tokens is not None:
            raise ValueError("give `input` or `input_tokens`, not both")
        return self


class UsageSpec(_M):
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    output_tokens: Annotated[int, Field(ge=0)] | None = None
    cached_input_tokens: Annotated[int, Field(ge=0)] = 0
    cache_write_tokens: Annotated[int, Field(ge=0)] = 0


class OkSpec(UsageSpec):
    text: str | None = None


def _check_kind(value: str) -> str:
    if value != "ok" and value not in PROVIDER_ERROR_KINDS:
        kinds = ", ".join(PROVIDER_ERROR_KINDS)
        raise ValueError(f"unknown outcome {excerpt(str(value))!r}; use ok, an HTTP status or one of {kinds}")
    return value


def _check_status(value: int) -> int:
    if not 400 <= value <= 599:
        raise ValueError(f"status {value} is not an HTTP error status (400-599); use `ok` for a success")
    return value


Kind = Annotated[str, AfterValidator(_check_kind)]
Status = Annotated[int, AfterValidator(_check_status)]


class StepSpec(_M):
    """One scripted outcome written as a mapping."""

    ok: OkSpec | None = None
    status: Status | None = None
    error: Kind | None = None
    retry_after_s: Annotated[float, Field(ge=0)] | None = None
    latency_s: Annotated[float, Field(ge=0)] = 0.0
    usage: UsageSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_ok(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ok" in data and data["ok"] is None:
            return {**data, "ok": {}}
        return data

    @model_validator(mode="after")
    def _one(self) -> StepSpec:
        given = [k for k in ("ok", "status", "error") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a scripted outcome needs exactly one of `ok`, `status` or `error`")
        if self.ok is not None and (self.retry_after_s is not None or self.usage is not None):
            raise ValueError("`retry_after_s` and `usage` belong to failures; put an ok's usage under `ok:`")
        return self


def _step_tag(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return "status"
    return "map" if isinstance(value, dict) else "kind"


Step = Annotated[
    Annotated[Status, Tag("status")] | Annotated[Kind, Tag("kind")] | Annotated[StepSpec, Tag("map")],
    Discriminator(_step_tag),
]


# --------------------------------------------------------------------------- expectations


class AttemptSpec(_M):
    model: str
    kind: str | None = None  # "ok" or an error kind; None: any


class ErrorSpec(_M):
    kind: str
    budget: str | None = None


class Expect(_M):
    """What must happen. Unset keys: no error, not degraded, no cache hit; the rest unchecked."""

    route: str | None = None
    tier: str | None = None
    model: str | None = None
    attempts: list[AttemptSpec] | None = None
    calls: Annotated[int, Field(ge=0)] | None = None
    error: ErrorSpec | None = None
    cost_usd: Annotated[float, Field(ge=0)] | None = None
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    cache_hit: bool = False
    degraded: bool | str = False
    variant: str | None = None  # the experiment variant that served it (null: not enrolled)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        """``error: budget_exceeded`` is short for ``error: {kind: budget_exceeded}``;
        ``{gpt-mini: rate_limited}`` for ``{model: gpt-mini, kind: rate_limited}``."""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            data = {**data, "error": {"kind": data["error"]}}
        if not isinstance(data, dict) or not isinstance(data.get("attempts"), list):
            return data
        out = []
        for item in data["attempts"]:
            if isinstance(item, dict) and len(item) == 1 and not set(item) & {"model", "kind"}:
                ((name, kind),) = item.items()
                item = {"model": name, "kind": kind}
            elif isinstance(item, str):
                item = {"model": item}
            out.append(item)
        return {**data, "attempts": out}

    @property
    def error_kind(self) -> str | None:
        return self.error.kind if self.error is not None else None

    @property
    def error_budget(self) -> str | None:
        return self.error.budget if self.error is not None else None


class CaseSpec(_M):
    name: Annotated[str, Field(min_length=1)]
    request: RequestSpec
    given: list[str] = Field(default_factory=list)
    state: Fixture | None = None
    script: dict[str, list[Step]] = Field(default_factory=dict, alias="providers")
    repeat: Annotated[int, Field(ge=1, le=10_000)] = 1
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="before")
    @classmethod
    def _script_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "script" in data:
            if "providers" in data:
                raise ValueError("give `script` or `providers` (the same thing), not both")
            data = {**data, "providers": data["script"]}
            del data["script"]
        return data


class TestFile(_M):
    __test__ = False  # not a pytest test class

    policy: str | None = None
    env: str | None = None
    seed: int = 0
    fixtures: dict[str, Fixture] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict, description="Merged into every case's request.")
    cases: Annotated[list[CaseSpec], Field(min_length=1)]

    # set by the loader (not part of the YAML)
    path: str = ""
    lines: dict[int, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults")
        cases = data.get("cases")
        if isinstance(defaults, dict) and defaults and isinstance(cases, list):
            merged = []
            for case in cases:
                if isinstance(case, dict) and isinstance(case.get("request", {}), dict):
                    case = {**case, "request": {**defaults, **case.get("request", {})}}
                merged.append(case)
            data = {**data, "cases": merged}
        return data

    def policy_path(self) -> str:
        """The policy the cases run against: ``policy:`` relative to this file, else its directory."""
        base = os.path.dirname(self.path) or "."
        if self.policy is None:
            return base
        return self.policy if os.path.isabs(self.policy) else os.path.normpath(os.path.join(base, self.policy))


def load_test_file(path: str | os.PathLike[str]) -> TestFile:
    """Read and validate one policy test file; raises :class:`TestFileError` listing every problem."""
    display = os.fspath(path)
    doc = read_document(path, max_bytes=MAX_BYTES, display=display)
    errors = [d for d in doc.diagnostics if d.severity == "error"]
    if doc.data is None or errors:
        raise TestFileError(errors or list(doc.diagnostics))
    data = dict(doc.data)
    for reserved in ("path", "lines"):
        if reserved in data:
            where = doc.keys.get((reserved,), Location(display))
            raise TestFileError([Diagnostic("error", "policytest-schema", f"unknown key {reserved!r}", where)])
    lines = {}
    for i in range(len(data.get("cases") or []) if isinstance(data.get("cases"), list) else 0):
        case_loc = doc.values.get(("cases", i))
        lines[i] = case_loc.line if case_loc is not None else 0
    data["path"] = display
    data["lines"] = lines
    try:
        return TestFile.model_validate(data)
    except ValidationError as exc:
        raise TestFileError(_diagnostics(exc, doc.data, doc.values, doc.keys, display)) from None


def _diagnostics(exc: ValidationError, data: Any, values: Positions, keys: Positions, file: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple[PathKey, str]] = set()
    for err in exc.errors():
        path = _data_path(err["loc"], data, err["type"] in ("missing", "extra_forbidden"))
        msg = str(err.get("ctx", {}).get("error", err["msg"])) if err["type"] == "value_error" else err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {excerpt(str(err['loc'][-1]))!r}"
        elif err["type"] == "missing":
            msg = f"missing key {excerpt(str(err['loc'][-1]))!r}"
        if (path, msg) in seen:
            continue
        seen.add((path, msg))
        where = keys.get(path) if err["type"] == "extra_forbidden" else None
        probe = path
        while where is None and probe:
            where = values.get(probe) or keys.get(probe)
            probe = probe[:-1]
        label = dotted(path) or "(top level)"
        loc = where or Location(file, 1, 1)
        out.append(Diagnostic("error", "policytest-schema", f"{label}: {msg}", loc, path=dotted(path)))
    return out


def _data_path(loc: tuple[int | str, ...], data: Any, keep_last: bool) -> PathKey:
    """Pydantic's ``loc`` as a path into the YAML data (union tags and aliases dropped)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if part == "providers" and isinstance(node, dict) and "providers" not in node and "script" in node:
            part = "script"
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            out.append(part)
            node = node[part]
    if keep_last and loc and (not out or out[-1] != loc[-1]):
        out.append(loc[-1])
    return tuple(out)
