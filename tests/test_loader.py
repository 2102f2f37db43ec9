"""The policy loader: safe YAML with positions, files and directories, overlays, diagnostics."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.errors import PolicyError
from policyrouter.policy.loader import (
    IO_CODES,
    ValidationReport,
    load_policy,
    load_with_source,
    validate_paths,
)
from policyrouter.policy.yamlsrc import load_yaml

BASE = """\
version: 1
providers:
  openai: {kind: openai, api_key_env: OPENAI_API_KEY}
  anthropic:
    kind: anthropic
    api_key_env: ANTHROPIC_API_KEY
models:
  gpt-mini:
    provider: openai
    model: gpt-4.1-mini-2025-04-14
    pricing: {input: 0.4, output: 1.6}
  haiku:
    provider: anthropic
    model: claude-3-5-haiku-20241022
    pricing: {input: 0.8, output: 4.0}
tiers:
  simple: [gpt-mini, haiku]
tasks:
  summarize:
    tier: simple
    max_input_tokens: 8000
    max_output_tokens: 500
    temperature: 0.2
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def codes(report: ValidationReport, severity: str = "error") -> list[str]:
    return [d.code for d in report.diagnostics if d.severity == severity]


def only(report: ValidationReport, code: str) -> Diagnostic:
    found = [d for d in report.diagnostics if d.code == code]
    assert len(found) == 1, report.diagnostics
    return found[0]


def yaml_codes(text: str | bytes, **kw: int) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [d.code for d in load_yaml(data, "p.yaml", **kw).diagnostics]


# --------------------------------------------------------------------------- yamlsrc


def test_positions_of_values_keys_and_list_items() -> None:
    doc = load_yaml(BASE.encode(), "p.yaml")
    assert doc.ok and not doc.diagnostics
    assert doc.data["tasks"]["summarize"]["tier"] == "simple"
    assert doc.values[("tasks", "summarize", "tier")] == Location("p.yaml", 20, 11)
    assert doc.keys[("tasks", "summarize", "tier")] == Location("p.yaml", 20, 5)
    assert doc.values[("tiers", "simple", 1)] == Location("p.yaml", 17, 22)
    assert doc.values[("providers", "openai", "kind")] == Location("p.yaml", 3, 18)
    assert doc.keys[("models", "haiku")] == Location("p.yaml", 12, 3)
    assert doc.lines[19] == "    tier: simple"


def test_columns_count_characters_not_bytes() -> None:
    doc = load_yaml("é: {ä: 1}\n".encode(), "p.yaml")
    assert doc.values[("é", "ä")] == Location("p.yaml", 1, 8)


def test_plain_scalars_and_yaml_11_types() -> None:
    doc = load_yaml(b"a: 0x1f\nb: 1_000\nc: .inf\nd: ~\ne: 2024-01-01\nf: '12'\ng: off\nh: -0.5\n", "p.yaml")
    assert doc.data == {
        "a": 31,
        "b": 1000,
        "c": float("inf"),
        "d": None,
        "e": "2024-01-01",  # timestamps stay text: the language has no dates
        "f": "12",
        "g": False,
        "h": -0.5,
    }


def test_duplicate_key_points_at_second_and_names_first_line() -> None:
    doc = load_yaml(b"tasks:\n  a: {tier: x}\n  b: {tier: y}\n  a: {tier: z}\n", "p.yaml")
    (d,) = doc.diagnostics
    assert d.code == "yaml-duplicate-key"
    assert d.location == Location("p.yaml", 4, 3)
    assert "line 2" in d.message
    assert doc.data == {"tasks": {"a": {"tier": "x"}, "b": {"tier": "y"}}}  # first kept, not fatal


def billion_laughs() -> bytes:
    lines = ['lol1: &lol1 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(2, 10):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return ("\n".join(lines) + "\n").encode()


def test_billion_laughs_is_rejected_without_expanding_it() -> None:
    doc = load_yaml(billion_laughs(), "p.yaml")
    assert doc.data is None
    (d,) = doc.diagnostics
    assert d.code == "yaml-alias-limit"
    assert d.severity == "error" and "billion laughs" in d.hint
    # the bound is configurable, and stops the work early
    assert yaml_codes(billion_laughs(), max_nodes=500) == ["yaml-alias-limit"]


def test_small_alias_reuse_is_fine_and_counted() -> None:
    text = "a: &x [1, 2, 3]\nb: *x\nc: *x\n"
    assert load_yaml(text.encode(), "p.yaml").data == {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3]}
    assert yaml_codes(text, max_nodes=12) == ["yaml-alias-limit"]


