"""Entry point of the ``darkshower`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returns an exit code). The CLI only parses, calls the library and prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from darkshower import __version__
from darkshower.errors import DarkshowerError

#: sub-command modules, in the order shown by --help
COMMAND_MODULES = [
    "generate",
    "import_cmd",
    "info",
    "observables",
    "train",
    "score",
    "evaluate",
    "search",
    "report",
    "distill",
    "export",
    "benchmark",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkshower",
        description="Model-agnostic searches for dark showers: simulate, import, represent, learn, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"darkshower {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"darkshower.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"darkshower.cli.{name}":
                continue  # command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DarkshowerError as exc:
        print(f"darkshower: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("darkshower: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
