"""Property tests: whatever a policy file holds, validation returns diagnostics, never a traceback.

Three sources of input: mutations of the (valid) production example (delete a key,
replace a value with a random one, rename a key, insert a random entry), random YAML-ish
text, and random bytes. Every report must also render in all three output formats.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyrouter.policy.checks import check_policy
from policyrouter.policy.loader import ValidationReport, validate_paths
from policyrouter.policy.render import render_github, render_json, render_text

EXAMPLE = Path(__file__).resolve().parent.parent / "policies" / "production.yaml"
BASE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["simple", "complex", "mock", "openai", "sk-" + "x1" * 12, "0.8", "1e309", "", "~"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
keys = st.one_of(st.text(max_size=16), st.sampled_from(["tier", "retry", "pricing", "kind", "when", "gt"]))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


ALL_PATHS = _paths(BASE)[1:]


@st.composite
def mutated_policies(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            parent[last]  # the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["delete", "replace", "rename", "insert"]))
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
        elif op == "insert":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(keys)] = draw(values)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(values))
            else:
                parent[last] = draw(st.text(max_size=40))
    return data


yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "version: 1",
                "tasks:",
                "  t: {tier: a}",
                "  - x",
                "\t- y",
                "&a [*a]",
                "a: &x [1, 2]",
                "b: *x",
                "c: *nope",
                "<<: *x",
                "!!python/object:os.system",
                "? [complex, key]",
                "---",
                "...",
                "key: 'unterminated",
                "'yes': no",
                "1: 2",
                "environments: {dev: {tasks: {t: {tier: 3}}}}",
                "providers: {o: {kind: openai, api_key: sk-" + "A" * 20 + "}}",
                "%YAML 1.1",
                "",
            ]
        ),
        max_size=12,
    ).map("\n".join),
)


NAMES = st.sampled_from(["a", "b", "c", "default", "simple"])
small = st.integers(min_value=1, max_value=300_000)


@st.composite
def cross_referencing_policies(draw: st.DrawFn) -> dict[str, Any]:
    """Schema-shaped policies whose names point anywhere: exercises the semantic checks."""

    def opt() -> bool:
        return draw(st.booleans())

    providers = {
        n: {"kind": k, **({"api_key_env": "K"} if opt() else {}), "base_url": "https://x/v1"}
        for n, k in draw(
            st.dictionaries(NAMES, st.sampled_from(["openai", "anthropic", "mock", "openai_compatible"]))
        ).items()
    }
    models = {
        n: {
            "provider": draw(NAMES),
            "model": draw(st.sampled_from(["gpt-4o", "gpt-4.1-2025-04-14", "claude-x-latest", "llama"])),
            **({"pricing": {"input": draw(st.floats(0, 100)), "output": draw(st.floats(0, 100))}} if opt() else {}),
            **({"context_window": draw(small)} if opt() else {}),
            **({"max_output_tokens": draw(small)} if opt() else {}),
            **({"limits": {"tpm": draw(small)}} if opt() else {}),
            **({"circuit_breaker": draw(NAMES)} if opt() else {}),
        }
        for n in draw(st.sets(NAMES))
    }
    condition = st.fixed_dictionaries({}, optional={k: st.integers(-5, 300_000) for k in ("gt", "gte", "lt", "lte")})
    when = st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": condition,
            "metadata": st.dictionaries(NAMES, st.one_of(NAMES, st.integers(0, 2), st.lists(NAMES, max_size=2))),
            "tenant": st.lists(NAMES, max_size=2),
        },
    )
    task = st.fixed_dictionaries(
        {"tier": NAMES},
        optional={
            "max_input_tokens": small,
            "max_output_tokens": small,
            "temperature": st.floats(0, 2),
            "retry": NAMES,
            "max_total_attempts": st.integers(1, 30),
            "deadline_s": st.floats(0.1, 100),
            "cache": st.fixed_dictionaries({"ttl_s": st.floats(1, 10)}, optional={"force": st.booleans()}),
            "routes": st.lists(st.fixed_dictionaries({"when": when, "tier": NAMES}), max_size=4),
            "budgets": st.lists(NAMES, max_size=2),
            "response_schema": st.dictionaries(st.sampled_from(["type", "properties", "items"]), values, max_size=2),
        },
    )
    budget = st.fixed_dictionaries(
        {
            "scope": st.sampled_from(["global", "task", "tenant"]),
            "window": st.just("day"),
            "limit_usd": st.floats(0, 50),
        },
        optional={
            "soft_limit": st.floats(-1, 2),
            "on_soft_limit": st.fixed_dictionaries({}, optional={"degrade_to": NAMES}),
            "tasks": st.lists(NAMES, max_size=2),
        },
    )
    return {
        "version": 1,
        "providers": providers,
        "models": models,
        "tiers": draw(st.dictionaries(NAMES, st.lists(NAMES, max_size=4))),
        "retry_policies": draw(st.dictionaries(NAMES, st.fixed_dictionaries({"max_attempts": st.integers(1, 20)}))),
        "circuit_breakers": draw(st.dictionaries(NAMES, st.just({}))),
        "budgets": draw(st.dictionaries(NAMES, budget, max_size=3)),
        "tasks": draw(st.dictionaries(NAMES, task, max_size=3)),
    }


def _validate(raw: bytes) -> ValidationReport:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_bytes(raw)
        report = validate_paths([str(path)])
        # Rendering reads only the report; every format must cope with whatever it holds.
        for render in (render_text, render_json, render_github):
            assert render(list(report.diagnostics), report.source).endswith("\n")
    for d in report.diagnostics:
        assert d.severity in ("error", "warning") and d.code and isinstance(d.message, str)
        assert d.code != "internal-check-error", d
    assert report.ok == (not any(d.severity == "error" for d in report.diagnostics))
    return report


@FUZZ
@given(mutated_policies())
def test_mutated_policies_only_produce_diagnostics(data: dict[str, Any]) -> None:
    report = _validate(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8"))
    for env, policy in report.policies.items():  # checks are pure: same input, same output
        source = report.sources.get(env, report.source)
        assert check_policy(policy, source, env) == check_policy(policy, source, env)


@FUZZ
@given(cross_referencing_policies())
def test_cross_referencing_policies_only_produce_diagnostics(data: dict[str, Any]) -> None:
    report = _validate(yaml.safe_dump(data, sort_keys=False).encode("utf-8"))
    assert report.policies or not report.ok


@FUZZ
@given(yaml_text)
def test_random_yaml_text_only_produces_diagnostics(text: str) -> None:
    _validate(text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_only_produce_diagnostics(raw: bytes) -> None:
    _validate(raw)
