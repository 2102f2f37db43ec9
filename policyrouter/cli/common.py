"""What every command shares: one spelling of each common argument, the CLI's errors, and
the one Rich console factory.

- Arguments: :func:`add_paths` (``PATH``), :func:`add_env`, :func:`add_task`,
  :func:`add_format` (``--format text|json`` plus a command's extra formats),
  :func:`add_metadata` (``KEY=VALUE``, parsed by argparse), :func:`add_progress`.
- Errors: a handler raises :class:`CliError` (exit 1) or :class:`UsageError` (exit 2);
  ``cli.main`` prints either as ``policyrouter <command>: error: <message>``.
- Output: :func:`console` is the only way a command builds a Rich ``Console`` (and
  :func:`width` the width of a table rendered to text), so a table is never cut to 80
  columns in a CI log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from policyrouter.router import Router

__all__ = [
    "MAX_INPUT_BYTES",
    "CliError",
    "UsageError",
    "add_env",
    "add_format",
    "add_metadata",
    "add_paths",
    "add_progress",
    "add_task",
    "check_task",
    "console",
    "load_router",
    "metadata",
    "metadata_item",
    "policy_path",
    "read_input",
    "show_progress",
    "width",
]

MAX_INPUT_BYTES = 64 << 20
"""Largest ``--input @FILE`` read (64 MiB: far above any model's context window)."""

_PLAIN_WIDTH = 10_000
"""Width of a console that is not a terminal: wide enough that no cell is ever cut."""


class CliError(Exception):
    """A command failed; ``cli.main`` prints ``policyrouter <command>: error: <message>``
    (then ``  = hint: <hint>``) and exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CliError):
    """The command line asks for something that cannot be: exit 2, as argparse's errors."""

    exit_code = 2


def add_paths(parser: argparse.ArgumentParser, *, many: bool = True, help: str | None = None) -> None:
    """The policy to use: ``PATH...`` (files or directories merged into one policy) or one ``PATH``."""
    text = help or ("policy file or directory; several are merged into one policy" if many else None)
    parser.add_argument(
        "path",
        nargs="+" if many else None,
        metavar="PATH",
        help=text or "policy file or directory",
    )


def policy_path(args: argparse.Namespace) -> str | list[str]:
    """``args.path`` as the loader takes it: one path, or the list of several."""
    paths = args.path if isinstance(args.path, list) else [args.path]
    return paths[0] if len(paths) == 1 else list(paths)


def add_env(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--env",
        metavar="NAME",
        default=None,
        help=help or "environment overlay to apply (e.g. prod, or offline: mock providers, no key)",
    )


def add_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, metavar="TASK", help="task of the policy (`tasks:`) to use")


def add_format(parser: argparse.ArgumentParser, *extra: str, help: str = "", hidden: tuple[str, ...] = ()) -> None:
    """``--format text|json`` plus ``extra`` formats; text is the default. ``hidden`` formats
    (old spellings kept working) are accepted but not shown."""
    choices = ("text", "json", *extra)
    parser.add_argument(
        "--format",
        choices=(*choices, *hidden),
        metavar="{" + ",".join(choices) + "}",
        default="text",
        help=help or f"output format: {', '.join(choices)} (default text)",
    )


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (a usage error otherwise, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {value}")
        return value

    return parse


def metadata_item(text: str) -> tuple[str, Any]:
    """argparse type of ``--metadata``: ``"tier=gold"`` -> ``("tier", "gold")``, ``"n=3"`` -> ``("n", 3)``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, int(value) if value.lstrip("-").isdigit() else value


def add_metadata(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metadata",
        action="append",
        type=metadata_item,
        metavar="KEY=VALUE",
        help="request metadata, matched by routes and metadata budgets (repeatable)",
    )


def metadata(items: Iterable[tuple[str, Any]] | None) -> dict[str, Any] | None:
    """The ``--metadata`` pairs as the request's mapping (``None`` when none was given)."""
    return dict(items) if items else None


def add_progress(parser: argparse.ArgumentParser, what: str, default: str = "on a terminal") -> None:
    """``--progress`` / ``--no-progress``: by default a bar shows on a terminal only."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help=f"show a progress bar while {what}, on stderr, even when it is not a terminal (default: {default})",
    )
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")


def show_progress(args: argparse.Namespace, worth_it: bool) -> bool:
    """Whether to draw a bar: as ``--progress`` / ``--no-progress`` say, else on a terminal when ``worth_it``."""
    if args.progress is not None:
        return bool(args.progress)
    return worth_it and sys.stderr.isatty()


def width(*, stderr: bool = False) -> int:
    """Columns a command may use: the terminal's on a terminal; otherwise (a CI log, a pipe, a
    file) a width no table reaches, so no cell is ever cut or wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return _PLAIN_WIDTH


def console(*, stderr: bool = False, force_terminal: bool = False) -> Console:
    """The Rich console of every command: sized by :func:`width`, colours on a terminal only.
    ``force_terminal`` draws live output (a progress bar) even when the stream is not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if force_terminal or stream.isatty():
        return Console(file=stream, force_terminal=force_terminal or None, highlight=False)
    return Console(file=stream, width=width(stderr=stderr), no_color=True, highlight=False, soft_wrap=True)


def load_router(args: argparse.Namespace, **kwargs: Any) -> Router:
    """``Router.from_path`` over the command's ``PATH...`` and ``--env`` (an unknown environment
    raises ``PolicyError``, which ``cli.main`` prints as a usage error with "did you mean")."""
    from policyrouter import Router

    return Router.from_path(policy_path(args), env=args.env, **kwargs)


def check_task(router: Router, task: str) -> None:
    """``UsageError`` (with "did you mean") when ``--task`` names no task of the plan."""
    from policyrouter.policy.names import closest

    tasks = sorted(router.plan.tasks)
    if task in tasks:
        return
    match = closest(task, tasks)
    hint = f"did you mean `{match}`?" if match else "tasks defined: " + ", ".join(f"`{t}`" for t in tasks)
    raise UsageError(f"--task: unknown task `{task}`", hint if tasks else "the policy defines no tasks")


def read_input(value: str) -> str:
    """``@path`` reads a file through the safe reader (a regular file of at most
    ``MAX_INPUT_BYTES``); ``@-`` is stdin; anything else is the text itself. An unreadable
    file is a ``UsageError``."""
    if value == "@-":
        return sys.stdin.read()
    if not value.startswith("@"):
        return value
    from policyrouter.policy.files import FileRefused, read_bytes

    try:
        return read_bytes(value[1:], max_bytes=MAX_INPUT_BYTES).decode("utf-8")
    except FileRefused as exc:
        raise UsageError(f"--input: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--input: {value[1:]} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"--input: cannot read {value[1:]}: {exc.strerror or exc}") from None