def test_recursive_alias_is_rejected() -> None:
    assert yaml_codes("a: &x [1, *x]\n") == ["yaml-alias-cycle"]


def test_deep_nesting_is_rejected_not_crashing() -> None:
    # libyaml's composer recurses in C: this input crashes ``yaml.compose``.
    assert yaml_codes("a: " + "[" * 100_000 + "]" * 100_000) == ["yaml-too-deep"]
    assert yaml_codes("- " * 50_000 + "x\n") == ["yaml-too-deep"]


def test_too_deep_is_located_at_the_level_past_the_limit_whatever_libyaml_limits() -> None:
    # libyaml 0.2.6+ stops at 1000 flow levels while reading ahead; the verdict must not change.
    (d,) = load_yaml(("a: " + "[" * 5000 + "]" * 5000).encode(), "p.yaml").diagnostics
    assert (d.code, d.location.line, d.location.col) == ("yaml-too-deep", 1, 203)
    (d,) = load_yaml(("a: " + "{b: " * 3000).encode(), "p.yaml").diagnostics
    assert (d.code, d.location.line, d.location.col) == ("yaml-too-deep", 1, 800)
    assert load_yaml(("a: " + "[" * 199 + "]" * 199).encode(), "p.yaml").ok


def test_merge_keys_are_an_error_as_documented() -> None:
    text = """\
    defaults: &d {timeout_s: 30, temperature: 0.1}
    a:
      temperature: 0.7
      <<: *d
    b: *d
    """
    doc = load_yaml(textwrap.dedent(text).encode(), "p.yaml")
    assert doc.data is None
    (d,) = doc.diagnostics
    assert (d.code, d.location) == ("yaml-merge", Location("p.yaml", 4, 3))
    assert "alias" in d.hint
    assert yaml_codes("a:\n  <<: [1]\n") == ["yaml-merge"]
    # an alias of a whole value, and a quoted "<<" key, are plain YAML
    assert load_yaml(b"a: &x {k: 1}\nb: *x\n'<<': 2\n", "p.yaml").data == {"a": {"k": 1}, "b": {"k": 1}, "<<": 2}


def test_base_60_is_text_not_a_number() -> None:
    doc = load_yaml(b"a: 1:30\nb: -1:30.5\nc: 190:20:30\nd: 1_000\n", "p.yaml")
    assert doc.data == {"a": "1:30", "b": "-1:30.5", "c": "190:20:30", "d": 1000}
    assert yaml_codes("a: !!int 1:30\n") == ["yaml-tag"]


def test_huge_numbers_are_a_clear_diagnostic_not_a_tag_error() -> None:
    digits = "9" * 5000
    doc = load_yaml(f"a: {digits}\n".encode(), "p.yaml")
    (d,) = doc.diagnostics
    assert (d.code, d.location) == ("yaml-number-too-large", Location("p.yaml", 1, 4))
    assert "5000 characters" in d.message and len(d.message) < 200
    for text in ("a: 9223372036854775808", "a: -0x8000000000000000", "a: 1.0e+400", "a: 0b" + "1" * 80):
        assert yaml_codes(text) == ["yaml-number-too-large"], text
    ok = load_yaml(b"a: 9223372036854775807\nb: -0x7fffffffffffffff\nc: .inf\nd: 1.5e+300\n", "p.yaml")
    assert ok.data == {"a": (1 << 63) - 1, "b": -((1 << 63) - 1), "c": float("inf"), "d": 1.5e300}


def test_non_utf8_bytes_are_reported_with_offset_and_line() -> None:
    doc = load_yaml(b"version: 1\nname: caf\xe9\n", "p.yaml")
    (d,) = doc.diagnostics
    assert d.code == "yaml-encoding"
    assert d.location == Location("p.yaml", 2, 10)
    assert "offset 20" in d.message and "line 2" in d.message
    assert "UTF-8" in d.hint


def test_utf8_bom_is_accepted() -> None:
    doc = load_yaml(b"\xef\xbb\xbfversion: 1\n", "p.yaml")
    assert doc.data == {"version": 1} and not doc.diagnostics
    assert doc.values[("version",)] == Location("p.yaml", 1, 10)


