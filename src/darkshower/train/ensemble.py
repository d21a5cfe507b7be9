"""Ensembles of runs: ``ensemble(inputs, out, datasets)`` combines runs by the rank average of their
calibrated scores.

Every score file carries ``eff_b``: the fraction of its run's validation background scored above the
sample (:func:`darkshower.train.score.eff_b`). That is a rank on a scale shared by every method, so
scores in different units combine without tuning: the ensemble score is ``1 - mean_r eff_b_r`` (higher
= more anomalous; a sample above all validation background in every run scores 1). The output has
the layout of ``darkshower score`` (per sample, and per event in ``OUT.events.parquet``: leading jet and
max of the two leading jets), with one column ``eff_b.NAME`` per member instead of ``eff_b``: the
ensemble score itself is not calibrated (its members' validation sets differ), so a cut on it is
set on background as for any other score.

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


def rank_average(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Join per-sample tables (``dataset``, ``event_id``, ``jet_idx``, ``eff_b`` [, ``nonfinite_input``]) on
    the sample keys; ``score`` = 1 - mean of the members' ``eff_b`` (NaN where a member has none)."""
    if len(tables) != len(names) or len(set(names)) != len(names):
        raise ConfigError(f"rank_average: one unique name per table, got {names}")
    joined: pd.DataFrame | None = None
    for t, name in zip(tables, names, strict=True):
        missing = [c for c in (*KEYS, "eff_b") if c not in t.columns]
        if missing:
            raise ConfigError(f"ensemble member {name}: no column(s) {missing} (score it with this darkshower version)")
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
    out["score"] = 1.0 - effs.mean(axis=1)  # NaN when any member has no eff_b for the sample
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
             threads: int | None = None) -> tuple[Path, Path]:
    """Combine runs (scored here on ``datasets``) and/or score files into one score file ``out`` (and its
    ``.events.parquet``) by the rank average of ``eff_b``; returns both paths. See the module docstring."""
    from darkshower.train.score import check_score_output, score, write_score_files

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
            if not np.isfinite(t["eff_b"].to_numpy(np.float64)).any():
                raise ConfigError(f"ensemble member {p}: no calibrated scores (eff_b is NaN: the run has no "
                                  "val_scores.npy); retrain it with this darkshower version")
            tables.append(t)
            metas.append({**meta, "name": name, "input": str(p.resolve())})
        levels = {bool((t["jet_idx"] < 0).all()) for t in tables}
        if len(levels) > 1:
            raise ConfigError("ensemble: members mix jet-level and event-level scores; combine runs of one level")
        jets = rank_average(tables, names)
        n_missing = int(jets[[f"eff_b.{n}" for n in names]].isna().any(axis=1).sum()
                        - jets["nonfinite_input"].sum())
        if n_missing > 0:
            log.warning("ensemble: %d samples lack a calibrated score in some member (not scored by it, or NaN "
                        "score): their ensemble score is NaN", n_missing)
        fingerprints: dict = {}
        for m in metas:
            for d, fp in (m.get("datasets") or {}).items():
                if fingerprints.setdefault(d, fp) != fp:
                    raise ConfigError(f"ensemble: members scored different versions of dataset {d}; rescore them")
        meta = {"method": "ensemble", "run": None, "members": [{k: m.get(k) for k in ("name", "input", "method", "run",
                                                                                      "model")} for m in metas],
                "combination": "1 - mean eff_b", "representation": "ensemble",
                "level": metas[0].get("level", "jet"), "supervised": any(m.get("supervised") for m in metas),
                "n_nonfinite_input": int(jets["nonfinite_input"].sum()), "datasets": fingerprints}
        out, evp = write_score_files(jets, out, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("ensemble of %d members: %d samples -> %s", len(paths), len(jets), out)
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
