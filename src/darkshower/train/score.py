"""Scoring: ``score(run, datasets, out)`` -> per-jet and per-event anomaly scores (Parquet).

OUT (per jet or, for event-level methods, per event with ``jet_idx = -1``):
    dataset (absolute dataset path), event_id, jet_idx, score
OUT with suffix ``.events.parquet`` (per event):
    dataset, event_id, score_lead (leading jet), score_max2 (max of the two leading jets)
Both carry the parquet metadata key ``darkshower`` (JSON: method, run, model, representation).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.data.dataset import open_dataset
from darkshower.errors import DatasetError

log = logging.getLogger(__name__)


def events_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(name + ".events.parquet")


def _write_parquet(df: pd.DataFrame, path: Path, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"darkshower": json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def event_table(jets: pd.DataFrame) -> pd.DataFrame:
    """Per-event scores from per-jet scores: leading jet and max of the two leading jets."""
    if (jets["jet_idx"] < 0).all():
        ev = jets[["dataset", "event_id", "score"]].copy()
        ev["score_lead"] = ev["score"]
        ev["score_max2"] = ev["score"]
        return ev.drop(columns="score")
    keys = ["dataset", "event_id"]
    lead = jets[jets.jet_idx == 0].set_index(keys)["score"].rename("score_lead")
    max2 = jets[jets.jet_idx < 2].groupby(keys)["score"].max().rename("score_max2")
    return pd.concat([lead, max2], axis=1).reset_index()


def score_arrays(method, rep, events, batch_size: int = 4096) -> pd.DataFrame:
    """Scores of one batch of events (awkward) with a loaded method: event_id, jet_idx, score."""
    import torch

    from darkshower.represent.build import build
    from darkshower.represent.loader import _len, _store_from_rep
    from darkshower.train.data import batches

    store = _store_from_rep(build(rep, events), 0.0)
    n = _len(store)
    out = np.empty(n, np.float64)
    with torch.no_grad():
        a = 0
        for b in batches(store, batch_size):
            s = method.score(b).detach().double().numpy()
            out[a:a + len(s)] = s
            a += len(s)
    jet_idx = store.get("jet_idx", np.full(n, -1))
    return pd.DataFrame({"event_id": np.asarray(store["event_id"], np.int64),
                         "jet_idx": np.asarray(jet_idx, np.int64), "score": out})


def score(run, datasets, out, which: str = "best", batch_size: int = 4096, progress: bool = True,
          threads: int | None = None) -> tuple[Path, Path]:
    """Score every dataset with the run's model; returns (jet table path, event table path)."""
    import torch

    from darkshower.train.run import load_run

    if threads:
        torch.set_num_threads(threads)
    method, rep, cfg, info = load_run(run, which)
    if isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "read_chunk"):
        datasets = [datasets]
    frames = []
    t0 = time.perf_counter()
    n_jets = 0
    for path in datasets:
        ds = path if hasattr(path, "read_chunk") else open_dataset(path)
        if not ds.chunks:
            raise DatasetError(f"{ds.path}: dataset has no chunks")
        it = range(len(ds.chunks))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"score {ds.path.name}", unit="chunk", leave=False)
        for i in it:
            try:
                df = score_arrays(method, rep, ds.read_chunk(i), batch_size)
            except (KeyError, ValueError) as exc:
                raise DatasetError(f"{ds.path}: cannot build representation '{rep.kind}' for scoring: {exc}") from None
            df.insert(0, "dataset", str(ds.path.resolve()))
            frames.append(df)
            n_jets += len(df)
    jets = pd.concat(frames, ignore_index=True)
    ev = event_table(jets)
    meta = {"method": info["method"], "run": str(Path(run).resolve()), "model": which,
            "representation": info["representation"]["kind"], "level": info.get("level", "jet"),
            "supervised": info.get("supervised", False), "jets_per_s": n_jets / max(time.perf_counter() - t0, 1e-9)}
    out = Path(out)
    _write_parquet(jets, out, meta)
    evp = events_path(out)
    _write_parquet(ev, evp, meta)
    log.info("scored %d samples in %.1f s (%.0f/s)", n_jets, time.perf_counter() - t0, meta["jets_per_s"])
    return out, evp
