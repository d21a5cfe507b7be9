"""Decorrelated scores of any run: the validation background's variables and the map at scoring time.

At the end of training (:class:`~darkshower.train.callbacks.ValidationScores`) a run stores, per
validation-background row, its score and the decorrelation variables (``RUN/val_decor.npz`` for the
best model, ``RUN/val_decor_last.npz`` for the last; arrays ``score``, ``pt``, ``mass``, ``mt``,
``mjj`` and ``level``). The variables are read back from the validation datasets (only the jet
and MET columns) and matched to the validation rows by (event_id, jet_idx), dataset by dataset in
the order the trainer read them. :func:`fit_map` fits the
:class:`~darkshower.models.decorrelate.QuantileMap` on that file; ``score`` adds ``eff_b_decor`` and
``score_decor`` to its score table (see :mod:`darkshower.models.decorrelate` for the map, the bins and
their statistical floor).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.errors import ConfigError
from darkshower.models.decorrelate import DEFAULT_VARIABLES, MAX_BINS, MIN_ROWS, VARIABLES, QuantileMap, decor_table

log = logging.getLogger(__name__)

VAL_DECOR = {"best": "val_decor.npz", "last": "val_decor_last.npz"}
#: the dataset columns the variables need (read without the constituents)
_COLUMNS = ["event_id", "jets.pt", "jets.eta", "jets.phi", "jets.mass", "met_pt", "met_phi"]


def read_columns(ds, i: int):
    """Chunk ``i`` with only the columns of the decorrelation variables (those the dataset has)."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(ds.path / ds.chunks[i]["file"]).names)
    return ds.read_chunk(i, columns=[c for c in _COLUMNS if c.split(".")[0] in names])


def dataset_table(path, data_cfg, level: str, dataset_numbering: bool = False) -> pd.DataFrame:
    """The variables of every (selected) jet, or every event for ``level="event"``, of one dataset, in
    dataset order, indexed by (event_id, jet_idx). ``data_cfg``: the run's jet window (as in training), whose jets
    are ranked inside the window as training's rows are; ``dataset_numbering``: numbered as the dataset does
    instead, as score files are."""
    from darkshower.data.dataset import open_dataset
    from darkshower.represent.window import dataset_jet_idx, select_jets_indexed

    def part(i: int) -> pd.DataFrame:
        events, index = select_jets_indexed(read_columns(ds, i), data_cfg)
        df = pd.DataFrame(decor_table(events, level))
        return dataset_jet_idx(df, events, index) if dataset_numbering and level != "event" else df

    ds = open_dataset(path)
    parts = [part(i) for i in range(len(ds.chunks))]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["event_id", "jet_idx", *VARIABLES])
    return df.set_index(["event_id", "jet_idx"])


def validation_variables(paths, data_cfg, level: str, event_id, jet_idx=None,
                         dataset_numbering: bool = False) -> pd.DataFrame | None:
    """The decorrelation variables of a run's validation rows ``(event_id, jet_idx)``, read from the datasets
    ``paths`` they came from (in that order): per event for an event-level run or rows without jets (``jet_idx``
    None or all -1), else per jet, numbered inside the run's jet window as training's rows are or, with
    ``dataset_numbering``, as the dataset numbers them (score files). None when a row cannot be matched
    (:func:`match_rows`)."""
    jidx = None if jet_idx is None else np.asarray(jet_idx, np.int64)
    per_event = level == "event" or jidx is None or bool((jidx < 0).all())
    tables = [dataset_table(p, data_cfg, "event" if per_event else "jet", dataset_numbering) for p in paths]
    ev = np.asarray(event_id)
    return match_rows(ev, np.full(len(ev), -1) if per_event or jidx is None else jidx, tables)


def match_rows(event_id: np.ndarray, jet_idx: np.ndarray, tables: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The rows of ``tables`` (one per dataset, in the order the rows were read) of each (event_id, jet_idx).

    The rows come dataset by dataset, each a subsequence of its dataset in order; event ids repeat
    between datasets (they number events per chunk), so each dataset takes the longest run of rows
    it has at increasing positions. None when a row is left unmatched or a dataset repeats a key."""
    key = pd.MultiIndex.from_arrays([np.asarray(event_id, np.int64), np.asarray(jet_idx, np.int64)])
    n = len(key)
    out = pd.DataFrame(np.nan, index=np.arange(n), columns=list(VARIABLES))
    start = 0
    for t in tables:
        if start >= n:
            break
        if not t.index.is_unique:
            return None
        pos = t.index.get_indexer(key[start:])
        good = pos >= 0
        good[1:] &= pos[1:] > pos[:-1]
        end = start + (int(np.argmin(good)) if not good.all() else len(good))
        if end > start:
            out.iloc[start:end] = t.iloc[pos[: end - start]][list(VARIABLES)].to_numpy(np.float64)
        start = end
    return out if start >= n else None


def write_val_decor(path: Path, scores: np.ndarray, variables: pd.DataFrame, level: str) -> None:
    """``val_decor.npz`` (atomic): per validation-background row its score and variables."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, score=np.asarray(scores, np.float64), level=np.array(level),
                     **{v: variables[v].to_numpy(np.float64) for v in VARIABLES})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_val_decor(run, which: str = "best", kind: str | None = None) -> dict | None:
    """The run's validation rows for the map (``score``, the variables, ``level``), or None when absent;
    ``kind``: of that score kind (``score --score-kind``; None: the configured score)."""
    import zipfile

    from darkshower.train.scorefiles import val_file

    p = Path(run) / val_file(VAL_DECOR[which], kind)
    if not p.exists():
        return None
    try:
        with open(p, "rb") as f, np.load(f, allow_pickle=False) as z:  # the file is closed on errors too
            out = {k: z[k] for k in z.files}
        missing = [k for k in ("score", *VARIABLES) if k not in out]
        if missing or any(len(out[k]) != len(out["score"]) for k in VARIABLES):
            raise ValueError(f"arrays {missing or list(VARIABLES)} missing or of another length than 'score'")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{p}: not a readable decorrelation reference ({type(exc).__name__}: {exc}); delete it and "
                          "retrain the run (training writes it at the end)") from None
    out["level"] = str(out.get("level", "jet"))
    return out


def check_variables(variables, level: str) -> tuple[str, ...]:
    if variables is None:
        return DEFAULT_VARIABLES.get(level, DEFAULT_VARIABLES["jet"])
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    vs = tuple(variables)
    bad = [v for v in vs if v not in VARIABLES]
    if not vs or bad or len(set(vs)) != len(vs):
        raise ConfigError(f"decorrelation variables {','.join(vs) or '(none)'}: choose distinct ones of "
                          f"{', '.join(VARIABLES)} (default {','.join(DEFAULT_VARIABLES['jet'])} for jet-level runs, "
                          f"{','.join(DEFAULT_VARIABLES['event'])} for event-level runs)")
    return vs


def fit_map(val: dict, variables=None, min_rows: int = MIN_ROWS, max_bins: int = MAX_BINS) -> QuantileMap:
    vs = check_variables(variables, val["level"])
    return QuantileMap(vs, min_rows, max_bins).fit(val["score"], np.column_stack([val[v] for v in vs]))
