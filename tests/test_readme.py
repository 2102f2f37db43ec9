"""Every fenced code block of README.md runs in this suite (one test per block, named by line).

How a block is run, by its language:

- ``python``: executed as written (top-level ``await`` allowed). A block that defines
  ``test_*`` functions is a pytest file: written out and run by pytest (the policyrouter
  plugin's fixtures included). Names a sample uses without defining (``text``,
  ``history``, ``ui``, ...) come from :data:`PRELUDE`; add one there when a new sample needs it.
- ``sh`` / ``console`` / ``bash``: each command (comments dropped, ``\\`` continuations
  joined, ``&&`` split, leading ``VAR=value`` set in the environment) must be one of:
  ``policyrouter ...`` (also ``.venv/bin/policyrouter``, ``python -m policyrouter``): run
  in-process and must exit 0 (or the block's ``exit=``; ``> FILE`` writes its stdout there); ``pip install ...`` /
  ``python3 -m venv ...``: install steps, not run here (no network), but each package must be
  a path, a URL or ``"$VAR"``, never the bare name ``policyrouter`` (it is not published), and
  its extras must exist; ``.venv/bin/python -m pytest ...``: must appear verbatim in
  ``.ci/run``. Any other program fails the test: give the block a ``check=``.
- ``yaml``: a complete policy (it has ``version``) must validate with no error and no warning.
  Other YAML needs a mark (``fragment``, ``policytest`` or ``check=``).
- no language: must be marked ``output=`` or ``check=``.

Every block runs in a fresh directory holding a copy of ``policies/`` and ``README.md``
(its working directory), so ``policies/`` and ``@README.md`` mean what they mean in a checkout.

Marks: an HTML comment on the line before the fence (blank lines between are allowed),
``<!-- readme: KEY[=VALUE]; KEY[=VALUE] -->``:

- ``mock``: the block needs real keys; every provider of the copied ``policies/`` (base and
  every environment) is made the offline ``mock`` provider first, so ``env="prod"`` runs
  with no key and no network.
- ``setup=NAME``: :data:`SETUPS` ``[NAME](workdir)`` first writes the files the block names.
- ``output=COMMAND``: the block is what ``COMMAND`` prints (stdout, then stderr), compared
  exactly (trailing spaces aside); run after ``setup``. To refresh it, run the command the
  failure names in the same setup and paste its output.
- ``exit=N``: the exit status the block's commands (or ``output=``) must have (default 0).
- ``fragment``: YAML merged onto ``policies/production.yaml`` (mappings merge, lists
  replace) that must then validate with no error.
- ``policytest``: a ``*.policytest.yaml`` saved in ``policies/tests/``; ``policyrouter test``
  on it must pass.
- ``check=NAME``: :data:`CHECKS` ``[NAME](block, ctx)`` decides (the error tree, the GitHub
  Actions step, the pre-commit hook, the Redis deployment, the editor's ``$schema`` line).

``python tests/test_readme.py actions-step`` prints the shell of the README's GitHub
Actions step: ``.ci/run`` runs it in a fresh venv with ``POLICYROUTER_SPEC`` set to the
checkout, so the install line users copy is the one CI runs.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"

_FENCE = re.compile(r"^```([\w-]*)\s*$")
_MARK = re.compile(r"^<!--\s*readme:\s*(.*?)\s*-->$")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README: where it starts, its language, text and marks."""

    line: int
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'text'}"


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown``, each with the marks of the comment just before it."""
    lines = markdown.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        out.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1 : end]) + "\n", _marks(lines, i)))
        i = end + 1
    return out


def _marks(lines: list[str], fence: int) -> dict[str, str]:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = _MARK.match(lines[j].strip()) if j >= 0 else None
    if not m:
        return {}
    marks = {}
    for part in filter(None, (p.strip() for p in m.group(1).split(";"))):
        key, _, value = part.partition("=")
        marks[key.strip()] = value.strip()
    return marks


# --------------------------------------------------------------------------- the test


def _readme_blocks() -> list[Block]:
    return blocks(README.read_text(encoding="utf-8"))


def pytest_generate_tests(metafunc: Any) -> None:
    if "block" in metafunc.fixturenames:
        found = _readme_blocks()
        metafunc.parametrize("block", found, ids=[b.id for b in found])


@dataclass
class Ctx:
    """What a block runs with: its working directory and the pytest request (for fixtures)."""

    workdir: Path
    request: Any


def test_readme_has_blocks_of_every_kind() -> None:
    langs = {b.lang for b in _readme_blocks()}
    assert {"python", "sh", "yaml", ""} <= langs


def test_ci_runs_the_actions_step() -> None:
    assert "tests/test_readme.py actions-step" in CI_RUN.read_text(encoding="utf-8")


def test_harness_reads_marks_and_commands() -> None:
    md = "<!-- readme: setup=a; exit=1 -->\n\n```sh\nA=1 policyrouter x \\\n  --y && pip install -e . # c\n```\n"
    (b,) = blocks(md)
    assert (b.line, b.lang, b.marks) == (3, "sh", {"setup": "a", "exit": "1"})
    assert _commands(b.text) == ["A=1 policyrouter x --y", "pip install -e ."]


@pytest.mark.parametrize("spec", ["policyrouter", "policyrouter[redis]", "policyrouter[nope] @ git+https://x/y"])
def test_harness_refuses_installs_that_install_nothing(spec: str) -> None:
    with pytest.raises(AssertionError):
        _check_install(["pip", "install", spec], "here")


@pytest.mark.parametrize(
    "spec", [".", ".[dev]", "./vendor/policyrouter", "$SPEC", "policyrouter[redis] @ git+https://x/y"]
)
def test_harness_accepts_installs_from_a_path_or_a_url(spec: str) -> None:
    _check_install(["pip", "install", "-q", "-e", spec], "here")


def test_harness_finds_a_stale_output_sample(tmp_path: Path, monkeypatch: Any) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    monkeypatch.chdir(tmp_path)
    (b,) = blocks("<!-- readme: output=policyrouter validate policies/ -->\n```\n0 errors, 1 warning\n```\n")
    with pytest.raises(AssertionError, match="paste this instead"):
        _check_output(b)


def test_block(block: Block, tmp_path: Path, monkeypatch: Any, request: Any) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(REPO / "policies", workdir / "policies")
    shutil.copy(README, workdir / "README.md")
    monkeypatch.chdir(workdir)
    ctx = Ctx(workdir, request)
    known = {"mock", "setup", "output", "exit", "fragment", "policytest", "check"}
    assert set(block.marks) <= known, f"README.md:{block.line}: unknown mark(s) {set(block.marks) - known}"
    if "mock" in block.marks:
        _all_providers_mock(workdir / "policies")
    if "setup" in block.marks:
        SETUPS[block.marks["setup"]](workdir)
    if "check" in block.marks:
        CHECKS[block.marks["check"]](block, ctx)
    elif "output" in block.marks:
        _check_output(block)
    elif block.lang == "python":
        _run_python(block, ctx)
    elif block.lang in ("sh", "console", "bash"):
        for command in _commands(block.text):
            _run_command(command, block)
    elif block.lang == "yaml":
        _check_yaml(block, workdir)
    else:
        raise AssertionError(f"README.md:{block.line}: a block without a language needs output= or check=")


# --------------------------------------------------------------------------- python


class _Anything:
    """A stand-in for the reader's own objects (``ui``, ``calls``, ``pager``): any attribute,
    any call, awaitable."""

    def __getattr__(self, name: str) -> _Anything:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
        return self

    def __await__(self) -> Iterator[None]:
        yield from ()


PRELUDE: dict[str, Any] = {
    "text": "The printer on floor 3 jams on every duplex job since the firmware update.",
    "pdf_text": "ACME GmbH, invoice 2026-114, issued 2026-03-01, total EUR 1,190.00",
    "history": [{"role": "user", "content": "Hello! Can you help me reset my password?"}],
    "weather_tool": {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    "ui": _Anything(),
    "calls": _Anything(),
    "log": _Anything(),
    "pager": _Anything(),
    "tracer_provider": None,
    "registry": None,
}
"""Names README samples use without defining them, as a reader's program would have them
(and ``router``: the offline router of the copied ``policies/``, unless the sample builds one)."""


def _run_python(block: Block, ctx: Ctx) -> None:
    tree = ast.parse(block.text, filename=f"README.md:{block.line}")
    if any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tree.body):
        _run_pytest_file(block, ctx.workdir)
        return
    from policyrouter import Router

    ns: dict[str, Any] = {"__name__": "readme_sample", **PRELUDE}
    names = {(n.id, type(n.ctx)) for n in ast.walk(tree) if isinstance(n, ast.Name)}
    if ("router", ast.Load) in names and ("router", ast.Store) not in names:
        ns["router"] = Router.from_path("policies/", env="offline")  # for samples that use one
    code = compile(block.text, f"README.md:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    try:
        result = eval(code, ns)  # a coroutine when the sample awaits at top level
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    finally:
        for value in ns.values():  # close what the sample opened (routers, watchers)
            close = getattr(value, "close", None)
            if callable(close) and type(value).__module__.startswith("policyrouter"):
                close()


def _run_pytest_file(block: Block, workdir: Path) -> None:
    path = workdir / f"test_readme_l{block.line}.py"
    path.write_text(block.text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"README.md:{block.line}: pytest failed\n{done.stdout}\n{done.stderr}"


# --------------------------------------------------------------------------- shell


def _commands(text: str) -> list[str]:
    """The commands of a shell block: comments dropped, continuations joined, ``&&`` split."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[str] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        current: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if current:
                    out.append(shlex.join(current))
                current = []
            else:
                current.append(word)
    return out


