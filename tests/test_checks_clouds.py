"""``validate`` on cloud providers: region, project, credentials and the platforms' model ids,
each problem with file:line:col and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.loader import validate_paths

POLICY = """\
version: 1
providers:
  bedrock:
    kind: anthropic_bedrock
    region: us-east-1
  vertex:
    kind: anthropic_vertex
    region: us-east5
    project: my-project
models:
  sonnet-bedrock:
    provider: bedrock
    model: anthropic.claude-sonnet-4-5-20250929-v1:0
  sonnet-vertex:
    provider: vertex
    model: claude-sonnet-4-5@20250929
tiers:
  claude: [sonnet-bedrock, sonnet-vertex]
tasks:
  answer: {tier: claude, max_output_tokens: 100}
"""


def diagnostics(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return list(validate_paths([path]).diagnostics)


def test_a_complete_cloud_policy_is_clean(tmp_path: Path) -> None:
    # Vertex's claude-...@20250929 is a pinned snapshot, Bedrock's ...-20250929-v1:0 too
    assert diagnostics(tmp_path, POLICY) == []


@pytest.mark.parametrize(
    ("remove", "field", "line", "hint"),
    [
        ("    region: us-east-1\n", "region", 3, "region: us-east-1"),
        ("    region: us-east5\n", "region", 6, "region: us-east5"),
        ("    project: my-project\n", "project", 6, "project: my-project"),
    ],
)
def test_missing_region_or_project_is_an_error_at_the_provider(
    tmp_path: Path, remove: str, field: str, line: int, hint: str
) -> None:
    [d] = diagnostics(tmp_path, POLICY.replace(remove, ""))
    assert (d.severity, d.code) == ("error", "cloud-setting-missing")
    assert f"has no `{field}`" in d.message
    assert (d.location.line, d.location.col) == (line, 3)
    assert hint in d.hint


def test_every_problem_at_once(tmp_path: Path) -> None:
    text = POLICY.replace("    region: us-east-1\n", "").replace("    project: my-project\n", "")
    assert [d.code for d in diagnostics(tmp_path, text)] == ["cloud-setting-missing"] * 2


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        # a first-party id on Bedrock, and Bedrock's id on Vertex: the platform answers 404
        ("model: anthropic.claude-sonnet-4-5-20250929-v1:0", "model: claude-sonnet-4-5-20250929", 13),
        ("model: claude-sonnet-4-5@20250929", "model: anthropic.claude-sonnet-4-5-20250929-v1:0", 16),
        ("model: claude-sonnet-4-5@20250929", "model: gpt-4.1-2025-04-14", 16),
    ],
)
def test_a_model_id_of_another_shape_is_a_warning(tmp_path: Path, old: str, new: str, line: int) -> None:
    [d] = [d for d in diagnostics(tmp_path, POLICY.replace(old, new)) if d.code == "model-id-shape"]
    assert d.severity == "warning"
    assert d.location.line == line and d.path.endswith(".model")
    assert "look like" in d.hint


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",  # a cross-region inference profile
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
    ],
)
def test_bedrock_inference_profiles_have_the_right_shape(tmp_path: Path, model_id: str) -> None:
    text = POLICY.replace("anthropic.claude-sonnet-4-5-20250929-v1:0", f'"{model_id}"')
    assert "model-id-shape" not in [d.code for d in diagnostics(tmp_path, text)]


def test_cloud_settings_on_other_kinds_are_ignored_with_a_warning(tmp_path: Path) -> None:
    text = POLICY.replace("    region: us-east-1\n", "    region: us-east-1\n    project: my-project\n")
    [d] = diagnostics(tmp_path, text)
    assert (d.code, d.severity, d.path) == ("provider-setting-ignored", "warning", "providers.bedrock.project")
    assert "anthropic_vertex" in d.hint


def test_aws_profile_and_bedrock_api_key_conflict(tmp_path: Path) -> None:
    both = "    region: us-east-1\n    aws_profile: prod\n    api_key_env: BEDROCK_KEY\n"
    text = POLICY.replace("    region: us-east-1\n", both)
    [d] = diagnostics(tmp_path, text)
    assert (d.code, d.severity, d.location.line) == ("cloud-credentials-conflict", "error", 7)  # at api_key_env


def test_no_key_needed_for_cloud_kinds(tmp_path: Path) -> None:
    # credentials come from the cloud's own chain: no provider-no-key error
    assert "provider-no-key" not in [d.code for d in diagnostics(tmp_path, POLICY)]


def test_a_bad_region_is_a_schema_error(tmp_path: Path) -> None:
    [d] = diagnostics(tmp_path, POLICY.replace("region: us-east-1", "region: US East"))
    assert d.severity == "error" and d.path == "providers.bedrock.region"
