"""Claude through the clouds enterprises buy it from: Amazon Bedrock (kind ``anthropic_bedrock``)
and Google Vertex AI (kind ``anthropic_vertex``).

Each is the anthropic SDK's own platform client (``AnthropicBedrock`` /
``AsyncAnthropicBedrock``, ``AnthropicVertex`` / ``AsyncAnthropicVertex``) under
:class:`~policyrouter.providers.anthropic_adapter.AnthropicProvider`: the Messages request,
response, stream, tool, structured-output and usage code is that one copy. What differs is
only the client, its credentials and the error types:

* Bedrock: ``region`` (required); credentials from the usual AWS chain (environment, shared
  files, SSO, instance or task role), or ``aws_profile``; or a Bedrock API key, sent as a
  bearer token, from ``api_key_env`` (by default ``AWS_BEARER_TOKEN_BEDROCK`` when it is set,
  as the SDK does). Needs boto3 and botocore: the extra ``bedrock``.
* Vertex: ``project`` and ``region`` (required); Google application default credentials
  (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, the metadata server; needs google-auth: the
  extra ``vertex``), or an OAuth access token from ``api_key_env`` (by default
  ``GOOGLE_OAUTH_ACCESS_TOKEN`` when it is set), or a ``credentials`` object in code.
* Keys go through the provider's :class:`~policyrouter.providers.keys.KeyRing` like the
  vendor's API keys: a list in ``api_key_env`` rotates Bedrock API keys (or Vertex access
  tokens), one refused with 401/403 set aside. Without a key the ring is keyless and the
  client signs with the cloud's credential chain, which rotates its own credentials.
* The model id is the platform's: ``anthropic.claude-sonnet-4-5-20250929-v1:0`` (or an
  inference profile, ``us.anthropic....``, or its ARN) on Bedrock, ``claude-sonnet-4-5@20250929``
  on Vertex.
* Errors are classified by status and, over it, by the platform's own error type
  (``classify.PLATFORM_ERROR_KINDS``): Bedrock's ``x-amzn-ErrorType`` header (a stream's
  exception frame names it too), Vertex's ``error.status`` (``RESOURCE_EXHAUSTED``). Never
  by message text, except Bedrock's "input is too long", which has no other sign.
* A credential that cannot be had when the client is built (no AWS credentials, an unknown
  profile, no Google default credentials) is a :class:`ConfigurationError`; one that fails
  later (a refresh) is a :class:`ProviderError` of kind ``auth``.
* ``ping`` (and ``Router.warm``) sends a signed ``GET /`` that spends no tokens (neither cloud
  has a free endpoint, so it answers with an error): any answer but an ``auth`` refusal counts
  as reached.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.providers.anthropic_adapter import AnthropicProvider
from policyrouter.providers.base import _entry
from policyrouter.providers.keys import KeySpec, key_list

__all__ = ["AnthropicBedrockProvider", "AnthropicVertexProvider"]

_CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _require(modules: tuple[str, ...], *, provider: str, kind: str, extra: str) -> None:
    """A :class:`ConfigurationError` naming the extra when one of ``modules`` is not installed."""
    missing = [name for name in modules if not _installed(name)]
    if missing:
        raise ConfigurationError(
            f"provider {provider!r}: kind {kind} needs {' and '.join(missing)}; "
            f"install the extra: pip install 'policyrouter[{extra}]'"
        )


class _CloudProvider(AnthropicProvider):
    """What both clouds add to the Anthropic adapter: an optional bearer credential, credential
    errors at call time, and a reachability check without the vendor's ``/v1/models``."""

    __slots__ = ("region",)

    def __init__(self, name: str, *, region: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.region = region

    def _key_pairs(self, api_key_env: KeySpec) -> tuple[tuple[str, float], ...]:
        """The keys the policy names; else :attr:`default_key_env` when it is set; else none
        (keyless: the cloud's credential chain). That default is looked at when the provider is built."""
        if api_key_env:
            return key_list(api_key_env)
        return key_list(self.default_key_env) if self.environ.get(self.default_key_env) else ()

    @property
    def _keyed(self) -> bool:
        """Whether calls carry a key of the key ring (else the cloud's credentials sign them)."""
        return bool(self._keys.envs)

    def _common_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_retries": 0}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if self._headers:
            kwargs["default_headers"] = dict(self._headers)
        return kwargs

    def _credential_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions the credential library raises when it fails during a call."""
        raise NotImplementedError

    @contextmanager
    def _translating(self) -> Iterator[None]:
        with super()._translating():
            try:
                yield
            except self._credential_errors() as exc:
                raise ProviderError(
                    "auth", f"{self.name}: auth: the cloud credentials failed ({type(exc).__name__})"
                ) from exc

    def _reach(self, client: Any, timeout_s: float) -> Any:
        return client.get("/", cast_to=str, options={"timeout": timeout_s})

    def ping(self, timeout_s: float = 5.0) -> None:
        """Reach the cloud without spending tokens: a signed ``GET /``, which it answers with an
        error (it has no free endpoint). Any answer but an ``auth`` refusal returns; no answer,
        or a refused credential, raises :class:`ProviderError`."""
        try:
            super().ping(timeout_s)
        except ProviderError as exc:
            if exc.status_code is None or exc.kind == "auth":
                raise


class AnthropicBedrockProvider(_CloudProvider):
    """Claude on Amazon Bedrock, through the anthropic SDK's ``AnthropicBedrock`` client."""

    __slots__ = ("aws_profile",)

    default_key_env: ClassVar[str] = "AWS_BEARER_TOKEN_BEDROCK"
    keyless: ClassVar[str | None] = "aws-credential-chain"

    def __init__(self, name: str, *, region: str, aws_profile: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, region=region, **kwargs)
        self.kind = "anthropic_bedrock"
        self.aws_profile = aws_profile

    def __repr__(self) -> str:
        return (
            f"AnthropicBedrockProvider(name={self.name!r}, region={self.region!r}, "
            f"aws_profile={self.aws_profile!r}, base_url={self.base_url!r})"
        )

    def _client_classes(self, sdk: Any) -> tuple[Any, Any]:
        return sdk.AnthropicBedrock, sdk.AsyncAnthropicBedrock

    def _client_kwargs(self, key: str) -> dict[str, Any]:
        _require(("boto3", "botocore"), provider=self.name, kind=self.kind, extra="bedrock")
        kwargs = {**self._common_kwargs(), "aws_region": self.region}
        if self._keyed:
            if self.aws_profile is not None:
                raise ConfigurationError(
                    f"provider {self.name!r}: both a Bedrock API key ({', '.join(self._keys.envs)}) and "
                    "aws_profile are set; keep one"
                )
            kwargs["api_key"] = key
            return kwargs
        self._check_aws_credentials()
        if self.aws_profile is not None:
            kwargs["aws_profile"] = self.aws_profile
        return kwargs

    def _check_aws_credentials(self) -> None:
        """Resolve the AWS credential chain once, now: a missing credential fails here, named."""
        import boto3
        import botocore.exceptions

        try:
            session = boto3.Session(profile_name=self.aws_profile, region_name=self.region)
            credentials = session.get_credentials()
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigurationError(f"provider {self.name!r}: AWS profile {self.aws_profile!r} not found") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigurationError(
                f"provider {self.name!r}: AWS credentials could not be loaded ({type(exc).__name__})"
            ) from exc
        if credentials is None:
            raise ConfigurationError(
                f"provider {self.name!r}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, an aws_profile, a role, or a Bedrock API key in AWS_BEARER_TOKEN_BEDROCK"
            )

    def _credential_errors(self) -> tuple[type[BaseException], ...]:
        import botocore.exceptions

        return (botocore.exceptions.BotoCoreError,)

    def _status_details(self, exc: Any) -> tuple[str | None, str]:
        message = _entry(exc.body, "message")  # {"message": ...}
        return exc.error_code, message if isinstance(message, str) else exc.api_message or exc.message

    def _platform_type(self, exc: Any) -> str | None:
        response = getattr(exc, "response", None)  # an APIStatusError's; a bare APIError has none
        header = response.headers.get("x-amzn-errortype") if response is not None else None
        if header:
            return str(header).split(":", 1)[0]
        # a stream's exception frame names the ResponseStream member: throttlingException
        kind = _entry(_entry(exc.body, "error"), "type")  # any other shape (null, text) names nothing
        return kind[:1].upper() + kind[1:] if isinstance(kind, str) and kind else None


class AnthropicVertexProvider(_CloudProvider):
    """Claude on Google Vertex AI, through the anthropic SDK's ``AnthropicVertex`` client."""

    __slots__ = ("_credentials", "project")

    default_key_env: ClassVar[str] = "GOOGLE_OAUTH_ACCESS_TOKEN"
    keyless: ClassVar[str | None] = "google-credentials"

    def __init__(self, name: str, *, region: str, project: str, credentials: Any = None, **kwargs: Any) -> None:
        self._credentials = credentials  # read by _key_pairs
        super().__init__(name, region=region, **kwargs)
        self.kind = "anthropic_vertex"
        self.project = project

    def __repr__(self) -> str:
        return (
            f"AnthropicVertexProvider(name={self.name!r}, project={self.project!r}, "
            f"region={self.region!r}, base_url={self.base_url!r})"
        )

    def _client_classes(self, sdk: Any) -> tuple[Any, Any]:
        return sdk.AnthropicVertex, sdk.AsyncAnthropicVertex

    def _key_pairs(self, api_key_env: KeySpec) -> tuple[tuple[str, float], ...]:
        return () if self._credentials is not None else super()._key_pairs(api_key_env)

    def _client_kwargs(self, key: str) -> dict[str, Any]:
        kwargs = {**self._common_kwargs(), "region": self.region, "project_id": self.project}
        if self._keyed:
            kwargs["access_token"] = key
            return kwargs
        _require(("google.auth",), provider=self.name, kind=self.kind, extra="vertex")
        kwargs["credentials"] = self._credentials if self._credentials is not None else self._default_credentials()
        return kwargs

    def _default_credentials(self) -> Any:
        """Google application default credentials, found now: none is a named configuration error."""
        import google.auth
        import google.auth.exceptions

        try:
            credentials, _ = google.auth.default(scopes=[_CLOUD_PLATFORM_SCOPE])
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"provider {self.name!r}: no Google application default credentials; run "
                "`gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, "
                "or put an access token in GOOGLE_OAUTH_ACCESS_TOKEN"
            ) from exc
        return credentials

    def _credential_errors(self) -> tuple[type[BaseException], ...]:
        if not _installed("google.auth"):
            return ()
        import google.auth.exceptions

        return (google.auth.exceptions.GoogleAuthError,)

    def _platform_type(self, exc: Any) -> str | None:
        status = _entry(_entry(exc.body, "error"), "status")
        return status if isinstance(status, str) else None
