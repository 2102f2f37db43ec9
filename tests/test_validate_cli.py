"""`policyrouter validate` / `schema` and the diagnostic renderers, run in-process.

Snapshots (syrupy) pin the text, json and github outputs for representative broken
policies; paths are relative to the repository root (the tests chdir there).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter.cli import main as cli_main
from policyrouter.cli.main import main
from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.errors import ConfigurationError, PolicyError
from policyrouter.policy.render import display_path, render_github, render_json, render_text
from policyrouter.policy.source import SourceMap

REPO = Path(__file__).resolve().parent.parent
BROKEN = "tests/corpus/broken"
SNAPSHOT_CASES = ["typo-tier-name.yaml", "literal-openai-key.yaml", "tabs.yaml"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- exit codes


def test_examples_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "policies/", "--strict")
    assert code == 0 and out == "0 errors, 0 warnings\n"


def test_errors_exit_1_with_compiler_style_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", f"{BROKEN}/typo-tier-name.yaml")
    assert code == 1
    assert f"{BROKEN}/typo-tier-name.yaml:24:11: error[unknown-reference]: " in out
    assert "  24 |     tier: smiple\n     |           ^^^^^^\n  = hint: did you mean `simple`?" in out
    assert out.endswith("1 error, 1 warning\n")


def test_warnings_pass_unless_strict(capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{BROKEN}/unused-tier.yaml"
    assert _run(capsys, "validate", path)[0] == 0
    assert _run(capsys, "validate", path, "--strict")[0] == 1


def test_a_dangling_symlink_in_a_policy_directory_is_shown_as_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "production.yaml").write_bytes((REPO / "policies/production.yaml").read_bytes())
    (tmp_path / "old.yaml").symlink_to(tmp_path / "removed.yaml")
    code, out, _ = _run(capsys, "validate", str(tmp_path))
    assert code == 0 and out.endswith("0 errors, 1 warning\n")
    assert f"{tmp_path}/old.yaml: warning[dangling-symlink]: " in out
    assert _run(capsys, "validate", str(tmp_path), "--strict")[0] == 1


def test_missing_path_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "policies/", "no/such/policy.yaml")
    assert code == 2 and "file-not-found" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],
        ["validate", "policies/", "--env", "dev", "--all-envs"],
        ["validate", "policies/", "--format", "xml"],
        ["validate", "policies/", "--max-bytes", "0"],
        ["validate", "policies/", "--max-bytes", "lots"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "usage:" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "--help")
    assert code == 0 and "--all-envs" in out and "--max-bytes" in out


def test_max_bytes_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "policies/", "--max-bytes", "100")
    assert code == 1 and "file-too-large" in out


@pytest.mark.parametrize("env", ["dev", "prod", "offline"])
def test_single_environment(capsys: pytest.CaptureFixture[str], env: str) -> None:
    assert _run(capsys, "validate", "policies/", "--env", env)[0] == 0


def test_unknown_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", "policies/", "--env", "staging")
    assert code == 2 and "error[unknown-environment]" in out


def test_environment_diagnostics_name_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", f"{BROKEN}/env-soft-limit.yaml")
    assert code == 1 and "  = note: in environment `dev`" in out


def test_json_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", f"{BROKEN}/unused-tier.yaml", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and list(doc) == ["ok", "errors", "warnings", "diagnostics"]
    assert (doc["ok"], doc["errors"], doc["warnings"]) == (True, 0, 1)
    assert list(doc["diagnostics"][0]) == ["severity", "code", "message", "file", "line", "col", "path", "hint", "env"]


def test_json_ok_is_false_under_strict_with_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", f"{BROKEN}/unused-tier.yaml", "--format", "json", "--strict")
    assert code == 1 and json.loads(out)["ok"] is False


# --------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
@pytest.mark.parametrize("case", SNAPSHOT_CASES)
def test_output_snapshot(capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion, case: str, fmt: str) -> None:
    code, out, err = _run(capsys, "validate", f"{BROKEN}/{case}", "--format", fmt)
    assert code == 1 and err == ""
    assert out == snapshot


# --------------------------------------------------------------------------- renderers


def _diag(message: str = "m", file: str = "p.yaml", line: int = 1, col: int = 1, **kw: str) -> Diagnostic:
    return Diagnostic("error", "some-code", message, Location(file, line, col), **kw)  # type: ignore[arg-type]


def test_github_escaping() -> None:
    d = _diag("100% wrong\r\nnext line", file="dir,with:odd/p.yaml", hint="fix: it")
    out = render_github([d])
    first = out.splitlines()[0]
    assert first == (
        "::error file=dir%2Cwith%3Aodd/p.yaml,line=1,col=1,title=some-code::100%25 wrong%0D%0Anext line%0Ahint: fix: it"
    )


def test_github_warning_without_position() -> None:
    d = Diagnostic("warning", "w", "msg", Location("p.yaml"))
    assert render_github([d]).splitlines()[0] == "::warning file=p.yaml,title=w::msg"


def test_text_caret_keeps_tabs_and_handles_unknown_positions() -> None:
    source = SourceMap(lines={"p.yaml": ("\tkey: [a, b]",)})
    out = render_text([_diag(line=1, col=8)], source)
    assert "  1 | \tkey: [a, b]\n    | \t      ^\n" in out
    out = render_text([_diag(line=0, col=0)], source)
    assert out.startswith("p.yaml: error[some-code]: m\n")
    out = render_text([_diag(line=7, col=3)], source)  # line beyond the file: no snippet
    assert out.startswith("p.yaml:7:3: error[some-code]: m\n\n")


def test_text_underlines_one_token() -> None:
    lines = ('  simple: [mini, "gpt 4", haiku]  # chain',)
    source = SourceMap(lines={"p.yaml": lines})
    assert "\n    | " + " " * 11 + "^^^^\n" in render_text([_diag(col=12)], source)  # mini
    assert "\n    | " + " " * 17 + "^^^^^^^\n" in render_text([_diag(col=18)], source)  # "gpt 4"
    assert "\n    | " + " " * 2 + "^^^^^^\n" in render_text([_diag(col=3)], source)  # simple (a key)


def test_summary_pluralizes() -> None:
    warn = Diagnostic("warning", "w", "m", Location("p.yaml"))
    assert render_text([], SourceMap()) == "0 errors, 0 warnings\n"
    assert render_text([_diag(), warn, warn], SourceMap()).endswith("\n1 error, 2 warnings\n")


def test_json_is_sorted_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    far = Location(str(tmp_path / "b.yaml"), 3, 1)
    near = Location(str(tmp_path / "a.yaml"), 9, 1)
    diags = [Diagnostic("error", "x", "m", far), Diagnostic("error", "y", "m", near)]
    doc = json.loads(render_json(diags))
    assert [d["file"] for d in doc["diagnostics"]] == ["a.yaml", "b.yaml"]


def test_display_path() -> None:
    assert display_path("/repo/policies/a.yaml", cwd="/repo") == "policies/a.yaml"
    assert display_path("/elsewhere/a.yaml", cwd="/repo") == "/elsewhere/a.yaml"
    assert display_path("policies/a.yaml") == "policies/a.yaml"
    assert display_path("<policy>") == "<policy>"


# --------------------------------------------------------------------------- errors at the top


def _fake_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    module = types.ModuleType("policyrouter_fake_command")

    def handler(args: object) -> int:
        raise exc

    def register(subparsers: object) -> None:
        subparsers.add_parser("boom").set_defaults(handler=handler)  # type: ignore[attr-defined]

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(cli_main, "COMMANDS", (*cli_main.COMMANDS, module.__name__))


def test_policyrouter_errors_print_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_command(monkeypatch, ConfigurationError("OPENAI_API_KEY is not set\nmore detail"))
    code, out, err = _run(capsys, "boom")
    assert code == 1 and out == "" and err == "policyrouter boom: error: OPENAI_API_KEY is not set\n"


def test_policy_error_lists_its_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    d = Diagnostic("error", "unknown-reference", "bad tier", Location("p.yaml", 3, 9))
    _fake_command(monkeypatch, PolicyError([d]))
    code, _, err = _run(capsys, "boom")
    assert code == 1
    assert err == "policyrouter boom: error: 1 error(s) in policy\n  p.yaml:3:9: error[unknown-reference]: bad tier\n"


def test_os_errors_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_command(monkeypatch, FileNotFoundError(2, "No such file or directory", "input.txt"))
    code, _, err = _run(capsys, "boom")
    assert code == 2 and err == "policyrouter boom: error: No such file or directory: input.txt\n"


# --------------------------------------------------------------------------- schema command


def test_schema_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "policy.schema.json"
    assert _run(capsys, "schema", "--check", "--output", str(target))[0] == 1  # missing
    assert _run(capsys, "schema", "--output", str(target))[0] == 0
    assert _run(capsys, "schema", "--check", "--output", str(target))[0] == 0
    target.write_text(target.read_text() + " ")
    code, _, err = _run(capsys, "schema", "--check", "--output", str(target))
    assert code == 1 and "stale; run `policyrouter schema -o" in err


def test_schema_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "schema", "--output", "-")
    assert code == 0 and json.loads(out)["$schema"].endswith("2020-12/schema")


def test_checked_in_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "schema", "--check")[0] == 0


# --------------------------------------------------------------------------- import weight


def test_validate_does_not_import_provider_sdks() -> None:
    probe = (
        "import sys\n"
        "from policyrouter.cli.main import main\n"
        "code = main(['validate', 'policies/'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'anthropic', 'rich', 'jsonschema'})\n"
        "print(heavy)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- secrets stay secret


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_no_output_format_repeats_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    openai_key = "sk-proj-" + "Q7w8E9r0T1y2U3i4O5p6A7s8"
    aws_key = "AKIA" + "Q2W3E4R5T6Y7U8I9"
    token = "Zq8kW3xP0vN7mB2cR5tY9uL1"
    policy = tmp_path / "leaky.yaml"
    policy.write_text(
        "version: 1\n"
        "providers:\n"
        f"  openai: {{kind: openai, api_key: {openai_key}}}  # the key\n"
        f"  # old: {aws_key}\n"
        "  gw:\n"
        "    kind: openai_compatible\n"
        "    base_url: https://gw.example/v1\n"
        "    api_key_env: GW_KEY\n"
        f"    headers: {{Authorization: 'Token {token}'}}\n"
    )
    code, out, _ = _run(capsys, "validate", str(policy), "--format", fmt)
    assert code == 1 and out.count("literal-secret") >= 3
    for secret in (openai_key, aws_key, token):
        assert secret not in out and secret[8:16] not in out


def test_long_lines_are_windowed_around_the_column() -> None:
    line = "x: [" + ", ".join(f"item{i}" for i in range(200)) + "]"
    col = line.index("item150") + 1
    out = render_text([_diag(col=col)], SourceMap(lines={"p.yaml": (line,)}))
    shown, caret = out.splitlines()[1:3]
    assert len(shown) < 200 and shown.startswith("  1 | ...") and shown.endswith("...")
    assert shown[caret.index("^") :].startswith("item150") and caret.endswith("^^^^^^^")