def test_tab_indentation() -> None:
    doc = load_yaml(b"tasks:\n  a:\n\ttier: x\n", "p.yaml")
    (d,) = doc.diagnostics
    assert d.code == "yaml-tab"
    assert d.location == Location("p.yaml", 3, 1)
    assert d.hint == "YAML forbids tabs for indentation; use spaces"


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n# and another\n", "---\n"])
def test_empty_file(text: str) -> None:
    doc = load_yaml(text.encode(), "p.yaml")
    (d,) = doc.diagnostics
    assert (d.code, d.severity) == ("yaml-empty", "error")
    assert "version: 1" in d.hint


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert yaml_codes(text) == ["yaml-not-mapping"]


def test_syntax_error_has_problem_and_mark() -> None:
    (d,) = load_yaml(b"version: 1\ntiers: [a, b\n", "p.yaml").diagnostics
    assert d.code == "yaml-syntax"
    assert d.location.file == "p.yaml" and d.location.line == 3
    assert "flow sequence" in d.message


def test_two_documents_in_one_file() -> None:
    assert yaml_codes("version: 1\n---\nversion: 1\n") == ["yaml-syntax"]


def test_unsafe_tags_are_rejected_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"version: 1\nx: !!python/object/apply:os.system ['touch {marker}']\ny: !custom 1\nz: !!binary aGk=\n"
    doc = load_yaml(text.encode(), "p.yaml")
    assert doc.data is None
    assert [d.code for d in doc.diagnostics] == ["yaml-tag", "yaml-tag", "yaml-tag"]
    assert "!!python/object/apply:os.system" in doc.diagnostics[0].message
    assert doc.diagnostics[0].location == Location("p.yaml", 2, 4)
    assert not marker.exists()


def test_keys_must_be_strings() -> None:
    doc = load_yaml(b"on: 1\n1: 2\n'yes': 3\n", "p.yaml")
    assert [d.code for d in doc.diagnostics] == ["yaml-key-type", "yaml-key-type"]
    on = doc.diagnostics[0]
    assert on.location == Location("p.yaml", 1, 1)
    assert "YAML 1.1" in on.hint and "boolean" in on.hint and '"on":' in on.hint
    assert doc.data == {"yes": 3}


# --------------------------------------------------------------------------- files


def test_file_size_bound_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    size = path.stat().st_size
    assert validate_paths([path], max_bytes=size).ok
    report = validate_paths([path], max_bytes=size - 1)
    assert codes(report) == ["file-too-large"]
    assert not report.io_error and not report.policies


def test_missing_path_is_an_io_error(tmp_path: Path) -> None:
    report = validate_paths([tmp_path / "nope.yaml"])
    assert codes(report) == ["file-not-found"]
    assert report.io_error and not report.ok
    assert "file-not-found" in IO_CODES


def test_directory_without_policy_files(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "hello")
    write(tmp_path, "t.policytest.yaml", "cases: []\n")
    report = validate_paths([tmp_path])
    assert codes(report) == ["no-policy-files"]
    assert report.io_error


