"""Dynamic batching: requests queued per model are merged up to ``max_batch`` rows or ``max_delay_ms``
after the oldest one arrived, run once with ONNX Runtime, and split back.

A request that is alone (the only request of its model in the server: nothing else queued, being read or
being run) is dispatched at once instead of waiting ``max_delay_ms`` for company that is not coming; the
server's request handler tells the batcher when a request starts and ends (:meth:`Batcher.arrive`,
:meth:`Batcher.leave`). As soon as a second request is in flight, the delay applies as configured.

One worker coroutine per model instance (each with its own session) takes from the model's queue, so
``instances`` batches of one model run at the same time (ONNX Runtime releases the GIL). With batching off,
a worker takes one request at a time (the same path, for a fair comparison). A request larger than
``max_batch`` rows runs alone. Each row's score depends only on that row, so merged and single
responses carry the same numbers (tested).

Overload: the bytes of the inputs queued per model (not yet running) are bounded by ``max_queue_bytes``; a
request that would go over it is refused at once (:class:`QueueFull`, answered 503 by the server: retry later)
instead of growing the server's memory without bound. A request is always admitted when the queue is empty.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):
    """The model's queue holds ``max_queue_bytes`` of inputs already."""


@dataclass
class _Item:
    feeds: dict
    rows: int
    nbytes: int
    future: asyncio.Future
    t_enqueue: float


class Batcher:
    def __init__(self, model, max_batch: int, max_delay_ms: float, batching: bool, metrics=None,
                 max_queue_bytes: int | None = None):
        self.model = model
        self.max_batch = max(1, min(max_batch, model.max_batch_size or 1))
        self.delay = max(0.0, max_delay_ms) / 1000.0
        self.batching = batching and model.max_batch_size > 0
        self.metrics = metrics
        self.pending: deque[_Item] = deque()
        self.pending_rows = 0
        self.pending_bytes = 0
        self.max_queue_bytes = max_queue_bytes
        self.in_flight = 0  # requests of this model received and not yet answered (queued ones included)
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._pool: ThreadPoolExecutor | None = None
        self._labels = (model.name, model.version)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=len(self.model.sessions),
                                        thread_name_prefix=f"ort-{self.model.name}")
        self._tasks = [asyncio.get_running_loop().create_task(self._worker(s)) for s in self.model.sessions]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for it in self.pending:
            if not it.future.done():
                it.future.set_exception(RuntimeError("server shutting down"))
        self.pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def arrive(self) -> None:
        """A request for this model started (its body is still to be read): it may join the next batch."""
        self.in_flight += 1

    def leave(self) -> None:
        """A request that :meth:`arrive` announced was answered (or failed)."""
        self.in_flight -= 1
        if self.in_flight == 1 and len(self.pending) == 1 and self._wake is not None:
            self._wake.set()  # a queued request waiting for company is now alone: dispatch it

    @property
    def wake(self) -> asyncio.Event:
        """Set when requests are queued (exists once :meth:`start` ran inside the server's event loop)."""
        if self._wake is None:
            raise RuntimeError(f"batcher of {self.model.name} used before start()")
        return self._wake

    def _alone(self) -> bool:
        """The one queued request is the only request of this model in the server: waiting cannot merge it."""
        return len(self.pending) == 1 and self.in_flight <= 1

    async def infer(self, feeds: dict, rows: int) -> dict:
        """Outputs {name: array with ``rows`` rows} for one request's inputs."""
        nbytes = sum(int(a.nbytes) for a in feeds.values())
        if self.max_queue_bytes is not None and self.pending and self.pending_bytes + nbytes > self.max_queue_bytes:
            raise QueueFull(f"model {self.model.name} version {self.model.version}: {self.pending_bytes} bytes of "
                            f"inputs queued, this request ({nbytes} bytes) would pass the limit of "
                            f"{self.max_queue_bytes} (--max-queue-mb); retry later")
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(_Item(feeds, rows, nbytes, fut, time.perf_counter()))
        self.pending_rows += rows
        self.pending_bytes += nbytes
        self.wake.set()
        return await fut

    def _take(self) -> list[_Item]:
        items = [self.pending.popleft()]
        rows = items[0].rows
        if self.batching:
            while self.pending and rows + self.pending[0].rows <= self.max_batch:
                it = self.pending.popleft()
                items.append(it)
                rows += it.rows
        self.pending_rows -= rows
        self.pending_bytes -= sum(it.nbytes for it in items)
        return items

    async def _worker(self, session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()
            if self.batching and self.delay > 0 and not self._alone():
                deadline = self.pending[0].t_enqueue + self.delay
                while self.pending and self.pending_rows < self.max_batch and not self._alone():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), left)
                    except TimeoutError:
                        break
                if not self.pending:  # another instance took them
                    continue
            items = self._take()
            items = [it for it in items if not it.future.done()]  # cancelled (client went away)
            if not items:
                continue
            t0 = time.perf_counter()
            if len(items) == 1:
                feeds = items[0].feeds
            else:
                feeds = {k: np.concatenate([it.feeds[k] for it in items]) for k in items[0].feeds}
            rows = sum(it.rows for it in items)
            try:
                outs = await loop.run_in_executor(self._pool, session.run, None, feeds)
            except Exception as exc:  # a failing batch fails its requests, never the server
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            t1 = time.perf_counter()
            if self.metrics is not None:
                self.metrics.batch(self._labels, rows, t1 - t0, [t0 - it.t_enqueue for it in items])
            names = [o["name"] for o in self.model.outputs]
            a = 0
            for it in items:
                if not it.future.done():
                    it.future.set_result({n: o[a:a + it.rows] for n, o in zip(names, outs)})
                a += it.rows
