"""The ``policyrouter`` command line: a thin layer over the library.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``handler=<function(args) -> int>`` with ``parser.set_defaults``.
Adding a command is one line in ``COMMANDS``. Command modules import only argparse at
module level and load the library inside their handler, so ``policyrouter validate``
never imports the provider SDKs.

Exit codes: 0 ok; 1 a policy or test failure (or any ``PolicyRouterError``, printed as
one line, no traceback); 2 a usage or I/O problem (argparse errors, ``UsageError`` and
``OSError`` included). Every error is one style, argparse's:
``policyrouter <command>: error: <message>``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

COMMANDS: tuple[str, ...] = (
    "policyrouter.cli.validate",
    "policyrouter.cli.explain",
    "policyrouter.cli.run",
    "policyrouter.cli.spend",
    "policyrouter.cli.experiment",
    "policyrouter.cli.status",
    "policyrouter.cli.schema",
    "policyrouter.cli.test",
    "policyrouter.cli.simulate",
    "policyrouter.cli.diff",
    "policyrouter.cli.mock",
    "policyrouter.cli.worker",
    "policyrouter.cli.jobs",
)
"""Modules of the subcommands, in the order ``--help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """The top-level parser, knowing its command names (for "did you mean")."""

    commands: tuple[str, ...] = ()


def build_parser() -> _Parser:
    parser = _Parser(
        prog="policyrouter",
        description="Validate, explain and run LLM routing policies.",
    )
    version = getattr(sys.modules.get("policyrouter"), "__version__", "unknown")
    parser.add_argument("--version", action="version", version=f"policyrouter {version}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    parser.commands = tuple(subparsers.choices)
    return parser


def _check_command(parser: _Parser, word: str) -> None:
    """An unknown command is argparse's usage error (exit 2), with "did you mean" when one is close."""
    from policyrouter.policy.names import closest

    names = list(parser.commands)
    if word in names:
        return
    match = closest(word, names)
    hint = f" (did you mean `{match}`?)" if match else ""
    parser.error(f"unknown command `{word}`{hint}; commands: {', '.join(names)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    from policyrouter.cli.common import CliError
    from policyrouter.errors import PolicyError, PolicyRouterError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and not argv[0].startswith("-"):
            _check_command(parser, argv[0])
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help exits 0, usage errors 2 (printed in this same style)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"policyrouter {args.command}"
    try:
        code: int = args.handler(args)
    except CliError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  = hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except PolicyError as exc:
        errors = [d for d in exc.diagnostics if d.severity == "error"]
        if errors and all(d.code == "unknown-environment" for d in errors):  # --env names no environment
            print(f"{prog}: error: --env: {errors[0].message}", file=sys.stderr)
            if errors[0].hint:
                print(f"  = hint: {errors[0].hint}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prog}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        for d in errors:
            print(f"  {d.one_line()}", file=sys.stderr)
        return EXIT_FAILURE
    except PolicyRouterError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {first}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `policyrouter validate ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:  # a file the command was pointed at cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
