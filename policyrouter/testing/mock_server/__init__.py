"""A local HTTP server that speaks the OpenAI and Anthropic wire protocols.

``MockLLMServer`` is a real HTTP/1.1 server on ``127.0.0.1`` (stdlib only, one
daemon thread per connection, keep-alive). Point the *real* SDKs at it, so a test
exercises the same parsing, error mapping, streaming and connection pooling as
production::

    import anthropic
    import openai

    from policyrouter.testing import Fault, MockLLMServer

    with MockLLMServer() as server:
        server.set_reply("gpt-4o", text="hello", usage={"input": 12, "output": 1})
        server.script("gpt-4o", [429, Fault(status=529, retry_after_s=1.5), "ok"])

        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError:
            pass  # first scripted entry
        ...
        claude = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0)
        claude.messages.create(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}])

        assert server.status_counts[429] == 1
        assert server.requests_for("gpt-4o")[0].headers["authorization"] == "***"

With pytest, the ``mock_llm_server`` fixture (registered by the ``policyrouter``
plugin) yields a started server and stops it afterwards.

Endpoints
    ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
    ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (Azure
    OpenAI: :attr:`MockLLMServer.azure_endpoint`; scripts and replies are keyed by the
    deployment; see :mod:`policyrouter.testing.mock_server._azure`),
    ``GET /v1/models`` and ``GET /openai/models`` (one list shape every SDK parses).
    Anything else is a 404 JSON error.
    Claude on the clouds, with the model in the path: Amazon Bedrock's
    ``POST /model/{id}/invoke`` and ``/invoke-with-response-stream`` (AWS event-stream
    frames; errors named by ``x-amzn-ErrorType``; base URL :attr:`MockLLMServer.bedrock_base_url`)
    and Google Vertex AI's ``POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict``
    and ``:streamRawPredict`` (Google-shaped quota, auth and not-found errors; base URL
    :attr:`MockLLMServer.vertex_base_url`). ``Fault(error_type=...)`` picks the platform's
    error name. The hostile faults ``endless_stream`` and ``keepalive_stream`` are SSE-shaped:
    a Bedrock stream does not support them.

Replies
    Unless configured with :meth:`MockLLMServer.set_reply`, model ``m`` answers
    ``"mock answer from m to a N-word prompt"`` where ``N`` is the word count of the
    last user message; a request that forces a tool (OpenAI ``tool_choice`` ``required``
    or a named function, Anthropic ``any`` or ``tool``) gets a call of that tool (the
    first for ``required`` / ``any``) with arguments generated from its JSON schema, and
    an OpenAI ``response_format`` gets JSON generated from its schema (``json_object``:
    ``{"answer": <the default text>}``). Input tokens are ``characters of all message contents (and
    the system prompt) // 4 + 1``; output tokens are the words of the reply text.
    ``usage["input"]`` is reported verbatim as OpenAI ``prompt_tokens`` and as
    Anthropic ``input_tokens``; ``cached`` as ``cached_tokens`` /
    ``cache_read_input_tokens``; ``cache_write`` as ``cache_creation_input_tokens``.
    Unless the reply sets ``cached`` or ``cache_write``, the providers' prompt caches are
    kept on the server's clock (:mod:`._prompt_cache`): an Anthropic request marking
    ``cache_control`` breakpoints reads a prefix written before within its ``ttl`` and
    writes the rest (``cache_creation`` by lifetime); an OpenAI prompt of 1024 mock tokens
    and more reports its repeated prefix in 128-token steps. More than four breakpoints: 400.
    Every response carries ``req_mock_<n>`` in ``x-request-id`` (OpenAI) or
    ``request-id`` (Anthropic); bodies use ids ``chatcmpl-mock-<n>`` / ``msg_mock_<n>``.

Reasoning
    OpenAI ids starting ``o1``, ``o3``, ``o4`` or ``gpt-5`` (or any after
    :meth:`MockLLMServer.set_reasoning`) are reasoning models: they refuse ``max_tokens``
    and a ``temperature`` other than 1, and report ``completion_tokens_details.reasoning_tokens``
    (inside ``completion_tokens``; ``usage["reasoning"]`` sets it). A Messages request with
    ``thinking`` enabled is checked as the API does (budget >= 1024 and < ``max_tokens``, no
    temperature, no forced tool, a tool-use turn led by its signed thinking block) and answered
    with a ``thinking`` block first, plain or streamed (``thinking_delta``, ``signature_delta``).
    Refusals are 400s with the real APIs' messages, sent before any script entry is consumed.

Faults
    :meth:`MockLLMServer.script` queues entries per model; each request for that model
    consumes one, and an exhausted script answers normally. An ``int`` is an HTTP error
    status with a protocol-correct body, ``"ok"`` a normal answer, a kind name such as
    ``"reset"`` is ``Fault(kind="reset")``, and :class:`Fault` gives full control.

Rate limits
    :meth:`MockLLMServer.enforce_limits` rejects with 429 any request over a requests
    or tokens per minute budget (a sliding 60 s window on the injected clock, counting
    admitted requests; ``window_s`` scales it) or over a number of concurrent in-flight
    requests; with ``report_headers=True`` each response reports what is left in the
    provider's rate-limit headers. Limits are checked before scripts, and a rejected
    request consumes no script entry.

Keys
    :meth:`MockLLMServer.revoke_key` answers every later request carrying that key with
    401 (key rotation tests). Each recorded request keeps a digest of its key, never the
    key: :meth:`MockLLMServer.requests_with_key` finds the requests a key made.

Scripts
    :meth:`MockLLMServer.load_script` reads replies, fault scripts and limits per model
    from a YAML file (see :mod:`policyrouter.testing.mock_server._script`), checked whole
    with ``file:line:col`` problems (:class:`MockScriptError`).

Run it standalone with ``policyrouter mock [--host H] [--port P] [--script FILE]`` (or
``python -m policyrouter.testing.mock_server``, the same): it prints its URL as the first
line and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

from policyrouter.testing.mock_server._cli import main, serve
from policyrouter.testing.mock_server._script import MockScript, MockScriptError
from policyrouter.testing.mock_server._server import MockLLMServer
from policyrouter.testing.mock_server._types import Fault, FaultKind, Protocol, RecordedRequest

__all__ = [
    "Fault",
    "FaultKind",
    "MockLLMServer",
    "MockScript",
    "MockScriptError",
    "Protocol",
    "RecordedRequest",
    "main",
    "serve",
]
