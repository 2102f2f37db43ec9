"""The Amazon Bedrock runtime protocol for Anthropic models, as ``AnthropicBedrock`` speaks it.

* ``POST /model/{modelId}/invoke``: the Messages body without ``model`` (it is in the path,
  URL-quoted) and with ``anthropic_version``; the answer is the Messages JSON.
* ``POST /model/{modelId}/invoke-with-response-stream``: the answer is an AWS event stream
  (``application/vnd.amazon.eventstream``): binary frames, each a prelude (total and
  header lengths, CRC32), typed headers, a JSON payload and a CRC32 of the whole frame.
  A ``chunk`` event's payload is ``{"bytes": base64(one Anthropic stream event)}``; the last
  one, ``message_stop``, carries ``amazon-bedrock-invocationMetrics``. An error mid-stream is
  an ``exception`` frame named by ``:exception-type`` (``throttlingException``, ...).
* Errors are ``{"message": ...}`` bodies; the ``x-amzn-ErrorType`` header names the error
  (``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``).
* The request id is in ``x-amzn-RequestId``.

Checked against botocore's ``bedrock-runtime`` service model (statuses of each error shape,
the ``ResponseStream`` members) and the anthropic SDK's ``lib/bedrock/_stream_decoder.py``,
which decodes these frames with botocore's ``EventStreamBuffer``.
"""

from __future__ import annotations

import base64
import struct
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

from policyrouter.testing.mock_server._answer import Answer
from policyrouter.testing.mock_server._anthropic import AnthropicWire, message, stream_payloads
from policyrouter.testing.mock_server._types import Fault, Protocol
from policyrouter.testing.mock_server._wire import dumps

__all__ = ["BedrockWire", "event_frame", "route"]

_PREFIX = "/model/"
_INVOKE, _STREAM = "/invoke", "/invoke-with-response-stream"
_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_ERROR_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
"""Status -> the error type Bedrock names it with (botocore's ``httpStatusCode`` of each shape)."""
_STREAM_EXCEPTIONS = {
    400: "validationException",
    408: "modelTimeoutException",
    424: "modelStreamErrorException",
    429: "throttlingException",
    503: "serviceUnavailableException",
}
"""Status -> the ``ResponseStream`` member an exception frame names (others: internalServerException)."""
_STRING = 7  # the event-stream header value type of a UTF-8 string


def route(path: str) -> tuple[str, bool] | None:
    """``(model id, streamed)`` of a Bedrock invoke path; ``None`` for any other path."""
    if not path.startswith(_PREFIX):
        return None
    rest = path[len(_PREFIX) :]
    for suffix, stream in ((_STREAM, True), (_INVOKE, False)):
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return urllib.parse.unquote(rest[: -len(suffix)]), stream
    return None


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value


def event_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude with its CRC, string headers, payload, message CRC."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


_CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def _chunk(event: Mapping[str, Any]) -> bytes:
    data = {"bytes": base64.b64encode(dumps(event)).decode("ascii"), "p": "abcdefghij"}  # "p": Bedrock's padding
    return event_frame(_CHUNK, dumps(data))


class BedrockWire(AnthropicWire):
    """``POST /model/{id}/invoke`` and ``/invoke-with-response-stream``; usage is always reported."""

    protocol: Protocol = "bedrock"
    id_header = "x-amzn-RequestId"
    stream_content_type = "application/vnd.amazon.eventstream"

    def completion(self, number: int, model: str, answer: Answer, *, report_usage: bool) -> bytes:
        return dumps({**message(number, model, answer), "id": f"msg_bdrk_mock_{number}"})

    def events(
        self, number: int, model: str, answer: Answer, body: Mapping[str, Any], *, report_usage: bool
    ) -> list[bytes]:
        payloads = stream_payloads(number, model, answer)
        payloads[0]["message"]["id"] = f"msg_bdrk_mock_{number}"
        metrics = {
            "inputTokenCount": answer.usage.input,
            "outputTokenCount": answer.usage.output,
            "invocationLatency": 0,
            "firstByteLatency": 0,
        }
        payloads[-1]["amazon-bedrock-invocationMetrics"] = metrics
        return [_chunk(payload) for payload in payloads]

    def error(self, status: int, message: str, code: str | None, request_id: str) -> dict[str, Any]:
        del code, request_id  # the type travels in x-amzn-ErrorType, the id in x-amzn-RequestId
        return {"message": message}

    def error_headers(self, status: int, fault: Fault | None) -> list[tuple[str, str]]:
        kind = fault.error_type if fault is not None and fault.error_type else None
        default = _ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
        return [("x-amzn-ErrorType", (kind or default) + _NAMESPACE)]

    def error_event(self, status: int, payload: Mapping[str, Any]) -> bytes:
        kind = _STREAM_EXCEPTIONS.get(status, "internalServerException")
        headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
        return event_frame(headers, dumps(payload))

    def context_length_message(self, got: int, limit: int) -> str:
        return "Input is too long for requested model."

    def malformed_event(self, data: bytes) -> bytes:
        return event_frame(_CHUNK, dumps({"bytes": base64.b64encode(data).decode("ascii")}))
