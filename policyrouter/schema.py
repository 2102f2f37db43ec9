"""The policy JSON Schema, generated from the pydantic models (the single source of truth).

``policyrouter schema`` writes :func:`render_schema` to ``schemas/policy.schema.json`` (the
repository's copy, which its example policies point at) and the package ships the same text
as ``policyrouter/policy.schema.json`` (:func:`packaged_schema`, read with
``importlib.resources``; ``policyrouter schema --print``); a test fails when either is stale.
Editors pick it up through the ``# yaml-language-server: $schema=...`` line at the top of a
policy file.

Rules the models enforce in validators are added here as ``if``/``then`` so editors
flag them too (``openai_compatible`` needs ``base_url`` or ``base_url_env``, not both;
``scope: metadata`` needs ``key``; a budget needs ``limit_usd`` or ``limit_tokens``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PACKAGED_SCHEMA", "SCHEMA_DIALECT", "SCHEMA_ID", "packaged_schema", "policy_json_schema", "render_schema"]

PACKAGED_SCHEMA = "policy.schema.json"
"""Name of the schema file shipped inside the ``policyrouter`` package."""

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:policyrouter:schema:policy:v1"


def _require_when(schema: dict[str, Any], prop: str, value: str, *required: str) -> None:
    """``prop: value`` requires one of ``required``."""
    then = {"required": [required[0]]} if len(required) == 1 else {"anyOf": [{"required": [r]} for r in required]}
    schema.setdefault("allOf", []).append(
        {"if": {"properties": {prop: {"const": value}}, "required": [prop]}, "then": then}
    )


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a policy file."""
    from policyrouter.policy.models import Policy

    schema: dict[str, Any] = Policy.model_json_schema()
    defs = schema.get("$defs", {})
    if "ProviderSpec" in defs:
        _require_when(defs["ProviderSpec"], "kind", "openai_compatible", "base_url", "base_url_env")
        defs["ProviderSpec"]["not"] = {"required": ["base_url", "base_url_env"]}  # one base URL, not two
        _require_when(defs["ProviderSpec"], "kind", "azure_openai", "endpoint", "endpoint_env")
        _require_when(defs["ProviderSpec"], "kind", "azure_openai", "api_version")
    if "Budget" in defs:
        _require_when(defs["Budget"], "scope", "metadata", "key")
        defs["Budget"]["anyOf"] = [{"required": ["limit_usd"]}, {"required": ["limit_tokens"]}]
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "policyrouter policy"
    return schema


def render_schema() -> str:
    """:func:`policy_json_schema` as deterministic JSON: sorted keys, 2-space indent, final newline."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def packaged_schema() -> str:
    """The schema shipped in the installed package (equal to :func:`render_schema`; tested)."""
    from importlib.resources import files

    return files("policyrouter").joinpath(PACKAGED_SCHEMA).read_text(encoding="utf-8")
