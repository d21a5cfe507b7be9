"""Ensembles of runs: ``ensemble(inputs, out, datasets, combine=...)`` combines runs by their calibrated scores.

Every score file carries ``eff_b``: the fraction of its run's validation background scored above the
sample (:func:`darkshower.train.score.eff_b`). That is a p-value-like rank on a scale shared by every
method, so scores in different units combine without tuning. Three combinations (``combine``):

- ``mean`` (rank average): ``1 - mean_r eff_b_r``;
- ``fisher`` (Fisher's method for combining p-values): ``-sum_r ln eff_b_r`` (each ``eff_b`` floored at half
  of its run's smallest step, ``0.5 / n_val``, so a sample above all validation background stays finite);
  large when the sample is rare in *any* member and larger when it is rare in several;
- ``min`` (Tippett's): ``1 - min_r eff_b_r``, the most anomalous member decides.

Higher = more anomalous for all three. Members of one level are joined per sample (jet or event). When
members mix levels, the ensemble is an event-level score: a jet-level member enters with the event's calibrated
max of its two leading jets, ``1 - (1 - min(eff_b_j0, eff_b_j1))^k`` (``k`` jets scored; the chance that the
more anomalous of ``k`` independent background jets is that rare). The output has the layout of
``darkshower score`` (per sample, and per event in ``OUT.events.parquet``), with one column ``eff_b.NAME`` per
member instead of ``eff_b``: the ensemble score itself is not calibrated (its members' validation sets
differ), so a cut on it is set on background as for any other score.

An input is a run directory (scored here on ``datasets``, model ``which``) or a score file
written by ``darkshower score`` (``S.parquet``, with ``eff_b``). A sample missing from a member, or
with a non-finite input in one, gets a NaN ensemble score.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.errors import ConfigError

log = logging.getLogger(__name__)

KEYS = ["dataset", "event_id", "jet_idx"]
#: the ways members combine (module docstring)
COMBINATIONS = ("mean", "fisher", "min")
_FORMULA = {"mean": "1 - mean eff_b", "fisher": "-sum ln max(eff_b, 0.5/n_val)", "min": "1 - min eff_b"}


def rank_average(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Join per-sample tables (``dataset``, ``event_id``, ``jet_idx``, ``eff_b`` [, ``nonfinite_input``]) on
    the sample keys; ``score`` = 1 - mean of the members' ``eff_b`` (NaN where a member has none)."""
    return combine_tables(tables, names, "mean")


def event_level(t: pd.DataFrame) -> pd.DataFrame:
    """A jet-level member as an event-level one: per event, ``eff_b`` = ``1 - (1 - min eff_b)^k`` over its two
    leading jets (``k`` of them scored), NaN when one of them has no finite score (``nonfinite_input`` kept)."""
    j = t[t["jet_idx"].isin([0, 1])]
    eff = j["eff_b"].astype(np.float64)
    nonfinite = (j["nonfinite_input"].astype(bool) if "nonfinite_input" in j.columns
                 else pd.Series(False, index=j.index))
    g = pd.DataFrame({"dataset": j["dataset"], "event_id": j["event_id"], "eff_b": eff,
                      "bad": ~np.isfinite(eff.to_numpy()), "nonfinite_input": nonfinite}).groupby(
        ["dataset", "event_id"], sort=False)
    agg = g.agg(e=("eff_b", "min"), k=("eff_b", "size"), bad=("bad", "any"), nf=("nonfinite_input", "any"))
    e = 1.0 - (1.0 - agg["e"].to_numpy()) ** agg["k"].to_numpy()
    e[agg["bad"].to_numpy()] = np.nan
    out = agg.index.to_frame(index=False)
    out["jet_idx"] = -1
    out["eff_b"] = e
    out["nonfinite_input"] = agg["nf"].to_numpy()
    return out


