"""The value types tests script and observe: faults, script entries, recorded requests."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from policyrouter.testing.mock_server._answer import tool_call

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "Fault",
    "FaultKind",
    "Protocol",
    "RecordedRequest",
    "key_id",
    "script_entry",
]

FaultKind = Literal[
    "reset",
    "malformed",
    "stall",
    "context_length",
    "interrupt_stream",
    "refusal",
    "max_tokens",
    "no_choices",
    "stream_error",
    "trickle_headers",
    "trickle_body",
    "endless_stream",
    "keepalive_stream",
    "huge_body",
    "replay",
    "content_filter",
]
"""Non-status faults; see :class:`Fault`."""

Protocol = Literal["openai", "anthropic", "models", "unknown", "azure", "bedrock", "vertex"]
"""Which endpoint a recorded request hit (``unknown`` for a 404 path)."""


def family(protocol: str) -> Literal["openai", "anthropic"] | None:
    """The API a protocol's bodies follow: Azure OpenAI's are OpenAI's; Bedrock's and Vertex's
    are Anthropic's messages (so they think, cache and refuse alike)."""
    if protocol in ("openai", "azure"):
        return "openai"
    return "anthropic" if protocol in ("anthropic", "bedrock", "vertex") else None


FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
HOSTILE_KINDS: tuple[str, ...] = ("trickle_headers", "trickle_body", "endless_stream", "keepalive_stream", "huge_body")
"""Faults that keep the connection busy instead of answering (see :class:`Fault`)."""


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one request.

    Fields:
        status: HTTP status to answer with. ``None`` or 200 means a normal answer;
            400-599 means an error body in the protocol's shape.
        kind: a non-status fault, or ``None``:

            * ``"reset"``: close the socket (RST) without any response.
            * ``"malformed"``: a body that is not valid JSON (status defaults to 200).
            * ``"stall"``: wait ``seconds`` before answering; ``stop()`` cuts the wait short.
              With ``pause_after_chunks=N`` a streamed answer stalls after its first
              ``N`` SSE events instead (a stream that goes idle mid-answer).
            * ``"context_length"``: the provider's "prompt too long" 400.
            * ``"content_filter"``: a 400 with ``code: content_filter``, the way Azure OpenAI's
              content filter refuses a prompt (on the Azure wire with its ``innererror``,
              marking ``violence`` filtered at severity ``high``).
            * ``"interrupt_stream"``: send ``after_chunks`` SSE events, then close the
              connection mid-body (a non-streaming request gets half its body).
            * ``"refusal"``: OpenAI ``finish_reason="content_filter"`` / Anthropic
              ``stop_reason="refusal"``.
            * ``"max_tokens"``: an answer cut by the request's output cap: OpenAI
              ``finish_reason="length"`` / Anthropic ``stop_reason="max_tokens"`` (``text`` is the cut text).
            * ``"no_choices"``: a 200 whose OpenAI body has ``choices: []`` (with its usage).
            * ``"stream_error"``: send ``after_chunks`` SSE events, then an ``event: error``
              carrying the protocol's 500 error body (``message`` sets its text) and end the
              stream; a non-streaming request gets that body as an HTTP 500.

            Hostile upstreams that keep bytes coming, every ``pace_s`` seconds, until the
            client hangs up or the server stops (a deadline must cut them):

            * ``"trickle_headers"``: the status line, then one header line per pace, forever.
            * ``"trickle_body"``: the whole answer (JSON body or SSE stream), one byte per pace.
            * ``"endless_stream"``: a stream whose text deltas never end (a non-streaming
              request gets an endless chunked body of JSON whitespace).
            * ``"keepalive_stream"``: a stream of SSE comment lines (``: keep-alive``) and no
              event (a non-streaming request: endless whitespace, as above).
            * ``"huge_body"``: an answer of ``size_bytes`` bytes, written as it is made
              (never held whole): a JSON body with a padding field, or a stream whose
              padding is one SSE comment line.
            * ``"replay"``: answer with ``raw_body`` exactly as given (a recorded response),
              with ``status`` (default 200) and ``content_type``; streamed or not, as recorded.
        retry_after_s: value of the ``retry-after`` header (seconds).
        retry_after_ms: value of the ``retry-after-ms`` header (milliseconds).
        seconds: how long a ``"stall"`` waits; how long a hostile fault keeps going before
            the server gives up and closes the connection.
        latency_s: extra delay before answering, whatever the outcome.
        after_chunks: SSE events sent before an ``"interrupt_stream"`` cut or a ``"stream_error"``.
        message: error message overriding the default one.
        text: the reply text of this one answer (a normal answer, or one cut by
            ``interrupt_stream``), overriding :meth:`MockLLMServer.set_reply`'s text:
            script a sequence of answers, e.g. invalid JSON then valid JSON.
        tool_calls: the tool calls of this one answer (``[{"name": ..., "arguments": {...}}]``),
            overriding :meth:`MockLLMServer.set_reply`'s: script an agent loop, e.g. a tool
            call, then a text answer.
        pace_s: the gap between two writes of a hostile fault.
        size_bytes: the size of a ``"huge_body"`` answer.
        usage: the ``usage`` object put on the wire exactly as given (protocol spelling,
            e.g. ``{}``, null or negative counts), replacing the counted one: in an answer's
            body or stream, and added to an error body (an upstream billing a 5xx).
        raw_body: the bytes a ``"replay"`` answers with.
        content_type: the ``content-type`` of a ``"replay"`` (``text/event-stream`` for a stream).
        error_type: the platform's name for an error status, instead of the default for that
            status: Bedrock's ``x-amzn-ErrorType`` (``ModelNotReadyException`` for a 429), a
            Vertex error ``status`` (``RESOURCE_EXHAUSTED``), an OpenAI error ``code``.
    """

    status: int | None = None
    kind: FaultKind | None = None
    retry_after_s: float | None = None
    retry_after_ms: int | None = None
    seconds: float = 60.0
    latency_s: float = 0.0
    after_chunks: int = 1
    message: str | None = None
    text: str | None = None
    pause_after_chunks: int | None = None
    usage: Mapping[str, Any] | None = None
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    pace_s: float = 0.25
    size_bytes: int = 100_000_000
    raw_body: bytes | None = None
    content_type: str = "application/json"
    error_type: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "replay") != (self.raw_body is not None):
            raise ValueError("a 'replay' fault needs raw_body, and raw_body needs kind='replay'")
        if self.kind is not None and self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.status is not None and self.status != 200 and not 400 <= self.status <= 599:
            raise ValueError(f"fault status must be 200 or 400-599, got {self.status}")
        statusless = (
            "reset",
            "interrupt_stream",
            "refusal",
            "max_tokens",
            "no_choices",
            "stream_error",
            *HOSTILE_KINDS,
        )
        if self.kind in statusless and self.status not in (None, 200):
            raise ValueError(f"fault kind {self.kind!r} cannot carry status {self.status}")
        for spec in self.tool_calls or ():
            tool_call(spec)  # raises ValueError on a malformed call
        if self.kind in ("context_length", "content_filter") and self.status is not None and self.status < 400:
            raise ValueError(f"a {self.kind} fault needs an error status")
        for name in (
            "retry_after_s",
            "retry_after_ms",
            "seconds",
            "latency_s",
            "after_chunks",
            "pause_after_chunks",
            "pace_s",
            "size_bytes",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @property
    def planned_status(self) -> int:
        """The status this fault answers with; 0 means no HTTP response at all."""
        if self.kind == "reset":
            return 0
        if self.kind in ("context_length", "content_filter"):
            return self.status or 400
        return self.status or 200


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    ``headers`` has lower-case names, with ``authorization``, ``x-api-key`` and ``api-key``
    (Azure) values replaced by ``"***"``. ``status`` is the status the server decided on when the
    request arrived (0 for a ``reset`` fault). ``received_at`` is a reading of the
    server's clock; ``connection_id`` identifies the TCP connection it arrived on.
    ``key_id`` is :func:`key_id` of the API key the request carried (``None``: none), to
    tell keys apart without the log holding them.
    """

    protocol: Protocol
    path: str
    model: str | None
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    received_at: float
    connection_id: int
    key_id: str | None = None


def key_id(key: str) -> str:
    """A short digest of an API key: what the request log keeps instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def script_entry(entry: int | str | Fault) -> Fault | None:
    """One :meth:`MockLLMServer.script` entry as a fault (``None`` for ``"ok"``)."""
    if isinstance(entry, Fault):
        return entry
    if isinstance(entry, bool):
        raise TypeError(f"invalid script entry {entry!r}")
    if isinstance(entry, int):
        return Fault(status=entry)
    if entry == "ok":
        return None
    if entry in FAULT_KINDS:
        return Fault(kind=entry)  # type: ignore[arg-type]  # checked against FaultKind just above
    raise ValueError(f"invalid script entry {entry!r}; use an int status, 'ok', a fault kind or a Fault")
