"""Executors: run a stateless function over a list of work items, in process, in a process pool or
on a Dask cluster, and fold the results in the caller (the contract of coffea's executors).

Every executor has one method, ``run(fn, items, on_result)``: ``fn`` is a picklable module-level
function, ``items`` picklable work items (chunks), ``on_result`` is called in the calling process as
each item completes (in completion order), so the stages write their manifests, tables and caches
in one place. The executors::

    Local()                                   # in this process, in order
    Processes(workers)                        # a pool of worker processes on this machine
    Dask(scheduler="local:4")                 # a distributed.LocalCluster with 4 worker processes
    Dask(scheduler="tcp://host:8786")         # a running scheduler (e.g. `darkshower cluster`)
    Dask(client=client)                       # a user's distributed.Client (e.g. from dask-jobqueue)

``make_executor(jobs)`` is today's choice from ``--jobs`` (1: Local, N: Processes(N)).
:func:`resolve_executor` turns the CLI's ``--executor/--scheduler/--jobs`` into one. With
``desc=`` an executor drives one progress bar for the stage (items done, ETA, and with ``size=``
a rate such as events/s), the same for every executor. All executors are picklable (a Dask
executor drops its client when pickled). :mod:`darkshower.execute.dask` needs the ``[dask]`` extra.

Failure and cancellation (process pool): the first exception, raised by ``fn`` in a worker, by
``on_result`` or by the parent itself (Ctrl-C), stops the pool at once: queued items are
cancelled, running workers are terminated, and the exception propagates (a worker that dies
without an exception, e.g. killed by the OS for memory, is a :class:`WorkerError`). Workers never
outlive their parent: on Linux the kernel kills them when it dies (``PR_SET_PDEATHSIG``), and a
watchdog thread in each worker exits when its parent process is gone (other platforms, and the
rare case of a parent dying before the worker registered). Dask: see :class:`darkshower.execute.dask.Dask`
(retries of tasks whose worker died, a task that keeps failing named with its error).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import operator
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from darkshower.errors import ConfigError, WorkerError

#: seconds between two checks of the watchdog thread in each worker
WATCHDOG_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Executor:
    """Base of the executors: :meth:`run` with one progress bar per call; subclasses implement ``_run``."""

    #: the name used by ``--executor``
    kind = "local"
    #: True when ``fn`` runs in the calling process (a stage may then share objects loaded here)
    in_process = False

    @property
    def workers(self) -> int:
        return 1

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], on_result: Callable[[Any], None], *,
            desc: str | None = None, unit: str = "chunk", progress: bool | None = None,
            size: Callable[[Any], int] | None = None, size_unit: str = "ev",
            name: Callable[[Any], str] | None = None, total: int | None = None) -> None:
        """Call ``fn(item)`` for every item (where the executor runs things) and ``on_result(result)``
        here, as each completes. With ``desc``: one progress bar of ``unit`` per item (and, with
        ``size(result)``, a ``size_unit``/s rate; ``total``: the number of items of a lazy iterable,
        which Local() then consumes lazily). ``name(item)`` names an item in error messages."""
        name = name or _default_name
        if desc is None:
            self._run(fn, items, on_result, name)
            return
        from darkshower.progress import progress as _progress

        if total is None:
            if not hasattr(items, "__len__"):
                items = list(items)
            total = len(items)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        done = [0]
        with _progress(total, desc, unit, enabled=progress) as bar:

            def fold(result: Any) -> None:
                on_result(result)
                bar.update(1)
                if size is not None:
                    done[0] += int(size(result))
                    bar.set_postfix(**{size_unit + "/s": round(done[0] / max(time.perf_counter() - t0, 1e-9))})

            self._run(fn, items, fold, name)

    def _run(self, fn, items, on_result, name) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_output_dir(self, path: str | os.PathLike) -> None:
        """Fail (with one message naming ``path``) when a worker cannot write and read in ``path``.
        Workers on this machine share its filesystem: nothing to check."""

    def close(self) -> None:
        """Release what the executor started (a Dask cluster); idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _default_name(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 120 else text[:117] + "..."


def _named(exc: BaseException, what: str) -> None:
    if isinstance(exc, Exception) and not isinstance(exc, WorkerError):
        try:
            exc.add_note(f"(while running {what})")
        except AttributeError:  # pragma: no cover - exotic exception types
            pass


class Local(Executor):
    """Run every item in this process, in order (items may be a lazy iterable)."""

    kind = "local"
    in_process = True

    def _run(self, fn, items, on_result, name) -> None:
        for item in items:
            try:
                result = fn(item)
            except Exception as exc:
                _named(exc, name(item))
                raise
            on_result(result)


InProcessExecutor = Local  # the name before the executor objects


def _set_parent_death_signal() -> bool:
    """Ask the Linux kernel to SIGKILL this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc / no prctl
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # parent gone: nobody will read our results
        time.sleep(interval)


def _worker_init(parent_pid: int, interval: float = WATCHDOG_INTERVAL) -> None:
    """Runs first in every worker: die with the parent, leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="darkshower-parent-watchdog",
                     daemon=True).start()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and terminate the running workers now (error or Ctrl-C)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
        if p.is_alive():  # pragma: no cover - ignored SIGTERM
            p.kill()
            p.join(1)
    pool.shutdown(wait=True)


