"""Traffic records for simulation: read, write and generate JSONL.

One JSON object per line. The format is the ledger's (``dataclasses.asdict`` of a
:class:`~policyrouter.state.base.LedgerRow`, what :func:`export_ledger` writes), so
recorded traffic replays as is; ``result`` events of the event log are read too
(tokens under ``usage``), and lines of any other ``event`` are skipped. Fields:

``ts``            epoch seconds, or ``time``/``timestamp`` as ISO 8601 (required)
``task``          the task name (required)
``input_tokens``  counted input (default 0); ``output_tokens`` what the answer used;
                  ``cached_input_tokens`` the part served from the provider's prompt cache
``tenant``, ``user``  strings or null
``metadata``      an object, or a JSON string holding one (the ledger stores a string)
``prefix``, ``prefix_tokens``  optional: the name of a prompt prefix the record shares with
                  others (a system prompt, say ``support-v3``) and its counted tokens, part of
                  ``input_tokens``; a task with ``prompt_cache`` replays it as a provider cache
                  read or write

Only metadata is replayed, never prompt text: the simulation needs no content.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from json.scanner import make_scanner
from pathlib import Path
from typing import IO, Any

from policyrouter.diagnostics import excerpt
from policyrouter.errors import PolicyRouterError
from policyrouter.policy.files import FileRefused, json_depth_problem, read_batches

__all__ = [
    "TrafficError",
    "TrafficRecord",
    "export_ledger",
    "generate_traffic",
    "parse_record",
    "read_traffic",
    "write_traffic",
]


class TrafficError(PolicyRouterError):
    """A traffic file line that is not a usable record (the message names file and line)."""

    kind = "invalid_traffic"


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    ts: float
    task: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    tenant: str | None = None
    user: str | None = None
    metadata: Mapping[str, Any] | None = None
    prefix: str | None = None
    prefix_tokens: int = 0


def parse_time(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TrafficError(f"{where}: time {excerpt(repr(value))} is not epoch seconds or ISO 8601") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    raise TrafficError(f"{where}: missing `ts` (epoch seconds) or `time` (ISO 8601)")


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TrafficError(f"{where}: `{key}` must be a non-negative integer, got {excerpt(repr(value))}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise TrafficError(f"{where}: `{key}` must be a string or null, got {excerpt(repr(value))}")


def _fast(obj: dict[str, Any]) -> TrafficRecord | None:
    """The common, well-formed line (what ``write_traffic`` and the ledger write) without
    per-field error reporting; ``None``: take :func:`parse_record`, which accepts and
    rejects exactly as before (every record this returns, it returns the same)."""
    if "event" in obj or "usage" in obj:
        return None
    get = obj.get
    ts, task, i, o, c = get("ts"), get("task"), get("input_tokens"), get("output_tokens"), get("cached_input_tokens", 0)
    if not (type(ts) is float and type(task) is str and task and type(i) is int and type(o) is int and type(c) is int):
        return None
    if i < 0 or o < 0 or c < 0:
        return None
    tenant, user, metadata = get("tenant"), get("user"), get("metadata")
    if not ((tenant is None or type(tenant) is str) and (user is None or type(user) is str)):
        return None
    prefix, prefix_tokens = get("prefix"), get("prefix_tokens", 0)
    if not ((prefix is None or type(prefix) is str) and type(prefix_tokens) is int and prefix_tokens >= 0):
        return None
    if metadata is not None:
        if type(metadata) is dict:
            metadata = metadata or None
        elif metadata == "{}":  # the ledger's empty metadata
            metadata = None
        else:
            return None
    return TrafficRecord(ts, task, i, o, c, tenant, user, metadata, prefix, min(prefix_tokens, i))


def parse_record(obj: Any, where: str = "<record>") -> TrafficRecord | None:
    """One decoded JSON line as a record; ``None`` for an event line that is not a request."""
    if type(obj) is dict:
        fast = _fast(obj)
        if fast is not None:
            return fast
    if not isinstance(obj, dict):
        raise TrafficError(f"{where}: a record is a JSON object, got {type(obj).__name__}")
    event = obj.get("event")
    if event is not None and event != "result":
        return None
    ts = obj.get("ts")
    if ts is None:
        ts = obj.get("time", obj.get("timestamp"))
    task = obj.get("task")
    if not isinstance(task, str) or not task:
        raise TrafficError(f"{where}: missing `task`")
    tokens: Mapping[str, Any] = obj["usage"] if isinstance(obj.get("usage"), dict) else obj
    metadata = obj.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            raise TrafficError(f"{where}: `metadata` is a string but not JSON") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise TrafficError(f"{where}: `metadata` must be an object")
    input_tokens = _int(tokens, "input_tokens", where)
    return TrafficRecord(
        parse_time(ts, where),
        task,
        input_tokens,
        _int(tokens, "output_tokens", where),
        _int(tokens, "cached_input_tokens", where),
        _opt_str(obj, "tenant", where),
        _opt_str(obj, "user", where),
        metadata or None,
        _opt_str(obj, "prefix", where),
        min(_int(obj, "prefix_tokens", where), input_tokens),
    )


def read_traffic(path: str | os.PathLike[str], *, on_bytes: Any = None) -> Iterator[TrafficRecord]:
    """Records of a JSONL file, in file order. ``on_bytes(n)`` is told how far it has read
    (after every 4 MB batch, for a progress bar). Blank lines are skipped.

    The file comes through the safe reader (:func:`~policyrouter.policy.files.read_batches`:
    a regular file, streamed, each line at most 1 MiB). Lines are decoded by the JSON
    module's C scanner directly; a line it does not take whole (blank, padded, not UTF-8,
    not JSON, nested too deep for it) goes through a depth check, ``json.loads`` and
    :func:`parse_record` with its file and line number."""
    display = os.fspath(path)
    try:
        yield from _records(path, display, on_bytes)
    except FileRefused as refused:
        raise TrafficError(str(refused)) from None


def _records(path: str | os.PathLike[str], display: str, on_bytes: Any) -> Iterator[TrafficRecord]:
    scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: a class, not a function
    lineno = 0
    for done, batch in read_batches(path, display=display):
        try:  # one decode per batch; "\n" splits a UTF-8 text where the bytes split
            texts = b"\n".join(batch).decode().split("\n")
        except UnicodeDecodeError:
            texts = [""] * len(batch)  # every line takes the checked path below
        for raw, text in zip(batch, texts, strict=True):
            lineno += 1
            try:
                obj, end = scan(text, 0)
                if end != len(text):
                    obj = None
            except (ValueError, StopIteration, RecursionError):  # a JSONDecodeError is a ValueError
                obj = None
            if type(obj) is dict:
                record = _fast(obj)
                if record is not None:
                    yield record
                    continue
            else:
                obj = _decode_line(raw, display, lineno)
                if obj is None:
                    continue
            record = parse_record(obj, f"{display}:{lineno}")
            if record is not None:
                yield record
        if on_bytes is not None:
            on_bytes(done)


def _decode_line(raw: bytes, display: str, lineno: int) -> Any:
    """One line the fast scanner did not take, checked; None for a blank line."""
    if not raw.strip():
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise TrafficError(f"{display}:{lineno}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    deep = json_depth_problem(text, display, line=lineno)
    if deep is not None:
        raise TrafficError(deep.one_line())
    try:
        return json.loads(text)
    except RecursionError:  # within the depth bound, yet deeper than the decoder's stack allows
        raise TrafficError(f"{display}:{lineno}:1: error[json-too-deep]: the line nests too deep") from None
    except json.JSONDecodeError as exc:
        raise TrafficError(f"{display}:{lineno}: not JSON ({excerpt(exc.msg)} at column {exc.colno})") from None


def _dump(record: TrafficRecord) -> dict[str, Any]:
    """``asdict`` without its deep copy (the same keys in the same order)."""
    out: dict[str, Any] = {
        "ts": record.ts,
        "task": record.task,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "tenant": record.tenant,
        "user": record.user,
    }
    if record.metadata is not None:
        out["metadata"] = record.metadata
    if record.prefix is not None:
        out["prefix"] = record.prefix
        out["prefix_tokens"] = record.prefix_tokens
    return out


def write_traffic(records: Iterable[TrafficRecord], out: str | os.PathLike[str] | IO[str]) -> int:
    """Write records as JSONL; returns how many."""
    if isinstance(out, (str, os.PathLike)):
        with open(out, "w", encoding="utf-8") as fh:
            return write_traffic(records, fh)
    n = 0
    encode = json.JSONEncoder(separators=(",", ":")).encode
    for r in records:
        out.write(encode(_dump(r)) + "\n")
        n += 1
    return n


def export_ledger(state: Any, out: str | os.PathLike[str], since_wall: float | None = None) -> int:
    """Write a state backend's ledger rows as a traffic file (``LedgerRow`` as JSON)."""
    rows = state.ledger_rows(since_wall)
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), separators=(",", ":")) + "\n")
    return len(rows)


