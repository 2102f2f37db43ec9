"""The validator's rules from issue 16, through ``policyrouter validate`` (in-process) and the loader.

- no diagnostic, in any output format, echoes a value the secret scanner flags;
- ``tpm-below-request`` is a warning that says which request sizes a model never serves
  (and the runtime skips that model for them);
- a typo in an environment overlay is reported as "did you mean" first;
- an unclosed quote is reported where the string opened;
- an overlay that changes ``state.backend`` replaces the state section whole.

Rendered diagnostics are pinned with syrupy; paths are relative to the repository root.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from policyrouter import AllModelsFailed, Router
from policyrouter.cli.main import main
from policyrouter.diagnostics import Diagnostic, Location, excerpt
from policyrouter.errors import PolicyError
from policyrouter.policy.checks.secrets import scrub
from policyrouter.policy.loader import load_policy, validate_paths
from policyrouter.policy.render import FORMATS
from policyrouter.testing import MockLLMServer
from policyrouter.testing.clock import FakeClock

REPO = Path(__file__).resolve().parent.parent
BROKEN = "tests/corpus/broken"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, _err = capsys.readouterr()
    return code, out


# --------------------------------------------------------------------------- 1. secrets are never echoed

LEAKY = f"{BROKEN}/secrets-echoed-by-other-diagnostics.yaml"
# (the secret part of each value in LEAKY, the field it sits in)
LEAKED = [
    ("4fGh7Jk2Lm9Np3Qr8St1Uv6WxAbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "api_key_env, cut by an excerpt"),
    ("A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "a provider's name (a mapping key)"),
    ("Q2W3E4R5T6Y7U8I9", "base_url (AWS key id)"),
    ("hunter2pass", "base_url (URL with a password)"),
    ("1234567890-abcdefghij", "a tier member (Slack token)"),
    ("Zq8kW3xP0vN7mB2cR5tY9uL1", "a budget key (high entropy)"),
    ("api03-AAAAbbbbCCCCddddEEEE", "a task's tier (Anthropic key)"),
    ("abc123def456ghi", "an overlay's retry (bearer token)"),
]


def _pieces(secret: str, width: int = 6) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_echoes_a_flagged_value(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out = _run(capsys, "validate", LEAKY, "--format", fmt)
    assert code == 1
    # the diagnostics that used to echo the values are still there, masked
    for what in ("invalid-format", "unknown-reference", "literal-secret"):
        assert what in out
    for secret, where in LEAKED:
        leaked = [piece for piece in _pieces(secret) if piece in out]
        assert not leaked, f"{where}: {leaked} printed in --format {fmt}"


def test_policy_error_does_not_echo_a_flagged_value() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(LEAKY)
    shown = str(info.value) + "".join(repr(d) for d in info.value.diagnostics)
    for secret, where in LEAKED:
        assert not [piece for piece in _pieces(secret) if piece in shown], where


def test_echoes_are_masked_where_they_were(capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    code, out = _run(capsys, "validate", LEAKY)
    assert code == 1
    assert "`api_key_env` does not have the expected format: 'sk-*****" in out
    assert "refers to unknown tier `sk-****" in out
    assert out == snapshot


def _diag(message: str, hint: str = "", path: str = "") -> Diagnostic:
    return Diagnostic("error", "x", message, Location("p.yaml", 1, 1), path=path, hint=hint)


def test_scrub_masks_whole_cut_and_escaped_echoes_only() -> None:
    password = "correct\\horse battery staple, long enough to be cut by an excerpt 0123456789"
    d = scrub(
        _diag(
            f"got {excerpt(password, 40)!r}, then `hunter2`, then {password!r}",
            hint="`hunter2x` and xhunter2 are other words",
            path="providers.hunter2.kind",
        ),
        {password, "hunter2"},
    )
    assert "horse" not in d.message and "hunter2" not in d.message and "hunter2" not in d.path
    assert d.message.startswith("got 'cor*****") and "…'" in d.message
    assert d.hint == "`hunter2x` and xhunter2 are other words"  # not a token of the secret: kept


def test_scrub_masks_credential_shapes_it_was_not_told_about() -> None:
    key = "sk-" + "proj-" + "Zx9" * 8
    d = scrub(_diag(f"unknown tier `{key}`"), frozenset())
    assert key not in d.message and d.message.startswith("unknown tier `sk-***")


# --------------------------------------------------------------------------- 2. tpm-below-request


def test_tpm_below_request_is_a_warning_that_names_the_sizes(
    capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    path = f"{BROKEN}/tpm-too-small.yaml"
    code, out = _run(capsys, "validate", path)
    assert code == 0
    assert "warning[tpm-below-request]: task `summarize`: requests above 5000 tokens" in out
    assert "inputs above 4500 tokens" in out and "can never be served by model `mini` (tpm 5000)" in out
    assert out == snapshot
    assert _run(capsys, "validate", path, "--strict")[0] == 1


def test_tpm_below_max_output_means_no_request_fits(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        "providers: {oa: {kind: openai, api_key_env: K}}\n"
        "models: {m: {provider: oa, model: m-2025-01-01, limits: {tpm: 500}}}\n"
        "tiers: {t: [m]}\n"
        "tasks: {s: {tier: t, max_output_tokens: 500}}\n"
    )
    (d,) = [d for d in validate_paths(policy).diagnostics if d.code == "tpm-below-request"]
    assert d.severity == "warning" and d.path == "tasks.s.max_output_tokens"
    assert "no request can ever be served by model `m` (tpm 500)" in d.message


def _tpm_router(server: MockLLMServer, tmp_path: Path, tier: str) -> Router:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        f'providers: {{oa: {{kind: openai, api_key_env: K, base_url: "{server.openai_base_url}"}}}}\n'
        "models:\n"
        "  small: {provider: oa, model: small-2025-01-01, limits: {tpm: 1000}}\n"
        "  big: {provider: oa, model: big-2025-01-01}\n"
        f"tiers: {{t: {tier}}}\n"
        "tasks: {s: {tier: t, max_input_tokens: 5000, max_output_tokens: 20, timeout_s: 5}}\n"
    )
    return Router.from_path(policy, environ={"K": "sk-test-x"}, clock=FakeClock(), rng=random.Random(0))


def test_a_request_above_a_models_tpm_falls_back_without_a_call(tmp_path: Path) -> None:
    with MockLLMServer() as server:
        router = _tpm_router(server, tmp_path, "[small, big]")
        assert router.complete("s", "short").model == "small"
        result = router.complete("s", "word " * 1500)
        assert result.model == "big"
        skipped = result.attempts[0]
        assert (skipped.model, skipped.outcome, skipped.error_kind) == ("small", "skipped", "rate_limited")
        assert skipped.message is not None and "above the model's tpm (1000)" in skipped.message
        assert [r.model for r in server.requests] == ["small-2025-01-01", "big-2025-01-01"]


def test_a_request_above_every_models_tpm_is_a_typed_error(tmp_path: Path) -> None:
    with MockLLMServer() as server:
        router = _tpm_router(server, tmp_path, "[small]")
        with pytest.raises(AllModelsFailed, match=r"above the model's tpm \(1000\)") as info:
            router.complete("s", "word " * 1500)
        assert [a.outcome for a in info.value.attempts] == ["skipped"]
        assert server.requests == []


# --------------------------------------------------------------------------- 3. misspelt overlay names

TYPOS = f"{BROKEN}/env-typo-budget-override.yaml"


def test_a_misspelt_overlay_name_is_one_did_you_mean(
    capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    code, out = _run(capsys, "validate", TYPOS)
    assert code == 1
    assert f"{TYPOS}:33:7: error[unknown-override]: environment `dev` overrides budget `per-user-dialy`" in out
    assert "= hint: did you mean `per-user-daily`?" in out and "did you mean `summarize`?" in out
    assert "missing-field" not in out  # the typo's echoes are replaced, not listed after it
    assert out == snapshot


def test_the_did_you_mean_comes_first_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    _code, out = _run(capsys, "validate", f"{BROKEN}/env-typo-task-override.yaml", "--format", "json")
    first = json.loads(out)["diagnostics"][0]
    assert (first["code"], first["line"], first["col"], first["env"]) == ("unknown-override", 30, 7, "dev")
    assert first["path"] == "tasks.sumarize" and first["hint"].startswith("did you mean `summarize`?")


def test_a_new_overlay_definition_is_not_a_typo(tmp_path: Path) -> None:
    # complete (clasify-v2 in the corpus case), or incomplete with no name like it: not a typo
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        "providers: {oa: {kind: openai, api_key_env: K}}\n"
        "models: {m: {provider: oa, model: m-2025-01-01}}\n"
        "tiers: {t: [m]}\n"
        "tasks: {summarize: {tier: t}}\n"
        "environments: {dev: {tasks: {translate: {max_output_tokens: 9}}}}\n"
    )
    codes = {d.code for d in validate_paths(policy).diagnostics}
    assert "missing-field" in codes and "unknown-override" not in codes
    report = validate_paths(TYPOS, env="dev")
    assert not [d for d in report.diagnostics if "clasify" in d.path and d.severity == "error"]


# --------------------------------------------------------------------------- 4. unclosed quotes

UNCLOSED = f"{BROKEN}/unclosed-quote.yaml"


def test_an_unclosed_quote_is_reported_where_it_opened(
    capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    code, out = _run(capsys, "validate", UNCLOSED)
    assert code == 1
    assert out.startswith(f'{UNCLOSED}:25:13: error[yaml-syntax]: invalid YAML: the string opened here with `"`')
    assert "runs on to line 30" in out and 'close the string with `"` on line 25' in out
    assert out == snapshot


_BASE = (
    "version: 1\n"
    "providers:\n"
    "  openai: {kind: openai, api_key_env: OPENAI_API_KEY}\n"
    "models:\n"
    "  mini: {provider: openai, model: gpt-4.1-mini-2025-04-14}\n"
    "tiers: {simple: [mini]}\n"
    "tasks:\n"
    "  summarize:\n"
    "    tier: simple\n"
)


@pytest.mark.parametrize(
    ("tail", "where", "ran_to"),
    [
        # the file ends inside the string
        ("    system: 'Summarize the document\n    max_output_tokens: 500\n", (10, 13), "the end of the file"),
        # closed by the next string's opening quote, on the line below
        ('    system: "Summarize\n    description: "x"\n', (10, 13), "line 11"),
    ],
)
def test_unclosed_quote_shapes(tmp_path: Path, tail: str, where: tuple[int, int], ran_to: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(_BASE + tail)
    (d,) = validate_paths(policy).diagnostics
    assert (d.code, d.location.line, d.location.col) == ("yaml-syntax", *where)
    assert d.message.endswith(f"runs on to {ran_to}") and "block scalar" in d.hint


def test_unclosed_quote_in_a_flow_mapping(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    unclosed = _BASE.replace("api_key_env: OPENAI_API_KEY}", 'api_key_env: "OPENAI_API_KEY}')
    policy.write_text(unclosed + '    system: "S"\n')
    (d,) = validate_paths(policy).diagnostics
    assert (d.location.line, d.location.col) == (3, 39) and "not closed" in d.message


@pytest.mark.parametrize(
    "tail",
    [
        '    system: "C:\\path"\n',  # a bad escape: the string is closed
        '    system: "Line one\n      Summary: two \\q"\n',  # a multi-line string with a bad escape
        '    system: "Line one\n      Summary: two"\n    x: [\n',  # a multi-line string, an error later
    ],
)
def test_closed_strings_are_not_blamed(tmp_path: Path, tail: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(_BASE + tail)
    (d,) = validate_paths(policy).diagnostics
    assert d.code == "yaml-syntax" and "not closed" not in d.message


# --------------------------------------------------------------------------- 5. overlays replace by kind


STATE_OVERLAYS = """\
version: 1
providers:
  oa: {kind: openai, api_key_env: K, base_url: "https://gw.example/v1", organization_env: ORG}
