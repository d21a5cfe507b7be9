"""Sample stores: the in-memory form of a built representation, shared by training and scoring.

A *store* is a dict of arrays with a leading sample axis: ``label``, ``event_id`` (``jet_idx`` for
jet-level representations) and the representation itself (``x`` (+ ``mask``) for dense arrays,
``graphs`` for :class:`~darkshower.represent.lund.LundGraphs`, ``sparse`` for
:class:`~darkshower.represent.images.SparseEventImages`). The functions here take, concatenate,
batch (``to_torch``) and cache (npz, atomic) stores without knowing which method will use them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from darkshower.represent.config import config_json, parse_representation
from darkshower.represent.images import SparseEventImages
from darkshower.represent.lund import LundGraphs

__all__ = ["store_from_rep", "store_len", "take", "concat", "concat_graphs", "concat_sparse", "to_torch",
           "save_npz_atomic", "load_npz", "iter_batches", "nonfinite_rows"]


def store_from_rep(rep: dict, label: float) -> dict:
    """A store from :func:`darkshower.represent.build.build` output, every sample labelled ``label``."""
    n = len(rep["event_id"])
    store = {"label": np.full(n, label, np.float32), "event_id": np.asarray(rep["event_id"])}
    if "jet_idx" in rep:
        store["jet_idx"] = np.asarray(rep["jet_idx"])
    for k in ("x", "mask", "graphs", "sparse"):
        if k in rep:
            store[k] = rep[k]
    return store


def store_len(store: dict) -> int:
    return len(store["label"])


def take(store: dict, idx: np.ndarray) -> dict:
    out = {}
    for k, v in store.items():
        out[k] = v.select(idx) if isinstance(v, (LundGraphs, SparseEventImages)) else v[idx]
    return out


def concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    out: dict[str, object] = {}
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
    import torch

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
            a = np.ascontiguousarray(v)
            out[k] = torch.from_numpy(a if a.flags.writeable else a.copy())  # torch wants writable memory
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


def _shape3(a) -> tuple[int, int, int]:
    c, h, w = (int(x) for x in a)
    return c, h, w


def _store_from_npz(z) -> dict:
    store = {k: z[k] for k in z.files if "__" not in k}
    if "graphs__x" in z.files:
        store["graphs"] = LundGraphs(*(z[f"graphs__{f}"] for f in
                                       ("x", "edge_index", "level", "node_counts", "edge_counts", "event_id", "jet_idx")))
    if "sparse__index" in z.files:
        store["sparse"] = SparseEventImages(z["sparse__index"], z["sparse__value"], z["sparse__offsets"],
                                            _shape3(z["sparse__shape"]),
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


def iter_batches(store: dict, batch_size: int, seed: int | None = None, epoch: int = 0, drop_last: bool = False):
    """Yield torch batches; shuffled with a permutation seeded by (seed, epoch) unless seed is None."""
    n = store_len(store)
    order = np.arange(n) if seed is None else np.random.default_rng([seed, epoch]).permutation(n)
    stop = (n // batch_size) * batch_size if (drop_last and n >= batch_size) else n
    for a in range(0, stop, batch_size):
        yield to_torch(take(store, order[a:a + batch_size]))


def nonfinite_rows(store: dict) -> np.ndarray:
    """Boolean [n]: samples whose model input holds NaN or inf (padding of point clouds ignored)."""
    n = store_len(store)
    bad = np.zeros(n, bool)
    x = store.get("x")
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating) and x.size:
        fin = np.isfinite(x)
        mask = store.get("mask")
        if isinstance(mask, np.ndarray) and mask.shape == x.shape[:mask.ndim]:
            fin |= ~mask.astype(bool).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        bad |= ~fin.reshape(n, -1).all(axis=1)
    g = store.get("graphs")
    if isinstance(g, LundGraphs) and len(g.x):
        node_bad = ~np.isfinite(g.x).reshape(len(g.x), -1).all(axis=1)
        if node_bad.any():
            owner = np.repeat(np.arange(len(g.node_counts)), g.node_counts)
            bad[np.unique(owner[node_bad])] = True
    sp = store.get("sparse")
    if isinstance(sp, SparseEventImages) and len(sp.value):
        v_bad = ~np.isfinite(sp.value)
        if v_bad.any():
            owner = np.repeat(np.arange(len(sp.offsets) - 1), np.diff(sp.offsets))
            bad[np.unique(owner[v_bad])] = True
    return bad
