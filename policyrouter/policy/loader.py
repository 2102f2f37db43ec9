"""Load policy files and directories into validated :class:`Policy` objects.

The pipeline, in a fixed order (each step collects every problem it finds):

1. **collect**: each path is a file, or a directory meaning its ``*.yaml``/``*.yml``
   files at the top level only (not recursive), sorted by file name (code point order),
   skipping policy test files (``*.policytest.yaml``/``.yml``) and names starting with
   ``.``; a dangling symlink so named is skipped with a ``dangling-symlink`` warning.
   Several paths are merged in the order given; a file reached twice is read once.
2. **read**: through the safe reader (:mod:`policyrouter.policy.files`: regular files
   only, at most ``max_bytes``, default 1 MiB, checked before reading), then safe YAML
   with positions (:mod:`policyrouter.policy.yamlsrc`).
3. **merge**: the files' sections are combined. ``version`` must agree; a named entry
   (``tasks.summarize``, ``environments.prod``) or the ``state`` section defined in two
   files is ``duplicate-definition``, naming both places.
4. **overlay**: an environment's sections are deep-merged onto the base: mappings merge
   recursively, lists and scalars replace, and an overlay that changes a provider's
   ``kind`` or the ``state.backend`` replaces that provider, or the state section, whole.
   Values written in the overlay point at the overlay's lines; everything else keeps its
   base position.
5. **validate**: ``Policy.model_validate`` (strict); every pydantic error becomes a
   :class:`Diagnostic` with a stable code, the policy path and ``file:line:col``
   (:mod:`policyrouter.policy.schema_errors`).
6. **check**: :func:`policyrouter.policy.checks.check_policy` on each valid policy, and
   :func:`~policyrouter.policy.checks.secrets.find_secrets` on the raw data.
7. **scrub**: every diagnostic reported is scrubbed of the texts the secret scanner
   flagged (:func:`~policyrouter.policy.checks.secrets.scrub`), so no format echoes one.

Diagnostic codes emitted here (``checks`` has its own table):

======================= =====================================================================
code                    meaning
======================= =====================================================================
file-not-found          a path does not exist (I/O: see ``IO_CODES``)
file-unreadable         a path cannot be read, or is not a regular file/directory (I/O)
no-policy-files         a directory holds no ``*.yaml``/``*.yml`` policy file (I/O)
dangling-symlink        warning: a directory's ``*.yaml`` symlink to nothing, skipped
file-too-large          a file is over ``max_bytes``
yaml-*                  see :mod:`policyrouter.policy.yamlsrc`: encoding, syntax, tab, empty,
                        not-mapping, duplicate-key, key-type, tag, merge, alias-limit,
                        alias-cycle, too-many-nodes, too-deep
version-mismatch        two files give different ``version`` values
duplicate-definition    one name (or ``state``) defined in two files
unknown-environment     ``env`` names no environment of the policy
unknown-override        an overlay entry named like no base definition but close to one
                        (``tasks.sumarize``), missing required fields: "did you mean"
(schema errors)         missing-field, unknown-field, invalid-value, wrong-type, out-of-range,
                        invalid-format, schema: see :mod:`policyrouter.policy.schema_errors`
                        (wrong-type also: a named section that is not a mapping)
======================= =====================================================================
"""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from pydantic import ValidationError

from policyrouter.diagnostics import Diagnostic, Location
from policyrouter.errors import PolicyError
from policyrouter.policy import checks
from policyrouter.policy.checks.secrets import find_secrets, scrub
from policyrouter.policy.files import read_document
from policyrouter.policy.models import Environment, Policy, StateSettings
from policyrouter.policy.names import closest
from policyrouter.policy.refs import resolve_schema_refs
from policyrouter.policy.schema_errors import describe, error_path, schema_diagnostics
from policyrouter.policy.source import PathKey, SourceMap, dotted
from policyrouter.policy.statepath import resolve_state_path
from policyrouter.policy.yamlsrc import MAX_NODES_DEFAULT, Positions, RawPosition, YamlDocument

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
    {"providers", "models", "tiers", "retry_policies", "circuit_breakers", "budgets", "tasks", "environments", "queues"}
)
OVERLAY_SECTIONS = frozenset(Environment.model_fields)

