"""Adapter for Azure OpenAI (kind ``azure_openai``): the OpenAI adapter on the SDK's own
``AzureOpenAI`` / ``AsyncAzureOpenAI`` clients.

The wire format is OpenAI's chat completions, so every request and response is mapped by
:class:`~policyrouter.providers.openai_adapter.OpenAIProvider`; only the client differs.
The SDK sends each call to ``<endpoint>/openai/deployments/<deployment>/chat/completions
?api-version=<api_version>``, taking the deployment from the request's ``model`` (the plan
sends a model's ``deployment``, default its model id). The output cap is
``max_completion_tokens`` (what reasoning deployments require; API version 2024-10-21 or
later).

Authentication is one of:

* ``api_key``: the key in ``api_key_env`` (default ``AZURE_OPENAI_API_KEY``), sent as the
  ``api-key`` header; a list of variables rotates keys (Azure gives each resource two keys
  to regenerate in turn), as for every keyed provider
  (:mod:`policyrouter.providers.keys`);
* ``entra_id``: a Microsoft Entra ID token, sent as ``Authorization: Bearer``, from
  azure-identity's ``DefaultAzureCredential`` (extra ``azure``, imported at the first call)
  through ``get_bearer_token_provider``; the credential caches and refreshes the token. A
  ``token_provider`` given to the constructor replaces it (any callable returning a token).
  No key is read: the provider's key ring is keyless.

A credential that cannot produce a token (azure-identity's ``ClientAuthenticationError``)
fails the call as ``auth``, before anything is sent. Azure's content filter refusing a
prompt (HTTP 400, ``code: content_filter``) is ``content_filter``, its message naming the
categories ``innererror.content_filter_result`` marks filtered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from policyrouter.errors import ConfigurationError
from policyrouter.providers.base import _entry
from policyrouter.providers.classify import CONTENT_FILTER, failure_error, filtered_categories
from policyrouter.providers.keys import EventSink, KeySpec
from policyrouter.providers.openai_adapter import AsyncTransport, OpenAIProvider

if TYPE_CHECKING:
    import random

__all__ = ["ENTRA_SCOPE", "AzureOpenAIProvider"]

AzureAuth = Literal["api_key", "entra_id"]
TokenProvider = Callable[[], str]

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
"""The scope of the Entra ID token Azure OpenAI accepts."""


class AzureOpenAIProvider(OpenAIProvider):
    """A provider on Azure OpenAI. ``endpoint`` is the resource URL
    (``https://<resource>.openai.azure.com``); ``api_version`` is sent with every request.
    The key or token never appears in ``repr`` or error messages."""

    __slots__ = ("_token_provider", "api_version", "auth", "endpoint")

    def __init__(
        self,
        name: str,
        *,
        endpoint: str,
        api_version: str,
        auth: AzureAuth = "api_key",
        api_key_env: KeySpec = None,
        headers: Mapping[str, str] | None = None,
        async_transport: AsyncTransport = "httpx",
        environ: Mapping[str, str] = os.environ,
        token_provider: TokenProvider | None = None,
        http_client: Any = None,
        async_http_client: Any = None,
        rng: random.Random | None = None,
        events: EventSink | None = None,
    ) -> None:
        if auth not in ("api_key", "entra_id"):
            raise ValueError(f"auth must be 'api_key' or 'entra_id', not {auth!r}")
        self.auth: AzureAuth = "entra_id" if token_provider is not None else auth  # read by _key_pairs
        self._token_provider = token_provider
        super().__init__(
            name,
            kind="openai",  # the request mapping of kind openai (max_completion_tokens)
            api_key_env=api_key_env or "AZURE_OPENAI_API_KEY",
            headers=headers,
            async_transport=async_transport,
            environ=environ,
            http_client=http_client,
            async_http_client=async_http_client,
            rng=rng,
            events=events,
        )
        self.kind = "azure_openai"
        self.endpoint = endpoint
        self.api_version = api_version

    def __repr__(self) -> str:
        return (
            f"AzureOpenAIProvider(name={self.name!r}, endpoint={self.endpoint!r}, "
            f"api_version={self.api_version!r}, auth={self.auth!r}, api_key_env={self.api_key_env!r})"
        )

    # ------------------------------------------------------------------ clients

    def _status_details(self, exc: Any) -> tuple[str | None, str]:
        code, message = super()._status_details(exc)
        if code == CONTENT_FILTER:
            filtered = _prompt_filtered(exc.body)
            if filtered:
                message = f"{message} (filtered: {filtered})"
        return code, message

    def _key_pairs(self) -> tuple[tuple[str, float], ...]:
        return () if self.auth == "entra_id" else super()._key_pairs()

    def _client_kwargs(self, key: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"azure_endpoint": self.endpoint, "api_version": self.api_version, "max_retries": 0}
        if self.auth == "api_key":
            kwargs["api_key"] = key  # one of the key ring's keys
        elif self._token_provider is None:
            self._token_provider = _default_token_provider(self.name)
        if self._headers:
            kwargs["default_headers"] = dict(self._headers)
        return kwargs

    def _sdk_client(self, sdk: Any, kwargs: dict[str, Any], *, sync: bool) -> Any:
        if self._token_provider is not None:
            token = self._token_provider
            kwargs["azure_ad_token_provider"] = token if sync else _in_thread(token)
        return sdk.AzureOpenAI(**kwargs) if sync else sdk.AsyncAzureOpenAI(**kwargs)


def _prompt_filtered(body: object) -> str:
    """The categories an Azure prompt-filter error body (``innererror.content_filter_result``) names."""
    return filtered_categories(_entry(_entry(body, "innererror"), "content_filter_result"))


def _default_token_provider(provider: str) -> TokenProvider:
    """azure-identity's bearer-token provider over ``DefaultAzureCredential``; a credential
    error becomes an ``auth`` :class:`~policyrouter.errors.ProviderError`."""
    try:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError as exc:
        raise ConfigurationError(
            f"provider {provider!r}: `auth: entra_id` needs azure-identity: pip install 'policyrouter[azure]'"
        ) from exc
    tokens = get_bearer_token_provider(DefaultAzureCredential(), ENTRA_SCOPE)

    def token() -> str:
        try:
            return str(tokens())
        except ClientAuthenticationError as exc:
            detail = f"no Entra ID token ({type(exc).__name__}): {exc}"
            raise failure_error(provider, "auth", detail) from exc

    return token


def _in_thread(token: TokenProvider) -> Callable[[], Any]:
    """``token`` for the async client: run in a worker thread, since a refresh blocks on the network."""

    async def atoken() -> str:
        return await asyncio.to_thread(token)

    return atoken
