"""One progress mechanism for all of darkshower (generation, import, observables, training, scoring,
evaluation).

API::

    from darkshower.progress import progress

    with progress(total=len(tasks), desc="score run", unit="chunk", enabled=flag) as bar:
        for task in tasks:
            ...
            bar.update(1)                      # n done since the last call (default 1)
            bar.set_postfix(loss=0.12, lr=3e-4)  # shown after the counts; replaces the previous postfix

    bar = progress(total, desc, unit)   # also usable without ``with``: call bar.close() (idempotent)
    for i in iterate(range(n), desc="representation qcd", unit="chunk"):  # wrap an iterable
        ...

``enabled``: ``False`` shows nothing; ``True`` or ``None`` (default) shows progress unless it is switched
off globally. What is shown depends on where stderr goes:

* a terminal: a tqdm bar (``leave=False`` removes it when closed, for inner loops such as epochs);
* anything else (a log file, a batch job, a pipe): no ``\\r`` redraws, but one plain line every
  ``DARKSHOWER_PROGRESS_INTERVAL`` seconds (default 10) with done/total, rate, ETA and the postfix, e.g.
  ``[score ae] 120/400 chunk (30%), 12.3 chunk/s, ETA 0:00:22, loss=0.12``, and a last line when the
  task ends if any line was printed. Tasks shorter than the interval print nothing.

Global switch (wins over ``enabled=True``): ``darkshower COMMAND --no-progress`` (every command) or
the environment variable ``DARKSHOWER_NO_PROGRESS=1``; from Python, :func:`set_enabled`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from darkshower.errors import ConfigError

__all__ = ["progress", "iterate", "set_enabled", "is_enabled", "Progress", "DEFAULT_INTERVAL"]

#: seconds between two plain progress lines when stderr is not a terminal
DEFAULT_INTERVAL = 10.0
ENV_INTERVAL = "DARKSHOWER_PROGRESS_INTERVAL"
ENV_DISABLE = "DARKSHOWER_NO_PROGRESS"

_switch: bool | None = None  # set_enabled(); None: follow the environment
_now = time.monotonic  # the clock (tests replace it)

T = TypeVar("T")


def set_enabled(flag: bool | None) -> None:
    """Switch all progress output on (``True``), off (``False``) or back to the environment's
    choice (``None``: off when ``DARKSHOWER_NO_PROGRESS`` is set to 1/true/yes)."""
    global _switch
    _switch = flag


def is_enabled() -> bool:
    """Whether progress output is on globally."""
    if _switch is not None:
        return _switch
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in ("1", "true", "yes", "on")


def interval(strict: bool = False) -> float:
    """Seconds between plain progress lines: ``DARKSHOWER_PROGRESS_INTERVAL`` or 10. A bad value raises
    ConfigError with ``strict`` (the CLI checks it before any work), else it is logged and 10 is used
    (a progress display never stops a computation half way)."""
    text = os.environ.get(ENV_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        msg = (f"environment variable {ENV_INTERVAL}={text!r}: must be a positive number of seconds "
               f"(e.g. 30); unset it for the default {DEFAULT_INTERVAL:g}")
        if strict:
            raise ConfigError(msg)
        logging.getLogger(__name__).warning("%s; using %g s", msg, DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    return value


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Progress:
    """Progress of one task; see the module docstring. Create it with :func:`progress`."""

    def __init__(self, total: int | None, desc: str, unit: str, mode: str, leave: bool = True,
                 every: float = DEFAULT_INTERVAL, stream=None):
        self.total = None if total is None else int(total)
        self.desc, self.unit, self.mode = desc, unit, mode
        self.n = 0
        self._postfix: dict[str, Any] = {}
        self._closed = False
        self._stream = stream
        self._bar = None
        self._every = every
        self._t0 = self._last = _now()
        self._lines = 0
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                             file=stream or sys.stderr)

    # -- the API ------------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        if self._closed:
            return
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            t = _now()
            if t - self._last >= self._every:
                self._last = t
                self._emit(t)

    def set_postfix(self, **kw: Any) -> None:
        """Extra fields shown after the counts (e.g. loss=0.1); replaces the previous ones."""
        self._postfix = dict(kw)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(v) for k, v in kw.items()}, refresh=False)

    def close(self) -> None:
        """End the task (idempotent). In line mode a last line is printed if any was printed before."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and self._lines:
            self._emit(_now(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- line mode ----------------------------------------------------------------------------
    def line(self, t: float | None = None, final: bool = False) -> str:
        """The plain progress line (what line mode prints)."""
        t = _now() if t is None else t
        dt = max(t - self._t0, 1e-9)
        rate = self.n / dt
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if final:
            parts.append(f"done in {_clock(dt)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.n, 0) / rate)}")
        parts += [f"{k}={_fmt(v)}" for k, v in self._postfix.items()]
        return f"[{self.desc}] " + ", ".join(parts)

    def _emit(self, t: float, final: bool = False) -> None:
        stream = self._stream or sys.stderr
        stream.write(self.line(t, final) + "\n")
        stream.flush()
        self._lines += 1


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool | None = None, leave: bool = True,
             stream=None) -> Progress:
    """Start reporting the progress of a task of ``total`` units (``None``: unknown); see the module
    docstring. ``stream`` (default ``sys.stderr``) decides between a bar (a terminal) and plain lines."""
    if enabled is False or not is_enabled():
        mode = "off"
    else:
        s = stream or sys.stderr
        try:
            tty = s.isatty()
        except (AttributeError, ValueError):  # closed or unusual stream
            tty = False
        mode = "bar" if tty else "lines"
    return Progress(total, desc, unit, mode, leave=leave, every=interval() if mode == "lines" else DEFAULT_INTERVAL,
                    stream=stream)


def iterate(iterable: Iterable[T], desc: str, unit: str = "it", total: int | None = None,
            enabled: bool | None = None, leave: bool = True) -> Iterator[T]:
    """Yield from ``iterable``, counting one unit per item (total: ``len(iterable)`` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress(total, desc, unit, enabled, leave) as bar:
        for item in iterable:
            yield item
            bar.update(1)
