"""The broken-policy corpus: every realistic mistake is reported with its code and line.

Each case under ``tests/corpus/broken/`` is a policy file (or a directory of files
forming one policy) whose first line declares what must be reported::

    # expect: unknown-reference@24, unused-definition@21 env=staging max_bytes=200

``code@line`` pairs refer to lines of the file they are written in (line 0: the file
itself, no position). ``env=`` and ``max_bytes=`` are passed to the validator. The
header is ASCII so binary cases (non-UTF-8) can live in the corpus too; cases that
cannot carry an ASCII header (UTF-16) are generated below.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from policyrouter.cli.main import main
from policyrouter.policy.loader import MAX_BYTES_DEFAULT, validate_paths

CORPUS = Path(__file__).parent / "corpus" / "broken"
_HEADER = re.compile(rb"^# expect:(.*)$")


@dataclass
class Case:
    path: Path
    expects: list[tuple[str, str, int]] = field(default_factory=list)  # (file, code, line)
    env: str | None = None
    max_bytes: int | None = None


def _load_case(path: Path) -> Case:
    case = Case(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        first = file.read_bytes().split(b"\n", 1)[0]
        match = _HEADER.match(first)
        assert match, f"{file}: first line must be `# expect: code@line, ...`"
        for token in re.split(r"[,\s]+", match.group(1).decode("ascii").strip()):
            if token.startswith("env="):
                case.env = token[4:]
            elif token.startswith("max_bytes="):
                case.max_bytes = int(token[10:])
            elif "@" in token:
                code, line = token.split("@")
                case.expects.append((str(file.relative_to(CORPUS.parent.parent.parent)), code, int(line)))
    assert case.expects, f"{path}: declares no expectation"
    return case


CASES = sorted(CORPUS.iterdir())


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 45


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS.parent.parent.parent)


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_broken_policy_is_reported(path: Path) -> None:
    case = _load_case(path)
    target = str(path.relative_to(CORPUS.parent.parent.parent))
    report = validate_paths([target], env=case.env, max_bytes=case.max_bytes or MAX_BYTES_DEFAULT)
    got = {(d.location.file, d.code, d.location.line) for d in report.diagnostics}
    shown = "\n".join(d.one_line() for d in report.diagnostics)
    for expect in case.expects:
        assert expect in got, f"expected {expect[1]}@{expect[2]} in {expect[0]}; got:\n{shown}"
    assert not any(d.code == "internal-check-error" for d in report.diagnostics), shown
    for d in report.diagnostics:
        assert d.severity in ("error", "warning") and d.code and d.message


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_broken_policy_through_the_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _load_case(path)
    argv = ["validate", str(path.relative_to(CORPUS.parent.parent.parent)), "--format", "json"]
    if case.env is not None:
        argv += ["--env", case.env]
    if case.max_bytes is not None:
        argv += ["--max-bytes", str(case.max_bytes)]
    code = main(argv)
    doc = json.loads(capsys.readouterr().out)
    usage = any(d["code"] == "unknown-environment" for d in doc["diagnostics"])  # --env names nothing: exit 2
    assert code == (2 if usage else 1 if doc["errors"] else 0)
    assert doc["ok"] is (doc["errors"] == 0)
    for expect_file, expect_code, expect_line in case.expects:
        assert any(
            (d["file"], d["code"], d["line"]) == (expect_file, expect_code, expect_line) for d in doc["diagnostics"]
        )
    assert main([*argv, "--strict"]) == (2 if usage else 1 if doc["diagnostics"] else 0)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "data", "code", "line"),
    [
        ("utf16.yaml", "version: 1\ntasks: {}\n".encode("utf-16"), "yaml-encoding", 1),
        ("latin1-comment.yaml", b"version: 1\n# caf\xe9\n", "yaml-encoding", 2),
        ("nul-byte.yaml", b"version: 1\nproviders: {\x00}\n", "yaml-syntax", 2),
        ("bom-only.yaml", b"\xef\xbb\xbf", "yaml-empty", 1),
        ("deep.yaml", b"version: 1\ntasks: " + b"[" * 5000 + b"]" * 5000 + b"\n", "yaml-too-deep", 2),
    ],
)
def test_generated_binary_cases(tmp_path: Path, name: str, data: bytes, code: str, line: int) -> None:
    file = tmp_path / name
    file.write_bytes(data)
    report = validate_paths([str(file)])
    assert (code, line) in {(d.code, d.location.line) for d in report.diagnostics}, report.diagnostics
    assert not report.ok