def test_directory_merge_order_and_ignored_files(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", "version: 1\ntasks:\n  second: {tier: simple}\n")
    write(tmp_path, "a.yml", BASE)
    write(tmp_path, "c.policytest.yaml", "this: is not a policy\n")
    write(tmp_path, "d.policytest.yml", "neither: is this\n")
    write(tmp_path, ".hidden.yaml", "version: 2\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "x.yaml", "version: 2\n")
    report = validate_paths([tmp_path])
    assert report.ok, report.diagnostics
    policy = report.policies[None]
    assert list(policy.tasks) == ["summarize", "second"]  # a.yml before b.yaml
    assert set(report.source.lines) == {str(tmp_path / "a.yml"), str(tmp_path / "b.yaml")}
    assert report.source.locate(("tasks", "second", "tier")) == Location(str(tmp_path / "b.yaml"), 3, 18)


def test_a_dangling_symlink_in_a_directory_is_a_warning_and_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    (tmp_path / "z.yaml").symlink_to(tmp_path / "gone.yaml")
    report = validate_paths([tmp_path])
    assert report.ok and not report.io_error and None in report.policies
    d = only(report, "dangling-symlink")
    assert (d.severity, d.location.file) == ("warning", str(tmp_path / "z.yaml"))
    assert list(load_policy(tmp_path).tasks) == ["summarize"]
    # named on its own, a dangling link is still a file that is not there
    assert codes(validate_paths([tmp_path / "z.yaml"])) == ["file-not-found"]


def test_duplicate_definition_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "version: 1\ntasks:\n  summarize:\n    tier: simple\nstate: {backend: memory}\n")
    write(tmp_path, "c.yaml", "state: {backend: sqlite, path: x.db}\n")
    report = validate_paths([tmp_path])
    dups = [d for d in report.diagnostics if d.code == "duplicate-definition"]
    assert [d.path for d in dups] == ["tasks.summarize", "state"]
    task = dups[0]
    assert task.location == Location(str(tmp_path / "b.yaml"), 3, 3)
    assert f"{tmp_path / 'a.yaml'}:19:3" in task.message
    assert f"{tmp_path / 'b.yaml'}:3:3" in task.message
    assert str(tmp_path / "c.yaml") in dups[1].location.file
    assert not report.ok
    # the first definition is the one kept
    assert report.policies[None].state.backend == "memory"


def test_version_must_agree(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", BASE)
    b = write(tmp_path, "b.yaml", "version: 2\n")
    d = only(validate_paths([a, b]), "version-mismatch")
    assert d.location == Location(str(b), 1, 1)
    assert f"{a}:1:1" in d.message


def test_several_paths_merge_in_order_and_a_file_counts_once(tmp_path: Path) -> None:
    a = write(tmp_path, "z.yaml", BASE)
    b = write(tmp_path, "extra.yaml", "tasks:\n  other: {tier: simple}\n")
    report = validate_paths([a, b, tmp_path])  # the directory repeats both files
    assert report.ok, report.diagnostics
    assert list(report.policies[None].tasks) == ["summarize", "other"]


# --------------------------------------------------------------------------- environments

ENVS = """\
budgets:
  daily: {scope: global, window: day, limit_usd: 100, timezone: UTC}
environments:
  dev:
    budgets: {daily: {limit_usd: 5}}
    tiers: {simple: [haiku]}
    models:
      local:
        provider: openai
        model: gpt-4.1-nano-2025-04-14
  offline:
    providers:
      openai: {kind: mock}
      anthropic: {kind: mock, mock: {reply: hi}}
"""


def test_overlays_deep_merge_replace_lists_and_provider_kind(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    envs = write(tmp_path, "envs.yaml", ENVS)
    report = validate_paths([tmp_path])
    assert codes(report) == [], report.diagnostics
    assert set(report.policies) == {None, "dev", "offline"}
    base, dev, offline = report.policies[None], report.policies["dev"], report.policies["offline"]
    # mappings merge: the overlay's limit, the base's other keys
    assert (base.budgets["daily"].limit_usd, dev.budgets["daily"].limit_usd) == (100, 5)
    assert dev.budgets["daily"].scope == "global" and dev.budgets["daily"].window == "day"
    # lists replace
    assert dev.tiers["simple"] == ["haiku"]
    # a new entry in an overlay is allowed
    assert "local" in dev.models and "local" not in base.models
    # a changed kind replaces the provider whole: the old api_key_env goes
    assert offline.providers["openai"].kind == "mock"
    assert offline.providers["openai"].api_key_env is None
    assert offline.providers["anthropic"].mock is not None
    # positions: overlay values point into the overlay, the rest stays in the base
    dev_source = report.sources["dev"]
    assert dev_source.locate(("budgets", "daily", "limit_usd")) == Location(str(envs), 5, 34)
    assert dev_source.locate(("budgets", "daily", "scope")) == Location(str(envs), 2, 18)
    assert dev_source.locate(("tiers", "simple", 0)) == Location(str(envs), 6, 22)
    assert report.source.locate(("tiers", "simple", 0)) == Location(str(tmp_path / "base.yaml"), 17, 12)


def test_env_selects_one_merged_result(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "envs.yaml", ENVS)
    report = validate_paths([tmp_path], env="dev")
    assert report.ok and set(report.policies) == {"dev"}
    assert load_policy(tmp_path, "dev").budgets["daily"].limit_usd == 5
    assert load_policy(tmp_path).budgets["daily"].limit_usd == 100
    policy, source = load_with_source(tmp_path, "offline")
    assert policy.providers["openai"].kind == "mock"
    assert source.locate(("providers", "openai", "kind")).file.endswith("envs.yaml")
    base_only = validate_paths([tmp_path], all_envs=False)
    assert set(base_only.policies) == {None}


def test_unknown_environment(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "envs.yaml", ENVS)
    d = only(validate_paths([tmp_path], env="deb"), "unknown-environment")
    assert d.hint == "did you mean `dev`?"
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path, "prod")
    assert [d.code for d in info.value.diagnostics] == ["unknown-environment"]


def test_env_only_errors_carry_the_env_and_shared_ones_are_reported_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        BASE.replace("max_output_tokens: 500", 'max_output_tokens: "500"')
        + "environments:\n  a: {tasks: {summarize: {temperature: 9}}}\n  b: {}\n  c: {state: {}}\n",
    )
    report = validate_paths([path])
    quoted = [d for d in report.diagnostics if d.code == "wrong-type"]
    assert len(quoted) == 1 and quoted[0].env is None  # base, a, b and c all have it
    ranged = only(report, "out-of-range")
    assert ranged.env == "a" and ranged.location == Location(str(path), 25, 40)


def test_overlay_sections_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE + "environments:\n  dev: {version: 2, taks: {}}\n")
    report = validate_paths([path])
    fields = [d for d in report.diagnostics if d.code == "unknown-field"]
    assert [d.path for d in fields] == ["environments.dev.version", "environments.dev.taks"]
    assert fields[1].hint == "did you mean `tasks`?"


