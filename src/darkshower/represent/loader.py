"""Streaming PyTorch input: chunks of dataset directories -> representation -> shuffled batches.

``RepresentationStream(sources, config)`` is an ``IterableDataset`` yielding ready batches
(dicts of tensors); use it with ``DataLoader(stream, batch_size=None)``. Chunks are split
between DataLoader workers; samples are shuffled inside a buffer of ``shuffle_buffer``
samples; each chunk's representation can be cached to ``cache_dir`` (npz, written atomically,
keyed by the config, the dataset path and the chunk checksum).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from darkshower.represent.build import build
from darkshower.represent.config import config_json, parse_representation
from darkshower.represent.store import concat, load_npz, save_npz_atomic, store_from_rep, store_len, take, to_torch

try:  # torch is a hard dependency of darkshower, but keep numpy use possible without it
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]  # fallback when torch is absent; mypy sees the installed torch
    IterableDataset = object  # type: ignore[misc, assignment]  # same fallback: a plain base class

    def get_worker_info():
        return None


def _cache_key(cfg, ds_path: Path, entry: dict) -> str:
    h = hashlib.sha256()
    h.update(config_json(cfg).encode())
    h.update(str(ds_path.resolve()).encode())
    h.update(str(entry.get("sha256", entry.get("file"))).encode())
    return h.hexdigest()[:24]


def write_representation(dataset, config, out: str | os.PathLike, label: float = 0.0) -> Path:
    """Build the representation of a whole dataset and save it as one npz (atomic)."""
    from darkshower.data.dataset import open_dataset

    ds = open_dataset(dataset) if not hasattr(dataset, "read_chunk") else dataset
    parts = [store_from_rep(build(config, ch, f"{ds.path} (chunk {i})"), label) for i, ch in enumerate(ds.iter_chunks())]
    return save_npz_atomic(out, concat(parts), config)


class RepresentationStream(IterableDataset):
    """Stream batches of a representation from one or more dataset directories.

    ``sources``: a path, a list of paths (labels 0, 1, ...), or a dict {path: label}.
    Each pass shuffles the chunk order (seed + epoch), splits chunks between workers, and
    shuffles samples within ``shuffle_buffer`` (0 disables shuffling).
    """

    def __init__(self, sources, config, batch_size: int = 256, shuffle_buffer: int = 10000, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, drop_last: bool = False, max_chunks: int | None = None):
        from darkshower.data.dataset import open_dataset

        if isinstance(sources, (str, os.PathLike)):
            sources = {sources: 0.0}
        elif isinstance(sources, (list, tuple)):
            sources = {s: float(i) for i, s in enumerate(sources)}
        self.datasets = [(open_dataset(p), float(lab)) for p, lab in sources.items()]
        self.config = parse_representation(config)
        self.batch_size = int(batch_size)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.drop_last = drop_last
        self.max_chunks = max_chunks
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _tasks(self):
        tasks = []
        for d, (ds, _lab) in enumerate(self.datasets):
            n = len(ds.chunks) if self.max_chunks is None else min(self.max_chunks, len(ds.chunks))
            tasks += [(d, i) for i in range(n)]
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle_buffer > 0:
            rng.shuffle(tasks)
        info = get_worker_info()
        if info is not None:
            tasks = tasks[info.id :: info.num_workers]
        return tasks

    def chunk_store(self, d: int, i: int) -> dict:
        ds, lab = self.datasets[d]
        if self.cache_dir is not None:
            f = self.cache_dir / f"{_cache_key(self.config, ds.path, ds.chunks[i])}.npz"
            if f.exists():
                store = load_npz(f)
                store["label"] = np.full(store_len(store), lab, np.float32)
                return store
        store = store_from_rep(build(self.config, ds.read_chunk(i), f"{ds.path} (chunk {i})"), lab)
        if self.cache_dir is not None:
            save_npz_atomic(f, store, self.config)
        return store

    def iter_numpy(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, 0 if info is None else info.id + 1])
        buf: list[dict] = []
        nbuf = 0
        bs = self.batch_size
        for d, i in self._tasks():
            s = self.chunk_store(d, i)
            if store_len(s) == 0:
                continue
            buf.append(s)
            nbuf += store_len(s)
            if nbuf >= max(self.shuffle_buffer, bs):
                store = concat(buf)
                if self.shuffle_buffer > 0:
                    store = take(store, rng.permutation(nbuf))
                nfull = (nbuf // bs) * bs
                keep = max(nbuf - nfull, 0)
                # emit whole batches, keep the remainder in the buffer
                for a in range(0, nfull, bs):
                    yield take(store, np.arange(a, a + bs))
                buf = [take(store, np.arange(nfull, nbuf))] if keep else []
                nbuf = keep
        if nbuf:
            store = concat(buf)
            if self.shuffle_buffer > 0:
                store = take(store, rng.permutation(nbuf))
            for a in range(0, nbuf, bs):
                b = np.arange(a, min(a + bs, nbuf))
                if len(b) < bs and self.drop_last:
                    break
                yield take(store, b)

    def __iter__(self):
        for batch in self.iter_numpy():
            yield to_torch(batch)


def make_loader(sources, config, batch_size: int = 256, num_workers: int = 0, **kwargs):
    """A DataLoader over :class:`RepresentationStream` (batches are built by the stream)."""
    from torch.utils.data import DataLoader

    stream = RepresentationStream(sources, config, batch_size=batch_size, **kwargs)
    return DataLoader(stream, batch_size=None, num_workers=num_workers)