PathArg = Union[str, "os.PathLike[str]"]
PolicyPaths = Union[PathArg, Sequence[PathArg]]
"""One path, or several merged in order."""


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
    documents = _read_documents(files, diagnostics, max_bytes, max_nodes)
    io_error = any(d.code in IO_CODES for d in diagnostics)
    lines = {d.file: d.lines for d in documents}
    default_file = files[0][0] if files else "<policy>"
    # a file that could not be read or parsed leaves nothing sound to merge
    if diagnostics and (io_error or not all(d.ok for d in documents)):
        empty = SourceMap(lines=lines, default_file=default_file)
        return _report(diagnostics, {}, empty, {}, io_error)
    if not documents:  # no paths at all
        diagnostics.append(Diagnostic("error", "no-policy-files", "no policy path given", Location(default_file)))
        return _report(diagnostics, {}, SourceMap(default_file=default_file), {}, True)

    base, values, keys = _merge_files(documents, diagnostics)
    source = SourceMap(Positions(values), Positions(keys), lines, default_file)
    secrets = find_secrets(base, source)
    diagnostics.extend(secrets.diagnostics)
    diagnostics.extend(resolve_schema_refs(base, source))  # response_schema: {$ref: file}
    targets = _targets(base, env, all_envs, source, diagnostics)
    policies, sources = _validate_targets(targets, base, values, keys, source, diagnostics)
    return _report(diagnostics, policies, source, sources, False, secrets.texts)


def _read_documents(
    files: Sequence[tuple[str, Path]], diagnostics: list[Diagnostic], max_bytes: int, max_nodes: int
) -> list[YamlDocument]:
    """Read and parse every collected file, keeping each one's problems."""
    documents: list[YamlDocument] = []
    for display, path in files:
        document = read_document(path, max_bytes=max_bytes, max_nodes=max_nodes, display=display)
        documents.append(document)
        diagnostics.extend(document.diagnostics)
    return documents


def _targets(
    base: dict[str, Any], env: str | None, all_envs: bool, source: SourceMap, diagnostics: list[Diagnostic]
) -> list[str | None]:
    """Which merged results to validate: the base (None) and/or named environments."""
    environments = base.get("environments")
    env_names = list(environments) if isinstance(environments, dict) else []
    if env is None:
        return [None] + ([*env_names] if all_envs else [])
    if env in env_names:
        return [env]
    diagnostics.append(_unknown_environment(env, env_names, source))
    return []


def _validate_targets(
    targets: Sequence[str | None],
    base: dict[str, Any],
    values: dict[PathKey, RawPosition],
    keys: dict[PathKey, RawPosition],
    source: SourceMap,
    diagnostics: list[Diagnostic],
) -> tuple[dict[str | None, Policy], dict[str | None, SourceMap]]:
    """Validate each target's merged data; returns the valid policies and every target's positions."""
    policies: dict[str | None, Policy] = {}
    sources: dict[str | None, SourceMap] = {None: source}
    for target in targets:
        if target is None:
            merged, target_source = base, source
        else:
            merged, target_source = _environment_data(base, target, values, keys, source)
            sources[target] = target_source
        policy, found = _validate(merged, target_source, target)
        if target is not None:
            found = _misspelt_overrides(base, target, found, target_source)
        diagnostics.extend(found)
        if policy is not None:
            policies[target] = policy
    return policies, sources


def _environment_data(
    base: dict[str, Any],
    target: str,
    values: dict[PathKey, RawPosition],
    keys: dict[PathKey, RawPosition],
    source: SourceMap,
) -> tuple[dict[str, Any], SourceMap]:
    """The base with the environment's overlay applied, or the base alone if the overlay is unusable."""
    environments = base.get("environments")
    overlay = environments[target] if isinstance(environments, dict) else None
    if not isinstance(overlay, dict):
        # Not a mapping: the base's schema validation reports it.
        return base, source
    return _apply_overlay(base, overlay, target, values, keys, source)


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
                entries = sorted((e for e in os.scandir(path) if _is_policy_file(e)), key=lambda e: e.name)
            except OSError as exc:
                problems.append(
                    _io("file-unreadable", f"cannot list directory {display}: {exc.strerror or exc}", display)
                )
                continue
            names = []
            for entry in entries:
                if _dangling(entry):
                    problems.append(_dangling_warning(os.path.join(display, entry.name)))
                else:
                    names.append(entry.name)
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
    """A policy file by its name; a FIFO or device so named is listed, and refused when read."""
    name = entry.name
    if name.startswith(".") or not name.endswith(POLICY_SUFFIXES) or name.endswith(POLICYTEST_SUFFIXES):
        return False
    try:
        return not entry.is_dir()
    except OSError:
        return True