# --------------------------------------------------------------------------- schema errors


def test_unknown_field_points_at_the_key_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE.replace("    temperature: 0.2", "    temprature: 0.2"))
    d = only(validate_paths([path]), "unknown-field")
    assert d.path == "tasks.summarize.temprature"
    assert d.location == Location(str(path), 23, 5)
    assert d.hint == "did you mean `temperature`?"


def test_quoted_number_says_remove_the_quotes(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE.replace("temperature: 0.2", 'temperature: "0.2"'))
    d = only(validate_paths([path]), "wrong-type")
    assert d.path == "tasks.summarize.temperature"
    assert d.location == Location(str(path), 23, 18)
    assert "expects a number, got string '0.2'" in d.message
    assert "remove the quotes" in d.hint


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("'1000'", "remove the quotes: write 1000"),
        ("1e3", "YAML 1.1 reads `1e3` as text"),  # no quotes to remove
        ("'1e3'", "YAML 1.1 reads `1e3` as text"),  # unquoted it is text still
        ("1:30", "base-60"),
        ("abc", ""),
    ],
)
def test_number_hints_only_where_they_apply(tmp_path: Path, written: str, hint: str) -> None:
    budget = f"budgets:\n  daily: {{scope: global, window: day, limit_usd: {written}}}\n"
    path = write(tmp_path, "p.yaml", BASE + budget)
    d = only(validate_paths([path]), "wrong-type")
    assert d.path == "budgets.daily.limit_usd"
    assert hint in d.hint if hint else d.hint == ""
    assert "remove the quotes" not in d.hint or written.startswith("'")


def test_bad_literal_lists_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE.replace("kind: anthropic", "kind: antropic"))
    d = only(validate_paths([path]), "invalid-value")
    assert d.path == "providers.anthropic.kind"
    assert d.location == Location(str(path), 5, 11)
    assert (
        "`openai`, `anthropic`, `openai_compatible`, `mock`, `azure_openai`, `anthropic_bedrock` or `anthropic_vertex`"
        in d.message
    )
    assert d.hint == "did you mean `anthropic`?"


def test_union_branches_become_one_diagnostic(tmp_path: Path) -> None:
    text = (
        BASE
        + "    routes:\n"
        + "      - when: {metadata: {plan: 1.5, regions: [eu, 2.5]}}\n"
        + "        tier: simple\n"
    )
    path = write(tmp_path, "p.yaml", text)
    report = validate_paths([path])
    wrong = [d for d in report.diagnostics if d.code == "wrong-type"]
    assert [d.path for d in wrong] == [
        "tasks.summarize.routes[0].when.metadata.plan",
        "tasks.summarize.routes[0].when.metadata.regions[1]",
    ]
    assert wrong[0].location == Location(str(path), 25, 33)
    assert wrong[1].location == Location(str(path), 25, 52)
    assert "a string, an integer, a boolean (true or false) or a list" in wrong[0].message
    assert "got number 1.5" in wrong[0].message


