"""Entry point of the ``darkshower`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returns an exit code). The CLI only parses, calls the library and prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
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
    "tune",
    "score",
    "ensemble",
    "evaluate",
    "search",
    "report",
    "distill",
    "export",
    "serve",
    "benchmark",
    "cluster",
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
    for p in sub.choices.values():
        finish_subparser(p)
    return parser


def plain_text(text: str | None) -> str | None:
    """Docstring markup (reStructuredText) as plain text for --help: ``x`` -> x, :func:`x` -> x, '::' -> ':'."""
    if not text:
        return text
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"(\S)::(\s*\n)", r"\1:\2", text)


def finish_subparser(p: argparse.ArgumentParser) -> None:
    """What every command shares: --no-progress, --help text without docstring markup, and numbers that
    are checked while parsing: an option declared with a bare ``type=int``/``float`` (all counts, seeds,
    energies, ... of darkshower) rejects negative and non-finite values; commands declare stricter
    types from darkshower.cli.options where they need them."""
    from darkshower.cli.options import add_progress, nonnegative_float, nonnegative_int

    if "--no-progress" not in p._option_string_actions:
        add_progress(p)
    for action in p._actions:
        if action.type is int:
            action.type = nonnegative_int
        elif action.type is float:
            action.type = nonnegative_float
    p.description = plain_text(p.description)
    p.epilog = plain_text(p.epilog)


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
    from darkshower import progress

    switch = progress._switch
    if getattr(args, "no_progress", False):
        progress.set_enabled(False)  # every progress bar/line of the library, not only those the command passes it to
    try:
        if not getattr(args, "no_progress", False) and progress.is_enabled():
            progress.interval(strict=True)  # a bad DARKSHOWER_PROGRESS_INTERVAL fails here, before any work
        return int(args.func(args) or 0)
    except DarkshowerError as exc:
        print(f"darkshower: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("darkshower: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        progress.set_enabled(switch)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
