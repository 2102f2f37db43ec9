"""Hostile files: every file the product reads goes through one safe reader.

A FIFO must not hang, a device (a symlink to /dev/zero) must not be read, a file over
the size bound is refused from its size before reading, aliases and nesting are bounded
in YAML and JSON alike, and every refusal is a diagnostic naming the file, never a
traceback. Diagnostics never echo a whole value.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policyrouter import PolicyError, load_policy
from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.policy.files import FileRefused, read_bytes
from policyrouter.policy.loader import validate_paths
from policyrouter.policytest.model import TestFileError, load_test_file
from policyrouter.simulate.traffic import TrafficError, read_traffic

POLICY = """version: 1
providers: {offline: {kind: mock}}
models: {m: {provider: offline, model: mock-1, capabilities: [json_schema]}}
tiers: {t: [m]}
tasks:
  x: {tier: t, response_schema: {$ref: REF}}
"""

# 524 bytes that expand to 10^6 nodes: what a billion-laughs schema file looks like
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n" for prev, name in zip("abcdef", "bcdefg", strict=True)
).join(["a: &a [x, x, x, x, x, x, x, x, x, x]\n", "type: object\n"])


def _policy(tmp_path: Path, ref: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("REF", ref))
    return path


def _ref_problem(tmp_path: Path, ref: str) -> Diagnostic:
    with pytest.raises(PolicyError) as info:
        load_policy(_policy(tmp_path, ref))
    (d,) = [d for d in info.value.diagnostics if d.severity == "error"]
    assert d.code == "response-schema-invalid"
    assert d.location.file == str(tmp_path / "policy.yaml") and d.location.line == 6
    return d


def _finishes(call: Callable[[], Any], unblock: Path | None = None) -> Any:
    """``call()``'s result or exception; fails (instead of hanging the suite) when it blocks."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(call())
        except Exception as exc:  # the test inspects whatever came out
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive() and unblock is not None:  # let the blocked open() return
        os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive(), "blocked reading a FIFO"
    return box[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        return path

    yield make


# --------------------------------------------------------------------------- $ref files


def test_an_alias_bomb_schema_file_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    assert len(BOMB) < 600
    (tmp_path / "bomb.yaml").write_text(BOMB)
    d = _ref_problem(tmp_path, "bomb.yaml")
    assert "yaml-alias-limit" in d.message and f"{tmp_path / 'bomb.yaml'}:" in d.message


def test_deeply_nested_json_schema_is_a_diagnostic_not_a_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    d = _ref_problem(tmp_path, "deep.json")
    assert "json-too-deep" in d.message and f"{tmp_path / 'deep.json'}:1:" in d.message


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{\n  "type": "object",\n  oops\n}\n')
    d = _ref_problem(tmp_path, "broken.json")
    assert f"{tmp_path / 'broken.json'}:3:3" in d.message and "json-syntax" in d.message


def test_a_fifo_schema_file_does_not_hang(tmp_path: Path, fifo: Callable[[str], Path]) -> None:
    pipe = fifo("pipe.json")
    out = _finishes(lambda: validate_paths([_policy(tmp_path, "pipe.json")]), unblock=pipe)
    (d,) = out.errors
    assert d.code == "response-schema-invalid" and "not a regular file" in d.message


def test_a_symlink_to_dev_zero_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    d = _ref_problem(tmp_path, "zero.json")
    assert "outside the policy's directory" in d.message  # refused before the reader sees a device


def test_a_ref_symlink_out_of_the_policy_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps({"type": "object", "description": "SECRET"}))
    home = tmp_path / "policies"
    home.mkdir()
    (home / "s.json").symlink_to(outside / "secret.json")
    (home / "sub").symlink_to(outside)
    for ref in ("s.json", "sub/secret.json"):
        d = _ref_problem(home, ref)
        assert f"leads through a symlink to {outside / 'secret.json'}, outside the policy's directory" in d.message
        assert "SECRET" not in d.message and "copy the schema" in d.hint
    # a link that stays inside, and a policy directory reached through a link, are fine
    (home / "schemas").mkdir()
    (home / "schemas" / "ok.json").write_text(json.dumps({"type": "object"}))
    (home / "ok.json").symlink_to(home / "schemas" / "ok.json")
    (tmp_path / "linked").symlink_to(home)
    assert load_policy(_policy(home, "ok.json")).tasks["x"].response_schema == {"type": "object"}
    assert load_policy(tmp_path / "linked" / "policy.yaml").tasks["x"].response_schema == {"type": "object"}


