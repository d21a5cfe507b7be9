"""Executors: run a stateless function over a list of work items, in-process or in a process pool.

All executors share one contract, ``run(fn, items, on_result)``, so that a cluster executor
(e.g. Dask) can be added without touching the stages. ``on_result`` is called in the main
process as each item completes (in completion order).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class InProcessExecutor:
    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], on_result: Callable[[Any], None]) -> None:
        for item in items:
            on_result(fn(item))


class ProcessPool:
    """A pool of ``workers`` processes.

    Workers are forked where the platform allows it (fast start, nothing to re-import) unless
    torch is loaded in the parent (its thread pools do not survive a fork); otherwise spawned.
    """

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], on_result: Callable[[Any], None]) -> None:
        items = list(items)
        import sys

        method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
        ctx = mp.get_context(method)
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            pending = {pool.submit(fn, it) for it in items}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        on_result(fut.result())
            except BaseException:
                for fut in pending:
                    fut.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def make_executor(jobs: int | None):
    jobs = available_cores() if not jobs or jobs <= 0 else jobs
    return InProcessExecutor() if jobs == 1 else ProcessPool(jobs)
