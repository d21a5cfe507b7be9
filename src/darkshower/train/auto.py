"""``darkshower train auto``: the recommended label-free default on any dataset darkshower reads.

:func:`inspect_dataset` looks at a sample of the training data (MET? two jets? constituents? particle
types?), :func:`choose` picks the representation of :data:`DEFAULT_METHOD` from it (event level — the two
leading jets' observables and the MET topology — when the data have MET and two jets, else jet level) and
:func:`train_auto` trains it, printing and recording in ``run.json`` (key ``auto``) what it used and what it
left out. The choice of method is one constant, :data:`DEFAULT_METHOD`; docs/training.md says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from darkshower.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

#: The recommended default of ``darkshower train auto``: the strongest label-free method on the project's own
#: measurements (make demo: SVJ AUC gmm 0.851 > nae 0.834 > ae-hlf 0.756; ttbar 0.731 / 0.732 / 0.661). The
#: sensitivity grid (issue #12 part 1) will revisit it.
DEFAULT_METHOD = "gmm"
#: its jet observables (the density baseline's: mass, constituent multiplicity, pT), per jet or per jet slot
DEFAULT_COLUMNS = ["mass", "n_constituents", "pt"]
#: event level needs at least this fraction of the inspected events to have two jets
MIN_TWO_JET_FRACTION = 0.5
#: chunks of the first training dataset read by inspect_dataset
INSPECT_CHUNKS = 2


def inspect_dataset(path, data_cfg=None, max_chunks: int = INSPECT_CHUNKS) -> dict[str, Any]:
    """What a dataset offers, from its manifest and its first ``max_chunks`` chunks (after the jet selection of
    ``data_cfg``, a TrainConfig.data): ``met`` (a missing pT that is not 0 everywhere, and no manifest note that
    the format has none), ``two_jet_fraction`` (events with at least two jets), ``constituents`` (jets have
    constituents), ``particle_types`` (constituent types known, i.e. not -1 everywhere) and the counts read."""
    from darkshower.data.dataset import open_dataset
    from darkshower.represent.build import has_met
    from darkshower.train.data import select_jets

    ds = open_dataset(path)
    if not ds.chunks:
        raise DatasetError(f"{ds.path}: dataset has no chunks (generate/import it first)")
    parts = [ds.read_chunk(i) for i in range(min(max_chunks, len(ds.chunks)))]
    events = parts[0] if len(parts) == 1 else ak.concatenate(parts)
    if data_cfg is not None:
        events = select_jets(events, data_cfg)
    n = len(events)
    note = str((ds.manifest.get("notes") or {}).get("met", ""))
    fields = ak.fields(events)
    njets = ak.to_numpy(ak.num(events["jets"], axis=1)) if "jets" in fields else np.zeros(n, np.int64)
    n_cons = 0
    types_known = False
    if "jets" in fields and "constituents" in ak.fields(events["jets"]):
        cons = events["jets"]["constituents"]
        n_cons = int(ak.sum(ak.num(cons, axis=2)))
        if n_cons and "type" in ak.fields(cons):
            types_known = bool(np.any(ak.to_numpy(ak.flatten(cons["type"], axis=None)) >= 0))
    return {
        "dataset": str(ds.path.resolve()), "process": ds.manifest.get("process"), "events_inspected": n,
        "met": has_met(events) and not note.startswith("not in this format"), "met_note": note or None,
        "two_jet_fraction": float(np.mean(njets >= 2)) if n else 0.0,
        "jets_per_event": float(np.mean(njets)) if n else 0.0,
        "constituents": n_cons > 0, "particle_types": types_known,
    }


def choose(info: dict[str, Any], method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """The representation for ``method`` on data described by ``info`` (:func:`inspect_dataset`):
    ``{"method", "level", "representation", "left_out", "why"}``. Event level (two jet slots with
    :data:`DEFAULT_COLUMNS` + the MET topology) when the data have MET and two jets in at least
    :data:`MIN_TWO_JET_FRACTION` of the events; else jet level on the two leading jets. Without jet
    constituents a DatasetError says that the default cannot be trained."""
    two = info["two_jet_fraction"] >= MIN_TWO_JET_FRACTION
    met, cons = bool(info["met"]), bool(info["constituents"])
    left_out: list[str] = []
    why: list[str] = []
    if not met:
        left_out.append("MET topology (met_pt, mt, rt, dphi_min, dphi_j*): the data have no MET"
                        + (f" ({info['met_note']})" if info.get("met_note") else ""))
    if not two:
        left_out.append(f"second jet at event level: only {info['two_jet_fraction']:.0%} of the events have two jets "
                        f"(event level needs {MIN_TWO_JET_FRACTION:.0%})")
    if info.get("jets_per_event", 1) == 0:
        raise DatasetError(f"{info['dataset']}: no jets in the {info.get('events_inspected', 0)} events inspected "
                           f"(its first {INSPECT_CHUNKS} chunks, after the jet pT / mass window of the config's "
                           "data section); loosen data.jet_pt_min / jet_pt_max / jet_mass_min / jet_mass_max, or "
                           "check that the dataset has jets")
    if not cons:
        raise DatasetError(f"{info['dataset']}: train auto needs jet constituents: {method} reads each jet's mass, "
                           "constituent multiplicity and pT from them, and these jets have none. Import a format "
                           "with constituents (pfnano with PF candidates, delphes, h5-4vec, lhco, ...)")
    if not info["particle_types"]:
        left_out.append("particle types: unknown in these data (the default does not use them either way)")
    if met and two:
        rep = {"kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
               "columns": list(DEFAULT_COLUMNS)}
        why.append("event level: the data have MET and two jets, so the MET topology (met_pt, M_T, R_T = MET/M_T, "
                   f"m_jj, dphi_min, dphi to each jet) joins the two leading jets' {', '.join(DEFAULT_COLUMNS)}")
        level = "event"
    else:
        rep = {"kind": "observables", "level": "jet", "max_jets": 2, "include_event": False,
               "columns": list(DEFAULT_COLUMNS)}
        why.append(f"jet level on {', '.join(DEFAULT_COLUMNS)} of the two leading jets (event score: the max of "
                   "their scores): " + ("no MET" if not met else "too few events with two jets"))
        level = "jet"
    return {"method": method, "level": level, "representation": rep, "left_out": left_out, "why": why}


def _merge(config: dict | None, rep: dict) -> dict:
    cfg = dict(config or {})
    user = dict(cfg.get("representation") or {})
    if user:
        raise ConfigError(f"train auto chooses the representation itself; remove representation keys {sorted(user)} "
                          f"from the config (or train a method by name: darkshower train {DEFAULT_METHOD} ...)")
    cfg["representation"] = rep
    return cfg


def train_auto(data, out, val=None, config: dict | None = None, epochs: int | None = None, seed: int | None = None,
               resume: bool = False, progress: bool = True, command: list[str] | None = None, executor=None,
               echo=print) -> tuple[Path, dict[str, Any]]:
    """Train :data:`DEFAULT_METHOD` on background ``data`` into run dir ``out`` with the representation the data
    allow (:func:`choose`); ``echo`` prints the choice. Returns (run dir, choice); the choice and the inspection
    are also in ``run.json`` under ``auto``. ``--resume`` continues the recorded choice."""
    from darkshower.data.dataset import atomic_write_json
    from darkshower.models.runconfig import DataConfig
    from darkshower.models.runs import read_run_json
    from darkshower.train.trainer import train

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    if not paths:
        raise ConfigError("train auto: give at least one training dataset (--data DS)")
    if resume:
        info = read_run_json(Path(out))
        if "auto" not in info:
            raise ConfigError(f"{out}: not a `train auto` run (run.json has no 'auto'); resume it with "
                              f"darkshower train {info.get('method')} --resume")
        run = train(info["method"], paths, out, val=val, config=config, epochs=epochs, seed=seed, resume=True,
                    progress=progress, command=command, executor=executor)
        return run, info["auto"]
    from darkshower.config import validate

    cfg0 = dict(config or {})
    data_cfg = validate(DataConfig, dict(cfg0.get("data") or {}), "config: data")
    inspected = inspect_dataset(paths[0], data_cfg)
    choice = choose(inspected)
    choice["inspected"] = inspected
    echo(f"train auto: {choice['method']} at {choice['level']} level on {inspected['dataset']}")
    for w in choice["why"]:
        echo(f"  used: {w}")
    for w in choice["left_out"]:
        echo(f"  left out: {w}")
    run = train(choice["method"], paths, out, val=val, config=_merge(config, choice["representation"]), epochs=epochs,
                seed=seed, progress=progress, command=command, executor=executor)
    info = read_run_json(run)
    rep = info.get("representation", {})
    choice["columns"] = rep.get("columns")
    choice["columns_left_out"] = rep.get("left_out", [])
    if choice["columns_left_out"]:
        echo(f"  columns left out: {', '.join(choice['columns_left_out'])}")
    info["auto"] = choice
    atomic_write_json(run / "run.json", info)
    return run, choice
