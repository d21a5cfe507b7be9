"""Streaming (out-of-core) training data: batches read chunk by chunk from the on-disk
representation cache, never the whole training set in memory.

:class:`StreamingData` offers what the loop needs from :class:`~darkshower.train.loop.TrainingData`
(``train_batches``, ``val_batches``, ``emd_batches``, ``n_train``, ``n_val``, and a ``train`` store
for ``input_spec``/``prepare``), so the loop does not know which one it runs on.

How an epoch is drawn (deterministic for a seed; a resumed run sees the same batches):

- when the training set fits in one shuffle buffer (``data.shuffle_buffer`` samples), the chunks
  are read in order and permuted with the same ``(seed, epoch)`` permutation as the in-memory
  path: the run is *identical* to an in-memory run (tested);
- otherwise the chunk order is a ``(seed, epoch)`` permutation; chunks fill a buffer of
  ``shuffle_buffer`` samples, the buffer is permuted (or put in the method's ``batch_order``),
  full batches are emitted and the remainder carried into the next fill. Every training sample is
  seen once per epoch except the final incomplete batch. Peak memory: the buffer, one chunk and the
  validation store.

The validation split is the same event hash as in memory; the validation samples (capped by
``data.max_val``) are held in memory. Preprocessing (``Method.prepare``) and the input spec are
fitted on the first ``data.prepare_samples`` training samples in dataset/chunk order (all of them
when the set is smaller, which again matches the in-memory run). In a distributed run each rank
reads its own share of the chunks and every rank takes the same number of steps (the smallest
share's). Methods fitted offline (``sup-bdt``) need the whole store and do not stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkshower.data.dataset import open_dataset
from darkshower.errors import ConfigError
from darkshower.progress import iterate
from darkshower.represent.store import concat, load_npz, store_len, take, to_torch
from darkshower.train.data import _cache_key, build_cache, event_fraction, select_jets
from darkshower.train.distributed import SINGLE, World
from darkshower.train.loop import TrainingData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkRef:
    path: str  # dataset directory
    index: int  # chunk index
    label: float
    cache_file: str
    n_train: int  # training samples of the chunk (after the split)


def cache_files(path, rep, data_cfg, cache_dir: Path, executor=None, progress: bool = False) -> list[Path]:
    """Build (what is missing of) the dataset's representation cache; its files in chunk order."""
    build_cache(path, rep, data_cfg, cache_dir, executor, progress)
    ds = open_dataset(path)
    return [cache_dir / f"{_cache_key(rep, ds, ds.chunks[i], data_cfg)}.npz" for i in range(len(ds.chunks))]


def count_samples(files: list[Path]) -> int:
    """Samples in cache files (reads only their ``event_id`` arrays)."""
    n = 0
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            n += len(z["event_id"])
    return n


