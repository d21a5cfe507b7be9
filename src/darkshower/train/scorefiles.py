"""Score files and combined scores: the layer below ``score`` and ``ensemble``.

``eff_b`` (calibration on a run's validation background), the score-file pair (per sample and per event,
written atomically with the ``darkshower`` metadata), and the combination of several members' calibrated
scores (:func:`combine_tables`: rank average, Fisher's method or min; jet- and event-level members joined
per event) used by ``darkshower ensemble`` and by ``score`` on a ``train auto`` run. The combinations are
described in :mod:`darkshower.train.ensemble`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.data.dataset import atomic_write_parquet
from darkshower.errors import ConfigError

log = logging.getLogger(__name__)


#: sorted validation-background scores of a run's best / last model (written at the end of training)
VAL_SCORES = {"best": "val_scores.npy", "last": "val_scores_last.npy"}


def val_file(name: str, kind: str | None) -> str:
    """The file of one score kind (``score --score-kind``): ``val_scores.npy`` -> ``val_scores.norm.npy``;
    ``kind`` None: ``name`` itself (the run's configured score)."""
    if kind is None:
        return name
    stem, ext = name.rsplit(".", 1)
    return f"{stem}.{kind}.{ext}"


def read_val_scores(run, which: str = "best", kind: str | None = None) -> np.ndarray | None:
    """The run's sorted validation-background scores of model ``which`` (of score ``kind``; None: the configured
    one), or None when the run has none."""
    p = Path(run) / val_file(VAL_SCORES[which], kind)
    if not p.exists():
        return None
    return np.load(p, allow_pickle=False)


def eff_b(val_sorted: np.ndarray | None, scores) -> np.ndarray:
    """Fraction of the (ascending) validation scores strictly above each score: the background
    efficiency of a cut at that score. NaN scores, or no validation scores, give NaN."""
    scores = np.asarray(scores, np.float64)
    if val_sorted is None or len(val_sorted) == 0:
        return np.full(scores.shape, np.nan)
    above = len(val_sorted) - np.searchsorted(val_sorted, scores, side="right")
    return np.where(np.isnan(scores), np.nan, above / len(val_sorted))


def events_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(name + ".events.parquet")


def jet_rank(jets: pd.DataFrame) -> np.ndarray:
    """Each jet row's rank among its event's scored jets (0: the leading one). It equals ``jet_idx`` but for
    a run with a jet window, whose leading jet inside the window need not be the event's first jet."""
    return jets.groupby(["dataset", "event_id"], sort=False)["jet_idx"].rank(method="first").to_numpy(np.int64) - 1


def pair_scores(jets: pd.DataFrame, col: str = "eff_b", n_val: int | None = None) -> pd.Series:
    """Per event, ``-ln`` of Fisher's method over the two leading scored jets' calibrated scores (``col``:
    ``eff_b`` or ``eff_b_decor``; :func:`event_level` with ``jets="fisher"``, floored at ``0.5 / n_val``, else half
    the smallest positive value), indexed by (dataset, event_id): higher = more anomalous, and an event whose two
    jets are both unusual ranks above one with a single unusual jet. A jet without a finite calibrated score is
    left out (as ``max2`` leaves out a NaN jet): the event is scored by its other jet; NaN without any."""
    keys = ["dataset", "event_id"]
    idx = pd.MultiIndex.from_frame(jets[keys].drop_duplicates())
    if col not in jets.columns or not np.isfinite(jets[col].to_numpy(np.float64)).any():
        return pd.Series(np.nan, index=idx, dtype=np.float64)
    t = jets[[*keys, "jet_idx", col]]
    t = t[jet_rank(t) < 2]  # the two leading scored jets, then those of them with a finite calibrated score
    t = t[np.isfinite(t[col].to_numpy(np.float64))]
    e = event_level(t.rename(columns={col: "eff_b"}), "fisher", 0.5 / n_val if n_val else None)
    with np.errstate(divide="ignore"):
        out = pd.Series(-np.log(e["eff_b"].to_numpy(np.float64)), index=pd.MultiIndex.from_frame(e[keys]),
                        dtype=np.float64)
    return out.reindex(idx)


def event_table(jets: pd.DataFrame, n_val: int | None = None) -> pd.DataFrame:
    """Per-event scores from per-jet scores: leading scored jet, max of the two leading scored jets and, for
    calibrated runs, ``score_pair`` (:func:`pair_scores`; ``n_val``: the run's number of validation scores) —
    also of ``score_decor`` when the table has it: ``score_decor_lead``, ``score_decor_max2``,
    ``score_decor_pair``. Event-level tables have one score per event: all of them equal it."""
    cols = [c for c in ("score", "score_decor") if c in jets.columns]
    if (jets["jet_idx"] < 0).all():
        ev = jets[["dataset", "event_id", *cols]].copy()
        for c in cols:
            ev[f"{c}_lead"] = ev[c]
            ev[f"{c}_max2"] = ev[c]
            ev[f"{c}_pair"] = ev[c]
        return ev.drop(columns=cols)
    keys = ["dataset", "event_id"]
    rank = jet_rank(jets)
    parts = []
    for c in cols:
        parts.append(jets[rank == 0].set_index(keys)[c].rename(f"{c}_lead"))
        parts.append(jets[rank < 2].groupby(keys)[c].max().rename(f"{c}_max2"))
        eff = "eff_b" if c == "score" else "eff_b_decor"
        parts.append(pair_scores(jets, eff, n_val).rename(f"{c}_pair"))
    return pd.concat(parts, axis=1).reset_index()


def write_score_files(jets: pd.DataFrame, out, meta: dict) -> tuple[Path, Path]:
    """The score-file pair: per-jet table at ``out`` and per-event table beside it (``events_path``),
    both atomic and with ``meta``; never one without the other. Used by local, remote and ensemble scoring."""
    out = Path(out)
    atomic_write_parquet(jets, out, meta)
    evp = events_path(out)
    try:
        atomic_write_parquet(event_table(jets, meta.get("n_val_scores")), evp, meta)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out, evp


def check_score_output(out) -> Path:
    """Fail before any work when OUT or its .events.parquet companion cannot be written as a file."""
    out = Path(out)
    for p in (out, events_path(out)):
        if p.is_dir():
            raise ConfigError(f"--out {out}: {p} is a directory; give a file name such as {out / 'scores.parquet'}")
    parent = next((a for a in out.parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--out {out}: {parent} is a file, not a directory; choose another output path")
    return out


KEYS = ["dataset", "event_id", "jet_idx"]
#: the ways members combine (module docstring)
COMBINATIONS = ("mean", "fisher", "min", "stouffer")
_FORMULA = {"mean": "1 - mean eff_b", "fisher": "-sum ln max(eff_b, 0.5/n_val)", "min": "1 - min eff_b",
            "stouffer": "sum Phi^-1(1 - max(eff_b, 0.5/n_val))"}


#: how a jet-level member enters per event (module docstring of darkshower.train.ensemble)
JET_RULES = ("min", "fisher")


def run_jet_rule(info: dict) -> str:
    """The jet rule of a `train auto` run (its run.json ``jets``): "min" for runs written before the key existed
    (their calibration was made with it)."""
    return info.get("jets") or "min"


def event_level(t: pd.DataFrame, jets: str = "min", floor: float | None = None) -> pd.DataFrame:
    """A jet-level member as an event-level one, from its two leading scored jets (``k`` of them):
    ``jets="min"``: ``eff_b = 1 - (1 - min eff_b)^k`` (the chance that the more anomalous of ``k`` independent
    background jets is that rare); ``jets="fisher"``: Fisher's method over the jets, ``x = -sum ln eff_b``,
    ``eff_b = exp(-x) * sum_{i<k} x^i / i!`` (the chance that ``k`` independent background jets are jointly
    that rare; each ``eff_b`` floored at ``floor``, default half the member's smallest positive one).
    NaN when one of the jets has no finite score (``nonfinite_input`` kept)."""
    if jets not in JET_RULES:
        raise ConfigError(f"jet rule {jets!r}: choose one of {', '.join(JET_RULES)}")
    j = t[jet_rank(t) < 2]
    eff = j["eff_b"].astype(np.float64)
    nonfinite = (j["nonfinite_input"].astype(bool) if "nonfinite_input" in j.columns
                 else pd.Series(False, index=j.index))
    if floor is None:
        floor = _floor_from(eff.to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        neg_log = -np.log(np.maximum(eff.to_numpy(), floor))
    g = pd.DataFrame({"dataset": j["dataset"], "event_id": j["event_id"], "eff_b": eff, "x": neg_log,
                      "bad": ~np.isfinite(eff.to_numpy()), "nonfinite_input": nonfinite}).groupby(
        ["dataset", "event_id"], sort=False)
    agg = g.agg(e=("eff_b", "min"), x=("x", "sum"), k=("eff_b", "size"), bad=("bad", "any"),
                nf=("nonfinite_input", "any"))
    k = agg["k"].to_numpy()
    if jets == "min":
        e = 1.0 - (1.0 - agg["e"].to_numpy()) ** k
    else:  # the chi-square survival function with 2k degrees of freedom at 2x (k = 1 or 2 here)
        x = agg["x"].to_numpy()
        e = np.exp(-x) * np.where(k >= 2, 1.0 + x, 1.0)
    e[agg["bad"].to_numpy()] = np.nan
    out = agg.index.to_frame(index=False)
    out["jet_idx"] = -1
    out["eff_b"] = e
    out["nonfinite_input"] = agg["nf"].to_numpy()
    return out


def _floor_from(eff: np.ndarray) -> float:
    """The Fisher floor of a member whose number of validation scores is unknown: half its smallest positive
    ``eff_b`` (one validation step, or a multiple of it), else 1e-6."""
    pos = eff[np.isfinite(eff) & (eff > 0)]
    return 0.5 * float(pos.min()) if len(pos) else 1e-6


def combine_tables(tables: list[pd.DataFrame], names: list[str], combine: str = "mean",
                   n_val: list[int | None] | None = None, jets: str = "min") -> pd.DataFrame:
    """Join per-sample tables (``dataset``, ``event_id``, ``jet_idx``, ``eff_b`` [, ``nonfinite_input``]) on the
    sample keys and combine their ``eff_b`` by ``combine`` (:data:`COMBINATIONS`; module docstring) into
    ``score`` (NaN where a member has none). Members of mixed levels are joined per event (:func:`event_level`).
    ``n_val``: each member's number of validation scores (the ``fisher`` floor ``0.5 / n_val``; None: half
    the member's smallest positive ``eff_b``). ``jets``: how a jet-level member enters per event when the
    levels mix (:data:`JET_RULES`, :func:`event_level`)."""
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
            raise ConfigError(f"ensemble member {name}: no column(s) {missing}: give score files of calibrated runs "
                              "written by `darkshower score` (runs trained before darkshower stored validation "
                              "scores, and `train auto` runs scored with --model last, have no eff_b)")
    if jets not in JET_RULES:
        raise ConfigError(f"ensemble jet rule {jets!r}: choose one of {', '.join(JET_RULES)}")
    levels = [bool((t["jet_idx"] < 0).all()) for t in tables]
    # each member's fisher floor: 0.5 / n_val (unknown n_val: half its smallest positive eff_b); a jet-level
    # member entering by Fisher's method over two jets reaches down to f^2 (1 - 2 ln f), both jets at the floor f
    floors = [0.5 / n if n else _floor_from(t["eff_b"].to_numpy(np.float64)) for t, n in zip(tables, n_val, strict=True)]
    if len(set(levels)) > 1:
        tables = [t if ev else event_level(t, jets, f) for t, ev, f in zip(tables, levels, floors, strict=True)]
        if jets == "fisher":
            floors = [f if ev else f * f * (1.0 - 2.0 * np.log(f)) for f, ev in zip(floors, levels, strict=True)]
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
        elif combine == "stouffer":  # the sum of the members' z-scores (Stouffer's method), floored as fisher
            from scipy.special import ndtri

            f = np.array(floors)  # both ends: eff_b is 0 beyond every validation score and 1 below all of them
            score = (-ndtri(np.clip(np.maximum(effs, f), None, 1.0 - f))).sum(axis=1)
            score[np.isnan(effs).any(axis=1)] = np.nan
        else:
            score = -np.log(np.maximum(effs, np.array(floors))).sum(axis=1)
            score[np.isnan(effs).any(axis=1)] = np.nan
    out["score"] = score
    out["nonfinite_input"] = nonfinite
    for i, n in enumerate(names):
        out[f"eff_b.{n}"] = effs[:, i]
    return out.sort_values(KEYS, kind="stable").reset_index(drop=True)


def write_combined(tables: list[pd.DataFrame], metas: list[dict], out, combine: str, method: str = "ensemble",
                   extra: dict | None = None, val_sorted: np.ndarray | None = None,
                   decorrelated: bool = False, jets: str = "min") -> tuple[Path, Path]:
    """Combine members' score tables (``metas[i]["name"]`` names member i; its ``n_val_scores`` sets the
    ``fisher`` floor) by ``combine`` and write the score-file pair ``out``; ``method``/``extra`` go into the
    metadata. Members of mixed levels give an event-level file (module docstring). ``val_sorted``: sorted
    combined scores of validation background (a `train auto` run's); with it the file has ``eff_b``.
    ``decorrelated``: the members' ``eff_b_decor`` combine the same way into ``score_decor``. ``jets``: how
    jet-level members enter per event (:data:`JET_RULES`)."""
    names = [m["name"] for m in metas]
    for t, m in zip(tables, metas, strict=True):
        if not np.isfinite(t["eff_b"].to_numpy(np.float64)).any():
            raise ConfigError(f"ensemble member {m.get('input', m['name'])}: no calibrated scores (eff_b is NaN: the "
                              "run has no val_scores.npy); retrain it with this darkshower version")
    levels = {bool((t["jet_idx"] < 0).all()) for t in tables}
    level = "event" if True in levels else "jet"
    if len(levels) > 1:
        log.info("ensemble: members mix jet- and event-level scores; jet-level members enter per event (%s of "
                 "the two leading jets' calibrated scores)", "Fisher's method" if jets == "fisher" else "the minimum")
    table = combine_tables(tables, names, combine, [m.get("n_val_scores") for m in metas], jets)
    if decorrelated:
        dec = combine_tables([t.drop(columns=["eff_b"]).rename(columns={"eff_b_decor": "eff_b"}) for t in tables], names,
                             combine, [m.get("n_val_scores") for m in metas], jets)
        if not dec[KEYS].equals(table[KEYS]):
            raise ConfigError("ensemble: the members' decorrelated scores do not cover the same samples")
        table["score_decor"] = dec["score"].to_numpy()
    if val_sorted is not None:
        table.insert(table.columns.get_loc("nonfinite_input") + 1, "eff_b", eff_b(val_sorted, table["score"].to_numpy()))
    n_missing = int(table[[f"eff_b.{n}" for n in names]].isna().any(axis=1).sum() - table["nonfinite_input"].sum())
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
            "combination": _FORMULA[combine], "combine": combine, "jet_rule": jets if len(levels) > 1 else None,
            "representation": "ensemble", "level": level,
            "supervised": any(m.get("supervised") for m in metas),
            "n_nonfinite_input": int(table["nonfinite_input"].sum()), "datasets": fingerprints,
            "n_val_scores": None if val_sorted is None else len(val_sorted), **(extra or {})}
    out, evp = write_score_files(table, out, meta)
    log.info("ensemble (%s) of %d members: %d samples -> %s", combine, len(tables), len(table), out)
    return out, evp


def read_score_file(path: Path) -> tuple[pd.DataFrame, dict]:

    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
        t = pd.read_parquet(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable score file ({type(exc).__name__}: {exc})") from None
    meta = json.loads(md.get(b"darkshower", b"{}") or b"{}")
    if "jet_idx" not in t.columns:
        t["jet_idx"] = -1
    return t, meta