class Processes(Executor):
    """A pool of ``workers`` processes on this machine (``None`` or 0: one per available core).

    Workers are forked where the platform allows it (fast start, nothing to re-import) unless
    torch is loaded in the parent (its thread pools do not survive a fork); otherwise spawned.
    """

    kind = "processes"

    def __init__(self, workers: int | None = None):
        try:
            n = None if workers is None else operator.index(workers)
        except TypeError:
            n = -1
        if isinstance(workers, bool) or (n is not None and n < 0):
            raise ConfigError(f"Processes(workers={workers!r}): must be an integer >= 1 (0 or None: all cores)")
        self._workers = n or available_cores()

    @property
    def workers(self) -> int:
        return self._workers

    @workers.setter
    def workers(self, n: int) -> None:
        self._workers = n

    def __repr__(self) -> str:
        return f"Processes({self._workers})"

    def _run(self, fn, items, on_result, name) -> None:
        items = list(items)
        if not items:
            return
        method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
        ctx = mp.get_context(method)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=ctx,
                                   initializer=_worker_init, initargs=(os.getpid(),))
        finished = False
        try:
            futures = {pool.submit(fn, it): it for it in items}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        raise WorkerError(
                            "a worker process died without an error (killed by the operating system, e.g. for "
                            "lack of memory, or crashed); rerun with fewer --jobs"
                        ) from None
                    except Exception as exc:
                        _named(exc, name(futures[fut]))
                        raise
                    on_result(result)
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:
                _stop(pool)


ProcessPool = Processes  # the name before the executor objects

EXECUTORS = ("local", "processes", "dask")


def make_executor(jobs: int | None) -> Executor:
    """The executor of ``--jobs N``: 1 in process, N > 1 a pool of N processes, 0 or None all cores."""
    jobs = available_cores() if not jobs or jobs <= 0 else jobs
    return Local() if jobs == 1 else Processes(jobs)


def resolve_executor(executor: Executor | str | None = None, scheduler: str | None = None,
                     jobs: int | None = None) -> Executor:
    """An executor from the options every stage takes: an :class:`Executor` as is; ``"local"``,
    ``"processes"`` (``jobs`` workers) or ``"dask"`` (``scheduler``: ``local:N`` or an address; default
    ``local:<jobs or all cores>``); with none of them, ``make_executor(jobs)`` as before. A scheduler
    without an executor means Dask."""
    if isinstance(executor, Executor):
        if scheduler is not None:
            raise ConfigError("scheduler: give it to the Dask executor itself (Dask(scheduler=...)), not beside one")
        return executor
    if executor is None:
        if scheduler is None:
            return make_executor(jobs)
        executor = "dask"
    kind = str(executor).strip().lower()
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise ConfigError(f"--scheduler {scheduler}: applies to --executor dask only (not {kind})")
    if kind == "local":
        return Local()
    if kind == "processes":
        return Processes(jobs or None)
    from darkshower.execute.dask import Dask

    return Dask(scheduler=scheduler or f"local:{jobs or available_cores()}")


@contextlib.contextmanager
def using(executor: Executor | str | None = None, scheduler: str | None = None, jobs: int | None = None):
    """``with using(executor, scheduler, jobs) as ex``: :func:`resolve_executor`, closing at the end only
    what was made here (an executor object passed in stays open for the caller's next stage)."""
    ex = resolve_executor(executor, scheduler, jobs)
    try:
        yield ex
    finally:
        if ex is not executor:
            ex.close()


def __getattr__(name: str):
    if name == "Dask":  # lazily: the [dask] extra is needed only when a Dask executor is made
        from darkshower.execute.dask import Dask

        return Dask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Executor", "Local", "Processes", "Dask", "make_executor", "resolve_executor", "using", "available_cores",
           "EXECUTORS", "InProcessExecutor", "ProcessPool"]