def test_missing_field_range_format_and_model_rule(tmp_path: Path) -> None:
    text = BASE.replace("    provider: anthropic\n", "").replace("max_input_tokens: 8000", "max_input_tokens: 0")
    text = text.replace(
        "providers:\n",
        "providers:\n"
        "  gw: {kind: openai_compatible, api_key_env: GW_KEY, base_url: ftp://x}\n"
        "  gw2: {kind: openai_compatible, api_key_env: GW_KEY}\n",
    )
    path = write(tmp_path, "p.yaml", text)
    report = validate_paths([path])
    by_code = {d.code: d for d in report.diagnostics}
    assert by_code["missing-field"].path == "models.haiku.provider"
    assert by_code["missing-field"].location == Location(str(path), 14, 3)
    assert "provider" in by_code["missing-field"].hint
    assert by_code["out-of-range"].path == "tasks.summarize.max_input_tokens"
    assert "greater than 0" in by_code["out-of-range"].message
    assert by_code["invalid-format"].path == "providers.gw.base_url"
    assert "http" in by_code["invalid-format"].hint
    rule = by_code["invalid-value"]  # a model validator's ValueError
    assert (rule.path, rule.location) == ("providers.gw2", Location(str(path), 4, 3))
    assert rule.message == "provider kind `openai_compatible` requires `base_url` or `base_url_env`"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        BASE.replace("kind: anthropic", "kind: antropic")
        .replace("temperature: 0.2", "temperature: '0.2'")
        .replace("    max_output_tokens: 500\n", "    max_output_tokens: 500\n    colour: blue\n")
        .replace("input: 0.4", "input: -0.4")
        .replace("  simple: [gpt-mini, haiku]", "  simple: gpt-mini")
    )
    path = write(tmp_path, "p.yaml", text)
    report = validate_paths([path])
    assert sorted(codes(report)) == sorted(
        ["invalid-value", "wrong-type", "unknown-field", "out-of-range", "wrong-type"]
    )
    assert [d.location.line for d in report.errors] == sorted(d.location.line for d in report.errors)
    assert all(d.location.file == str(path) and d.location.line for d in report.errors)


def test_load_policy_raises_policy_error_with_diagnostics(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE.replace("tier: simple", "tier: 7"))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert [d.code for d in info.value.diagnostics] == ["wrong-type"]
    assert f"{path}:20:11" in str(info.value)


def test_load_policy_returns_the_policy_despite_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE + "  spare:\n    tier: simple\n")
    policy = load_policy(path)
    assert set(policy.tasks) == {"summarize", "spare"}
    assert load_policy(str(path)) == policy
    assert load_policy([path]) == policy


def test_yaml_problems_stop_before_validation(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "tasks:\n\tx: 1\n")
    report = validate_paths([tmp_path])
    assert codes(report) == ["yaml-tab"]
    assert not report.io_error and not report.policies


def test_large_generated_policy_loads(tmp_path: Path) -> None:
    lines = ["version: 1", "providers:", "  openai: {kind: openai, api_key_env: OPENAI_API_KEY}", "models:"]
    for i in range(200):
        lines += [
            f"  m{i}:",
            "    provider: openai",
            f"    model: model-{i}-2025-04-14",
            "    pricing: {input: 0.4, output: 1.6}",
            "    limits: {rpm: 500, tpm: 200000}",
        ]
    lines += ["tiers:"] + [f"  t{i}: [m{i}, m{(i + 1) % 200}]" for i in range(100)]
    lines += ["tasks:"]
    for i in range(1000):
        lines += [
            f"  task{i}:",
            f"    tier: t{i % 100}",
            "    max_input_tokens: 8000",
            "    max_output_tokens: 500",
            "    temperature: 0.2",
            "    timeout_s: 30",
            "    cache: {ttl_s: 86400}",
            "    routes:",
            "      - when: {input_tokens: {gt: 6000}}",
            f"        tier: t{(i + 1) % 100}",
        ]
    path = write(tmp_path, "big.yaml", "\n".join(lines) + "\n")
    report = validate_paths([path])
    assert not report.errors, report.errors[:3]
    assert len(report.policies[None].tasks) == 1000
    assert report.source.locate(("tasks", "task999", "tier")).line == len(lines) - 8


def test_validate_does_not_import_the_sdks(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    code = (
        "import sys\n"
        "from policyrouter.policy.loader import validate_paths\n"
        f"assert validate_paths([{str(path)!r}]).ok\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
