"""Claude on the clouds: each Bedrock and Vertex provider says where it runs, and its models use the platform's ids."""

from __future__ import annotations

import re
from collections.abc import Iterator

from policyrouter.diagnostics import Diagnostic
from policyrouter.policy.checks.context import Context

__all__ = ["check_cloud_model_ids", "check_cloud_settings"]

_BEDROCK, _VERTEX = "anthropic_bedrock", "anthropic_vertex"
_REQUIRED = {_BEDROCK: ("region",), _VERTEX: ("region", "project")}
_ONLY_FOR = {"region": (_BEDROCK, _VERTEX), "project": (_VERTEX,), "aws_profile": (_BEDROCK,)}
_HINTS = {
    (_BEDROCK, "region"): "set the AWS region the model is enabled in, e.g. region: us-east-1",
    (_VERTEX, "region"): "set the Google Cloud region, e.g. region: us-east5 (or global)",
    (_VERTEX, "project"): "set the Google Cloud project id, e.g. project: my-project",
}
# anthropic.claude-...-v1:0, a cross-region inference profile (us./eu./apac./global. ...), or an ARN
_BEDROCK_ID = re.compile(r"^(?:[a-z-]{2,8}\.)?anthropic\.claude-[a-z0-9.-]+-v\d+(?::\d+)?$|^arn:aws[a-z-]*:bedrock:")
_VERTEX_ID = re.compile(r"^claude-[a-z0-9.-]+(?:@\d{8})?$")
_SHAPES = {
    _BEDROCK: (
        _BEDROCK_ID,
        "Bedrock ids look like anthropic.claude-sonnet-4-5-20250929-v1:0, or us.anthropic.claude-... "
        "(a cross-region inference profile), or an inference profile ARN",
    ),
    _VERTEX: (_VERTEX_ID, "Vertex ids look like claude-sonnet-4-5@20250929"),
}


def check_cloud_settings(ctx: Context) -> Iterator[Diagnostic]:
    """A cloud provider has its region (and Vertex its project); other kinds do not set them."""
    for name, prov in ctx.policy.providers.items():
        for field in _REQUIRED.get(prov.kind, ()):
            if getattr(prov, field) is None:
                yield ctx.diag(
                    "error",
                    "cloud-setting-missing",
                    f"provider `{name}` (kind {prov.kind}) has no `{field}`",
                    ("providers", name),
                    _HINTS[(prov.kind, field)],
                    key=True,
                )
        for field, kinds in _ONLY_FOR.items():
            if getattr(prov, field) is not None and prov.kind not in kinds:
                yield ctx.diag(
                    "warning",
                    "provider-setting-ignored",
                    f"provider `{name}` (kind {prov.kind}) does not use `{field}`",
                    ("providers", name, field),
                    f"remove it; only kind {' or '.join(kinds)} reads it",
                    key=True,
                )
        if prov.kind == _BEDROCK and prov.aws_profile is not None and prov.api_key_env is not None:
            yield ctx.diag(
                "error",
                "cloud-credentials-conflict",
                f"provider `{name}` sets both `aws_profile` and `api_key_env` (a Bedrock API key)",
                ("providers", name, "api_key_env"),
                "keep one: AWS credentials from the profile, or the Bedrock API key",
                key=True,
            )


def check_cloud_model_ids(ctx: Context) -> Iterator[Diagnostic]:
    """A model served through Bedrock or Vertex uses that platform's model id."""
    p = ctx.policy
    for name, model in p.models.items():
        prov = p.providers.get(model.provider)
        shape = _SHAPES.get(prov.kind) if prov is not None else None
        if prov is None or shape is None or shape[0].match(model.model):
            continue
        yield ctx.diag(
            "warning",
            "model-id-shape",
            f"model `{name}`: `{model.model}` is not a {prov.kind} model id (provider `{model.provider}`)",
            ("models", name, "model"),
            f"{shape[1]}; the platform answers 404 for any other id",
        )