def combine_tables(tables: list[pd.DataFrame], names: list[str], combine: str = "mean",
                   n_val: list[int | None] | None = None) -> pd.DataFrame:
    """Join per-sample tables (``dataset``, ``event_id``, ``jet_idx``, ``eff_b`` [, ``nonfinite_input``]) on the
    sample keys and combine their ``eff_b`` by ``combine`` (:data:`COMBINATIONS`; module docstring) into
    ``score`` (NaN where a member has none). Members of mixed levels are joined per event (:func:`event_level`).
    ``n_val``: each member's number of validation scores (the ``fisher`` floor ``0.5 / n_val``; None: 1e-6)."""
    if combine not in COMBINATIONS:
        raise ConfigError(f"ensemble combination {combine!r}: choose one of {', '.join(COMBINATIONS)}")
    if len(tables) != len(names) or len(set(names)) != len(names):
        raise ConfigError(f"ensemble: one unique name per table, got {names}")
    n_val = list(n_val) if n_val is not None else [None] * len(tables)
    if len(n_val) != len(tables):
        raise ConfigError(f"ensemble: one n_val per table, got {len(n_val)} for {len(tables)}")
    for t, name in zip(tables, names, strict=True):
        missing = [c for c in (*KEYS, "eff_b") if c not in t.columns]
        if missing:
            raise ConfigError(f"ensemble member {name}: no column(s) {missing} (score it with this darkshower version)")
    levels = [bool((t["jet_idx"] < 0).all()) for t in tables]
    if len(set(levels)) > 1:
        tables = [t if ev else event_level(t) for t, ev in zip(tables, levels, strict=True)]
    joined: pd.DataFrame | None = None
    for t, name in zip(tables, names, strict=True):
        part = t[KEYS].copy()
        part[f"eff_b.{name}"] = t["eff_b"].astype(np.float64).to_numpy()
        part[f"nonfinite.{name}"] = (t["nonfinite_input"].astype(bool).to_numpy() if "nonfinite_input" in t.columns
                                     else np.zeros(len(t), bool))
        if part.duplicated(KEYS).any():
            raise ConfigError(f"ensemble member {name}: duplicate (dataset, event_id, jet_idx) rows")
        joined = part if joined is None else joined.merge(part, on=KEYS, how="outer")
    assert joined is not None
    effs = joined[[f"eff_b.{n}" for n in names]].to_numpy(np.float64)
    flags = joined[[f"nonfinite.{n}" for n in names]]
    nonfinite = flags.fillna(False).astype(bool).any(axis=1).to_numpy()
    out = joined[KEYS].copy()
    with np.errstate(invalid="ignore"):
        if combine == "mean":
            score = 1.0 - effs.mean(axis=1)  # NaN when any member has no eff_b for the sample
        elif combine == "min":
            score = 1.0 - np.min(effs, axis=1)
        else:
            floor = np.array([0.5 / n if n else 1e-6 for n in n_val])
            score = -np.log(np.maximum(effs, floor)).sum(axis=1)
            score[np.isnan(effs).any(axis=1)] = np.nan
    out["score"] = score
    out["nonfinite_input"] = nonfinite
    for i, n in enumerate(names):
        out[f"eff_b.{n}"] = effs[:, i]
    return out.sort_values(KEYS, kind="stable").reset_index(drop=True)


def _member_names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p.name[: -len(".parquet")] if p.name.endswith(".parquet") else p.name
        name, i = base, 2
        while name in names:
            name, i = f"{base}#{i}", i + 1
        names.append(name)
    return names


