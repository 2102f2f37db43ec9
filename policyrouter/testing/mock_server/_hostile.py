"""Hostile upstreams: answers that keep bytes coming and never finish in time.

Each writer gets the handler's ``write(bytes)`` and waits ``pace_s`` between writes through
``wait`` (the server's stop event: ``True`` means stop now). A client that hangs up ends the
writer with a ``ConnectionError``, which the server ignores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from policyrouter.testing.mock_server._types import Fault

__all__ = ["chunk", "huge_body", "keepalive", "repeat_delta", "trickle"]

Write = Callable[[bytes], object]
Wait = Callable[[float], bool]

_PAD = b"a" * 65536
_TICK = b'"tick"'
"""The answer text of an endless stream; its first delta event is the one repeated."""


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def trickle(write: Write, wait: Wait, data: bytes, pace_s: float, *, chunked: bool) -> None:
    """``data``, one byte per ``pace_s`` (each byte its own chunk when ``chunked``)."""
    for i in range(len(data)):
        byte = data[i : i + 1]
        write(chunk(byte) if chunked else byte)
        if wait(pace_s):
            return


def repeat_delta(write: Write, wait: Wait, events: list[bytes], pace_s: float) -> None:
    """The events up to the first text delta, then that delta again every ``pace_s``, forever."""
    first = next(i for i, event in enumerate(events) if _TICK in event)
    write(b"".join(chunk(event) for event in events[: first + 1]))
    while not wait(pace_s):
        write(chunk(events[first]))


def keepalive(write: Write, wait: Wait, line: bytes, pace_s: float) -> None:
    """``line`` as a chunk every ``pace_s``, forever (SSE comments, or JSON whitespace)."""
    while not wait(pace_s):
        write(chunk(line))


def huge_body(fault: Fault, *, stream: bool) -> tuple[int, Iterator[bytes]]:
    """``(length, pieces)`` of a ``size_bytes`` answer made as it is written: a JSON object
    with one long padding string, or (a stream) one long SSE comment line."""
    head, tail = (b": ", b"\n\n") if stream else (b'{"pad": "', b'"}')
    size = max(fault.size_bytes, len(head) + len(tail))

    def pieces() -> Iterator[bytes]:
        yield head
        left = size - len(head) - len(tail)
        while left > 0:
            yield _PAD[: min(left, len(_PAD))]
            left -= len(_PAD)
        yield tail

    return size, pieces()
