"""Training data: dataset chunks -> representation (cached) -> in-memory sample store -> batches.

A *store* is a dict of numpy arrays (or LundGraphs / SparseEventImages) with one leading sample
axis (see :mod:`darkshower.represent.loader`). The train/validation split is by event (all jets
of an event on the same side), from a hash of the event id and the run seed, so it does not
depend on chunking or on the order of the data. Batches come from a permutation seeded by
(seed, epoch): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import awkward as ak
import numpy as np

from darkshower.data.dataset import open_dataset
from darkshower.errors import ConfigError, DatasetError
from darkshower.represent.build import build
from darkshower.represent.config import config_json
from darkshower.represent.store import (
    concat,
    iter_batches,
    load_npz,
    save_npz_atomic,
    store_from_rep,
    store_len,
    take,
)
from darkshower.represent.window import select_jets

log = logging.getLogger(__name__)


def event_fraction(event_id: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per event id (splitmix64 hash of id and seed)."""
    z = np.asarray(event_id, np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _cache_key(rep, ds, entry, data_cfg) -> str:
    h = hashlib.sha256()
    h.update(config_json(rep).encode())
    h.update(str(ds.path.resolve()).encode())
    h.update(str(entry.get("sha256", entry.get("file"))).encode())
    h.update(repr((data_cfg.jet_pt_min, data_cfg.jet_pt_max, data_cfg.jet_mass_min, data_cfg.jet_mass_max)).encode())
    return h.hexdigest()[:24]


#: representations built from the constituents only (observables of jets without constituents come from their
#: four-vector and stored observables: represent/stored.py; build() names what they cannot give)
NEEDS_CONSTITUENTS = ("constituents", "image", "lund")


def _build_chunk(ds, i: int, rep, data_cfg, label: float, seen_before: int = 0) -> tuple[dict, ak.Array, int]:
    """Chunk ``i``'s store (selected jets, representation built), its selected events and the number of
    constituents in it; one clear DatasetError when it cannot be built. ``seen_before``: constituents of
    the chunks already built, so that "the jets have no constituents" is said only when none has any."""
    events = select_jets(ds.read_chunk(i), data_cfg)
    needs = rep.kind in NEEDS_CONSTITUENTS
    n_constituents = _count_constituents(events, ds.path) if needs else 0
    try:
        store = store_from_rep(build(rep, events, f"{ds.path} (chunk {i})"), label)
    except DatasetError:  # e.g. a representation that comes out empty
        if needs and seen_before + n_constituents == 0:
            raise DatasetError(_no_constituents(ds, rep)) from None
        raise
    except (KeyError, ValueError, ak.errors.FieldNotFoundError) as exc:
        raise DatasetError(f"{ds.path}: cannot build representation '{rep.kind}' from chunk {i}: {exc}. "
                           "The dataset lacks an input this representation needs (e.g. constituents "
                           "for point clouds, particles or jets for event images).") from None
    return store, events, n_constituents


def _cache_chunk(task) -> tuple[int, int]:
    """Build chunk ``i``'s representation into its cache file (runs where the executor runs it); returns
    (i, constituents seen)."""
    path, i, rep, data_cfg, cache_dir = task
    ds = open_dataset(path)
    f = Path(cache_dir) / f"{_cache_key(rep, ds, ds.chunks[i], data_cfg)}.npz"
    if f.exists():
        return i, 1
    store, _, n_constituents = _build_chunk(ds, i, rep, data_cfg, 0.0)
    save_npz_atomic(f, store, rep)
    return i, n_constituents


def build_cache(path, rep, data_cfg, cache_dir, executor=None, progress: bool = False) -> int:
    """Build the per-chunk representation cache of a dataset (npz files in ``cache_dir``, each written
    atomically) as one task per missing chunk on ``executor`` (darkshower.execute; default in process);
    chunks already cached are kept. Returns the number of chunks built. :func:`load_store` then reads
    the cache; the stores do not depend on the executor."""
    from darkshower.execute import using

    ds = open_dataset(path)
    if not ds.chunks:
        raise DatasetError(f"{ds.path}: dataset has no chunks (generate/import it first)")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [(str(ds.path), i, rep, data_cfg, str(cache_dir)) for i in range(len(ds.chunks))
            if not (cache_dir / f"{_cache_key(rep, ds, ds.chunks[i], data_cfg)}.npz").exists()]
    if not todo:
        return 0
    seen = [0]

    def fold(res) -> None:
        seen[0] += res[1]

    with using(executor if executor is not None else "local") as ex:  # in process unless asked
        ex.check_output_dir(cache_dir)
        ex.run(_cache_chunk, todo, fold, desc=f"representation {ds.path.name}", unit="chunk", progress=progress,
               name=lambda t: f"{t[0]} chunk {t[1]}")
    if rep.kind in NEEDS_CONSTITUENTS and seen[0] == 0:
        raise DatasetError(_no_constituents(ds, rep))
    return len(todo)


def load_store(path, rep, data_cfg, label: float = 0.0, cache_dir: Path | None = None, method: tuple | None = None,
               progress: bool = False, max_samples: int | None = None, executor=None) -> tuple[dict, float]:
    """Representation of a whole dataset as one store; returns (store, seconds spent building).
    ``method``: (method class, model config) whose ``extra_columns`` are added. With ``executor`` and
    ``cache_dir``, the missing cache files are first built as one task per chunk (:func:`build_cache`)."""
    t0 = time.perf_counter()
    ds = open_dataset(path)
    if not ds.chunks:
        raise DatasetError(f"{ds.path}: dataset has no chunks (generate/import it first)")
    if executor is not None and cache_dir is not None and max_samples is None:
        build_cache(path, rep, data_cfg, cache_dir, executor, progress)
    parts, n, n_constituents = [], 0, 0
    needs_constituents = rep.kind in NEEDS_CONSTITUENTS
    chunks: Iterable[int] = range(len(ds.chunks))
    if progress:
        from darkshower.progress import iterate

        chunks = iterate(chunks, desc=f"representation {ds.path.name}", unit="chunk", leave=False)
    extra_needed = method is not None and bool(method[0].extra_column_names(method[1]))
    for i in chunks:
        f = cache_dir / f"{_cache_key(rep, ds, ds.chunks[i], data_cfg)}.npz" if cache_dir is not None else None
        events = None
        if f is not None and f.exists():
            n_constituents = max(n_constituents, 1)  # cached: was checked when built
            store = load_npz(f)
            store["label"] = np.full(store_len(store), label, np.float32)
        else:
            store, events, n_c = _build_chunk(ds, i, rep, data_cfg, label, n_constituents)
            n_constituents += n_c
            if f is not None:
                save_npz_atomic(f, store, rep)
        if extra_needed:
            assert method is not None  # extra_needed implies a method
            if events is None:
                events = select_jets(ds.read_chunk(i), data_cfg)
            rep_ids = {k: store[k] for k in ("event_id", "jet_idx") if k in store}
            for k, v in method[0].extra_columns(method[1], events, rep_ids).items():
                store[k] = np.asarray(v)
        parts.append(store)
        n += store_len(store)
        if max_samples is not None and n >= max_samples:
            break
    if needs_constituents and n_constituents == 0 and n > 0:
        raise DatasetError(_no_constituents(ds, rep))
    store = concat(parts)
    if max_samples is not None and store_len(store) > max_samples:
        store = take(store, np.arange(max_samples))
    return store, time.perf_counter() - t0


def _count_constituents(events, path) -> int:
    if "jets" not in events.fields or "constituents" not in events["jets"].fields:
        raise DatasetError(f"{path}: events have no jets.constituents field; this representation needs constituents")
    return int(ak.sum(ak.num(events["jets"]["constituents"], axis=2)))


def _no_constituents(ds, rep) -> str:
    return (f"{ds.path}: the jets have no constituents (jets.constituents is empty everywhere; "
            f"process {ds.manifest.get('process')!r}), so representation '{rep.kind}' cannot be "
            "built. Import a format with jet constituents (pfnano, delphes, h5-4vec, ...) or generate.")


def split_store(store: dict, val_fraction: float, seed: int) -> tuple[dict, dict]:
    u = event_fraction(store["event_id"], seed)
    val = u < val_fraction
    return take(store, np.flatnonzero(~val)), take(store, np.flatnonzero(val))


batches = iter_batches  # the trainer's name for it


def check_nonempty(store: dict, what: str, path) -> None:
    if store_len(store) == 0:
        raise DatasetError(f"{path}: no {what} samples after the selection (check data.jet_pt_min/max, "
                           "data.jet_mass_min/max and the representation's max_jets)")


def resolve_representation(method_cls, user: dict, train_paths: list, data_cfg, seed: int, model_cfg=None):
    """Method default + user keys -> validated representation config; fits the point-cloud
    standardization on the training data when asked for and not given. With ``model_cfg`` the
    method may choose the representation from its config (``Method.representation_request``)."""
    from darkshower.represent.config import ConstituentsConfig, parse_representation

    if model_cfg is not None:
        merged = dict(method_cls.representation_request(model_cfg, dict(user)))
    else:
        merged = dict(method_cls.default_representation)
        if user.get("kind") not in (None, merged.get("kind")):
            merged = {}
        merged.update(user)
    if "kind" not in merged:
        raise ConfigError(f"method {method_cls.name!r} needs 'representation.kind' in the config")
    rep = parse_representation(merged)
    method_cls.check_representation(rep)
    if getattr(rep, "kind", None) in ("observables", "event_image"):  # uses what the data have, recorded (no MET /
        # no particle types: columns left out; event images: the particles collection, else the jets' constituents)
        from darkshower.represent.build import adapt_to_data

        ds0 = open_dataset(train_paths[0])
        if ds0.chunks:  # no chunks: load_store says so
            rep = adapt_to_data(rep, select_jets(ds0.read_chunk(0), data_cfg), str(ds0.path))
    if isinstance(rep, ConstituentsConfig) and rep.standardize and rep.standardizer is None:
        from darkshower.represent.constituents import Standardizer, point_clouds

        ds = open_dataset(train_paths[0])
        ev = select_jets(ds.read_chunk(0), data_cfg)
        for i in range(1, min(len(ds.chunks), 4)):
            ev = ak.concatenate([ev, select_jets(ds.read_chunk(i), data_cfg)])
        keep = event_fraction(np.asarray(ev["event_id"]), seed) >= data_cfg.val_fraction
        pc = point_clouds(ev[keep], rep.n_constituents, rep.centre, rep.rotate, rep.flip, rep.displacement,
                          None, rep.max_jets, rep.use_weights)
        rep = rep.model_copy(update={"standardizer": Standardizer.fit(pc).to_dict()})
    return rep
