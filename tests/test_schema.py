"""The JSON Schema: generated from the models, checked in, valid, and accepting the examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from syrupy.assertion import SnapshotAssertion

from policyrouter.policy.loader import validate_paths
from policyrouter.schema import SCHEMA_DIALECT, policy_json_schema, render_schema

REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO / "schemas" / "policy.schema.json"
EXAMPLES = sorted((REPO / "policies").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_checked_in_schema_is_current() -> None:
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert current == render_schema(), (
        "schemas/policy.schema.json is stale: run `policyrouter schema -o schemas/policy.schema.json "
        "-o policyrouter/policy.schema.json` and commit the result"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["$id"] and schema["title"]


def test_rendering_is_deterministic() -> None:
    text = render_schema()
    assert text == render_schema() and text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_schema_snapshot(snapshot: SnapshotAssertion) -> None:
    assert policy_json_schema() == snapshot


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_files_validate_against_the_schema(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []


def test_example_schema_line_points_at_the_schema() -> None:
    for path in EXAMPLES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/policy.schema.json"


def test_merged_environments_validate_against_the_schema(validator: jsonschema.Draft202012Validator) -> None:
    report = validate_paths([str(REPO / "policies")])
    assert set(report.policies) >= {None, "dev", "prod", "offline"}
    for env, policy in report.policies.items():
        data = policy.model_dump(mode="json", exclude_none=True)
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == [], env


def _minimal(**extra: Any) -> dict[str, Any]:
    return {"version": 1, **extra}


@pytest.mark.parametrize(
    "data",
    [
        _minimal(version=2),
        _minimal(providers={"gw": {"kind": "openai_compatible", "api_key_env": "GW"}}),
        _minimal(budgets={"b": {"scope": "metadata", "window": "day", "limit_usd": 1}}),
        _minimal(tasks={"t": {"tier": "x", "max_output_tokens": "500"}}),
        _minimal(tasks={"t": {"tier": "x", "retries": 3}}),
        _minimal(providers={"openai": {"kind": "openai", "api_key_env": "sk-not-a-var-name"}}),
    ],
)
def test_schema_rejects_what_the_models_reject(validator: jsonschema.Draft202012Validator, data: Any) -> None:
    assert list(validator.iter_errors(data))