class StreamingData(TrainingData):
    """See the module docstring. Validation (``val``, ``n_val``, ``val_batches``, ``emd_batches``) is
    :class:`TrainingData`'s, in memory; ``train`` holds only the preprocessing sample."""

    def __init__(self, session, cache_dir: Path, executor=None, progress: bool = False):
        cfg, cls = session.cfg, session.cls
        if cls.fits_offline:
            raise ConfigError(f"{session.method} is fitted offline on the whole training set; train it with "
                              "data.streaming: off (it needs the data in memory)")
        self.session = session
        self.cfg = cfg
        self.rep = session.rep
        self.method = (cls, session.model_cfg)
        self.extra = bool(cls.extra_column_names(session.model_cfg))
        self.buffer_size = int(cfg.data.shuffle_buffer)
        split = not session.val_paths
        self.chunks: list[ChunkRef] = []
        val_parts: list[dict] = []
        n_val = 0
        prepare_parts: list[dict] = []
        n_prep = 0
        sources = [(p, 0.0) for p in session.data_paths] + [(p, 1.0) for p in cfg.data.signal]
        for path, label in sources:
            files = cache_files(path, self.rep, cfg.data, cache_dir, executor, progress)
            for i, f in iterate(list(enumerate(files)), desc=f"split {Path(path).name}", unit="chunk",
                                enabled=progress, leave=False):
                store = self._read(str(path), i, str(f), label)
                if split:
                    val = event_fraction(store["event_id"], cfg.seed) < cfg.data.val_fraction
                    if cfg.data.max_val is None or n_val < cfg.data.max_val:
                        v = take(store, np.flatnonzero(val))
                        val_parts.append(v)
                        n_val += store_len(v)
                    store = take(store, np.flatnonzero(~val))
                n = store_len(store)
                self.chunks.append(ChunkRef(str(path), i, label, str(f), n))
                if n_prep < cfg.data.prepare_samples and n:
                    prepare_parts.append(store)
                    n_prep += n
        if not split:
            for path in session.val_paths:
                for i, f in enumerate(cache_files(path, self.rep, cfg.data, cache_dir, executor, progress)):
                    if cfg.data.max_val is not None and n_val >= cfg.data.max_val:
                        break
                    v = self._read(str(path), i, str(f), 0.0)
                    val_parts.append(v)
                    n_val += store_len(v)
        self.val = concat(val_parts) if val_parts else {"label": np.zeros(0, np.float32)}
        if cfg.data.max_val and store_len(self.val) > cfg.data.max_val:
            self.val = take(self.val, np.arange(cfg.data.max_val))
        prep = concat(prepare_parts) if prepare_parts else {"label": np.zeros(0, np.float32)}
        if store_len(prep) > cfg.data.prepare_samples:
            prep = take(prep, np.arange(cfg.data.prepare_samples))
        self.train = prep  # what input_spec / prepare see (all of it when the set is small)
        self.build_seconds = 0.0
        self._n_train = sum(c.n_train for c in self.chunks)
        self.max_train = cfg.data.max_train

    # -- reading -------------------------------------------------------------------------------
    def _read(self, path: str, i: int, cache_file: str, label: float) -> dict:
        store = load_npz(cache_file)
        store["label"] = np.full(store_len(store), label, np.float32)
        if self.extra:
            events = select_jets(open_dataset(path).read_chunk(i), self.cfg.data)
            ids = {k: store[k] for k in ("event_id", "jet_idx") if k in store}
            for k, v in self.method[0].extra_columns(self.method[1], events, ids).items():
                store[k] = np.asarray(v)
        return store

    def _train_part(self, c: ChunkRef) -> dict:
        store = self._read(c.path, c.index, c.cache_file, c.label)
        if not self.session.val_paths:
            val = event_fraction(store["event_id"], self.cfg.seed) < self.cfg.data.val_fraction
            store = take(store, np.flatnonzero(~val))
        return store

    # -- the TrainingData interface ------------------------------------------------------------
    @property
    def n_train(self) -> int:
        """Training samples per epoch (``data.max_train`` caps them)."""
        return min(self._n_train, self.max_train) if self.max_train else self._n_train

    def _share(self, epoch: int, world: World) -> list[int]:
        """This rank's chunks, in this epoch's order."""
        order = np.random.default_rng([self.cfg.seed, epoch, 1]).permutation(len(self.chunks))
        return [int(k) for k in order[world.rank::world.size]]

    def steps(self, batch_size: int, epoch: int, world: World = SINGLE) -> int:
        """Batches this rank takes in ``epoch`` (the same on every rank; ``data.max_train`` caps the
        samples of the epoch over all ranks)."""
        if not world.distributed:
            return self.n_train // batch_size
        per_rank = [sum(self.chunks[k].n_train for k in self._share(epoch, World(r, world.size))) // batch_size
                    for r in range(world.size)]
        cap = (self.max_train // batch_size) // world.size if self.max_train else min(per_rank)
        return min(min(per_rank), cap)

    def train_batches(self, model, batch_size: int, seed: int, epoch: int, world: World = SINGLE):
        if self._n_train <= self.buffer_size and not world.distributed:
            # one buffer holds everything: the in-memory order exactly (max_train as in memory: the first samples)
            store = concat([self._train_part(c) for c in self.chunks])
            if self.max_train and store_len(store) > self.max_train:
                store = take(store, np.arange(self.max_train))
            return TrainingData(store, self.val).train_batches(model, batch_size, seed, epoch)
        return self._stream(model, batch_size, seed, epoch, world)

    def _stream(self, model, batch_size: int, seed: int, epoch: int, world: World):
        limit = self.steps(batch_size, epoch, world)
        emitted = 0
        buf: list[dict] = []
        n_buf = 0
        fill = 0

        def drain(store: dict, final: bool):
            nonlocal emitted
            order = model.batch_order(store, batch_size, seed, epoch)
            if order is None:
                order = np.random.default_rng([seed, epoch, 2, world.rank, fill]).permutation(store_len(store))
            order = np.asarray(order)
            n_full = len(order) // batch_size
            for b in range(n_full):
                if emitted >= limit:
                    return None
                emitted += 1
                yield to_torch(take(store, order[b * batch_size:(b + 1) * batch_size]))
            rest = order[n_full * batch_size:]
            return None if final or not len(rest) else take(store, rest)

        for k in self._share(epoch, world):
            if emitted >= limit:
                break
            part = self._train_part(self.chunks[k])
            buf.append(part)
            n_buf += store_len(part)
            if n_buf >= self.buffer_size:
                merged = concat(buf)
                buf = []  # the parts go as soon as they are merged: at most ~2 buffers in memory
                rest = yield from drain(merged, final=False)
                del merged
                fill += 1
                buf = [rest] if rest is not None else []
                n_buf = store_len(rest) if rest is not None else 0
        if buf and emitted < limit:
            merged = concat(buf)
            buf = []
            yield from drain(merged, final=True)
