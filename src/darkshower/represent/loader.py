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
from darkshower.represent.images import SparseEventImages
from darkshower.represent.lund import LundGraphs

try:  # torch is a hard dependency of darkshower, but keep numpy use possible without it
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover
    torch = None
    IterableDataset = object

    def get_worker_info():
        return None


# -- sample stores: dicts with a leading sample axis ------------------------------------------
def _store_from_rep(rep: dict, label: float) -> dict:
    n = len(rep["event_id"])
    store = {"label": np.full(n, label, np.float32), "event_id": np.asarray(rep["event_id"])}
    if "jet_idx" in rep:
        store["jet_idx"] = np.asarray(rep["jet_idx"])
    for k in ("x", "mask", "graphs", "sparse"):
        if k in rep:
            store[k] = rep[k]
    return store


def _len(store: dict) -> int:
    return len(store["label"])


def _take(store: dict, idx: np.ndarray) -> dict:
    out = {}
    for k, v in store.items():
        out[k] = v.select(idx) if isinstance(v, (LundGraphs, SparseEventImages)) else v[idx]
    return out


def _concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        if isinstance(vals[0], LundGraphs):
            out[k] = concat_graphs(vals)
        elif isinstance(vals[0], SparseEventImages):
            out[k] = concat_sparse(vals)
        else:
            out[k] = np.concatenate(vals)
    return out


def concat_graphs(gs: list[LundGraphs]) -> LundGraphs:
    shifts = np.cumsum([0] + [len(g.x) for g in gs[:-1]])
    return LundGraphs(
        np.concatenate([g.x for g in gs]),
        np.concatenate([g.edge_index + s for g, s in zip(gs, shifts)], axis=1),
        np.concatenate([g.level for g in gs]),
        np.concatenate([g.node_counts for g in gs]),
        np.concatenate([g.edge_counts for g in gs]),
        np.concatenate([g.event_id for g in gs]),
        np.concatenate([g.jet_idx for g in gs]),
    )


def concat_sparse(ss: list[SparseEventImages]) -> SparseEventImages:
    offs = [ss[0].offsets]
    base = ss[0].offsets[-1]
    for s in ss[1:]:
        offs.append(s.offsets[1:] + base)
        base += s.offsets[-1]
    return SparseEventImages(np.concatenate([s.index for s in ss]), np.concatenate([s.value for s in ss]),
                             np.concatenate(offs), ss[0].shape, ss[0].channels, ss[0].eta_max,
                             np.concatenate([s.event_id for s in ss]))


def to_torch(store: dict) -> dict:
    """Batch dict of tensors. Graphs: x, edge_index, batch, node_counts; sparse images: dense x."""
    out = {}
    for k, v in store.items():
        if isinstance(v, LundGraphs):
            out["x"] = torch.from_numpy(v.x)
            out["edge_index"] = torch.from_numpy(v.edge_index)
            out["batch"] = torch.from_numpy(v.batch)
            out["node_counts"] = torch.from_numpy(v.node_counts)
        elif isinstance(v, SparseEventImages):
            out["x"] = torch.from_numpy(v.dense())
        else:
            out[k] = torch.from_numpy(np.ascontiguousarray(v))
    return out


# -- npz cache ----------------------------------------------------------------------------------
def _store_to_npz_dict(store: dict) -> dict:
    d = {}
    for k, v in store.items():
        if isinstance(v, LundGraphs):
            for f in ("x", "edge_index", "level", "node_counts", "edge_counts", "event_id", "jet_idx"):
                d[f"graphs__{f}"] = getattr(v, f)
        elif isinstance(v, SparseEventImages):
            for f, a in v.to_arrays().items():
                d[f"sparse__{f}"] = a
            d["sparse__channels"] = np.asarray(v.channels)
            d["sparse__eta_max"] = np.asarray(v.eta_max)
        else:
            d[k] = v
    return d


def _store_from_npz(z) -> dict:
    store = {k: z[k] for k in z.files if "__" not in k}
    if "graphs__x" in z.files:
        store["graphs"] = LundGraphs(*(z[f"graphs__{f}"] for f in
                                       ("x", "edge_index", "level", "node_counts", "edge_counts", "event_id", "jet_idx")))
    if "sparse__index" in z.files:
        store["sparse"] = SparseEventImages(z["sparse__index"], z["sparse__value"], z["sparse__offsets"],
                                            tuple(int(x) for x in z["sparse__shape"]),
                                            [str(c) for c in z["sparse__channels"]], float(z["sparse__eta_max"]),
                                            z["sparse__event_id"])
    store.pop("config", None)
    return store


def save_npz_atomic(path: str | os.PathLike, store: dict, config=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    d = _store_to_npz_dict(store)
    if config is not None:
        d["config"] = np.asarray(config_json(parse_representation(config)))
    try:
        np.savez(tmp, **d)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_npz(path: str | os.PathLike) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return _store_from_npz(z)


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
    parts = [_store_from_rep(build(config, ch), label) for ch in ds.iter_chunks()]
    return save_npz_atomic(out, _concat(parts), config)


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
        for d, (ds, lab) in enumerate(self.datasets):
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
                store["label"] = np.full(_len(store), lab, np.float32)
                return store
        store = _store_from_rep(build(self.config, ds.read_chunk(i)), lab)
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
            if _len(s) == 0:
                continue
            buf.append(s)
            nbuf += _len(s)
            if nbuf >= max(self.shuffle_buffer, bs):
                store = _concat(buf)
                if self.shuffle_buffer > 0:
                    store = _take(store, rng.permutation(nbuf))
                nfull = (nbuf // bs) * bs
                keep = max(nbuf - nfull, 0)
                # emit whole batches, keep the remainder in the buffer
                for a in range(0, nfull, bs):
                    yield _take(store, np.arange(a, a + bs))
                buf = [_take(store, np.arange(nfull, nbuf))] if keep else []
                nbuf = keep
        if nbuf:
            store = _concat(buf)
            if self.shuffle_buffer > 0:
                store = _take(store, rng.permutation(nbuf))
            for a in range(0, nbuf, bs):
                b = np.arange(a, min(a + bs, nbuf))
                if len(b) < bs and self.drop_last:
                    break
                yield _take(store, b)

    def __iter__(self):
        for batch in self.iter_numpy():
            yield to_torch(batch)


def make_loader(sources, config, batch_size: int = 256, num_workers: int = 0, **kwargs):
    """A DataLoader over :class:`RepresentationStream` (batches are built by the stream)."""
    from torch.utils.data import DataLoader

    stream = RepresentationStream(sources, config, batch_size=batch_size, **kwargs)
    return DataLoader(stream, batch_size=None, num_workers=num_workers)
