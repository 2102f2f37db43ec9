"""The ``policyrouter`` command line: a thin layer over the library.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``handler=<function(args) -> int>`` with ``parser.set_defaults``.
Adding a command is one line in ``COMMANDS``. Command modules import only argparse at
module level and load the library inside their handler, so ``policyrouter validate``
never imports the provider SDKs.

Exit codes: 0 ok; 1 a policy or test failure (or any ``PolicyRouterError``, printed as
one line, no traceback); 2 a usage or I/O problem (argparse errors and ``OSError``
included).
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
    "policyrouter.cli.status",
    "policyrouter.cli.schema",
    "policyrouter.cli.test",
    "policyrouter.cli.simulate",
    "policyrouter.cli.diff",
    "policyrouter.cli.mock",
)
"""Modules of the subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyrouter",
        description="Validate, explain and run LLM routing policies.",
    )
    version = getattr(sys.modules.get("policyrouter"), "__version__", "unknown")
    parser.add_argument("--version", action="version", version=f"policyrouter {version}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    from policyrouter.errors import PolicyError, PolicyRouterError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help exits 0, usage errors 2
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.handler(args)
    except PolicyError as exc:
        errors = [d for d in exc.diagnostics if d.severity == "error"]
        print(f"policyrouter: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        for d in errors:
            print(f"  {d.one_line()}", file=sys.stderr)
        return EXIT_FAILURE
    except PolicyRouterError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"policyrouter: error: {first}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `policyrouter validate ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:  # a file the command was pointed at cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"policyrouter: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("policyrouter: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