def _dangling(entry: os.DirEntry[str]) -> bool:
    """A symlink whose target does not exist (other failures are the reader's to report)."""
    if not entry.is_symlink():
        return False
    try:
        os.stat(entry.path)
    except FileNotFoundError:
        return True
    except OSError:
        pass  # a loop or a permission problem: the reader reports it
    return False


def _dangling_warning(shown: str) -> Diagnostic:
    # A warning, not an error: an editor's or deployment's stale link must not stop the load (or a reload)
    return Diagnostic(
        "warning",
        "dangling-symlink",
        f"{shown} is a symlink to a file that does not exist; it is skipped",
        Location(shown),
        hint="remove the link, or restore the file it points to",
    )


def _io(code: str, message: str, file: str, *, hint: str = "") -> Diagnostic:
    return Diagnostic("error", code, message, Location(file), hint=hint)


# --------------------------------------------------------------------------- merging files


def _merge_files(
    documents: Sequence[YamlDocument], diagnostics: list[Diagnostic]
) -> tuple[dict[str, Any], dict[PathKey, RawPosition], dict[PathKey, RawPosition]]:
    """Combine the files' sections; returns the data and its raw value/key positions."""
    merged: dict[str, Any] = {}
    if len(documents) == 1:
        only = documents[0]
        values, keys = only.values.raw, only.keys.raw
    else:
        values, keys = {}, {}
    for document in documents:
        skipped = _merge_document(merged, document, keys, diagnostics)
        if len(documents) > 1:
            _add_positions(values, document.values.raw, skipped)
            _add_positions(keys, document.keys.raw, skipped)
    return merged, values, keys


def _merge_document(
    merged: dict[str, Any],
    document: YamlDocument,
    keys: Mapping[PathKey, RawPosition],
    diagnostics: list[Diagnostic],
) -> set[PathKey]:
    """Add one file's sections to ``merged``; returns the paths an earlier file keeps (with their positions)."""
    data: dict[str, Any] = document.data or {}
    skipped: set[PathKey] = set()
    for section, value in data.items():
        if section in NAMED_SECTIONS and isinstance(value, dict):
            skipped |= _merge_named(merged, section, value, keys, document, diagnostics)
        elif section not in merged:
            merged[section] = value
        else:
            conflict = _section_conflict(section, value, merged[section], keys, document)
            if conflict is not None:
                diagnostics.append(conflict)
            skipped.add((section,))
    return skipped


def _merge_named(
    merged: dict[str, Any],
    section: str,
    value: dict[str, Any],
    keys: Mapping[PathKey, RawPosition],
    document: YamlDocument,
    diagnostics: list[Diagnostic],
) -> set[PathKey]:
    """Add a file's named entries to a section; a name defined earlier is a duplicate and is skipped."""
    current = merged.get(section)
    if current is None:
        merged[section] = dict(value)
        return set()
    if not isinstance(current, dict):  # the first file's wrong type is reported later
        return {(section,)}
    skipped: set[PathKey] = set()
    for name, entry in value.items():
        if name in current:
            epath = (section, name)
            diagnostics.append(_duplicate(epath, keys, document.keys.raw, document.file))
            skipped.add(epath)
        else:
            current[name] = entry
    return skipped


def _section_conflict(
    section: str, value: Any, first: Any, keys: Mapping[PathKey, RawPosition], document: YamlDocument
) -> Diagnostic | None:
    """A section a later file gives again: what is wrong with it (None: the same version)."""
    dvalues, dkeys = document.values.raw, document.keys.raw
    spath: PathKey = (section,)
    if section in NAMED_SECTIONS:
        return Diagnostic(
            "error",
            "wrong-type",
            f"`{section}` expects a mapping of names to entries, got {describe(value)}",
            _loc(dvalues.get(spath) or dkeys.get(spath), document.file),
            path=section,
        )
    if section != "version":
        return _duplicate(spath, keys, dkeys, document.file)
    if (type(first), first) == (type(value), value):
        return None
    return Diagnostic(
        "error",
        "version-mismatch",
        f"`version: {value!r}` differs from `version: {first!r}` at {_loc(keys.get(spath), '?')}",
        _loc(dkeys.get(spath), document.file),
        path="version",
        hint="every file of one policy must give the same version",
    )


