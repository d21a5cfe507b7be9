"""Ensembles of runs: ``ensemble(inputs, out, datasets, combine=...)`` combines runs by their calibrated scores.

Every score file carries ``eff_b``: the fraction of its run's validation background scored above the
sample (:func:`darkshower.train.score.eff_b`). That is a p-value-like rank on a scale shared by every
method, so scores in different units combine without tuning. Four combinations (``combine``):

- ``mean`` (rank average): ``1 - mean_r eff_b_r``;
- ``fisher`` (Fisher's method for combining p-values): ``-sum_r ln eff_b_r`` (each ``eff_b`` floored at half
  of its run's smallest step, ``0.5 / n_val``, so a sample above all validation background stays finite);
  large when the sample is rare in *any* member and larger when it is rare in several;
- ``min`` (Tippett's): ``1 - min_r eff_b_r``, the most anomalous member decides;
- ``stouffer`` (Stouffer's): ``sum_r Phi^-1(1 - eff_b_r)``, the sum of the members' z-scores (floored as
  ``fisher``): less dominated by one very rare member than Fisher's.

Higher = more anomalous for all four. Members of one level are joined per sample (jet or event). When
members mix levels, the ensemble is an event-level score: a jet-level member enters with one calibrated value
per event from its two leading scored jets (``k`` of them), by ``jets`` (:data:`JET_RULES`):

- ``min`` (``ensemble``'s default): ``1 - (1 - min(eff_b_j0, eff_b_j1))^k``, the chance that the more
  anomalous of ``k`` independent background jets is that rare: one anomalous jet decides;
- ``fisher`` (``train auto``'s default since 2026-11-30, fourth session): Fisher's method over the jets,
  ``x = -ln eff_b_j0 - ln eff_b_j1``, ``eff_b = exp(-x) (1 + x)`` (``exp(-x)`` for one jet): the chance that
  ``k`` independent background jets are jointly that rare, so an event whose two jets are both unusual (a
  pair-produced dark sector, ttbar) ranks above one with a single unusual jet.

The output has the layout of
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

import pandas as pd

from darkshower.errors import ConfigError
from darkshower.train.scorefiles import (  # noqa: F401 (re-exported)
    COMBINATIONS,
    JET_RULES,
    KEYS,
    combine_tables,
    event_level,
    read_score_file,
    write_combined,
)

log = logging.getLogger(__name__)

def rank_average(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Join per-sample tables (``dataset``, ``event_id``, ``jet_idx``, ``eff_b`` [, ``nonfinite_input``]) on
    the sample keys; ``score`` = 1 - mean of the members' ``eff_b`` (NaN where a member has none)."""
    return combine_tables(tables, names, "mean")


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
             threads: int | None = None, combine: str = "mean", jets: str = "min") -> tuple[Path, Path]:
    """Combine runs (scored here on ``datasets``) and/or score files into one score file ``out`` (and its
    ``.events.parquet``) by ``combine`` of their ``eff_b`` (:data:`COMBINATIONS`); ``jets``: how jet-level
    members enter when the levels mix (:data:`JET_RULES`); returns both paths. See the module docstring."""
    from darkshower.train.score import check_score_output, score

    if combine not in COMBINATIONS:
        raise ConfigError(f"ensemble --combine {combine!r}: choose one of {', '.join(COMBINATIONS)}")
    if jets not in JET_RULES:
        raise ConfigError(f"ensemble --jets {jets!r}: choose one of {', '.join(JET_RULES)}")
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
            t, meta = read_score_file(f)
            tables.append(t)
            metas.append({**meta, "name": name, "input": str(p.resolve())})
        out, evp = write_combined(tables, metas, out, combine, jets=jets)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, evp


