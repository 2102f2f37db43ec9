"""Load policy files and directories into validated :class:`Policy` objects.

The pipeline, in a fixed order (each step collects every problem it finds):

1. **collect**: each path is a file, or a directory meaning its ``*.yaml``/``*.yml``
   files at the top level only (not recursive), sorted by file name (code point order),
   skipping policy test files (``*.policytest.yaml``/``.yml``) and names starting with
   ``.``. Several paths are merged in the order given; a file reached twice is read once.
2. **read**: at most ``max_bytes`` (default 1 MiB) per file, then safe YAML with
   positions (:mod:`policyrouter.policy.yamlsrc`).
3. **merge**: the files' sections are combined. ``version`` must agree; a named entry
   (``tasks.summarize``, ``environments.prod``) or the ``state`` section defined in two
   files is ``duplicate-definition``, naming both places.
4. **overlay**: an environment's sections are deep-merged onto the base: mappings merge
   recursively, lists and scalars replace, and an overlay that changes a provider's
   ``kind`` replaces that provider whole. Values written in the overlay point at the
   overlay's lines; everything else keeps its base position.
5. **validate**: ``Policy.model_validate`` (strict); every pydantic error becomes a
   :class:`Diagnostic` with a stable code, the policy path and ``file:line:col``.
6. **check**: :func:`policyrouter.policy.checks.check_policy` on each valid policy, and
   :func:`~policyrouter.policy.checks.scan_secrets` on the raw data.

Diagnostic codes emitted here (``checks`` has its own table):

======================= =====================================================================
code                    meaning
======================= =====================================================================
file-not-found          a path does not exist (I/O: see ``IO_CODES``)
file-unreadable         a path cannot be read, or is not a regular file/directory (I/O)
no-policy-files         a directory holds no ``*.yaml``/``*.yml`` policy file (I/O)
file-too-large          a file is over ``max_bytes``
yaml-*                  see :mod:`policyrouter.policy.yamlsrc`: encoding, syntax, tab, empty,
                        not-mapping, duplicate-key, key-type, tag, merge, alias-limit,
                        alias-cycle, too-many-nodes, too-deep
version-mismatch        two files give different ``version`` values
duplicate-definition    one name (or ``state``) defined in two files
unknown-environment     ``env`` names no environment of the policy
missing-field           a required field is absent
unknown-field           a key the language does not have (hint: did you mean)
invalid-value           a value outside a fixed set, or refused by a model rule
wrong-type              e.g. a quoted number where a number belongs
out-of-range            a number beyond its bounds
invalid-format          a string not matching its pattern (names, env var names, URLs)
schema                  any other schema error
======================= =====================================================================
"""

from __future__ import annotations

import copy
import os
import stat
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from policyrouter.errors import PolicyError
from policyrouter.policy import checks
from policyrouter.policy.diagnostics import Diagnostic, Location
from policyrouter.policy.models import Environment, Policy
from policyrouter.policy.names import closest
from policyrouter.policy.refs import resolve_schema_refs
from policyrouter.policy.source import PathKey, SourceMap, dotted
from policyrouter.policy.yamlsrc import MAX_NODES_DEFAULT, Positions, YamlDocument, load_yaml

__all__ = [
    "IO_CODES",
    "MAX_BYTES_DEFAULT",
    "PolicyPaths",
    "ValidationReport",
    "collect_files",
    "load_policy",
    "load_with_source",
    "validate_paths",
]

MAX_BYTES_DEFAULT = 1 << 20
"""Largest policy file read, in bytes (1 MiB)."""

IO_CODES: frozenset[str] = frozenset({"file-not-found", "file-unreadable", "no-policy-files"})
"""Codes meaning the input could not be read at all (the CLI exits 2 on these, not 1)."""

POLICY_SUFFIXES = (".yaml", ".yml")
POLICYTEST_SUFFIXES = (".policytest.yaml", ".policytest.yml")

# Sections holding named entries: a name may be defined in one file only.
NAMED_SECTIONS = frozenset(
    {"providers", "models", "tiers", "retry_policies", "circuit_breakers", "budgets", "tasks", "environments"}
)
OVERLAY_SECTIONS = frozenset(Environment.model_fields)

