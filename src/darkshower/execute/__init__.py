"""Executors: run a stateless function over a list of work items, in-process or in a process pool.

All executors share one contract, ``run(fn, items, on_result)``, so that a cluster executor
(e.g. Dask) can be added without touching the stages. ``on_result`` is called in the main
process as each item completes (in completion order).

Failure and cancellation (process pool): the first exception, raised by ``fn`` in a worker, by
``on_result`` or by the parent itself (Ctrl-C), stops the pool at once: queued items are
cancelled, running workers are terminated, and the exception propagates (a worker that dies
without an exception, e.g. killed by the OS for memory, is a :class:`WorkerError`). Workers never
outlive their parent: on Linux the kernel kills them when it dies (``PR_SET_PDEATHSIG``), and a
watchdog thread in each worker exits when its parent process is gone (other platforms, and the
rare case of a parent dying before the worker registered).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from darkshower.errors import WorkerError

#: seconds between two checks of the watchdog thread in each worker
WATCHDOG_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class InProcessExecutor:
    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], on_result: Callable[[Any], None]) -> None:
        for item in items:
            on_result(fn(item))


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


class ProcessPool:
    """A pool of ``workers`` processes.

    Workers are forked where the platform allows it (fast start, nothing to re-import) unless
    torch is loaded in the parent (its thread pools do not survive a fork); otherwise spawned.
    """

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], on_result: Callable[[Any], None]) -> None:
        items = list(items)
        if not items:
            return
        method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
        ctx = mp.get_context(method)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=ctx,
                                   initializer=_worker_init, initargs=(os.getpid(),))
        finished = False
        try:
            pending = {pool.submit(fn, it) for it in items}
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
                    on_result(result)
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:
                _stop(pool)


def make_executor(jobs: int | None):
    jobs = available_cores() if not jobs or jobs <= 0 else jobs
    return InProcessExecutor() if jobs == 1 else ProcessPool(jobs)