def test_a_huge_schema_file_is_refused_from_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "huge.json", "wb") as fh:
        fh.truncate(2 << 30)  # sparse: 2 GiB that take no disk
    d = _ref_problem(tmp_path, "huge.json")
    assert "file-too-large" in d.message


# --------------------------------------------------------------------------- policy files


def test_a_fifo_or_device_in_a_policy_directory_is_reported_not_read(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\n")
    os.mkfifo(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").symlink_to("/dev/zero")
    report = _finishes(lambda: validate_paths([tmp_path]), unblock=tmp_path / "b.yaml")
    assert [(d.code, Path(d.location.file).name) for d in report.errors] == [
        ("file-unreadable", "b.yaml"),
        ("file-unreadable", "c.yaml"),
    ]
    assert report.io_error


# --------------------------------------------------------------------------- policy test files


def test_policytest_file_fifo_device_and_huge_file_are_refused(tmp_path: Path, fifo: Callable[[str], Path]) -> None:
    pipe = fifo("p.policytest.yaml")
    (tmp_path / "z.policytest.yaml").symlink_to("/dev/zero")
    with open(tmp_path / "h.policytest.yaml", "wb") as fh:
        fh.truncate(2 << 30)
    codes = []
    for path in (pipe, tmp_path / "z.policytest.yaml", tmp_path / "h.policytest.yaml"):
        out = _finishes(lambda path=path: load_test_file(path), unblock=pipe)
        assert isinstance(out, TestFileError), out
        (d,) = out.diagnostics
        assert d.location.file == str(path)
        codes.append(d.code)
    assert codes == ["file-unreadable", "file-unreadable", "file-too-large"]


# --------------------------------------------------------------------------- traffic files


def _traffic(path: Path) -> Any:
    return _finishes(lambda: list(read_traffic(path)), unblock=path)


def test_traffic_fifo_and_device_are_refused(tmp_path: Path, fifo: Callable[[str], Path]) -> None:
    pipe = fifo("t.jsonl")
    (tmp_path / "z.jsonl").symlink_to("/dev/zero")
    for path in (pipe, tmp_path / "z.jsonl"):
        out = _traffic(path)
        assert isinstance(out, TrafficError), out
        assert str(path) in str(out) and "not a regular file" in str(out)


def test_traffic_line_length_is_bounded_and_names_the_line(tmp_path: Path) -> None:
    good = json.dumps({"ts": 1.0, "task": "x", "input_tokens": 1, "output_tokens": 1})
    path = tmp_path / "t.jsonl"
    path.write_text(f"{good}\n{good}\n" + '{"task": "' + "x" * (2 << 20) + '"}\n' + f"{good}\n")
    out = _traffic(path)
    assert isinstance(out, TrafficError), out
    assert f"{path}:3:" in str(out) and "line-too-long" in str(out)
    assert len(str(out)) < 400


def test_traffic_stays_streaming_across_batches(tmp_path: Path) -> None:
    line = json.dumps({"ts": 1.0, "task": "x", "input_tokens": 1, "output_tokens": 2}) + "\n"
    path = tmp_path / "t.jsonl"
    path.write_text(line * 70_000 + "\n" + line.rstrip("\n"))  # several batches, a blank line, no final newline
    seen: list[int] = []
    records = list(read_traffic(path, on_bytes=seen.append))
    assert len(records) == 70_001 and records[-1].output_tokens == 2
    assert seen[-1] == path.stat().st_size and seen == sorted(seen)


def test_deeply_nested_traffic_line_is_a_traffic_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"ts": 1, "task": "x", "metadata": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
    out = _traffic(path)
    assert isinstance(out, TrafficError), out
    assert f"{path}:1:" in str(out) and "json-too-deep" in str(out)


# --------------------------------------------------------------------------- directories


def test_a_directory_is_file_unreadable_wherever_a_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from policyrouter.cli.main import main

    for name in ("d.json", "d.policytest.yaml", "d.jsonl", "d.txt"):
        (tmp_path / name).mkdir()
    what = "is not a regular file (a directory)"
    d = _ref_problem(tmp_path, "d.json")
    assert "file-unreadable" in d.message and what in d.message
    with pytest.raises(TestFileError) as info:
        load_test_file(tmp_path / "d.policytest.yaml")
    ((code, message),) = [(d.code, d.message) for d in info.value.diagnostics]
    assert code == "file-unreadable" and what in message
    with pytest.raises(TrafficError, match=r"not a regular file \(a directory\)"):
        list(read_traffic(tmp_path / "d.jsonl"))
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("capabilities: [json_schema]", "").replace(", response_schema: {$ref: REF}", ""))
    assert main(["run", str(policy), "--task", "x", "--input", f"@{tmp_path / 'd.txt'}"]) == 2
    err = capsys.readouterr().err
    assert what in err and "Traceback" not in err


def _open_fds() -> int:
    return len(os.listdir("/dev/fd"))  # this process's open descriptors (Linux and macOS)


def test_no_refusal_leaks_a_file_descriptor(tmp_path: Path, fifo: Callable[[str], Path]) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "big").write_bytes(b"x" * 100)
    refused = [tmp_path / "dir", fifo("pipe"), tmp_path / "zero", tmp_path / "big"]
    before = _open_fds()
    for path in refused * 50:
        with pytest.raises(FileRefused):
            read_bytes(path, max_bytes=10)
    assert _open_fds() == before