PathArg = Union[str, "os.PathLike[str]"]
PolicyPaths = Union[PathArg, Sequence[PathArg]]
"""One path, or several merged in order."""

_Raw = tuple[str, int, int]


@dataclass(frozen=True)
class ValidationReport:
    """Everything :func:`validate_paths` found.

    ``diagnostics``: sorted by location; a problem seen in the base and in environments
    is reported once (with ``env=None`` when the base has it).
    ``policies``: the policies that validated, keyed by environment (None: the base).
    ``source``: positions of the base policy; ``sources`` has one map per environment
    validated (overlay values point into the overlay).
    ``io_error``: some input could not be read (codes in :data:`IO_CODES`).
    """

    diagnostics: tuple[Diagnostic, ...]
    policies: dict[str | None, Policy]
    source: SourceMap
    io_error: bool = False
    sources: dict[str | None, SourceMap] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")


# --------------------------------------------------------------------------- public API


def validate_paths(
    paths: PolicyPaths,
    *,
    env: str | None = None,
    all_envs: bool = True,
    max_bytes: int = MAX_BYTES_DEFAULT,
    max_nodes: int = MAX_NODES_DEFAULT,
) -> ValidationReport:
    """Load, merge and validate policy files; never raises on bad input.

    ``env=None`` validates the base and, with ``all_envs``, every environment overlay's
    merged result. ``env="prod"`` validates only that merged result (an unknown name is
    ``unknown-environment``).
    """
    files, diagnostics = collect_files(_as_list(paths))
    documents: list[YamlDocument] = []
    for display, path in files:
        raw, problem = _read(path, display, max_bytes)
        if raw is None:
            if problem is not None:
                diagnostics.append(problem)
            continue
        document = load_yaml(raw, display, max_nodes=max_nodes)
        documents.append(document)
        diagnostics.extend(document.diagnostics)
    io_error = any(d.code in IO_CODES for d in diagnostics)
    lines = {d.file: d.lines for d in documents}
    default_file = files[0][0] if files else "<policy>"
    if diagnostics and (io_error or not all(d.ok for d in documents) or len(documents) < len(files)):
        empty = SourceMap(lines=lines, default_file=default_file)
        return _report(diagnostics, {}, empty, {}, io_error)
    if not documents:  # no paths at all
        diagnostics.append(Diagnostic("error", "no-policy-files", "no policy path given", Location(default_file)))
        return _report(diagnostics, {}, SourceMap(default_file=default_file), {}, True)

    base, values, keys = _merge_files(documents, diagnostics)
    source = SourceMap(Positions(values), Positions(keys), lines, default_file)
    diagnostics.extend(checks.scan_secrets(base, source))
    diagnostics.extend(resolve_schema_refs(base, source))  # response_schema: {$ref: file}

    policies: dict[str | None, Policy] = {}
    sources: dict[str | None, SourceMap] = {None: source}
    environments = base.get("environments")
    env_names = list(environments) if isinstance(environments, dict) else []
    if env is None:
        targets: list[str | None] = [None] + ([*env_names] if all_envs else [])
    elif env in env_names:
        targets = [env]
    else:
        diagnostics.append(_unknown_environment(env, env_names, source))
        targets = []
    for target in targets:
        if target is None:
            merged, target_source = base, source
        else:
            overlay = environments[target] if isinstance(environments, dict) else None
            if not isinstance(overlay, dict):
                # Not a mapping: the base's schema validation reports it.
                merged, target_source = base, source
            else:
                merged, target_source = _apply_overlay(base, overlay, target, values, keys, source)
            sources[target] = target_source
        policy, found = _validate(merged, target_source, target)
        diagnostics.extend(found)
        if policy is not None:
            policies[target] = policy
    return _report(diagnostics, policies, source, sources, False)


def load_with_source(
    path: PolicyPaths,
    env: str | None = None,
    *,
    max_bytes: int = MAX_BYTES_DEFAULT,
) -> tuple[Policy, SourceMap]:
    """The policy merged for ``env`` and where each of its values is written.

    Raises :class:`PolicyError` (with every diagnostic) when there is any error;
    warnings do not raise.
    """
    report = validate_paths(path, env=env, all_envs=False, max_bytes=max_bytes)
    if not report.ok or env not in report.policies:
        raise PolicyError(report.diagnostics)
    return report.policies[env], report.sources.get(env, report.source)