def generate_traffic(
    n: int,
    *,
    start: float,
    duration_s: float = 86_400.0,
    tasks: Mapping[str, tuple[int, int]] | Sequence[str] = ("summarize",),
    tenants: Sequence[str] = ("acme", "globex", "initech"),
    metadata: Sequence[Mapping[str, Any] | None] = (None,),
    seed: int = 0,
) -> Iterator[TrafficRecord]:
    """``n`` synthetic records spread evenly over ``duration_s`` from ``start``.

    ``tasks`` maps a task to its mean (input, output) tokens (a sequence means 1000/200);
    each record draws its task, tenant and metadata uniformly and its tokens around the
    mean (0.5x to 1.5x), from ``random.Random(seed)``: the same arguments, the same file.
    """
    rng = random.Random(seed)
    means = dict(tasks) if isinstance(tasks, Mapping) else {t: (1000, 200) for t in tasks}
    names = list(means)
    step = duration_s / max(1, n)
    for i in range(n):
        task = names[rng.randrange(len(names))]
        mi, mo = means[task]
        yield TrafficRecord(
            start + i * step,
            task,
            max(1, int(mi * (0.5 + rng.random()))),
            max(1, int(mo * (0.5 + rng.random()))),
            0,
            tenants[rng.randrange(len(tenants))] if tenants else None,
            f"u-{rng.randrange(100)}",
            metadata[rng.randrange(len(metadata))] if metadata else None,
        )


def traffic_path_size(path: str | os.PathLike[str]) -> int:
    return Path(path).stat().st_size