models: {m: {provider: oa, model: m-2025-01-01}}
tiers: {t: [m]}
tasks: {s: {tier: t}}
state: {backend: redis, url_env: REDIS_URL, key_prefix: app, on_unavailable: fail_open}
environments:
  dev: {state: {backend: sqlite, path: dev.sqlite}}
  test: {state: {backend: memory}, providers: {oa: {kind: mock}}}
  prod: {state: {key_prefix: prod}, providers: {oa: {api_key_env: PROD_KEY}}}
"""


def test_a_backend_change_replaces_the_state_whole_like_a_kind_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from policyrouter.policy.models import StateSettings

    policy = tmp_path / "p.yaml"
    policy.write_text(STATE_OVERLAYS)
    # no warning about the base's Redis fields in dev or test
    assert _run(capsys, "validate", str(policy), "--strict") == (0, "0 errors, 0 warnings\n")
    report = validate_paths(policy)
    dev = report.policies["dev"].state
    assert (dev.backend, dev.url_env, dev.key_prefix) == ("sqlite", None, "policyrouter")
    assert dev.on_unavailable == "fail_closed"
    assert dev.path is not None and Path(dev.path).name == "dev.sqlite"
    assert report.policies["test"].state == StateSettings(backend="memory")
    test_provider = report.policies["test"].providers["oa"]
    assert (test_provider.kind, test_provider.base_url, test_provider.api_key_env) == ("mock", None, None)
    # the same backend (or kind) merges
    prod = report.policies["prod"]
    assert (prod.state.backend, prod.state.url_env, prod.state.key_prefix) == ("redis", "REDIS_URL", "prod")
    assert prod.state.on_unavailable == "fail_open"
    assert (prod.providers["oa"].base_url, prod.providers["oa"].api_key_env) == ("https://gw.example/v1", "PROD_KEY")


def test_a_replaced_state_is_checked_at_the_overlays_lines(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        "providers: {oa: {kind: openai, api_key_env: K}}\n"
        "models: {m: {provider: oa, model: m-2025-01-01}}\n"
        "tiers: {t: [m]}\n"
        "tasks: {s: {tier: t}}\n"
        "state: {backend: sqlite, path: app.sqlite}\n"
        "environments:\n"
        "  prod:\n"
        "    state: {backend: redis}\n"
    )
    (d,) = validate_paths(policy).diagnostics
    assert (d.code, d.env, d.location.line) == ("state-no-url", "prod", 9)
