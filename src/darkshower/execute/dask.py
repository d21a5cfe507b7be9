"""The Dask executor: the same ``run(fn, items, on_result)`` contract on a ``distributed`` cluster.

``Dask(scheduler="local:N")`` starts a ``distributed.LocalCluster`` of N single-threaded worker
processes listening on 127.0.0.1 (closed by :meth:`Dask.close`, ``with``, or at exit);
``Dask(scheduler="tcp://host:8786")`` connects to a running scheduler (e.g. one printed by
``darkshower cluster``); ``Dask(client=client)`` uses a client the caller made (e.g. on a
dask-jobqueue cluster; the caller closes it). With neither, the current default client is used
when there is one, else a LocalCluster with one worker per available core.

Faults:

* a task whose worker dies (killed, out of memory, node lost) is rerun on another worker by the
  scheduler; ``retries`` also reruns a task whose function raised an unexpected exception (a
  :class:`~darkshower.errors.DarkshowerError`, i.e. a user error such as bad settings, is not
  retried: it is raised at once as it is);
* a task that keeps failing stops the stage with a :class:`~darkshower.errors.ClusterError` that
  names the item (e.g. ``chunk 12``) and its last error; queued tasks are cancelled, and the call
  waits (up to ``cancel_wait`` seconds) until the tasks already running finished, so that no
  worker writes after the stage has returned;
* stages write each chunk atomically, so a rerun after any failure completes only what is missing.

Pickling a ``Dask`` executor drops its client and cluster: the copy keeps the scheduler address
(or ``local:N``) and ``retries``, and connects (or starts its own cluster) when first used.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import socket
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from darkshower.errors import ClusterError, ConfigError, DarkshowerError
from darkshower.execute import Executor, available_cores

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'darkshower[dask]'"
_counter = itertools.count()
_live: weakref.WeakSet = weakref.WeakSet()


def require_dask(what: str = "the Dask executor") -> None:
    """Raise a one-line ClusterError naming the extra when dask/distributed are not installed."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ClusterError(f"{what} needs the [dask] extra ({exc.name} is not installed): {EXTRA_HINT}") from None


def parse_scheduler(scheduler: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); ``local`` -> ("local", all cores); an address -> ("address", it)."""
    text = str(scheduler).strip()
    if text == "local" or text.startswith("local:"):
        n_text = text[6:] or str(available_cores())
        try:
            n = int(n_text)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--scheduler {scheduler!r}: local:N needs a number of workers N >= 1, e.g. local:4")
        return "local", n
    if not text:
        raise ConfigError("--scheduler: empty; give local:N or a scheduler address such as tcp://host:8786")
    return "address", text if "://" in text else f"tcp://{text}"


def _guarded(fn, item):
    """Runs on a worker: a DarkshowerError (a user error: bad input, bad settings) comes back as a value,
    so the scheduler does not retry it; anything else raises and is retried."""
    try:
        return True, fn(item)
    except DarkshowerError as exc:
        return False, exc


def _probe(directory: str, token: str, dask_worker=None) -> str:
    """Runs on every worker: read the caller's probe file, write and read back one of our own."""
    d = Path(directory)
    theirs = d / f".darkshower-probe-{token}"
    try:
        seen = theirs.read_text()
    except OSError as exc:
        return f"cannot read {theirs.name} written by the caller ({type(exc).__name__}: {exc})"
    if seen != token:
        return f"{theirs.name} holds other content than the caller wrote (a different directory?)"
    mine = d / f".darkshower-probe-{token}-{os.getpid()}-{socket.gethostname()}"
    try:
        mine.write_text(token)
        if mine.read_text() != token:
            return f"{mine.name}: read back other content than written"
    except OSError as exc:
        return f"cannot write there ({type(exc).__name__}: {exc})"
    return ""


def _executing(keys: list[str], dask_worker=None) -> int:
    """Runs on every worker: how many of ``keys`` it is executing now."""
    try:
        executing = dask_worker.state.executing
        wanted = set(keys)
        return sum(1 for ts in executing if ts.key in wanted)
    except AttributeError:  # pragma: no cover - other distributed versions
        return 0


