"""Scoring: ``score(run, datasets, out)`` -> per-jet and per-event anomaly scores (Parquet).

OUT (per jet or, for event-level methods, per event with ``jet_idx = -1``):
    dataset (absolute dataset path), event_id, jet_idx, score, nonfinite_input (True: the model input held
    NaN/inf; the sample is not scored and its score is NaN), eff_b (the fraction of the run's validation
    background scored above this score: RUN/val_scores.npy, written at the end of training; NaN with a
    warning for runs without it); with ``decorrelate=True`` (``score --decorrelate``; the run needs
    RUN/val_decor.npz, written at the end of training) also eff_b_decor (the fraction of the validation background *in the same bin of
    jet pT and mass* — MT and leading-jet mass for event-level runs — scored above: the conditional
    efficiency, interpolated; darkshower.models.decorrelate) and score_decor = -log10(eff_b_decor)
    jet_idx numbers the jets as the dataset does; a run trained with a jet window (data.jet_pt_min/max,
    jet_mass_min/max) scores only the jets inside it, its ``max_jets`` leading ones there, as in training.
OUT with suffix ``.events.parquet`` (per event):
    dataset, event_id, score_lead (leading scored jet), score_max2 (max of the two leading scored jets),
    score_pair (-ln of Fisher's method over the two leading scored jets' eff_b; the event score for
    event-level runs); with decorrelation also score_decor_lead, score_decor_max2, score_decor_pair (the same
    from score_decor / eff_b_decor)
Both carry the parquet metadata key ``darkshower`` (JSON: method, run, model, representation, score_kind, and
``datasets``: each scored dataset's content fingerprint, see darkshower.data.fingerprint).

``score_kind`` (``score --score-kind``): a method that offers several scores from one trained model
(``Method.score_kinds``; the contrastive methods: ``norm`` = ‖z‖, ``knn``, ``maha``; the flow: ``nll``, ``base``)
is scored by that kind instead of its configured ``model.score``, and ``eff_b`` comes from that kind's own
validation reference
(``RUN/val_scores.KIND.npy``, written at the end of training). A run trained before those files existed gets
the reference computed once from its training data's validation split (the events with
``event_fraction(event_id, seed) < data.val_fraction``, the run's jet window applied) and stored in the run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd

from darkshower.data.dataset import open_dataset
from darkshower.data.fingerprint import dataset_fingerprint
from darkshower.errors import ConfigError, DatasetError
from darkshower.models.inference import score_arrays
from darkshower.represent.window import dataset_jet_idx, select_jets_indexed
from darkshower.train.data import event_fraction
from darkshower.train.scorefiles import (  # noqa: F401 (re-exported: score's public helpers)
    VAL_SCORES,
    check_score_output,
    eff_b,
    event_table,
    events_path,
    read_score_file,
    read_val_scores,
    run_jet_rule,
    write_combined,
    write_score_files,
)

log = logging.getLogger(__name__)


_WORKER: dict = {}


def _score_chunk(task) -> tuple[int, pd.DataFrame]:
    """Score chunk ``i`` of dataset ``path`` (runs in a worker; the model is loaded once per process)."""
    order, run, which, path, i, batch_size, threads, decor_level, val_split, kind = task
    key = (str(run), which, kind)
    if _WORKER.get("key") != key:
        import torch

        from darkshower.models.runs import load_run

        if threads:
            torch.set_num_threads(threads)
        method, rep, cfg, info = load_run(run, which)
        if kind is not None:
            method.use_score(kind)
        _WORKER.update(key=key, method=method, rep=rep, data=cfg.data, stored=info.get("jets_without_constituents"))
    ds = open_dataset(path)
    events = ds.read_chunk(i)
    if val_split is not None:  # only the events of a validation split (train auto's calibration)
        events = events[event_fraction(ak.to_numpy(events["event_id"]), val_split[1]) < val_split[0]]
    # the run's jet window, as in training: the model sees the jets it was trained on, ranked inside the window
    events, index = select_jets_indexed(events, _WORKER["data"])
    _warn_untyped(_WORKER["rep"], events, ds.path)
    _note_stored(_WORKER["rep"], events, ds.path, _WORKER.get("stored"))
    try:
        df = score_arrays(_WORKER["method"], _WORKER["rep"], events, batch_size, f"{ds.path} (chunk {i})")
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{ds.path}: cannot build representation '{_WORKER['rep'].kind}' for scoring: {exc}") from None
    if decor_level is not None:  # the decorrelation variables of each scored row (dropped after the map)
        from darkshower.models.decorrelate import VARIABLES, decor_table

        t = pd.DataFrame(decor_table(events, decor_level)).drop_duplicates(["event_id", "jet_idx"])
        df = df.merge(t.rename(columns={v: f"_decor_{v}" for v in VARIABLES}), on=["event_id", "jet_idx"], how="left")
    df = dataset_jet_idx(df, events, index)
    df.insert(0, "dataset", str(ds.path.resolve()))
    return order, df


def _warn_untyped(rep, events, path) -> None:
    """Once per run and dataset in a process: a run that reads charge-based observables (n_charged) scoring jets
    whose constituents have no particle types sees 0 there, far from its training data: say so. Whether a dataset
    is untyped is looked up once per process (its first chunk read here), not per chunk."""
    if rep.kind != "observables":
        return
    from darkshower.represent.build import has_untyped_constituents, typed_column
    from darkshower.represent.config import OBS_JET_COLUMNS

    typed = [c for c in (rep.columns if rep.columns is not None else OBS_JET_COLUMNS) if typed_column(c)]
    warned = ("untyped-warned", _WORKER.get("key"), str(path))
    if not typed or warned in _WORKER:
        return
    known = ("untyped", str(path))
    if known not in _WORKER:
        _WORKER[known] = has_untyped_constituents(events)
    if _WORKER[known]:
        _WORKER[warned] = True
        log.warning("%s: the constituents have no particle types, so %s is 0 for every jet, but the run was trained "
                    "with it: its scores there are not meaningful; train on data with the same information (train "
                    "auto / an observables run on these data leaves %s out)", path, ", ".join(typed), ", ".join(typed))


def _note_stored(rep, events, path, trained_stored: bool | None) -> None:
    """Once per run and dataset in a process: where the observables' source differs between the run's training
    data (``trained_stored``: run.json ``jets_without_constituents``; None for runs written before it was
    recorded) and the scored jets — stored values in the producer's definitions (represent/stored.py) against
    darkshower's own from the constituents (e.g. CMS softDropMass includes subjet corrections, ~12 % above) —
    say so."""
    if rep.kind != "observables":
        return
    key = ("stored-noted", _WORKER.get("key"), str(path))  # the run, not id(rep): ids are reused after GC
    if key in _WORKER:
        return
    from darkshower.represent.build import jets_without_constituents

    stored = jets_without_constituents(events)
    if stored is None:
        return  # nothing to tell from (a chunk without jets): look at the next one
    _WORKER[key] = True
    if stored and trained_stored is not True:
        log.warning("%s: the jets have no constituents: they are scored on their four-vector and the observables "
                    "the format stores (producer's definitions, docs/representations.md), while the run was trained "
                    "on %s; compare like with like", path,
                    "jets with constituents (darkshower's own values)" if trained_stored is False else
                    "data whose source it did not record")
    elif not stored and trained_stored is True:
        log.warning("%s: the run was trained on jets without constituents (stored observables, the producer's "
                    "definitions), these jets have constituents: their observables are darkshower's own "
                    "(docs/representations.md); compare like with like", path)


def _check_count(name: str, value, minimum: int, meaning: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum} ({meaning})")


def score(run, datasets, out, which: str = "best", batch_size: int | None = None, progress: bool = True,
          threads: int | None = None, jobs: int | None = 1, executor=None, decorrelate: bool = False,
          decor_variables=None, decor_min_rows: int | None = None,
          val_split: tuple[float, int] | None = None, score_kind: str | None = None) -> tuple[Path, Path]:
    """Score every dataset with the run's model; returns (jet table path, event table path).
    ``decorrelate``: add ``eff_b_decor``/``score_decor`` (darkshower.train.decorrelate) from the run's
    ``val_decor.npz``; a run trained before darkshower stored it scores as before, with a warning.
    ``decor_variables`` (e.g. ``("pt", "mass")``; default by the run's level) and
    ``decor_min_rows`` (validation rows per bin, default 200) set the map.
    ``val_split`` ``(fraction, seed)``: score only the events of that validation split (the hash of
    :func:`darkshower.train.data.event_fraction`; `train auto` calibrates on its members' split this way).
    ``score_kind``: another of the method's scores (``Method.score_kinds``, e.g. ``norm`` for a contrastive run),
    calibrated on that kind's own validation reference (module docstring).
    ``jobs`` > 1 scores chunks in worker processes (each with ``threads`` torch threads, default 1);
    0 or None: all cores. ``executor`` (darkshower.execute: ``Local()``, ``Processes(n)``, ``Dask(...)``)
    replaces ``jobs``; the scores do not depend on it. While scoring, ``.OUT.lock`` next to OUT keeps a second ``score`` with the same
    OUT out (it fails with a clear error); a lock left by a killed process is taken over."""
    from darkshower.data.dataset import acquire_lock

    if which not in ("best", "last"):
        raise ConfigError(f"model {which!r}: choose best or last")
    if (Path(run) / "run.json").is_file():  # DistillNet runs (docs/pileup.md) weight particles, they score nothing
        from darkshower.models.runs import read_run_json
        rinfo = read_run_json(Path(run))
        if rinfo.get("members"):  # the recommended default: members scored and combined (train/auto.py)
            if score_kind is not None:
                raise ConfigError(f"{run}: --score-kind applies to one run, not to a `train auto` run (its members "
                                  "combine their configured scores); score a member run with it instead")
            return score_members(run, datasets, out, which=which, batch_size=batch_size, progress=progress,
                                 threads=threads, executor=executor, jobs=jobs,
                                 decorrelate=(decorrelate, decor_variables, decor_min_rows))
        if (kind := rinfo.get("method")) in ("pu-gnn", "pu-student"):
            use = (f"--pu-mitigation distillnet:{run}`" if kind == "pu-student" else "--pu-mitigation "
                   "distillnet:STUDENT_RUN` after `darkshower distill TEACHER_RUN --student per-particle --data DS "
                   "--out STUDENT_RUN`")
            raise ConfigError(f"{run}: a {kind} run (DistillNet pileup {'teacher' if kind == 'pu-gnn' else 'student'}) "
                              "gives per-particle pileup weights, not anomaly scores, so it is not scored; apply it "
                              f"in `darkshower generate ... --pileup MU {use}")
    _check_count("batch_size", batch_size, 1, "samples per batch; None: the method's default")
    _check_count("threads", threads, 1, "torch threads; None: the default")
    _check_count("jobs", jobs, 0, "worker processes; 0 or None: all cores")
    _check_count("decor_min_rows", decor_min_rows, 2, "validation rows per decorrelation bin; None: 200")
    if not isinstance(decorrelate, bool):
        raise ConfigError(f"decorrelate={decorrelate!r}: True or False")
    if val_split is not None and not (isinstance(val_split, (tuple, list)) and len(val_split) == 2
                                      and 0 < float(val_split[0]) <= 1 and float(val_split[1]).is_integer()):
        raise ConfigError(f"val_split={val_split!r}: give (fraction in (0, 1], integer seed), as a run's "
                          "data.val_fraction and seed")
    if score_kind is not None:
        check_score_kind(run, score_kind)
    if decor_variables is not None:
        from darkshower.train.decorrelate import check_variables

        decor_variables = check_variables(decor_variables, "jet")
    out = check_score_output(out)
    created = [a for a in reversed(out.parents) if not a.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = None
    try:
        lock = acquire_lock(out.with_name(f".{out.name}.lock"), f"--out {out}", "these scores", ConfigError)
        from darkshower.execute import using

        with using(executor, jobs=jobs if jobs and jobs > 0 else None) as ex:
            return _score(run, datasets, out, which, batch_size, progress, threads, ex,
                          (decorrelate, decor_variables, decor_min_rows), val_split, score_kind)
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
        for a in reversed(created):  # directories made for a run that failed and wrote nothing
            try:
                a.rmdir()
            except OSError:
                break


def score_kinds_of(run) -> tuple[tuple[str, ...], str | None]:
    """(the score kinds the run's method offers, the run's configured kind); ``((), None)`` for a method with one."""
    from darkshower.config import validate
    from darkshower.models import get_method
    from darkshower.models.runs import read_run_config, read_run_json

    cls = get_method(read_run_json(Path(run))["method"])
    if not cls.score_kinds:
        return (), None
    model = validate(cls.Config, read_run_config(Path(run)).model, f"{run}/config.yaml: model")
    return tuple(cls.score_kinds), cls.configured_score_kind(model)


def check_score_kind(run, kind: str) -> str | None:
    """A clear error when the run's method does not offer score ``kind``; returns the run's configured kind."""
    offered, configured = score_kinds_of(run)
    if kind not in offered:
        from darkshower.models.runs import read_run_json

        raise ConfigError(f"score kind {kind!r}: method {read_run_json(Path(run))['method']!r} of run {run} has no "
                          f"such score (offered: {', '.join(offered) or 'none besides its configured score'})")
    return configured


def _kind_reference(run, which, kind, batch_size, threads, ex, progress: bool = False,
                    scores_needed: bool = True) -> np.ndarray | None:
    """The sorted finite validation-background scores of kind ``kind`` for a run trained before training stored
    ``RUN/val_scores.KIND.npy``: score that kind on the run's validation events as the trainer chose them (its
    validation datasets, or its training data's validation split; the first ``data.max_val`` rows), and store them
    in the run (atomically) when the run is complete and writable, with the kind's decorrelation reference
    ``val_decor.KIND.npz``. ``scores_needed=False``: only that decorrelation reference is missing (``--decorrelate``);
    the stored scores stay, nothing is returned, and data that is gone or changed is a warning, not an error
    (the scores then have no decorrelated columns, as before)."""
    import tempfile

    from darkshower.models.runs import read_run_config, read_run_json
    from darkshower.train.callbacks import _atomic_save_npy
    from darkshower.train.scorefiles import val_file

    run = Path(run)
    info, cfg = read_run_json(run), read_run_config(run)
    name = val_file(VAL_SCORES[which], kind)
    sets = info.get("val") or info.get("data") or []
    what = "validation" if info.get("val") else "training"
    missing = [d["path"] for d in sets if not Path(d["path"]).is_dir()]
    problem = None
    if not sets or missing:
        problem = (f"its {what} data {', '.join(missing) or '(none recorded)'} is not there to compute it from; "
                   "retrain the run")
    else:
        for d in sets:  # the same data as in training, or the reference would silently be another sample's
            got = [c.get("sha256") for c in open_dataset(d["path"]).chunks]
            if d.get("chunks_sha256") is not None and got != d["chunks_sha256"]:
                problem = (f"the {what} data at {d['path']} changed since the run was trained (chunk checksums differ "
                           "from run.json); retrain the run")
    if problem and scores_needed:
        raise ConfigError(f"{run}: no {name} (the run was trained before training stored a reference per score "
                          f"kind), and {problem}, or score it with its configured score (without a score kind)")
    if problem:
        log.warning("%s: no decorrelation reference of score kind %r (the run was trained before training stored "
                    "one per kind), and %s: no decorrelated columns", run, kind, problem)
        return None
    paths = [d["path"] for d in sets]
    split = None if info.get("val") else (cfg.data.val_fraction, cfg.seed)
    log.info("%s: computing the validation reference of score kind %r (%s) from %s%s", run, kind,
             "eff_b" if scores_needed else "decorrelation", ", ".join(paths),
             "" if split is None else f" (validation split {split[0]:g}, seed {split[1]})")
    with tempfile.TemporaryDirectory() as tmp:
        f, _ = _score(run, paths, Path(tmp) / "val.parquet", which, batch_size, progress, threads, ex,
                      (False, None, None), split, kind, calibrate=False)
        t = pd.read_parquet(f)  # dataset and chunk order
    if cfg.data.max_val:  # the trainer keeps the first max_val validation rows
        t = t.iloc[:cfg.data.max_val]
    keep = ~t["nonfinite_input"].astype(bool).to_numpy() if "nonfinite_input" in t.columns else np.ones(len(t), bool)
    rows = t["score"].to_numpy(np.float64)[keep]  # the validation rows as training keeps them
    v = np.sort(rows[np.isfinite(rows)])
    if scores_needed and not len(v):
        log.warning("%s: no finite %s score on its validation events: eff_b is NaN", run, kind)
    if info.get("status") != "complete":
        log.warning("%s is not complete (status %r): the %s reference is used for these scores but not stored",
                    run, info.get("status"), kind)
        return v if scores_needed else None
    try:
        if scores_needed:
            _atomic_save_npy(run / name, v)
        _kind_val_decor(run, which, kind, info, cfg, paths, t[keep], rows)
    except OSError as exc:
        log.warning("%s: cannot store the %s reference (%s); it is used for these scores and computed again next "
                    "time", run, kind, exc)
    return v if scores_needed else None


def _storable(run) -> bool:
    """Whether references computed for a run can be stored in it (complete, writable)."""
    from darkshower.models.runs import read_run_json

    return read_run_json(Path(run)).get("status") == "complete" and os.access(run, os.W_OK)


def _kind_val_decor(run: Path, which, kind, info, cfg, paths, t: pd.DataFrame, scores: np.ndarray) -> None:
    """``val_decor.KIND.npz`` of an older run from its recomputed validation rows (``t``: their keys, in dataset
    order; ``scores``: their scores), as training writes it; left out with a warning when the rows cannot be
    matched to the datasets' jets (as in training)."""
    from darkshower.train.decorrelate import VAL_DECOR, validation_variables, write_val_decor
    from darkshower.train.scorefiles import val_file

    level = info.get("level", "jet")
    try:
        variables = validation_variables(paths, cfg.data, level, t["event_id"].to_numpy(),
                                         t["jet_idx"].to_numpy() if "jet_idx" in t.columns else None,
                                         dataset_numbering=True)
    except Exception as exc:  # optional, as in training: never fail the scoring for it
        log.warning("%s: no %s decorrelation reference of score kind %r: %s: %s", run, level, kind,
                    type(exc).__name__, exc)
        return
    if variables is None:
        log.warning("%s: the validation rows do not match the jets of %s: no decorrelation reference of score kind "
                    "%r (score --decorrelate gives no decorrelated columns with it)", run, ", ".join(map(str, paths)), kind)
        return
    write_val_decor(run / val_file(VAL_DECOR[which], kind), scores, variables, level)


def _decor_map(run, which, decorrelate, variables, min_rows, kind=None):
    """The fitted map (or None) and the note for the score-file metadata."""
    from darkshower.models.decorrelate import MIN_ROWS
    from darkshower.train.decorrelate import VAL_DECOR, fit_map, read_val_decor
    from darkshower.train.scorefiles import val_file

    if not decorrelate:
        return None, None
    val = read_val_decor(run, which, kind)
    name = val_file(VAL_DECOR[which], kind)
    if val is None:
        log.warning("%s has no %s (trained before darkshower stored the decorrelation reference%s): no "
                    "score_decor/eff_b_decor columns; retrain the run to decorrelate its scores", run, name,
                    "" if kind is None else " of each score kind")
        return None, None
    try:
        qmap = fit_map(val, variables, min_rows or MIN_ROWS)
    except ValueError as exc:
        raise ConfigError(f"{Path(run) / name}: cannot fit the decorrelation map: {exc}; score without "
                          "--decorrelate or retrain with more validation data") from None
    return qmap, qmap.describe() | {"level": val["level"]}


def _score(run, datasets, out, which, batch_size, progress, threads, ex, decor=(False, None, None),
           val_split=None, score_kind=None, calibrate: bool = True) -> tuple[Path, Path]:
    from darkshower.models.runs import load_run

    configured = score_kinds_of(run)[1]
    kind = None if score_kind in (None, configured) else score_kind  # None: the configured score's files
    reference = None
    if kind is not None:
        from darkshower.train.decorrelate import read_val_decor

        scores_needed = calibrate and read_val_scores(run, which, kind) is None
        # the decorrelation reference alone only where it can be stored (else it would be computed on every call
        # and not be used: the map is fitted from the file)
        if scores_needed or (decor[0] and read_val_decor(run, which, kind) is None and _storable(run)):
            reference = _kind_reference(run, which, kind, batch_size, threads, ex, progress, scores_needed)
    local = ex.in_process
    if local:  # load once here; the in-process tasks reuse it (a fresh load also drops a stale cache)
        import torch

        if threads:
            torch.set_num_threads(threads)
        method, rep, cfg, info = load_run(run, which)
        if kind is not None:
            method.use_score(kind)
        _WORKER.update(key=(str(Path(run)), which, kind), method=method, rep=rep, data=cfg.data,
                       stored=info.get("jets_without_constituents"))
    else:  # keep torch out of the parent so that workers can be forked (fast start)
        from darkshower.models.runs import read_run_json

        info = read_run_json(Path(run))
    if isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "read_chunk"):
        datasets = [datasets]
    qmap, decor_meta = _decor_map(run, which, decor[0], decor[1], decor[2], kind=kind)
    decor_level = None if qmap is None else ("event" if info.get("level", "jet") == "event" else "jet")
    tasks: list[tuple] = []
    fingerprints = {}  # each dataset's content identity: evaluate/search refuse scores of a replaced dataset
    for path in datasets:
        ds = path if hasattr(path, "read_chunk") else open_dataset(path)
        fingerprints[str(ds.path.resolve())] = dataset_fingerprint(ds)
        if not ds.chunks:
            raise DatasetError(f"{ds.path}: dataset has no chunks")
        tasks += [(len(tasks) + i, str(Path(run)), which, str(ds.path), i, batch_size,
                   threads if local else (threads or 1), decor_level, val_split, kind) for i in range(len(ds.chunks))]
    t0 = time.perf_counter()
    results: dict[int, pd.DataFrame] = {}

    def collect(res):
        results[res[0]] = res[1]

    ex.run(_score_chunk, tasks, collect, desc=f"score {Path(run).name}", unit="chunk", progress=progress,
           size=lambda res: len(res[1]), size_unit="jet", name=lambda t: f"{t[3]} chunk {t[4]}")
    jets = pd.concat([results[k] for k in sorted(results)], ignore_index=True)
    n_jets = len(jets)
    n_bad = int(jets["nonfinite_input"].sum())
    if n_bad:
        log.warning("%d of %d samples have NaN/inf model inputs: not scored (score NaN, nonfinite_input=True); "
                    "evaluate drops and counts them", n_bad, n_jets)
    val = (reference if reference is not None else read_val_scores(run, which, kind)) if calibrate else None
    if val is None and calibrate:
        log.warning("%s has no %s (trained before darkshower stored validation scores): eff_b is NaN; retrain the "
                    "run to calibrate its scores", run, VAL_SCORES[which])
    jets["eff_b"] = eff_b(val, jets["score"].to_numpy())
    if qmap is not None:
        from darkshower.models.decorrelate import VARIABLES

        X = np.column_stack([jets[f"_decor_{v}"].to_numpy(np.float64) for v in qmap.variables])
        jets["eff_b_decor"], jets["score_decor"] = qmap.transform(jets["score"].to_numpy(np.float64), X)
        jets = jets.drop(columns=[f"_decor_{v}" for v in VARIABLES])
        n_novar = int((np.isfinite(jets["score"].to_numpy(np.float64)) & ~np.isfinite(X).all(axis=1)).sum())
        if n_novar:  # e.g. events without jets (no leading-jet mass) or rows not matched to their jets
            log.warning("%d of %d scored samples have no finite %s: score_decor/eff_b_decor are NaN for them",
                        n_novar, len(jets), "/".join(qmap.variables))
    meta = {"method": info["method"], "run": str(Path(run).resolve()), "model": which,
            "representation": info["representation"]["kind"], "level": info.get("level", "jet"),
            "score_kind": score_kind or configured,
            "supervised": info.get("supervised", False), "n_nonfinite_input": n_bad, "n_val_scores": None if val is None else len(val),
            "decorrelation": decor_meta, "datasets": fingerprints,
            "val_split": None if val_split is None else {"fraction": val_split[0], "seed": val_split[1]}, "jets_per_s": n_jets / max(time.perf_counter() - t0, 1e-9)}
    out, evp = write_score_files(jets, out, meta)
    log.info("scored %d samples in %.1f s (%.0f/s)", n_jets, time.perf_counter() - t0, meta["jets_per_s"])
    return out, evp


def score_members(run, datasets, out, which: str = "best", batch_size: int | None = None, progress: bool = True,
                  threads: int | None = None, executor=None, jobs: int | None = None,
                  decorrelate=(False, None, None)) -> tuple[Path, Path]:
    """Score a ``train auto`` run: each member on ``datasets``, combined by the run's ``combine``
    (:mod:`darkshower.train.ensemble`); writes the score-file pair ``out`` (method ``auto``).
    ``decorrelate`` (flag, variables, min rows as for :func:`score`): every member is decorrelated with its own
    map and their ``eff_b_decor`` combine by the same rule into ``score_decor`` (each member's conditional
    efficiency is flat in its pT/mass bins; the combination is approximately so — docs/training.md)."""
    import shutil

    from darkshower.models.runs import read_run_json

    run = Path(run)
    info = read_run_json(run)
    if info.get("status") != "complete":
        raise ConfigError(f"{run}: the `train auto` run is not complete (status {info.get('status')!r}); finish it "
                          f"with darkshower train auto --data ... --out {run} --resume")
    from darkshower.data.dataset import acquire_lock

    out = check_score_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out.with_name(f".{out.name}.lock"), f"--out {out}", "these scores", ConfigError)
    tmp = out.parent / f".{out.name}.auto.{os.getpid()}"
    try:
        tmp.mkdir(exist_ok=True)
        tables, metas = [], []
        for i, m in enumerate(info["members"]):
            f, _ = score(run / m["dir"], datasets, tmp / f"{i}.parquet", which=which, batch_size=batch_size,
                         progress=progress, threads=threads, executor=executor, jobs=jobs,
                         decorrelate=decorrelate[0], decor_variables=decorrelate[1], decor_min_rows=decorrelate[2])
            t, meta = read_score_file(f)
            if decorrelate[0] and "eff_b_decor" not in t.columns:
                raise ConfigError(f"{run / m['dir']}: no decorrelation reference (val_decor.npz), so the `train auto` "
                                  "run cannot be decorrelated; retrain it with this darkshower version")
            tables.append(t)
            metas.append({**meta, "name": m["name"], "input": str((run / m["dir"]).resolve())})
        if len(tables) == 1:  # the density alone (--members density): its own scores, unchanged
            os.replace(f, out)
            os.replace(events_path(f), events_path(out))
            return out, events_path(out)
        if which != "best":
            log.warning("%s: the `train auto` combination is calibrated for the members' best models; scored with "
                        "--model %s it has no eff_b of its own (the members' eff_b.NAME columns are there)", run, which)
        return write_combined(tables, metas, out, info["combine"], method="auto",
                              extra={"run": str(run.resolve()), "model": which}, val_sorted=read_val_scores(run, which),
                              decorrelated=bool(decorrelate[0]), jets=run_jet_rule(info))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.unlink(missing_ok=True)