def ensemble(inputs, out, datasets=None, which: str = "best", batch_size: int | None = None, progress: bool = True,
             threads: int | None = None, combine: str = "mean") -> tuple[Path, Path]:
    """Combine runs (scored here on ``datasets``) and/or score files into one score file ``out`` (and its
    ``.events.parquet``) by ``combine`` of their ``eff_b`` (:data:`COMBINATIONS`); returns both paths. See the
    module docstring."""
    from darkshower.train.score import check_score_output, score

    if combine not in COMBINATIONS:
        raise ConfigError(f"ensemble --combine {combine!r}: choose one of {', '.join(COMBINATIONS)}")
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))]
    if len(paths) < 2:
        raise ConfigError(f"ensemble: give at least two runs or score files, got {len(paths)}")
    runs = [p for p in paths if p.is_dir()]
    for p in paths:
        if p.is_dir() and not (p / "run.json").exists():
            raise ConfigError(f"ensemble input {p}: a directory but not a run (no run.json)")
        if not p.is_dir() and not (p.is_file() and p.name.endswith(".parquet")):
            raise ConfigError(f"ensemble input {p}: give a run directory or a score file S.parquet")
    if runs and not datasets:
        raise ConfigError("ensemble: runs are scored on the datasets given with --data DS...; none given")
    out = check_score_output(out)
    names = _member_names(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.members.{os.getpid()}"
    try:
        tables: list[pd.DataFrame] = []
        metas: list[dict] = []
        for p, name in zip(paths, names, strict=True):
            if p.is_dir():
                tmp.mkdir(exist_ok=True)
                f, _ = score(p, datasets, tmp / f"{len(tables)}.parquet", which=which, batch_size=batch_size,
                             progress=progress, threads=threads)
            else:
                f = p
            t, meta = _read(f)
            tables.append(t)
            metas.append({**meta, "name": name, "input": str(p.resolve())})
        out, evp = write_combined(tables, metas, out, combine)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, evp


def write_combined(tables: list[pd.DataFrame], metas: list[dict], out, combine: str, method: str = "ensemble",
                   extra: dict | None = None, val_sorted: np.ndarray | None = None) -> tuple[Path, Path]:
    """Combine members' score tables (``metas[i]["name"]`` names member i; its ``n_val_scores`` sets the
    ``fisher`` floor) by ``combine`` and write the score-file pair ``out``; ``method``/``extra`` go into the
    metadata. Members of mixed levels give an event-level file (module docstring). ``val_sorted``: sorted
    combined scores of validation background (a `train auto` run's); with it the file has ``eff_b``."""
    from darkshower.train.score import eff_b, write_score_files

    names = [m["name"] for m in metas]
    for t, m in zip(tables, metas, strict=True):
        if not np.isfinite(t["eff_b"].to_numpy(np.float64)).any():
            raise ConfigError(f"ensemble member {m.get('input', m['name'])}: no calibrated scores (eff_b is NaN: the "
                              "run has no val_scores.npy); retrain it with this darkshower version")
    levels = {bool((t["jet_idx"] < 0).all()) for t in tables}
    level = "event" if True in levels else "jet"
    if len(levels) > 1:
        log.info("ensemble: members mix jet- and event-level scores; jet-level members enter per event (calibrated "
                 "max of the two leading jets)")
    jets = combine_tables(tables, names, combine, [m.get("n_val_scores") for m in metas])
    if val_sorted is not None:
        jets.insert(jets.columns.get_loc("nonfinite_input") + 1, "eff_b", eff_b(val_sorted, jets["score"].to_numpy()))
    n_missing = int(jets[[f"eff_b.{n}" for n in names]].isna().any(axis=1).sum() - jets["nonfinite_input"].sum())
    if n_missing > 0:
        log.warning("ensemble: %d samples lack a calibrated score in some member (not scored by it, or NaN "
                    "score): their ensemble score is NaN", n_missing)
    fingerprints: dict = {}
    for m in metas:
        for d, fp in (m.get("datasets") or {}).items():
            if fingerprints.setdefault(d, fp) != fp:
                raise ConfigError(f"ensemble: members scored different versions of dataset {d}; rescore them")
    meta = {"method": method, "run": None, "members": [{k: m.get(k) for k in ("name", "input", "method", "run", "model",
                                                                              "level")} for m in metas],
            "combination": _FORMULA[combine], "combine": combine, "representation": "ensemble", "level": level,
            "supervised": any(m.get("supervised") for m in metas),
            "n_nonfinite_input": int(jets["nonfinite_input"].sum()), "datasets": fingerprints,
            "n_val_scores": None if val_sorted is None else len(val_sorted), **(extra or {})}
    out, evp = write_score_files(jets, out, meta)
    log.info("ensemble (%s) of %d members: %d samples -> %s", combine, len(tables), len(jets), out)
    return out, evp


def _read(path: Path) -> tuple[pd.DataFrame, dict]:
    import json

    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
        t = pd.read_parquet(path)
    except Exception as exc:
        raise ConfigError(f"ensemble input {path}: not a readable score file ({type(exc).__name__}: {exc})") from None
    meta = json.loads(md.get(b"darkshower", b"{}") or b"{}")
    if "jet_idx" not in t.columns:
        t["jet_idx"] = -1
    return t, meta