class Dask(Executor):
    """Run items as tasks on a Dask cluster; see the module docstring."""

    kind = "dask"

    def __init__(self, client=None, scheduler: str | None = None, retries: int = 3, cancel_wait: float = 120.0,
                 timeout: float = 15.0):
        require_dask()
        if client is not None and scheduler is not None:
            raise ConfigError("Dask executor: give client= or scheduler=, not both")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"Dask(retries={retries!r}): must be an integer >= 0")
        if scheduler is not None:
            parse_scheduler(scheduler)  # checked now, used when first needed
        self.scheduler = scheduler
        self.retries = retries
        self.cancel_wait = float(cancel_wait)
        self.timeout = float(timeout)  # seconds to wait for a scheduler at an address
        self._client = client
        self._cluster: Any = None
        self._own_client = False

    # -- pickling: the client is dropped ----------------------------------------------------------
    def __getstate__(self) -> dict:
        scheduler = self.scheduler
        if scheduler is None and self._client is not None:
            try:
                scheduler = self._client.scheduler.address
            except AttributeError:  # pragma: no cover
                scheduler = None
        return {"scheduler": scheduler, "retries": self.retries, "cancel_wait": self.cancel_wait, "timeout": self.timeout}

    def __setstate__(self, state: dict) -> None:
        Dask.__init__(self, **state)

    def __repr__(self) -> str:
        where = self.scheduler or ("client" if self._client is not None else "default")
        return f"Dask({where!r}, retries={self.retries})"

    # -- the client -------------------------------------------------------------------------------
    @property
    def client(self):
        """The distributed.Client (connected or started on first use)."""
        if self._client is None:
            self._start()
        return self._client

    def _start(self) -> None:
        from distributed import Client, LocalCluster

        scheduler = self.scheduler
        if scheduler is None:
            try:
                from distributed import default_client

                self._client = default_client()
                return
            except ValueError:  # no default client: a local cluster
                scheduler = f"local:{available_cores()}"
        kind, arg = parse_scheduler(scheduler)
        if kind == "local":
            import dask

            # a worker that dies takes its task with it: the scheduler reruns it up to `retries` times
            with dask.config.set({"distributed.scheduler.allowed-failures": self.retries}):
                self._cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                             silence_logs=logging.ERROR)
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(arg, timeout=f"{self.timeout}s")
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"--scheduler {arg}: cannot connect ({type(exc).__name__}: {exc}); is a scheduler "
                                   "running there? (`darkshower cluster --config cluster.yaml` prints its address)") from None
        self._own_client = True
        _live.add(self)

    @property
    def workers(self) -> int:
        return max(len(self.client.scheduler_info().get("workers", {})), 1)

    def close(self) -> None:
        if self._own_client and self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                self._own_client = False
                if self._cluster is not None:
                    self._cluster.close()
                    self._cluster = None

    # -- the output directory ---------------------------------------------------------------------
    def check_output_dir(self, path) -> None:
        """Each worker reads a probe file written here and writes and reads one of its own; every
        worker's file must then be visible here. One clear ClusterError naming the directory if not."""
        d = Path(path).resolve()
        token = uuid.uuid4().hex
        mine = d / f".darkshower-probe-{token}"
        try:
            mine.write_text(token)
        except OSError as exc:
            raise ClusterError(f"output directory {d}: cannot write there ({exc})") from None
        hint = ("every Dask worker must see the output directory at the same path: put it on a filesystem "
                "that all worker nodes mount (see docs/scale-out.md)")
        try:
            answers = self.client.run(_probe, str(d), token)
            bad = {w: msg for w, msg in answers.items() if msg}
            if bad:
                w, msg = next(iter(bad.items()))
                raise ClusterError(f"output directory {d}: Dask worker {w} cannot use it: {msg}"
                                   f"{f' (and {len(bad) - 1} more workers)' if len(bad) > 1 else ''}; {hint}")
            if len(list(d.glob(f".darkshower-probe-{token}-*"))) < len(set(answers)):
                raise ClusterError(f"output directory {d}: files the Dask workers wrote there are not visible "
                                   f"here; {hint}")
        finally:
            for p in d.glob(f".darkshower-probe-{token}*"):
                p.unlink(missing_ok=True)

    # -- running ------------------------------------------------------------------------------------
    def _run(self, fn, items, on_result, name) -> None:
        from distributed import as_completed

        items = list(items)
        if not items:
            return
        client = self.client
        prefix = f"darkshower-{getattr(fn, '__name__', 'task')}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        futures = {}
        for i, item in enumerate(items):
            fut = client.submit(_guarded, fn, item, key=f"{prefix}-{i}", retries=self.retries, pure=False)
            futures[fut] = i
        finished = False
        try:
            for fut in as_completed(list(futures)):
                i = futures[fut]
                try:
                    ok, value = fut.result()
                except Exception as exc:
                    raise self._failure(exc, name(items[i])) from exc
                finally:
                    fut.release()
                if not ok:
                    raise value
                on_result(value)
            finished = True
        finally:
            if not finished:
                self._cancel(client, list(futures))

    def _failure(self, exc: BaseException, item: str) -> ClusterError:
        from distributed import KilledWorker

        if isinstance(exc, KilledWorker):
            return ClusterError(f"{item}: its Dask worker died {self.retries + 1} times while running it (last: {exc}); "
                                "the task is too heavy for a worker (memory?) or crashes it; "
                                "rerun the same command to complete only what is missing")
        return ClusterError(f"{item}: failed {self.retries + 1} times on the Dask workers; last error: "
                            f"{type(exc).__name__}: {exc}")

    def _cancel(self, client, futures: list) -> None:
        """Cancel what is queued and wait (bounded) for what is running: nothing writes after we return."""
        keys = [f.key for f in futures]
        try:
            client.cancel(futures)
        except Exception:  # pragma: no cover - client already closing
            return
        deadline = time.monotonic() + self.cancel_wait
        while time.monotonic() < deadline:
            try:
                busy = sum(client.run(_executing, keys).values())
            except Exception:  # pragma: no cover - cluster going down
                return
            if not busy:
                return
            time.sleep(0.2)
        log.warning("Dask tasks were still running %.0f s after the stage stopped", self.cancel_wait)


@atexit.register
def _close_all() -> None:
    for ex in list(_live):
        try:
            ex.close()
        except Exception:  # pragma: no cover
            pass


__all__ = ["Dask", "parse_scheduler", "require_dask", "EXTRA_HINT"]