def load_policy(
    path: PolicyPaths,
    env: str | None = None,
    *,
    max_bytes: int = MAX_BYTES_DEFAULT,
) -> Policy:
    """Load and validate a policy file or directory (or several), merged for ``env``.

    Raises :class:`PolicyError` whose ``.diagnostics`` list every problem found.
    """
    return load_with_source(path, env, max_bytes=max_bytes)[0]


# --------------------------------------------------------------------------- files


def _as_list(paths: PolicyPaths) -> list[PathArg]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


def collect_files(paths: Iterable[PathArg]) -> tuple[list[tuple[str, Path]], list[Diagnostic]]:
    """Expand paths into policy files: ``(display name, path)`` pairs, and I/O problems.

    A directory contributes its top-level ``*.yaml``/``*.yml`` files sorted by name,
    without policy test files and dot files. A file reached twice is listed once.
    """
    files: list[tuple[str, Path]] = []
    problems: list[Diagnostic] = []
    seen: set[str] = set()

    def add(display: str, path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append((display, path))

    for raw in paths:
        display = os.fspath(raw)
        path = Path(raw)
        try:
            info = path.stat()
        except FileNotFoundError:
            problems.append(_io("file-not-found", f"no such file or directory: {display}", display))
            continue
        except OSError as exc:
            problems.append(_io("file-unreadable", f"cannot read {display}: {exc.strerror or exc}", display))
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                names = sorted(entry.name for entry in os.scandir(path) if _is_policy_file(entry))
            except OSError as exc:
                problems.append(
                    _io("file-unreadable", f"cannot list directory {display}: {exc.strerror or exc}", display)
                )
                continue
            if not names:
                problems.append(
                    _io(
                        "no-policy-files",
                        f"directory {display} holds no policy files",
                        display,
                        hint="policy files end in .yaml or .yml (not .policytest.yaml) "
                        "and sit directly in the directory (subdirectories are not read)",
                    )
                )
            for name in names:
                add(os.path.join(display, name), path / name)
        elif stat.S_ISREG(info.st_mode):
            add(display, path)
        else:
            problems.append(_io("file-unreadable", f"{display} is not a regular file or directory", display))
    return files, problems


def _is_policy_file(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    if name.startswith(".") or not name.endswith(POLICY_SUFFIXES) or name.endswith(POLICYTEST_SUFFIXES):
        return False
    try:
        return entry.is_file()
    except OSError:
        return False


def _read(path: Path, display: str, max_bytes: int) -> tuple[bytes | None, Diagnostic | None]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        return None, _io("file-not-found", f"no such file: {display}", display)
    except OSError as exc:
        return None, _io("file-unreadable", f"cannot read {display}: {exc.strerror or exc}", display)
    if len(data) > max_bytes:
        return None, Diagnostic(
            "error",
            "file-too-large",
            f"policy file is larger than the limit of {max_bytes} bytes",
            Location(display),
            hint="split the policy into several files in one directory, or raise the limit (max_bytes)",
        )
    return data, None


def _io(code: str, message: str, file: str, *, hint: str = "") -> Diagnostic:
    return Diagnostic("error", code, message, Location(file), hint=hint)


# --------------------------------------------------------------------------- merging files


def _merge_files(
    documents: Sequence[YamlDocument], diagnostics: list[Diagnostic]
) -> tuple[dict[str, Any], dict[PathKey, _Raw], dict[PathKey, _Raw]]:
    """Combine the files' sections; returns the data and its raw value/key positions."""
    merged: dict[str, Any] = {}
    if len(documents) == 1:
        only = documents[0]
        values, keys = only.values.raw, only.keys.raw
    else:
        values, keys = {}, {}
    for document in documents:
        data: dict[str, Any] = document.data or {}
        dvalues, dkeys = document.values.raw, document.keys.raw
        skipped: set[PathKey] = set()
        for section, value in data.items():
            spath: PathKey = (section,)
            if section in NAMED_SECTIONS and isinstance(value, dict):
                current = merged.get(section)
                if current is None:
                    merged[section] = dict(value)
                    continue
                if not isinstance(current, dict):  # the first file's wrong type is reported later
                    skipped.add(spath)
                    continue
                for name, entry in value.items():
                    if name in current:
                        epath = (section, name)
                        diagnostics.append(_duplicate(epath, keys, dkeys, document.file))
                        skipped.add(epath)
                    else:
                        current[name] = entry
            elif section not in merged:
                merged[section] = value
            elif section in NAMED_SECTIONS:
                diagnostics.append(
                    Diagnostic(
                        "error",
                        "wrong-type",
                        f"`{section}` expects a mapping of names to entries, got {_describe(value)}",
                        _loc(dvalues.get(spath) or dkeys.get(spath), document.file),
                        path=section,
                    )
                )
                skipped.add(spath)
            elif section == "version":
                first = merged["version"]
                if (type(first), first) != (type(value), value):
                    where = _loc(dkeys.get(spath), document.file)
                    diagnostics.append(
                        Diagnostic(
                            "error",
                            "version-mismatch",
                            f"`version: {value!r}` differs from `version: {first!r}` at {_loc(keys.get(spath), '?')}",
                            where,
                            path="version",
                            hint="every file of one policy must give the same version",
                        )
                    )
                skipped.add(spath)
            else:
                diagnostics.append(_duplicate(spath, keys, dkeys, document.file))
                skipped.add(spath)
        if len(documents) > 1:
            _add_positions(values, dvalues, skipped)
            _add_positions(keys, dkeys, skipped)
    return merged, values, keys


def _add_positions(into: dict[PathKey, _Raw], add: Mapping[PathKey, _Raw], skipped: set[PathKey]) -> None:
    """Positions of a later file: sections and the root keep the first file's place."""
    setdefault = into.setdefault
    for path, raw in add.items():
        if len(path) <= 1:
            setdefault(path, raw)
        elif not skipped or (path[:1] not in skipped and path[:2] not in skipped):
            into[path] = raw


def _duplicate(path: PathKey, first: Mapping[PathKey, _Raw], second: Mapping[PathKey, _Raw], file: str) -> Diagnostic:
    what = "section" if len(path) == 1 else "entry"
    return Diagnostic(
        "error",
        "duplicate-definition",
        f"{what} `{dotted(path)}` is defined twice: at {_loc(first.get(path), '?')} "
        f"and at {_loc(second.get(path), file)}",
        _loc(second.get(path), file),
        path=dotted(path),
        hint="a name may be defined in one file only; to change it per environment, "
        "use an overlay under `environments:`",
    )


def _loc(raw: _Raw | None, file: str) -> Location:
    return Location(*raw) if raw is not None else Location(file)


# --------------------------------------------------------------------------- overlays


def _apply_overlay(
    base: dict[str, Any],
    overlay: dict[str, Any],
    env: str,
    values: dict[PathKey, _Raw],
    keys: dict[PathKey, _Raw],
    source: SourceMap,
) -> tuple[dict[str, Any], SourceMap]:
    """``base`` with environment ``env``'s overlay deep-merged in, and its positions.

    Sections the overlay may not hold, and sections that are not mappings, are left out
    here: validating the base (the ``Environment`` model) reports them once.
    """
    merged = dict(base)
    replaced: list[PathKey] = []  # overlay values that replace or add (not merged)
    dropped: list[PathKey] = []  # base containers replaced whole: their positions go
    for section, value in overlay.items():
        if section in OVERLAY_SECTIONS and isinstance(value, dict):
            merged[section] = _deep_merge(base.get(section, _MISSING), value, (section,), replaced, dropped)
    env_values, env_keys = dict(values), dict(keys)
    if dropped:
        gone = set(dropped)
        for table in (env_values, env_keys):
            for path in [p for p in table if any(p[:i] in gone for i in range(1, len(p)))]:
                del table[path]
    prefix: PathKey = ("environments", env)
    for root in replaced:
        value = _get(overlay, root)
        for sub in _paths(value, root):
            full = prefix + sub
            if full in values:
                env_values[sub] = values[full]
            if full in keys:
                env_keys[sub] = keys[full]
    return merged, SourceMap(Positions(env_values), Positions(env_keys), source.lines, source.default_file)


_MISSING: Any = object()


def _deep_merge(base: Any, over: Any, path: PathKey, replaced: list[PathKey], dropped: list[PathKey]) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        if (
            len(path) == 2
            and path[0] == "providers"
            and "kind" in over
            and "kind" in base
            and over["kind"] != base["kind"]
        ):
            replaced.append(path)  # a new kind: the old kind's settings go
            dropped.append(path)
            return over
        out = dict(base)
        for key, value in over.items():
            child = (*path, key)
            if key in base:
                out[key] = _deep_merge(base[key], value, child, replaced, dropped)
            else:
                out[key] = value
                replaced.append(child)
        return out
    replaced.append(path)
    if isinstance(base, (dict, list)) and base:
        dropped.append(path)
    return over


def _get(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _paths(value: Any, path: PathKey) -> Iterator[PathKey]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _unknown_environment(env: str, names: Sequence[str], source: SourceMap) -> Diagnostic:
    match = closest(env, names)
    if match is not None:
        hint = f"did you mean `{match}`?"
    elif names:
        hint = "environments defined: " + ", ".join(f"`{n}`" for n in names)
    else:
        hint = "the policy defines no environments (add them under `environments:`)"
    return Diagnostic(
        "error",
        "unknown-environment",
        f"no environment named `{env}`",
        source.locate(("environments",), key=True),
        path="environments",
        hint=hint,
    )


# --------------------------------------------------------------------------- validation


def _validate(data: dict[str, Any], source: SourceMap, env: str | None) -> tuple[Policy | None, list[Diagnostic]]:
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        found = schema_diagnostics(exc, data, source, env) + _checks_despite(exc, data, source, env)
        return None, [d if d.env == env else replace(d, env=env) for d in found]
    found = checks.check_policy(policy, source, env)
    return policy, [d if d.env == env else replace(d, env=env) for d in found]


_DEFINITIONS = frozenset({"providers", "models", "tiers", "retry_policies", "circuit_breakers", "budgets", "tasks"})
_NOT_DESPITE = frozenset({"unused-definition", "budget-covers-nothing"})


def _checks_despite(exc: ValidationError, data: dict[str, Any], source: SourceMap, env: str | None) -> list[Diagnostic]:
    """The semantic checks of a policy with schema errors, so one run reports every problem.

    Each definition (``models.gpt-mini``) or top-level setting holding a schema error is
    set aside and the rest is checked. Findings that setting aside could cause are not
    reported: unknown references to a set-aside name, unused definitions and budgets that
    cover nothing. If the rest still does not validate, only the schema errors stand.
    """
    pruned = copy.deepcopy(data)
    removed: set[tuple[str, str]] = set()  # (section, name) set aside
    for _ in range(3):
        paths = [_resolve(err, pruned).path for err in exc.errors(include_url=False)]  # before pruning
        for path in paths:
            if not path:
                return []
            section = path[0]
            if section in _DEFINITIONS and len(path) >= 2 and isinstance(pruned.get(section), dict):
                pruned[section].pop(path[1], None)
                removed.add((str(section), str(path[1])))
            else:
                pruned.pop(str(section), None)
        try:
            policy = Policy.model_validate(pruned)
        except ValidationError as again:
            exc = again
            continue
        break
    else:
        return []
    out = []
    for d in checks.check_policy(policy, source, env):
        if d.code in _NOT_DESPITE or d.code == "literal-secret":
            continue  # literal secrets are found on the raw data (scan_secrets)
        if checks.referenced(d) in removed:  # a reference to a definition set aside
            continue
        out.append(d)
    return out


def _report(
    diagnostics: list[Diagnostic],
    policies: dict[str | None, Policy],
    source: SourceMap,
    sources: dict[str | None, SourceMap],
    io_error: bool,
) -> ValidationReport:
    unique: dict[tuple[str, str, Location, str, str], Diagnostic] = {}
    for d in diagnostics:  # base diagnostics come first: env=None is kept
        unique.setdefault((d.severity, d.code, d.location, d.message, d.path), d)
    ordered = tuple(sorted(unique.values(), key=Diagnostic.sort_key))
    return ValidationReport(ordered, policies, source, io_error, sources)


# --------------------------------------------------------------------------- pydantic errors -> diagnostics

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}
_RANGE = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
_PATTERN_HINTS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$": "a name starts with a letter or digit and holds only "
    "letters, digits and `_ . : / -`",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "write the *name* of an environment variable (like OPENAI_API_KEY), "
    "never the key itself",
    r"^https?://": "a URL starting with http:// or https://",
}


@dataclass
class _Resolved:
    error: Mapping[str, Any]
    path: PathKey
    key: bool  # the error is about a mapping key (``[key]`` in pydantic's loc)
    union: PathKey | None  # where a union branch tag was stripped


def schema_diagnostics(exc: ValidationError, data: Any, source: SourceMap, env: str | None = None) -> list[Diagnostic]:
    """One diagnostic per problem of a pydantic ``ValidationError`` on ``data``.

    Union branch names and other non-data segments of pydantic's ``loc`` are dropped;
    the errors of one union value become one diagnostic (the branch that got furthest).
    """
    resolved = [_resolve(err, data) for err in exc.errors(include_url=False)]
    out: list[Diagnostic] = []
    unions: dict[PathKey, list[_Resolved]] = {}
    for item in resolved:
        if item.union is None:
            out.append(_diagnostic([item], source, env))
        else:
            unions.setdefault(item.union, []).append(item)
    for group in unions.values():
        deepest = max(len(item.path) for item in group)
        by_path: dict[PathKey, list[_Resolved]] = {}
        for item in group:
            if len(item.path) == deepest:
                by_path.setdefault(item.path, []).append(item)
        out.extend(_diagnostic(items, source, env) for items in by_path.values())
    return out


def _resolve(error: Mapping[str, Any], data: Any) -> _Resolved:
    loc = error["loc"]
    missing = error["type"] == "missing"
    current = data
    path: list[str | int] = []
    union: PathKey | None = None
    key = False
    for index, part in enumerate(loc):
        if part == "[key]":
            key = True
            break
        step: Any = _MISSING
        if isinstance(current, dict) and isinstance(part, str):
            step = current.get(part, _MISSING)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            step = current[part]
        if step is not _MISSING:
            current = step
            path.append(part)
        elif missing and index == len(loc) - 1:
            path.append(part)
        elif union is None:  # a union branch tag or validator name, not a data key
            union = tuple(path)
    return _Resolved(error, tuple(path), key, union)


def _diagnostic(items: list[_Resolved], source: SourceMap, env: str | None) -> Diagnostic:
    first = items[0]
    error, path = first.error, first.path
    kind: str = error["type"]
    value = error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    name = _name(path)
    where = dotted(path)
    location = source.locate(path)
    hint = ""
    if len(items) > 1 or kind in _EXPECTED or kind.endswith("_type"):
        expected = _join_or(list(dict.fromkeys(_expected(item.error["type"]) for item in items)))
        code = "wrong-type"
        message = f"`{name}` expects {expected}, got {_describe(value)}"
        hint = _type_hint(items, value)
    elif first.key:
        location = source.locate(path, key=True)
        code = "invalid-format" if kind == "string_pattern_mismatch" else "schema"
        parent = dotted(path[:-1])
        message = f"invalid name `{path[-1] if path else ''}`" + (f" in `{parent}`" if parent else "")
        if kind != "string_pattern_mismatch":
            message += f": {_pydantic_message(error)}"
        hint = _PATTERN_HINTS.get(str(ctx.get("pattern", "")), "")
    elif kind == "missing":
        code = "missing-field"
        parent = dotted(path[:-1])
        message = f"missing required field `{name}`" + (f" in `{parent}`" if parent else "")
        location = source.locate(path, key=True)
        description = _field_description(path)
        hint = f"`{name}`: {description}" if description else ""
    elif kind == "extra_forbidden":
        code = "unknown-field"
        location = source.locate(path, key=True)
        parent = dotted(path[:-1])
        message = f"unknown field `{name}`" + (f" in `{parent}`" if parent else " at the top level")
        allowed = _allowed_fields(path[:-1])
        hint = _did_you_mean(str(path[-1]) if path else "", allowed, "fields")
    elif kind in ("literal_error", "enum"):
        code = "invalid-value"
        allowed = _allowed_values(path) or [str(ctx.get("expected", ""))]
        message = f"invalid value {_show(value)} for `{name}`: expected " + _join_or([f"`{a}`" for a in allowed])
        hint = _did_you_mean(str(value), allowed, "values") if isinstance(value, str) else ""
        literals = _literals(path)
        if isinstance(value, str) and literals and not any(isinstance(v, str) for v in literals):
            hint = f"remove the quotes: write {value.strip()}" if value.strip() in allowed else ""
    elif kind in _RANGE:
        code = "out-of-range"
        bound_key, words = _RANGE[kind]
        message = f"`{name}` must be {words} {_num(ctx.get(bound_key))}, got {_show(value)}"
    elif kind == "string_pattern_mismatch":
        code = "invalid-format"
        pattern = str(ctx.get("pattern", ""))
        message = f"`{name}` does not have the expected format: {_show(value)}"
        hint = _PATTERN_HINTS.get(pattern, f"it must match the pattern `{pattern}`")
    elif kind == "value_error":
        code = "invalid-value"
        message = str(ctx.get("error", error["msg"]))  # the validator's own ValueError text
        location = source.locate(path, key=True)
    else:
        code = "schema"
        message = f"`{name}`: {_pydantic_message(error)}" if path else _pydantic_message(error)
    return Diagnostic("error", code, message, location, path=where, hint=hint, env=env)


def _expected(kind: str) -> str:
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind.endswith("_type"):
        return "a " + kind.removesuffix("_type").replace("_", " ")
    return "a valid value"


def _pydantic_message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message[:1].lower() + message[1:]


def _type_hint(items: list[_Resolved], value: Any) -> str:
    kinds = {item.error["type"] for item in items}
    if isinstance(value, str):
        text = value.strip()
        if kinds & {"int_type", "float_type"} and _parses(text, int if "float_type" not in kinds else float):
            return f"remove the quotes: write {text}, not '{value}'"
        if "bool_type" in kinds and text.lower() in ("true", "false"):
            return f"remove the quotes: write {text.lower()}"
        if kinds & {"list_type"}:
            return f"write a list: `[{value}]`, or one `- item` per line"
    if isinstance(value, bool) and "string_type" in kinds:
        return "YAML 1.1 reads yes/no/on/off/true/false as booleans; quote the value if you meant text"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "string_type" in kinds:
        return "quote the value to make it text"
    if isinstance(value, float) and kinds == {"int_type"}:
        return "use a whole number"
    if value is None:
        return "an empty value is null: give a value, or remove the key to use the default"
    return ""


def _parses(text: str, kind: type[int] | type[float]) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _describe(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _name(path: PathKey) -> str:
    """The last key of ``path`` with any trailing indices: ``tier``, ``members[2]``."""
    index = len(path)
    while index and isinstance(path[index - 1], int):
        index -= 1
    head = str(path[index - 1]) if index else ""
    return head + "".join(f"[{p}]" for p in path[index:])


def _join_or(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _did_you_mean(word: str, candidates: Sequence[str], what: str) -> str:
    match = closest(word, candidates)
    if match is not None:
        return f"did you mean `{match}`?"
    if candidates and len(candidates) <= 20:
        return f"allowed {what}: " + ", ".join(f"`{c}`" for c in candidates)
    return ""


# Types along a policy path, for field names, allowed values and descriptions.


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step below ``annotation`` along ``part``, or None."""
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for member in get_args(annotation):
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info is not None else None
    if origin is dict and isinstance(part, str):
        return get_args(annotation)[1]
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    return None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _annotation_at(path: PathKey) -> Any:
    annotation: Any = Policy
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _allowed_fields(path: PathKey) -> list[str]:
    annotation = _annotation_at(path)
    fields: list[str] = []
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            fields.extend(member.model_fields)
    return fields


def _literals(path: PathKey) -> list[Any]:
    values: list[Any] = []
    for member in _members(_annotation_at(path)):
        if get_origin(member) is Literal:
            values.extend(get_args(member))
    return values


def _allowed_values(path: PathKey) -> list[str]:
    return [str(v) for v in _literals(path)]


def _field_description(path: PathKey) -> str:
    if not path:
        return ""
    parent = _annotation_at(path[:-1])
    for member in _members(parent):
        if isinstance(member, type) and issubclass(member, BaseModel):
            info = member.model_fields.get(str(path[-1]))
            if info is not None and info.description:
                return info.description
    return ""