def _policyrouter_argv(words: list[str]) -> list[str] | None:
    """The arguments of a policyrouter command line, or ``None`` when it runs something else."""
    if words and words[0].endswith("policyrouter") and "/" not in words[0].replace(".venv/bin/", ""):
        return words[1:]
    if words[:3] in (["python", "-m", "policyrouter"], ["python3", "-m", "policyrouter"]):
        return words[3:]
    return None


def _run_command(command: str, block: Block) -> None:
    words = shlex.split(command)
    env: dict[str, str] = {}
    while words and _ASSIGN.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    target = None
    if len(words) > 2 and words[-2] == ">":  # `policyrouter ... > FILE`
        words, target = words[:-2], words[-1]
    argv = _policyrouter_argv(words)
    where = f"README.md:{block.line}: `{command}`"
    if argv is not None:
        code, out, err = _policyrouter(argv, env)
        want = int(block.marks.get("exit", "0"))
        assert code == want, f"{where} exited {code}, expected {want}\n{out}\n{err}"
        if target is not None:
            Path(target).write_text(out, encoding="utf-8")
    elif _is_install(words):
        _check_install(words, where)
    elif words[:1] == [".venv/bin/python"] and words[1:3] == ["-m", "pytest"]:
        assert command in CI_RUN.read_text(encoding="utf-8"), f"{where}: .ci/run must run this verbatim"
    else:
        raise AssertionError(f"{where}: not a policyrouter, install or test command; mark the block check=NAME")