# --------------------------------------------------------------------------- echoed values


def test_diagnostics_cut_echoed_values(tmp_path: Path) -> None:
    # /etc/passwd through a symlinked policy: the top level is one long plain scalar
    text = "".join(f"user{i}:x:{i}:{i}:User {i}:/home/user{i}:/bin/sh\n" for i in range(2000))
    (tmp_path / "passwd").write_text(text)
    (tmp_path / "p.yaml").symlink_to(tmp_path / "passwd")
    (d,) = validate_paths([tmp_path / "p.yaml"]).errors
    assert d.code == "yaml-not-mapping"
    assert "user0:x:0:0" in d.message and "user1999" not in d.message and "…" in d.message
    assert len(d.message) < 300
    # a 900 KB value where a list belongs
    (tmp_path / "q.yaml").write_text(f"version: 1\ntiers: {{t: {'v' * 900_000}}}\n")
    for d in validate_paths([tmp_path / "q.yaml"]).errors:
        assert len(d.message) < 300 and len(d.hint) < 300


def test_every_diagnostic_message_is_bounded() -> None:
    d = Diagnostic("error", "x", "m" * 100_000, Location("f"), hint="h" * 100_000)
    assert len(d.message) <= 1000 and d.message.endswith("…")
    assert len(d.hint) <= 1000 and d.hint.endswith("…")
    assert Diagnostic("error", "x", "short", Location("f")).message == "short"


# --------------------------------------------------------------------------- the CLI


def test_cli_refuses_hostile_inputs_with_one_line_and_no_traceback(
    tmp_path: Path, fifo: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from policyrouter.cli.main import main

    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("capabilities: [json_schema]", "").replace(", response_schema: {$ref: REF}", ""))
    pipe = fifo("input.txt")
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    run = ["run", str(policy), "--task", "x", "--input", f"@{pipe}"]
    assert _finishes(lambda: main(run), unblock=pipe) == 2
    assert "not a regular file (a FIFO)" in capsys.readouterr().err
    simulate = ["simulate", str(policy), "--traffic", str(tmp_path / "zero.jsonl"), "--no-progress"]
    assert _finishes(lambda: main(simulate)) == 1
    err = capsys.readouterr().err
    assert "zero.jsonl" in err and "not a regular file (a character device)" in err and "Traceback" not in err
