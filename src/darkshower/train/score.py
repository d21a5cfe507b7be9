"""Scoring: ``score(run, datasets, out)`` -> per-jet and per-event anomaly scores (Parquet).

OUT (per jet or, for event-level methods, per event with ``jet_idx = -1``):
    dataset (absolute dataset path), event_id, jet_idx, score, nonfinite_input (True: the model input held
    NaN/inf; the sample is not scored and its score is NaN)
OUT with suffix ``.events.parquet`` (per event):
    dataset, event_id, score_lead (leading jet), score_max2 (max of the two leading jets)
Both carry the parquet metadata key ``darkshower`` (JSON: method, run, model, representation).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.data.dataset import atomic_write_parquet, open_dataset
from darkshower.errors import DatasetError
from darkshower.models.inference import score_arrays

log = logging.getLogger(__name__)


def events_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(name + ".events.parquet")


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


_WORKER: dict = {}


def _score_chunk(task) -> tuple[int, pd.DataFrame]:
    """Score chunk ``i`` of dataset ``path`` (runs in a worker; the model is loaded once per process)."""
    order, run, which, path, i, batch_size, threads = task
    key = (str(run), which)
    if _WORKER.get("key") != key:
        import torch

        from darkshower.models.runs import load_run

        if threads:
            torch.set_num_threads(threads)
        method, rep, _, _ = load_run(run, which)
        _WORKER.update(key=key, method=method, rep=rep)
    ds = open_dataset(path)
    try:
        df = score_arrays(_WORKER["method"], _WORKER["rep"], ds.read_chunk(i), batch_size)
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{ds.path}: cannot build representation '{_WORKER['rep'].kind}' for scoring: {exc}") from None
    df.insert(0, "dataset", str(ds.path.resolve()))
    return order, df


def score(run, datasets, out, which: str = "best", batch_size: int | None = None, progress: bool = True,
          threads: int | None = None, jobs: int | None = 1) -> tuple[Path, Path]:
    """Score every dataset with the run's model; returns (jet table path, event table path).
    ``jobs`` > 1 scores chunks in worker processes (each with ``threads`` torch threads, default 1)."""
    from darkshower.execute import make_executor
    from darkshower.models.runs import load_run

    if jobs == 1:  # load once here; the in-process tasks reuse it (a fresh load also drops a stale cache)
        import torch

        if threads:
            torch.set_num_threads(threads)
        method, rep, _, info = load_run(run, which)
        _WORKER.update(key=(str(Path(run)), which), method=method, rep=rep)
    else:  # keep torch out of the parent so that workers can be forked (fast start)
        from darkshower.models.runs import read_run_json

        info = read_run_json(Path(run))
    if isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "read_chunk"):
        datasets = [datasets]
    tasks = []
    for path in datasets:
        ds = path if hasattr(path, "read_chunk") else open_dataset(path)
        if not ds.chunks:
            raise DatasetError(f"{ds.path}: dataset has no chunks")
        tasks += [(len(tasks) + i, str(Path(run)), which, str(ds.path), i, batch_size,
                   threads if jobs == 1 else (threads or 1)) for i in range(len(ds.chunks))]
    t0 = time.perf_counter()
    results: dict[int, pd.DataFrame] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"score {Path(run).name}", unit="chunk", leave=False)

    def collect(res):
        results[res[0]] = res[1]
        if bar is not None:
            bar.update(1)

    make_executor(jobs if jobs and jobs > 0 else None).run(_score_chunk, tasks, collect)
    if bar is not None:
        bar.close()
    jets = pd.concat([results[k] for k in sorted(results)], ignore_index=True)
    n_jets = len(jets)
    n_bad = int(jets["nonfinite_input"].sum())
    if n_bad:
        log.warning("%d of %d samples have NaN/inf model inputs: not scored (score NaN, nonfinite_input=True); "
                    "evaluate drops and counts them", n_bad, n_jets)
    ev = event_table(jets)
    meta = {"method": info["method"], "run": str(Path(run).resolve()), "model": which,
            "representation": info["representation"]["kind"], "level": info.get("level", "jet"),
            "supervised": info.get("supervised", False), "n_nonfinite_input": n_bad, "jets_per_s": n_jets / max(time.perf_counter() - t0, 1e-9)}
    out = Path(out)
    atomic_write_parquet(jets, out, meta)
    evp = events_path(out)
    atomic_write_parquet(ev, evp, meta)
    log.info("scored %d samples in %.1f s (%.0f/s)", n_jets, time.perf_counter() - t0, meta["jets_per_s"])
    return out, evp
