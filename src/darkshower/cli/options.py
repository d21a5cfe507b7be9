"""Option types and shared options of the `darkshower` sub-commands.

The ``type=`` callables reject bad numbers while the command line is parsed: argparse prints
``darkshower COMMAND: error: argument --opt: ...`` and exits with code 2 before any work is done.
"""

from __future__ import annotations

import argparse
import math

from darkshower.errors import ConfigError


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v}: must be a positive integer (>= 1)")
    return v


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v}: must be an integer >= 0")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _number(text, float)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{v:g}: must be a positive number")
    return v


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    v = _number(text, float)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v:g}: must be >= 0")
    return v


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    v = _number(text, float)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{v:g}: must lie in (0, 1)")
    return v


def number_list(text: str, option: str, example: str = "0.1,0.01") -> tuple[float, ...]:
    """Parse a comma-separated list of numbers such as ``0.1,0.3,0.5`` given to ``option`` (no range check).
    Raises ConfigError naming the option."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated numbers, e.g. {example}") from None


def efficiencies(text: str, option: str, include_one: bool = True, example: str = "0.1,0.01",
                 allow_empty: bool = False) -> tuple[float, ...]:
    """Parse a comma-separated efficiency list such as ``0.1,0.3,0.5`` given to ``option``: at least one
    value (unless ``allow_empty``), each in (0, 1] (``include_one``) or (0, 1). Raises ConfigError naming
    the option."""
    vals = number_list(text, option, example)
    hi = "1]" if include_one else "1)"
    if (not vals and not allow_empty) or any(not (0 < v <= 1 if include_one else 0 < v < 1) for v in vals):
        raise ConfigError(f"{option} {text!r}: efficiencies must lie in (0, {hi}, e.g. {example}")
    return vals


def comma_list(text: str) -> tuple[str, ...]:
    """``a, b,c`` -> ("a", "b", "c") (empty items dropped)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


# -- shared options ---------------------------------------------------------------------------
PROGRESS_HELP = ("no progress output (also: environment DARKSHOWER_NO_PROGRESS=1); without it, a bar on a "
                 "terminal, else one line every DARKSHOWER_PROGRESS_INTERVAL seconds (default 10)")


def add_jobs(p: argparse.ArgumentParser, default: int | None, what: str = "") -> None:
    """``--jobs N``: worker processes, the same meaning in every command."""
    dflt = "all cores" if default == 0 else ("the config's jobs, else all cores" if default is None else str(default))
    p.add_argument("--jobs", type=nonnegative_int, default=default, metavar="N",
                   help=f"worker processes{' ' + what if what else ''} (0: all cores; default {dflt})")


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` (every command has it; cli.main adds it where a command did not)."""
    p.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)


EXECUTOR_HELP = ("where the chunks run: local (this process), processes (--jobs worker processes) or dask "
                 "(a Dask cluster: --scheduler; needs the [dask] extra). Default: local with --jobs 1, else "
                 "processes; dask when --scheduler is given")
SCHEDULER_HELP = ("Dask scheduler: local:N starts a LocalCluster of N worker processes on this machine (default "
                  "local:<--jobs or all cores>); an address such as tcp://HOST:8786 connects to a running one "
                  "(e.g. printed by `darkshower cluster`); see docs/scale-out.md")


def add_executor(p: argparse.ArgumentParser, jobs_default: int | None = -1, what: str = "") -> None:
    """``--executor local|processes|dask`` and ``--scheduler ADDRESS|local:N`` (and ``--jobs N`` unless
    ``jobs_default`` is -1: the command adds its own). ``executor_of(args)`` makes the executor."""
    if jobs_default != -1:
        add_jobs(p, jobs_default, what)
    p.add_argument("--executor", choices=["local", "processes", "dask"], default=None, help=EXECUTOR_HELP)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS|local:N", help=SCHEDULER_HELP)


def executor_of(args):
    """The executor the options ``--executor/--scheduler/--jobs`` ask for (a context manager closing a Dask
    cluster it started): ``with executor_of(args) as ex``. Bad combinations are a ConfigError (exit 2)."""
    from darkshower.execute import using

    return using(getattr(args, "executor", None), getattr(args, "scheduler", None), getattr(args, "jobs", None))


def executor_asked(args) -> bool:
    """Whether ``--executor/--scheduler/--jobs`` asked for an executor (else the stage runs in this process)."""
    return args.executor is not None or args.scheduler is not None or args.jobs != 1


def run_result(run) -> tuple[dict, list, dict]:
    """(run.json, the per-epoch metrics, the best epoch's row — the last one without a best epoch) of a run
    directory; metrics are [] when metrics.json is missing or unreadable."""
    import json
    from pathlib import Path

    run = Path(run)
    info = json.loads((run / "run.json").read_text())
    try:
        hist = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        hist = []
    best = next((r for r in hist if r.get("epoch") == info.get("best_epoch")), hist[-1] if hist else {})
    return info, hist, best
