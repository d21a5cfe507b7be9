"""``evaluate()``: every metric of every method on every signal dataset, into an evaluation directory.

Layout of the directory (see docs/evaluation.md)::

    OUT/metrics.json            all numbers (format "darkshower-evaluation", schema 1.0)
    OUT/data/events.parquet     per event: dataset, name, role, event_id, weight, mt, lead_jet_mass,
                                met_pt, n_jets and one column "score:<method>" per method
    OUT/data/supervised.parquet per held-out event of the supervised reference: signal, dataset,
                                event_id, score
    OUT/search/search.json      (from `darkshower search`, optional) bump-hunt results + PNGs
    OUT/report.html             (from `darkshower report`) the self-contained page
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from darkshower.data.dataset import atomic_write_parquet
from darkshower.errors import ConfigError, EvaluationError
from darkshower.evaluate import io as eio
from darkshower.evaluate.metrics import EFF_B_POINTS, EFF_S_POINTS, MIN_BKG, binary_metrics
from darkshower.evaluate.scores import (
    EVENT_SCORES,
    ScoreFile,
    check_identity,
    decorrelated,
    has_decorrelated,
    has_event_score,
    has_scores,
    join_event_scores,
    join_jet_scores,
    read_score_files,
    unchecked_warning,
)
from darkshower.evaluate.sculpting import SCULPT_EFFS, sculpting
from darkshower.evaluate.tables import DatasetTables, load_dataset, short_names

log = logging.getLogger(__name__)

#: preferred order of grid parameters (first = x axis of heatmaps); others follow in manifest order
GRID_PREFERENCE = ("r_inv", "ctau", "temperature", "m_dark", "m_med", "alpha", "channel", "decay", "n_c", "n_f")
#: ε_S at which 1/ε_B is shown in heatmaps
HEATMAP_EFF_S = 0.3


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, os.PathLike)):
        return [x]
    return list(x)


def grid_axes(signals: list[DatasetTables]) -> list[str]:
    """Physics parameters that vary among ``signals`` (same process), derived ones removed.

    A parameter is *derived* when its values are in one-to-one correspondence with those of a
    parameter that comes earlier in :data:`GRID_PREFERENCE` order (e.g. svj ``Lambda`` follows
    ``m_dark``).
    """
    if len(signals) < 2:
        return []
    keys = []
    for s in signals:
        for k in s.parameters:
            if k not in keys:
                keys.append(k)

    def val(s, k):
        v = s.parameters.get(k)
        return v if isinstance(v, (int, float, str, bool)) or v is None else repr(v)

    varying = [k for k in keys if len({val(s, k) for s in signals}) > 1]
    order = sorted(varying, key=lambda k: (GRID_PREFERENCE.index(k) if k in GRID_PREFERENCE else len(GRID_PREFERENCE),
                                           keys.index(k)))
    kept: list[str] = []
    for k in order:
        derived = False
        for q in kept:
            pairs = {(val(s, q), val(s, k)) for s in signals}
            if len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}):
                derived = True
                break
        if not derived:
            kept.append(k)
    return kept


def _bkg_weights(bkg: list[DatasetTables], notes: list[str]) -> list[np.ndarray]:
    ws = [d.events["weight"].to_numpy(np.float64) for d in bkg]
    if len(bkg) > 1:
        if all(d.cross_section_pb for d in bkg):
            ws = [w * d.cross_section_pb / w.sum() if w.sum() > 0 else w for w, d in zip(ws, bkg)]
            notes.append("background datasets mixed by cross-section: weight × σ_sel / Σweight per dataset")
        else:
            notes.append("background datasets mixed with their raw event weights (some have no cross-section)")
    return ws


def _ratio(a: dict, b: dict) -> dict:
    if not a or not b or a.get("value") is None or not b.get("value"):
        return {"value": None, "err": None}
    r = a["value"] / b["value"]
    ea = (a.get("err") or 0.0) / a["value"] if a["value"] else 0.0
    eb = (b.get("err") or 0.0) / b["value"]
    return {"value": r, "err": abs(r) * math.hypot(ea, eb)}


@dataclass(frozen=True)
class _Settings:
    """Options shared by the metric computations of one evaluation."""

    n_bootstrap: int
    seed: int
    min_bkg: float
    eff_s_points: tuple
    eff_b_points: tuple

    def metrics(self, score_sig, score_bkg, weight_sig, weight_bkg, seed) -> dict:
        return binary_metrics(score_sig, score_bkg, weight_sig, weight_bkg, n_bootstrap=self.n_bootstrap, seed=seed,
                              eff_s_points=self.eff_s_points, eff_b_points=self.eff_b_points, min_bkg=self.min_bkg)

    def empty(self) -> dict:
        """The metrics of a comparison without signal events (all undefined, flagged)."""
        return binary_metrics([], [0.0], n_bootstrap=0, eff_s_points=self.eff_s_points,
                              eff_b_points=self.eff_b_points)


def _check_efficiencies(name: str, values, upper_inclusive: bool = True) -> tuple[float, ...]:
    """A non-empty tuple of efficiencies in (0, 1] (or (0, 1)); ConfigError naming the option otherwise."""
    try:
        vals = tuple(float(v) for v in _as_list(values))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {values!r}: expected numbers, e.g. 0.1,0.3,0.5") from None
    ok = (lambda v: 0 < v <= 1) if upper_inclusive else (lambda v: 0 < v < 1)
    interval = "(0, 1]" if upper_inclusive else "(0, 1)"
    if not vals or not all(ok(v) for v in vals):  # also rejects NaN
        raise ConfigError(f"{name} {','.join(f'{v:g}' for v in vals) or '(empty)'}: efficiencies must lie in "
                          f"{interval}")
    return vals


def check_options(*, event_score: str = "max2", n_bootstrap: int = 200, min_bkg: float = MIN_BKG,
                  sculpt_effs=SCULPT_EFFS, eff_s_points=EFF_S_POINTS, eff_b_points=EFF_B_POINTS) -> dict:
    """Validate the options of :func:`evaluate` (before any file is read); returns them normalized."""
    if event_score not in EVENT_SCORES:
        raise EvaluationError(f"event score {event_score!r}: choose one of {EVENT_SCORES}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap (--bootstrap) {n_bootstrap}: must be an integer >= 0 (0 = no uncertainties)")
    if not (isinstance(min_bkg, (int, float)) and math.isfinite(min_bkg) and min_bkg >= 0):
        raise ConfigError(f"min_bkg (--min-bkg) {min_bkg}: must be a number >= 0 (effective background events)")
    return {
        "sculpt_effs": _check_efficiencies("sculpt_effs (--sculpt-eff)", sculpt_effs),
        "eff_s_points": _check_efficiencies("eff_s_points (--eff-s)", eff_s_points),
        "eff_b_points": _check_efficiencies("eff_b_points (--eff-b)", eff_b_points),
    }


def _check_inputs(scores, supervised_scores, background, signal) -> None:
    if not scores and not supervised_scores:
        raise EvaluationError("no score files given (--scores S.parquet ...)")
    if not background:
        raise EvaluationError("no background dataset given (--background DIR ...)")
    if not signal:
        raise EvaluationError("no signal dataset given (--signal DIR ...)")
    resolved = [str(Path(p).resolve()) for p in background + signal]
    dup = {p for p in resolved if resolved.count(p) > 1}
    if dup:
        raise EvaluationError(f"dataset(s) given twice (as background and/or signal): {', '.join(sorted(dup))}")


def evaluate(
    scores,
    background,
    signal,
    out=None,
    *,
    supervised_scores=(),
    event_score: str = "max2",
    n_bootstrap: int = 200,
    seed: int = 0,
    min_bkg: float = MIN_BKG,
    supervised: bool = True,
    sculpt_effs=SCULPT_EFFS,
    eff_s_points=EFF_S_POINTS,
    eff_b_points=EFF_B_POINTS,
    jet_level: bool = True,
    executor=None,
    decorrelated_scores: bool = True,
) -> dict:
    """Evaluate anomaly scores against background and signal datasets.

    ``scores``: score files of unsupervised methods (``S.parquet``); ``supervised_scores``:
    extra score files of supervised classifiers (shown as references); ``background``/``signal``:
    dataset directories. Event metrics use the event score ``event_score`` (``max2``: the
    maximum of the two leading jets' scores, ``lead``: the leading jet's, ``pair``: Fisher's method over the two
    leading jets' calibrated scores; event-level methods have one score for all three). With ``supervised``,
    a gradient-boosted classifier per signal is the supervised reference. With ``out`` the
    evaluation directory is written (see module docstring). Returns the metrics dict. The datasets
    (and their observables) are read one task per chunk on ``executor`` (darkshower.execute; default
    in process). With ``decorrelated_scores`` (default), a score file that carries decorrelated scores
    (``darkshower score --decorrelate``) is also evaluated as ``<method> (decor)``, and ``metrics.json``
    gets a ``decorrelation`` list: raw vs decorrelated AUC, rejection and mass/MT sculpting side by side.

    Invalid options raise :class:`~darkshower.errors.ConfigError` and inputs that do not fit
    together :class:`~darkshower.errors.EvaluationError`, before anything is written.
    """
    effs = check_options(event_score=event_score, n_bootstrap=n_bootstrap, min_bkg=min_bkg, sculpt_effs=sculpt_effs,
                         eff_s_points=eff_s_points, eff_b_points=eff_b_points)
    scores, supervised_scores = _as_list(scores), _as_list(supervised_scores)
    background, signal = _as_list(background), _as_list(signal)
    _check_inputs(scores, supervised_scores, background, signal)
    if out is not None:
        eio.check_out_dir(out)
    opts = _Settings(n_bootstrap=int(n_bootstrap), seed=seed, min_bkg=min_bkg, eff_s_points=effs["eff_s_points"],
                     eff_b_points=effs["eff_b_points"])
    files = read_score_files(scores, supervised_scores)
    notes: list[str] = []
    warnings: list[str] = []
    if decorrelated_scores:
        views = []
        for f in files:
            views.append(f)
            if not has_decorrelated(f):
                continue
            d = decorrelated(f)
            if event_score == "pair" and not has_event_score(d, "pair"):
                # e.g. a combined (ensemble / train auto) file of jet-level members: score_decor, no eff_b_decor
                warnings.append(f"{d.name}: no decorrelated pair score (its jets have no eff_b_decor); not evaluated "
                                "with --event-score pair (use max2 for its decorrelated view)")
                continue
            views.append(d)
        files = views
    from darkshower.execute import using

    with using(executor if executor is not None else "local") as ex:  # in process unless asked
        bkg, sigs = _load_datasets(background, signal, features=supervised, executor=ex)
    bw = _bkg_weights(bkg, notes)
    events = event_table(files, bkg, sigs, bw, event_score, notes, warnings)
    results = method_metrics(files, bkg, sigs, bw, events, opts, warnings, jet_level=jet_level)
    sup_results, sup_info, sup_rows = (supervised_reference(bkg, sigs, bw, events, opts, warnings) if supervised
                                       else ([], {}, []))
    results += sup_results
    ref_name = _reference_name(files, supervised)
    _attach_ratios(results, ref_name)
    sculpt = sculpting_by_method(files, events, effs["sculpt_effs"], seed)
    generalization = generalization_grids(sigs, notes)
    decor = decorrelation_summary(files, results, sculpt)
    metrics = eio.clean({
        "format": eio.FORMAT,
        "schema_version": eio.SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "event_score": event_score, "n_bootstrap": n_bootstrap, "seed": seed, "min_bkg": min_bkg,
            "eff_s_points": list(opts.eff_s_points), "eff_b_points": list(opts.eff_b_points),
            "sculpt_effs": list(effs["sculpt_effs"]), "heatmap_eff_s": HEATMAP_EFF_S,
            "supervised_reference": ref_name, "jsd_base": 2,
        },
        "methods": [{"name": f.name, "method": f.method, "run": f.run, "file": str(f.path), "level": f.level,
                     "supervised": f.supervised} for f in files],
        "background": [d.describe() for d in bkg],
        "signals": [d.describe() for d in sigs],
        "results": results,
        "supervised": sup_info,
        "sculpting": sculpt,
        "decorrelation": decor,
        "generalization": generalization,
        "notes": notes,
        "warnings": warnings,
    })
    if out is not None:
        write_evaluation(out, metrics, events, sup_rows)
    return metrics


# -- the steps of evaluate(), in order ------------------------------------------------------------------
def _load_datasets(background: list, signal: list, features: bool,
                   executor=None) -> tuple[list[DatasetTables], list[DatasetTables]]:
    names = short_names(background + signal)
    bkg = [load_dataset(p, "background", n, features=features, executor=executor) for p, n in zip(background, names)]
    sigs = [load_dataset(p, "signal", n, features=features, executor=executor)
            for p, n in zip(signal, names[len(background):])]
    if not sum(d.n_events for d in bkg):
        raise EvaluationError(f"background dataset(s) {', '.join(map(str, background))} have no events")
    return bkg, sigs


def event_table(files: list[ScoreFile], bkg: list[DatasetTables], sigs: list[DatasetTables], bw: list[np.ndarray],
                event_score: str, notes: list[str], warnings: list[str]) -> pd.DataFrame:
    """One row per event of every dataset (weights: ``bw`` for background) and one ``score:<method>``
    column per score file; events without a (finite) score are NaN and counted in ``notes``."""
    parts = []
    for d, w in zip(bkg + sigs, bw + [s.events["weight"].to_numpy(np.float64) for s in sigs]):
        e = d.events.copy()
        e["weight"] = w
        e.insert(0, "role", d.role)
        e.insert(0, "name", d.name)
        e.insert(0, "dataset", d.path)
        parts.append(e)
    events = pd.concat(parts, ignore_index=True)
    unscored: dict[str, dict[str, int]] = {}
    for sf in files:
        col = np.full(len(events), np.nan)
        checked = True
        for d in bkg + sigs:
            if not d.n_events:
                continue
            rows = (events["dataset"] == d.path).to_numpy()
            if not d.n_jets and not has_scores(sf, d.path):  # nothing a jet-level method could score
                _warn_once(warnings, f"{d.role} dataset {d.name} ({d.path}) has {d.n_events} events but no jets: "
                                     "nothing to score" + (", no metrics" if d.role == "signal" else ", left out"))
                continue
            checked &= check_identity(sf, d.path, d.fingerprint)
            col[rows] = join_event_scores(sf, d.events, d.path, event_score)
            n_un = int(np.isnan(col[rows]).sum())
            if n_un:
                unscored.setdefault(sf.name, {})[d.name] = n_un
        if all(not d.n_jets and not has_scores(sf, d.path) for d in bkg if d.n_events):
            raise EvaluationError(
                f"background dataset(s) {', '.join(f'{d.path} ({d.n_events} events)' for d in bkg)} have no jets: "
                f"{sf.path} (method {sf.name!r}) has nothing to compare the signal with; give a background "
                "dataset with jets"
            )
        if not checked:
            log.warning(unchecked_warning(sf))
            warnings.append(unchecked_warning(sf))
        events[f"score:{sf.name}"] = col
    for m, dd in unscored.items():
        for dname, n_un in dd.items():
            notes.append(f"{m}: {n_un} events of {dname} have no (finite) score and are left out")
    return events


def _warn_once(warnings: list[str], text: str) -> None:
    if text not in warnings:
        log.warning(text)
        warnings.append(text)


def method_metrics(files: list[ScoreFile], bkg: list[DatasetTables], sigs: list[DatasetTables], bw: list[np.ndarray],
                   events: pd.DataFrame, opts: _Settings, warnings: list[str], jet_level: bool = True) -> list[dict]:
    """Event-level (and, for jet-level methods, jet-level) metrics of every score file on every signal."""
    is_b = (events["role"] == "background").to_numpy()
    w_bkg = np.concatenate(bw)
    results: list[dict] = []
    for i, sf in enumerate(files):
        sc = events[f"score:{sf.name}"].to_numpy()
        for j, sd in enumerate(sigs):
            entry: dict[str, Any] = {"method": sf.name, "signal": sd.name, "level": "event", "supervised": sf.supervised}
            if not sd.n_events:
                entry.update(opts.empty())
                _warn_once(warnings, f"signal dataset {sd.name} ({sd.path}) has no events: no metrics")
                results.append(entry)
                continue
            rs = (events["dataset"] == sd.path).to_numpy()
            if not sd.n_jets and np.isnan(sc[rs]).all():  # warned by event_table
                entry.update(opts.empty())
                entry["flags"] = entry["flags"] + ["no_jets"]
                results.append(entry)
                continue
            entry.update(opts.metrics(sc[rs], sc[is_b], events["weight"].to_numpy()[rs], w_bkg, [opts.seed, i, j, 0]))
            if "degenerate_scores" in entry["flags"]:
                warnings.append(f"{sf.name} on {sd.name}: all scores are equal (degenerate); AUC 0.5 by construction")
            results.append(entry)
            if jet_level and sf.level == "jet":
                results.append(_jet_entry(sf, bkg, bw, sd, opts, [opts.seed, i, j, 1]))
    return results


def supervised_reference(bkg: list[DatasetTables], sigs: list[DatasetTables], bw: list[np.ndarray],
                         events: pd.DataFrame, opts: _Settings,
                         warnings: list[str]) -> tuple[list[dict], dict, list[pd.DataFrame]]:
    """The built-in BDT per signal: (result entries, per-signal info, held-out rows for supervised.parquet)."""
    from darkshower.evaluate import supervised as sup

    is_b = (events["role"] == "background").to_numpy()
    w_bkg = np.concatenate(bw)
    results, sup_rows, sup_info = [], [], {}
    fb = pd.concat([d.features for d in bkg if d.features is not None], ignore_index=True) \
        if any(d.features is not None for d in bkg) else None
    for j, sd in enumerate(sigs):
        entry = {"method": sup.NAME, "signal": sd.name, "level": "event", "supervised": True, "builtin": True}
        if not sd.n_events or sd.features is None or fb is None:
            entry.update(opts.empty())
            results.append(entry)
            continue
        ws = sd.events["weight"].to_numpy(np.float64)
        try:
            r = sup.train_and_score(fb, sd.features, w_bkg, ws, seed=opts.seed + j)
        except ValueError as exc:  # e.g. too few events for a split with both classes
            entry.update(opts.empty())
            entry["flags"] = ["supervised_failed"]
            warnings.append(f"supervised reference on {sd.name} failed: {exc}")
            results.append(entry)
            continue
        tb, ts = r["test_bkg"], r["test_sig"]
        entry.update(opts.metrics(r["score_sig"][ts], r["score_bkg"][tb], ws[ts], w_bkg[tb], [opts.seed, 999, j]))
        entry["n_train"] = r["n_train"]
        results.append(entry)
        sup_info[sd.name] = {"features": r["features"], "n_train": r["n_train"],
                             "n_test_bkg": int(tb.sum()), "n_test_sig": int(ts.sum())}
        bev = events.loc[is_b, ["dataset", "event_id"]].reset_index(drop=True)
        sup_rows.append(pd.DataFrame({"signal": sd.name, "dataset": bev["dataset"][tb].to_numpy(),
                                      "event_id": bev["event_id"][tb].to_numpy(), "role": "background",
                                      "score": r["score_bkg"][tb]}))
        sup_rows.append(pd.DataFrame({"signal": sd.name, "dataset": sd.path,
                                      "event_id": sd.events["event_id"].to_numpy()[ts], "role": "signal",
                                      "score": r["score_sig"][ts]}))
    return results, sup_info, sup_rows


def _reference_name(files: list[ScoreFile], supervised: bool) -> str | None:
    """The reference of the AUC ratio: the built-in BDT, else the first supervised score file."""
    if supervised:
        from darkshower.evaluate.supervised import NAME

        return NAME
    return next((f.name for f in files if f.supervised), None)


def _attach_ratios(results: list[dict], ref_name: str | None) -> None:
    """Add ``supervised_auc`` and ``ratio_to_supervised`` (event level) to every result entry."""
    for e in results:
        e["supervised_auc"] = None
        e["ratio_to_supervised"] = {"value": None, "err": None}
        if ref_name is None or e["level"] != "event":
            continue
        ref = next((r for r in results if r["method"] == ref_name and r["signal"] == e["signal"]
                    and r["level"] == "event"), None)
        if ref is not None:
            e["supervised_auc"] = ref["auc"]
            e["ratio_to_supervised"] = _ratio(e["auc"], ref["auc"])


def sculpting_by_method(files: list[ScoreFile], events: pd.DataFrame, sculpt_effs, seed: int) -> dict:
    """Background mass sculpting (JSD of leading-jet mass and MT) of each method's score cuts."""
    is_b = (events["role"] == "background").to_numpy()
    w_bkg = events.loc[is_b, "weight"].to_numpy()
    out = {}
    for sf in files:
        sc = events.loc[is_b, f"score:{sf.name}"].to_numpy()
        out[sf.name] = sculpting(sc, {"lead_jet_mass": events.loc[is_b, "lead_jet_mass"].to_numpy(),
                                      "mt": events.loc[is_b, "mt"].to_numpy()}, w_bkg, effs=sculpt_effs, seed=seed)
    return out


def decorrelation_summary(files: list[ScoreFile], results: list[dict], sculpt: dict) -> list[dict]:
    """Raw vs decorrelated, per method with decorrelated scores and signal: event-level AUC, 1/ε_B at
    ε_S = HEATMAP_EFF_S, and the background sculpting JSD (leading-jet mass, MT) at every sculpting ε_B
    next to the random-subset level (``jsd_random`` of the decorrelated cut: mean, 95th percentile and
    the p-value of the decorrelated cut's JSD among random subsets; darkshower.evaluate.sculpting)."""
    out = []
    by_name = {f.name: f for f in files}
    for f in files:
        if not f.meta.get("decorrelated"):
            continue
        raw = next((g for g in files if g.path == f.path and g is not f and not g.meta.get("decorrelated")), None)
        if raw is None or raw.name not in by_name:
            continue
        for r in results:
            if r["method"] != raw.name or r["level"] != "event":
                continue
            d = next((x for x in results if x["method"] == f.name and x["signal"] == r["signal"]
                      and x["level"] == "event"), None)
            if d is None:
                continue
            key = f"{HEATMAP_EFF_S:g}"
            row: dict[str, Any] = {"method": raw.name, "decorrelated": f.name, "signal": r["signal"],
                                   "auc": (r.get("auc") or {}).get("value"), "auc_decor": (d.get("auc") or {}).get("value"),
                                   "eff_s": HEATMAP_EFF_S,
                                   "rejection": ((r.get("rejection") or {}).get(key) or {}).get("value"),
                                   "rejection_decor": ((d.get("rejection") or {}).get(key) or {}).get("value"),
                                   "sculpting": {}}
            for var, entry in (sculpt.get(raw.name) or {}).items():
                dent = (sculpt.get(f.name) or {}).get(var, {})
                row["sculpting"][var] = {
                    eff: {"jsd": c.get("jsd"), "jsd_decor": (dent.get("cuts", {}).get(eff) or {}).get("jsd"),
                          **{k: (dent.get("cuts", {}).get(eff) or {}).get(k)
                             for k in ("jsd_random", "jsd_random_q95", "jsd_random_p")}}
                    for eff, c in entry.get("cuts", {}).items()}
            out.append(row)
    return out


def generalization_grids(sigs: list[DatasetTables], notes: list[str]) -> list[dict]:
    """Per signal process: the (up to two) grid parameters of the heatmaps and each signal's values."""
    generalization = []
    by_proc: dict[str, list[DatasetTables]] = {}
    for sd in sigs:
        by_proc.setdefault(sd.process, []).append(sd)
    for proc, group in by_proc.items():
        axes = grid_axes(group)
        generalization.append({
            "process": proc,
            "axes": axes[:2],
            "other_varying": axes[2:],
            "signals": [{"name": s.name, **{k: s.parameters.get(k) for k in axes}} for s in group],
        })
        if len(axes) > 2:
            notes.append(f"{proc}: parameters {axes[2:]} also vary; heatmaps show {axes[:2]} (first signal per cell)")
    return generalization


def write_evaluation(out, metrics: dict, events: pd.DataFrame, sup_rows: list[pd.DataFrame]) -> Path:
    """Write the evaluation directory (data/ first, metrics.json last: its presence marks a complete one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # an older metrics.json must not outlive a failed rewrite of data/ (it would describe other tables)
    (out / eio.METRICS).unlink(missing_ok=True)
    atomic_write_parquet(events, out / eio.DATA_DIR / eio.EVENTS)
    if sup_rows:
        atomic_write_parquet(pd.concat(sup_rows, ignore_index=True), out / eio.DATA_DIR / eio.SUPERVISED)
    elif (out / eio.DATA_DIR / eio.SUPERVISED).exists():
        (out / eio.DATA_DIR / eio.SUPERVISED).unlink()
    eio.atomic_write_json(out / eio.METRICS, metrics)
    log.info("evaluation written to %s", out / eio.METRICS)
    return out / eio.METRICS


def _jet_entry(sf: ScoreFile, bkg: list[DatasetTables], bw: list[np.ndarray], sd: DatasetTables, opts: _Settings,
               seed) -> dict:
    """Jet-level metrics: background jets vs the signal's dark jets (all jets without truth)."""
    entry = {"method": sf.name, "signal": sd.name, "level": "jet", "supervised": sf.supervised}
    sb, wb = [], []
    for d, w in zip(bkg, bw):
        if not d.n_events or not d.n_jets:
            continue
        jw = pd.Series(w, index=d.events["event_id"].to_numpy()).reindex(d.jets["event_id"].to_numpy()).to_numpy()
        sb.append(join_jet_scores(sf, d.jets, d.path))
        wb.append(jw)
    jets = sd.jets
    s = join_jet_scores(sf, jets, sd.path) if len(jets) else np.zeros(0)
    ws = pd.Series(sd.events["weight"].to_numpy(), index=sd.events["event_id"].to_numpy()) \
        .reindex(jets["event_id"].to_numpy()).to_numpy()
    truth = "all jets"
    if "is_dark" in jets.columns:
        keep = jets["is_dark"].to_numpy(bool)
        s, ws = s[keep], ws[keep]
        truth = "dark jets (is_dark)"
    b = np.concatenate(sb) if sb else np.zeros(0)
    w = np.concatenate(wb) if wb else np.zeros(0)
    # jets without a score (e.g. beyond the scored leading jets) are not part of the comparison
    sel_b, sel_s = ~np.isnan(b), ~np.isnan(s)
    entry.update(opts.metrics(s[sel_s], b[sel_b], ws[sel_s], w[sel_b], seed))
    entry["signal_jets"] = truth
    return entry