def _add_positions(into: dict[PathKey, RawPosition], add: Mapping[PathKey, RawPosition], skipped: set[PathKey]) -> None:
    """Positions of a later file: sections and the root keep the first file's place."""
    setdefault = into.setdefault
    for path, raw in add.items():
        if len(path) <= 1:
            setdefault(path, raw)
        elif not skipped or (path[:1] not in skipped and path[:2] not in skipped):
            into[path] = raw


def _duplicate(
    path: PathKey, first: Mapping[PathKey, RawPosition], second: Mapping[PathKey, RawPosition], file: str
) -> Diagnostic:
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


def _loc(raw: RawPosition | None, file: str) -> Location:
    return Location(*raw) if raw is not None else Location(file)


# --------------------------------------------------------------------------- overlays


def _apply_overlay(
    base: dict[str, Any],
    overlay: dict[str, Any],
    env: str,
    values: dict[PathKey, RawPosition],
    keys: dict[PathKey, RawPosition],
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


def _changes_what_it_is(path: PathKey, base: dict[str, Any], over: dict[str, Any]) -> bool:
    """The overlay gives a provider another ``kind`` or the state another ``backend``: the old
    one's settings (an API base URL, a Redis ``url_env``) do not apply to the new one."""
    field = "kind" if len(path) == 2 and path[0] == "providers" else "backend" if path == ("state",) else None
    return field is not None and field in over and over[field] != base.get(field, _DEFAULTS.get(field))


_DEFAULTS = {"backend": StateSettings.model_fields["backend"].default}  # a provider's kind is required


def _deep_merge(base: Any, over: Any, path: PathKey, replaced: list[PathKey], dropped: list[PathKey]) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        if _changes_what_it_is(path, base, over):
            replaced.append(path)  # replaced whole: the base's settings and their positions go
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


_SINGULAR = {section: what for what, section in checks.REFERENCE_SECTIONS.items()}


def _misspelt_overrides(base: dict[str, Any], env: str, found: list[Diagnostic], source: SourceMap) -> list[Diagnostic]:
    """``found`` with each misspelt overlay entry reported as one ``unknown-override`` "did you mean".

    An overlay entry named like no base definition but close to one (``tasks.sumarize``)
    defines a new, incomplete one: its ``missing-field`` errors are the typo's echo, so they
    are replaced by one error at the overlay's key. A complete new entry is left alone.
    """
    environments = base.get("environments")
    overlay = environments.get(env) if isinstance(environments, dict) else None
    if not isinstance(overlay, dict):
        return found
    for section, entries in overlay.items():
        defined = base.get(section)
        if section not in _DEFINITIONS or not isinstance(entries, dict) or not isinstance(defined, dict):
            continue
        for name in entries:
            match = None if name in defined else closest(str(name), [str(n) for n in defined])
            prefix = dotted((section, name))
            missing = [d for d in found if d.code == "missing-field" and d.path.startswith(prefix + ".")]
            if match is None or not missing:
                continue
            found = [d for d in found if d not in missing]
            fields = ", ".join(f"`{d.path[len(prefix) + 1 :]}`" for d in missing)
            found.append(
                Diagnostic(
                    "error",
                    "unknown-override",
                    f"environment `{env}` overrides {_SINGULAR[section]} `{name}`, which the base policy "
                    f"does not define, so it defines a new one (missing {fields})",
                    source.locate((section, name), key=True),
                    path=prefix,
                    hint=f"did you mean `{match}`? an overlay changes a definition named exactly as in the base",
                    env=env,
                )
            )
    return found


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
    policy = resolve_state_path(policy, source)  # a relative sqlite path: beside the file that declares it
    return policy, [d if d.env == env else replace(d, env=env) for d in found]


_DEFINITIONS = frozenset(
    {"providers", "models", "tiers", "retry_policies", "circuit_breakers", "budgets", "tasks", "queues"}
)
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
        paths = [error_path(err, pruned) for err in exc.errors(include_url=False)]  # before pruning
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
    secrets: frozenset[str] = frozenset(),
) -> ValidationReport:
    """The report of every diagnostic, once each, sorted, and scrubbed of the flagged ``secrets``
    (and of anything credential-shaped): no message, hint or path echoes one, in any format."""
    unique: dict[tuple[str, str, Location, str, str], Diagnostic] = {}
    for found in diagnostics:  # base diagnostics come first: env=None is kept
        d = scrub(found, secrets)
        unique.setdefault((d.severity, d.code, d.location, d.message, d.path), d)
    ordered = tuple(sorted(unique.values(), key=Diagnostic.sort_key))
    return ValidationReport(ordered, policies, source, io_error, sources)