def _policyrouter(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    from policyrouter.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def _is_install(words: list[str]) -> bool:
    program = words[0].rsplit("/", 1)[-1] if words else ""
    return (program in ("pip", "pip3") and words[1:2] == ["install"]) or words[1:3] == ["-m", "venv"]


def _check_install(words: list[str], where: str) -> None:
    """A ``pip install`` names a path, a URL or ``$VAR``, never the unpublished name; its extras exist."""
    if words[1:3] == ["-m", "venv"]:
        return
    from importlib.metadata import metadata

    extras = set(metadata("policyrouter").get_all("Provides-Extra") or [])
    for spec in (w for w in words[2:] if not w.startswith("-")):
        name, _, rest = spec.partition("[")
        wanted = set(rest.split("]", 1)[0].split(",")) - {""} if rest else set()
        assert wanted <= extras, f"{where}: no extra {wanted - extras} in pyproject.toml"
        local = name in (".", "") or name.startswith(("./", "/", "$"))
        assert local or " @ " in spec or "://" in spec, (
            f"{where}: `{spec}` installs from PyPI, where policyrouter is not published; "
            "install from a path or the repository (`policyrouter @ git+https://...`)"
        )


# --------------------------------------------------------------------------- yaml


def _check_yaml(block: Block, workdir: Path) -> None:
    import yaml

    from policyrouter.policy.loader import validate_paths

    if "fragment" in block.marks:
        base = yaml.safe_load((workdir / "policies" / "production.yaml").read_text(encoding="utf-8"))
        merged = _merge(base, yaml.safe_load(block.text))
        path = workdir / "policies" / "production.yaml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        report = validate_paths([str(workdir / "policies")])
        errors = [d.one_line() for d in report.diagnostics if d.severity == "error"]
        assert errors == [], f"README.md:{block.line}: the fragment does not validate\n" + "\n".join(errors)
        return
    if "policytest" in block.marks:
        path = workdir / "policies" / "tests" / "readme.policytest.yaml"
        path.write_text(block.text, encoding="utf-8")
        code, out, err = _policyrouter(["test", str(path)])
        assert code == 0, f"README.md:{block.line}: the policy test fails\n{out}\n{err}"
        return
    assert "version" in yaml.safe_load(block.text), (
        f"README.md:{block.line}: YAML that is not a whole policy needs a mark (fragment, policytest, check=)"
    )
    path = workdir / "readme-policy.yaml"
    path.write_text(block.text, encoding="utf-8")
    report = validate_paths([str(path)])
    shown = "\n".join(d.one_line() for d in report.diagnostics)
    assert report.diagnostics == (), f"README.md:{block.line}: the policy sample does not validate cleanly\n{shown}"


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def _all_providers_mock(policies: Path) -> None:
    """Make every provider of every policy file (base and environments) the offline mock."""
    import yaml

    for path in sorted(policies.glob("*.y*ml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        sections = [data, *(data.get("environments") or {}).values()]
        for section in sections:
            for name in (section or {}).get("providers") or {}:
                section["providers"][name] = {"kind": "mock"}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------- output


def _check_output(block: Block) -> None:
    command = block.marks["output"]
    argv = _policyrouter_argv(shlex.split(command))
    assert argv is not None, f"README.md:{block.line}: output= names a policyrouter command"
    code, out, err = _policyrouter(argv)
    want = int(block.marks.get("exit", "0"))
    actual = _strip(out + err)
    assert code == want, f"README.md:{block.line}: `{command}` exited {code}, expected {want}\n{actual}"
    assert _strip(block.text) == actual, (
        f"README.md:{block.line}: the sample is not what `{command}` prints now (setup "
        f"{block.marks.get('setup', '-')}); paste this instead:\n{actual}"
    )


def _strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


# --------------------------------------------------------------------------- setups


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"setup: {path.name} no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _setup_typo_tier(workdir: Path) -> None:
    """``policies/`` with the first ``tier: simple`` of a task misspelt ``simpel``."""
    _replace(workdir / "policies" / "production.yaml", "    tier: simple\n", "    tier: simpel\n")


def _setup_policy_ops(workdir: Path) -> None:
    """``day.jsonl`` (a little traffic) and ``main-policies/`` (the policy before the change)."""
    import json

    rows = [
        {"ts": 1_767_225_600 + 60 * i, "task": "summarize", "input_tokens": 1200, "output_tokens": 150, "tenant": t}
        for i, t in enumerate(["acme", "globex", "acme", "initech"])
    ]
    (workdir / "day.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    shutil.copytree(workdir / "policies", workdir / "main-policies")


def _setup_diff(workdir: Path) -> None:
    """``main-policies/`` as it was; ``policies/`` with a smaller daily budget, the simple tier
    reordered and a larger dev budget."""
    _setup_policy_ops(workdir)
    policy = workdir / "policies" / "production.yaml"
    _replace(policy, "  simple: [gpt-mini, haiku]", "  simple: [haiku, gpt-mini]")
    _replace(policy, "      daily: {limit_usd: 5}", "      daily: {limit_usd: 10}")
    text = policy.read_text(encoding="utf-8")
    daily = re.search(r"\n  daily:\n(?:    .*\n)*?    limit_usd: (\d+)", text)
    assert daily, "setup diff: the daily budget's limit_usd is not where it was"
    start, end = daily.span(1)
    policy.write_text(text[:start] + str(int(daily.group(1)) * 3 // 4) + text[end:], encoding="utf-8")


def _setup_wrong_model(workdir: Path) -> None:
    """``prod.policytest.yaml``: a case that expects gpt-mini while the script makes haiku answer."""
    (workdir / "prod.policytest.yaml").write_text(
        "policy: policies\n"
        "cases:\n"
        "  - name: wrong model\n"
        "    request: {task: summarize, input_tokens: 1200}\n"
        "    script: {gpt-mini: [429, 500, 500]}\n"
        "    expect: {model: gpt-mini}\n",
        encoding="utf-8",
    )


def _setup_spreading(workdir: Path) -> None:
    """``spreading.yaml``: the policy of README's "Spreading load" section (its first YAML block)."""
    text = (workdir / "README.md").read_text(encoding="utf-8").split("\n## Spreading load\n", 1)[1]
    (workdir / "spreading.yaml").write_text(text.split("```yaml\n", 1)[1].split("```", 1)[0], encoding="utf-8")


def _setup_queues(workdir: Path) -> None:
    """``policies/production.yaml`` with the README's ``queues:`` fragment added."""
    with (workdir / "policies" / "production.yaml").open("a") as f:
        f.write(
            "\nqueues:\n  background:\n    tasks: [summarize, classify]\n"
            "    priority: {tenants: {acme: 1}, metadata: {customer_tier: {enterprise: 1, pro: 3, free: 5}}}\n"
        )


SETUPS: dict[str, Callable[[Path], None]] = {
    "queues": _setup_queues,
    "typo-tier": _setup_typo_tier,
    "policy-ops": _setup_policy_ops,
    "diff": _setup_diff,
    "wrong-model": _setup_wrong_model,
    "spreading": _setup_spreading,
}
"""Named preparations of a block's working directory (``<!-- readme: setup=NAME -->``)."""


# --------------------------------------------------------------------------- checks


def _check_errors(block: Block, ctx: Ctx) -> None:
    """The error tree names every exception of ``policyrouter.errors`` under its real parent."""
    import policyrouter.errors as errors

    stack: list[tuple[int, str]] = []
    seen = set()
    for line in block.text.splitlines():
        m = re.match(r"^([│ ]*(?:├── |└── )?)(\w+)", line)
        if not m or not m.group(2)[0].isupper():
            continue
        depth, name = len(m.group(1)), m.group(2)
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, Exception), f"README.md:{block.line}: no error {name}"
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parent = stack[-1][1]
            assert cls.__bases__[0].__name__ == parent, f"README.md:{block.line}: {name} is not a {parent}"
        stack.append((depth, name))
        seen.add(name)
    public = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert public <= seen, f"README.md:{block.line}: the tree leaves out {sorted(public - seen)}"


def actions_step(block: Block) -> str:
    """The shell of the Actions block's step that installs policyrouter."""
    import yaml

    steps = yaml.safe_load(block.text)
    runs = [s["run"] for s in steps if "policyrouter" in s.get("run", "")]
    assert len(runs) == 1, f"README.md:{block.line}: one step runs policyrouter"
    return str(runs[0])


def _check_actions(block: Block, ctx: Ctx) -> None:
    """The step installs from ``$POLICYROUTER_SPEC`` (``.ci/run`` sets it to this checkout and
    runs the step in a fresh venv); here its policyrouter commands run and must pass."""
    import yaml

    steps = yaml.safe_load(block.text)
    step = next(s for s in steps if "policyrouter" in s.get("run", ""))
    assert "POLICYROUTER_SPEC" in step.get("env", {}), f"README.md:{block.line}: the step sets POLICYROUTER_SPEC"
    _check_install(["pip", "install", step["env"]["POLICYROUTER_SPEC"]], f"README.md:{block.line}: POLICYROUTER_SPEC")
    for command in _commands(actions_step(block)):
        _run_command(command, block)


def _check_pre_commit(block: Block, ctx: Ctx) -> None:
    """Every hook the block uses ships in ``.pre-commit-hooks.yaml``, and its entry passes here."""
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    for repo in yaml.safe_load(block.text):
        for hook in repo["hooks"]:
            assert hook["id"] in hooks, f"README.md:{block.line}: no hook {hook['id']} in .pre-commit-hooks.yaml"
            shipped = hooks[hook["id"]]
            command = shlex.split(shipped["entry"]) + list(hook.get("args", shipped.get("args", [])))
            code, out, err = _policyrouter(_policyrouter_argv(command) or [])
            assert code == 0, f"README.md:{block.line}: `{shlex.join(command)}` exited {code}\n{out}{err}"


def _check_redis(block: Block, ctx: Ctx) -> None:
    """The Redis deployment: installs checked; the application line (``gunicorn app:app``, the
    reader's own program) is not run; ``policyrouter`` lines run against this suite's
    redis-server in place of ``redis.internal:6379``."""
    server = ctx.request.getfixturevalue("redis_server")
    host = server.url.split("://", 1)[1].split("/", 1)[0]
    for command in _commands(block.text):
        words = shlex.split(command)
        while words and _ASSIGN.match(words[0]):
            words.pop(0)
        if _policyrouter_argv(words) is not None:
            _run_command(command.replace("redis.internal:6379", host), block)
        elif _is_install(words):
            _check_install(words, f"README.md:{block.line}")


def _check_schema_line(block: Block, ctx: Ctx) -> None:
    """A policy of a user's own repository, saved as ``policies/support.yaml``: its
    ``$schema=`` line finds the schema ``policyrouter schema --print`` wrote at the repository
    root, the file passes that schema (as an editor checks it) and ``policyrouter validate``."""
    import json

    import jsonschema
    import yaml

    repo = ctx.workdir / "user-repo"
    (repo / "policies").mkdir(parents=True)
    code, out, _ = _policyrouter(["schema", "--print"])
    assert code == 0
    (repo / ".policyrouter.schema.json").write_text(out, encoding="utf-8")
    policy = repo / "policies" / "support.yaml"
    policy.write_text(block.text, encoding="utf-8")
    m = re.match(r"# yaml-language-server: \$schema=(\S+)\n", block.text)
    assert m, f"README.md:{block.line}: the first line names the schema"
    schema = json.loads((policy.parent / m.group(1)).read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(block.text))]
    assert errors == [], f"README.md:{block.line}: {errors}"
    code, out, err = _policyrouter(["validate", str(policy), "--strict"])
    assert code == 0, f"README.md:{block.line}: {out}{err}"


def _check_mock_script(block: Block, ctx: Ctx) -> None:
    """A ``policyrouter mock --script`` file: the server loads it whole, with no problem."""
    from policyrouter.testing import MockLLMServer

    path = ctx.workdir / "mock.yaml"
    path.write_text(block.text, encoding="utf-8")
    with MockLLMServer() as server:
        server.load_script(path)


_APP = (
    "import os, openai; c = openai.OpenAI(api_key='test', base_url=os.environ['OPENAI_BASE_URL']); "
    "r = c.chat.completions.create(model='gpt-x', messages=[{'role': 'user', 'content': 'hi'}]); "
    "print(r.choices[0].message.content)"
)


def _check_mock_shell(block: Block, ctx: Ctx) -> None:
    """The shell that runs an app against ``policyrouter mock``: run by bash for real with the
    README's script file; the reader's app (``python -m my_app``) is one OpenAI SDK call."""
    (script,) = [b for b in _readme_blocks() if b.marks.get("check") == "mock-script"]
    (ctx.workdir / "mock.yaml").write_text(script.text, encoding="utf-8")
    lines = [line for line in block.text.splitlines() if not line.startswith("python -m my_app")]
    assert len(lines) == len(block.text.splitlines()) - 1, f"README.md:{block.line}: the app line is gone"
    shell = "\n".join(line if not line.startswith("kill") else 'python -c "$APP"\n' + line for line in lines)
    env = {**os.environ, "APP": _APP, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", shell], cwd=ctx.workdir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"README.md:{block.line}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    assert "mock answer from gpt-x" in done.stdout, f"README.md:{block.line}: {done.stdout}{done.stderr}"


def _check_experiment_test(block: Block, ctx: Ctx) -> None:
    """The experiment's policy test: saved beside the README's experiment policy (the block whose
    first line is ``# experiments.yaml``), ``policyrouter test`` on it passes."""
    policy = next(b for b in _readme_blocks() if b.text.startswith("# experiments.yaml"))
    (ctx.workdir / "experiments.yaml").write_text(policy.text, encoding="utf-8")
    (ctx.workdir / "experiments.policytest.yaml").write_text(block.text, encoding="utf-8")
    code, out, err = _policyrouter(["test", str(ctx.workdir / "experiments.policytest.yaml")])
    assert code == 0, f"README.md:{block.line}: exit {code}\n{out}{err}"
    assert " passed, 0 failed" in out, f"README.md:{block.line}: {out}"


CHECKS: dict[str, Callable[[Block, Ctx], None]] = {
    "schema-line": _check_schema_line,
    "errors": _check_errors,
    "actions": _check_actions,
    "pre-commit": _check_pre_commit,
    "redis": _check_redis,
    "mock-script": _check_mock_script,
    "mock-shell": _check_mock_shell,
    "experiment-test": _check_experiment_test,
}
"""Blocks checked by their own rule (``<!-- readme: check=NAME -->``)."""


if __name__ == "__main__":
    if sys.argv[1:] == ["actions-step"]:
        (found,) = [b for b in _readme_blocks() if b.marks.get("check") == "actions"]
        sys.stdout.write(actions_step(found))
    else:
        sys.exit("usage: python tests/test_readme.py actions-step")
