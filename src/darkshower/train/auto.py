"""``darkshower train auto``: the recommended label-free default on any dataset darkshower reads.

:func:`inspect_dataset` looks at a sample of the training data (MET? two jets? constituents? particle
types?), :func:`choose` picks the representation of :data:`DEFAULT_METHOD` from it (event level — the two
leading jets' observables and the MET topology — when the data have MET, else jet level) and
:func:`train_auto` trains it with the other members (:data:`DEFAULT_MEMBERS`: a jet-level flow, on data with MET
or a second jet an event-level flow, on data with MET the density at jet level too, and the jet-image autoencoder
where the jets have constituents; ``members`` chooses others),
printing and recording in ``run.json`` (key ``auto``) what it used and what it left out; ``score`` combines the
members by Fisher's method. docs/training.md says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from darkshower.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

#: The density member of ``darkshower train auto`` (the density baseline of issue #12; docs/sensitivity.md shows
#: why the default combines it with the flows).
DEFAULT_METHOD = "gmm"
#: the members of the default (``darkshower train auto``), each trained as its own run, and their method: the
#: density above, the normalizing flow (unconditional) on 15 jet substructure observables (docs/methods/flow.md)
#: and, on data with MET or a second jet, the flow at event level (:data:`EVENT_FLOW_REPRESENTATION`);
#: ``jet-density``, the density at jet level next to the event-level one (data with MET), and ``image``, the
#: convolutional autoencoder ``ae-image`` on jet images (in the default since 2026-11-30: docs/sensitivity.md)
MEMBER_METHODS = {"density": DEFAULT_METHOD, "flow": "flow", "event-flow": "flow", "jet-density": DEFAULT_METHOD,
                  "image": "ae-image"}
#: the members on data with MET (the event-level density, the jet flow, the event flow, the jet-level density and
#: the jet-image autoencoder: on the sensitivity grid and on signals generated after the choice the five lift the
#: lowest SVJ point and ttbar over the three flows/densities alone; docs/sensitivity.md), on data without MET but
#: with a second jet (no jet-density: the density member is at jet level there), and on data with neither (the
#: event-level flow needs MET or a second jet). Data without constituents leave ``image`` out (jet images need them)
DEFAULT_MEMBERS = ("density", "flow", "event-flow", "jet-density", "image")
NO_MET_MEMBERS = ("density", "flow", "event-flow", "image")
JET_LEVEL_MEMBERS = ("density", "flow", "image")
#: the event-level flow member: the two leading jets' 15 substructure observables (the flow member's,
#: models.ae.HLF_COLUMNS, filled in by _member_config), the MET topology and the event shape; a missing second jet
#: is flagged and marginalized (docs/methods/flow.md)
EVENT_FLOW_REPRESENTATION: dict[str, Any] = {
    "kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
    "event_columns": ["met_pt", "mt", "rt", "mjj", "dphi_min", "dphi_j0", "dphi_j1", "n_jets", "ht", "sphericity",
                      "aplanarity"]}
#: how the members' calibrated scores combine (darkshower.train.ensemble): Fisher's method, -sum ln eff_b.
#: On the sensitivity grid (docs/sensitivity.md) it is >= 0.90 of the supervised AUC at every SVJ/EMJ/SUEP point
#: and at the DarkCLR Aachen point, not on boosted ttbar
DEFAULT_COMBINE = "fisher"
#: how a jet-level member enters the event-level combination (darkshower.train.ensemble, JET_RULES): Fisher's
#: method over the two leading jets. Runs written before it have no "jets" key and keep "min" (their calibration
#: was made with it). On the grid it lifts every SVJ point, EMJ and ttbar (docs/sensitivity.md)
DEFAULT_JETS = "fisher"
#: config sections the flow members share with the density member
SHARED_KEYS = ("data", "seed", "threads", "device", "eval_batch_size")
#: its jet observables (the density baseline's: mass, constituent multiplicity, pT), per jet or per jet slot
DEFAULT_COLUMNS = ["mass", "n_constituents", "pt"]
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
    stored = None
    if n_cons == 0 and "jets" in fields:
        from darkshower.represent.stored import available_without_constituents

        stored = available_without_constituents(ak.fields(events["jets"]))
    return {
        "dataset": str(ds.path.resolve()), "process": ds.manifest.get("process"), "events_inspected": n,
        "met": has_met(events) and not note.startswith("not in this format"), "met_note": note or None,
        "two_jet_fraction": float(np.mean(njets >= 2)) if n else 0.0,
        "jets_per_event": float(np.mean(njets)) if n else 0.0,
        "constituents": n_cons > 0, "particle_types": types_known, "observables_without_constituents": stored,
    }


def choose(info: dict[str, Any], method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """The representation for ``method`` on data described by ``info`` (:func:`inspect_dataset`):
    ``{"method", "level", "representation", "left_out", "why"}``. Event level (two jet slots with
    :data:`DEFAULT_COLUMNS` + the MET topology; a missing second jet is padded and flagged by ``j1_present``)
    when the data have MET; else jet level on the two leading jets. Jets without constituents (CMS TreeMaker
    ntuples) use their four-vector and the observables the format stores (:mod:`darkshower.represent.stored`);
    each member leaves out what they cannot give."""
    met, cons = bool(info["met"]), bool(info["constituents"])
    left_out: list[str] = []
    why: list[str] = []
    if not met:
        left_out.append("MET topology (met_pt, mt, rt, dphi_min, dphi_j*): the data have no MET"
                        + (f" ({info['met_note']})" if info.get("met_note") else ""))
    if info.get("jets_per_event", 1) == 0:
        raise DatasetError(f"{info['dataset']}: no jets in the {info.get('events_inspected', 0)} events inspected "
                           f"(its first {INSPECT_CHUNKS} chunks, after the jet pT / mass window of the config's "
                           "data section); loosen data.jet_pt_min / jet_pt_max / jet_mass_min / jet_mass_max, or "
                           "check that the dataset has jets")
    if not cons:
        from darkshower.represent.stored import RECORD_COLUMNS

        have = list(info.get("observables_without_constituents") or RECORD_COLUMNS)
        stored = [c for c in have if c not in RECORD_COLUMNS]
        why.append("jets without constituents: each jet's four-vector (pt, eta, phi, mass) "
                   + (f"and the observables the format stores per jet ({', '.join(stored)})" if stored else
                      "(the format stores no substructure observable darkshower reads)")
                   + " stand in for those computed from constituents")
        left_out.append("observables that need jet constituents (the rest of the 15 substructure observables, "
                        "the event shape; each member says which): these jets have none")
    elif not info["particle_types"]:
        left_out.append("particle types: unknown in these data (the density does not use them; the flow members "
                        "leave out n_charged)")
    if met:
        rep = {"kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
               "columns": list(DEFAULT_COLUMNS)}
        why.append("event level: the data have MET, so the MET topology (met_pt, M_T, R_T = MET/M_T, m_jj, dphi_min, "
                   f"dphi to each jet) joins the two leading jets' {', '.join(DEFAULT_COLUMNS)}")
        if info["two_jet_fraction"] < 1:
            why.append(f"{info['two_jet_fraction']:.0%} of the events inspected have a second jet; in the others its "
                       "slot is padded and flagged (j1_present = 0)")
        level = "event"
    else:
        rep = {"kind": "observables", "level": "jet", "max_jets": 2, "include_event": False,
               "columns": list(DEFAULT_COLUMNS)}
        why.append(f"jet level on {', '.join(DEFAULT_COLUMNS)} of the two leading jets (event score: the max of "
                   "their scores): no MET")
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


def _member_config(config: dict | None, member: str, rep: dict | None) -> dict:
    """The density member (and ``jet-density``, at jet level) takes the user's config (its
    representation is chosen here); the flow members and ``image`` only its shared sections
    (:data:`SHARED_KEYS`), the event-level flow with :data:`EVENT_FLOW_REPRESENTATION`."""
    cfg = dict(config or {})
    if member == "density":
        return _merge(cfg, rep or {})
    if member == "jet-density":  # the density member's model on the jet-level representation
        return _merge(cfg, {"kind": "observables", "level": "jet", "max_jets": 2, "include_event": False,
                            "columns": list(DEFAULT_COLUMNS)})
    shared = {k: v for k, v in cfg.items() if k in SHARED_KEYS}
    if member == "event-flow":
        from darkshower.models.ae import HLF_COLUMNS

        shared["representation"] = {**EVENT_FLOW_REPRESENTATION, "columns": list(HLF_COLUMNS),
                                    "event_columns": list(EVENT_FLOW_REPRESENTATION["event_columns"])}
    return shared


def _write_auto_info(out: Path, info: dict) -> None:
    from darkshower.data.dataset import atomic_write_json

    atomic_write_json(out / "run.json", info)


def train_auto(data, out, val=None, config: dict | None = None, epochs: int | None = None, seed: int | None = None,
               resume: bool = False, progress: bool = True, command: list[str] | None = None, executor=None,
               echo=print, members: tuple[str, ...] | list[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """Train the recommended default on background ``data`` into run dir ``out``: each of ``members``
    (None: :data:`DEFAULT_MEMBERS` on data with MET — the :data:`DEFAULT_METHOD` density with the representation
    the data allow, :func:`choose`, the ``flow`` density on 15 jet substructure observables, unconditional,
    the ``event-flow``, a flow on :data:`EVENT_FLOW_REPRESENTATION`, ``jet-density`` and ``image`` —,
    :data:`NO_MET_MEMBERS` without MET but with a second jet, else :data:`JET_LEVEL_MEMBERS`; ``image`` only where
    the jets have constituents) as a run
    in ``out/members/NAME``, combined at scoring by :data:`DEFAULT_COMBINE` of their calibrated scores
    (``darkshower score OUT``).
    ``--config`` sets the density member and ``jet-density`` (its data/seed/threads/device sections also the
    other members'). ``echo``
    prints the choice. Returns (run dir, choice); the choice and the inspection are in ``run.json`` under
    ``auto``. ``--resume`` continues the recorded members (a run of one member, as written by darkshower
    before the flow joined the default, resumes as that run)."""
    from darkshower import __version__
    from darkshower.models.runconfig import DataConfig
    from darkshower.models.runs import RUN_FORMAT, RUN_FORMAT_VERSION, read_run_json, versions
    from darkshower.train.trainer import train

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    if not paths:
        raise ConfigError("train auto: give at least one training dataset (--data DS)")
    out = Path(out)
    created = False
    if resume:
        info = read_run_json(out)
        if "auto" not in info:
            raise ConfigError(f"{out}: not a `train auto` run (run.json has no 'auto'); resume it with "
                              f"darkshower train {info.get('method')} --resume")
        if not info.get("members"):  # a one-member run of an earlier darkshower
            run = train(info["method"], paths, out, val=val, config=config, epochs=epochs, seed=seed, resume=True,
                        progress=progress, command=command, executor=executor)
            return run, info["auto"]
        choice = info["auto"]
        if val is None:
            val = info.get("val")  # the members keep their validation data
        if seed is None:
            seed = info.get("seed_arg")
        resumed_threads = (config or {}).get("threads")
        config = dict(info.get("config") or {})  # the recorded configuration continues (members not yet started too)
        if resumed_threads:
            config["threads"] = resumed_threads
    else:
        if members is not None:
            members = tuple(members)
            unknown = [m for m in members if m not in MEMBER_METHODS]
            if not members or unknown or len(set(members)) != len(members) or "density" not in members:
                raise ConfigError(f"train auto --members {','.join(members)}: choose distinct members from "
                                  f"{', '.join(MEMBER_METHODS)}, including density")
        if (out / "run.json").exists():
            raise ConfigError(f"{out} already holds a run; continue it with --resume or choose another --out")
        from darkshower.config import validate

        cfg0 = dict(config or {})
        data_cfg = validate(DataConfig, dict(cfg0.get("data") or {}), "config: data")
        inspected = inspect_dataset(paths[0], data_cfg)
        choice = choose(inspected)
        event_info = bool(inspected["met"]) or inspected["two_jet_fraction"] > 0
        if members is None:  # the default: the event-level flow joins where the data have MET or a second jet
            members = DEFAULT_MEMBERS if inspected["met"] else NO_MET_MEMBERS if event_info else JET_LEVEL_MEMBERS
            if not event_info:
                choice["left_out"].append("the event-level flow member: it reads the MET topology and the second "
                                          "jet, and these data have neither")
            if not inspected["constituents"]:
                members = tuple(m for m in members if m != "image")
                choice["left_out"].append("the image member (ae-image): jet images are built from the constituents, "
                                          "and these jets have none")
        if "jet-density" in members and choice["level"] != "event":
            raise ConfigError(f"train auto --members {','.join(members)}: jet-density is the density at jet level "
                              f"next to the event-level one, and on {inspected['dataset']} (no MET) the density "
                              "member is already at jet level; leave jet-density out")
        if "image" in members and not inspected["constituents"]:
            raise ConfigError(f"train auto --members {','.join(members)}: the image member (ae-image) builds jet "
                              f"images from the constituents, and the jets of {inspected['dataset']} have none; "
                              "leave image out")
        if "event-flow" in members:
            if not event_info:
                raise ConfigError(f"train auto --members {','.join(members)}: the event-flow member needs MET or a "
                                  f"second jet (it reads the MET topology, m_jj and the two jets side by side), and "
                                  f"{inspected['dataset']} has neither; leave event-flow out")
            choice["why"].append("event-flow: a normalizing flow on the two leading jets' "
                                 + ("15 substructure observables, " if inspected["constituents"] else
                                    "substructure observables (those stored; see its columns left out), ")
                                 + ("the MET topology" if inspected["met"] else "m_jj")
                                 + (" and the event shape (n_jets, H_T, sphericity, aplanarity)" if inspected["constituents"]
                                    else " and the event shape (n_jets, H_T)")
                                 + ("" if inspected["met"] else "; without MET its MET topology is left out"))
        per_event = choice["level"] == "event" or "event-flow" in members  # else all members combine per jet
        of_two = " (event value: Fisher's method over the two jets' calibrated scores)" if per_event else ""
        if "jet-density" in members:
            choice["why"].append(f"jet-density: the {DEFAULT_METHOD} density on each of the two leading jets' "
                                 f"{', '.join(DEFAULT_COLUMNS)}{of_two}; it takes the --config/--set of the density")
        if "image" in members:
            choice["why"].append(f"image: the convolutional autoencoder ae-image on each leading jet's image{of_two}")
        choice["inspected"] = inspected
        choice["members"] = list(members)
        choice["combine"] = DEFAULT_COMBINE if len(members) > 1 else None
        choice["jets"] = DEFAULT_JETS if len(members) > 1 else None
        _merge(cfg0, {})  # refuse representation keys before anything is written
        info = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "method": "auto", "status": "running",
                "level": choice["level"], "supervised": False, "representation": {"kind": "ensemble"},
                "members": [{"name": m, "method": MEMBER_METHODS[m], "dir": f"members/{m}"} for m in members],
                "combine": choice["combine"], "jets": choice["jets"], "data": [str(Path(q).resolve()) for q in paths],
                "seed": seed if seed is not None else cfg0.get("seed", 0), "versions": {**versions(),
                                                                                        "darkshower": __version__},
                "command": command, "auto": choice, "config": cfg0, "seed_arg": seed,
                "val": None if val is None else [str(Path(q).resolve()) for q in ([val] if isinstance(val, (str, Path))
                                                                                 else val)]}
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        _write_auto_info(out, info)
    echo(f"train auto: {' + '.join(f'{m} ({MEMBER_METHODS[m]})' for m in choice['members'])} on "
         f"{choice['inspected']['dataset']}" + (f", combined by {choice['combine']}" if choice.get("combine") else ""))
    for w in choice["why"]:
        echo(f"  used: {w}")
    for w in choice["left_out"]:
        echo(f"  left out: {w}")
    try:
        _train_members(out, info, choice, paths, val, config, epochs, seed, progress, command, executor, echo)
    except BaseException:
        if not resume and not list(out.glob("members/*/run.json")):  # no member run yet (e.g. a bad --set): no run
            import shutil

            shutil.rmtree(out / "members", ignore_errors=True)
            (out / "run.json").unlink(missing_ok=True)
            if created:
                try:
                    out.rmdir()
                except OSError:
                    pass
        raise
    if len(info["members"]) > 1 and (not (out / "val_scores.npy").exists()
                                     or info.get("calibrated_on") != _member_fingerprints(out, info)):
        _calibrate(out, info, paths, val, progress)  # (again when a resumed member trained further)
        info["calibrated_on"] = _member_fingerprints(out, info)
    info["status"] = "complete"
    info["auto"] = choice
    _write_auto_info(out, info)
    return out, choice


def _train_members(out: Path, info: dict, choice: dict, paths, val, config, epochs, seed, progress, command,
                   executor, echo) -> None:
    from darkshower.models.runs import read_run_json
    from darkshower.train.trainer import train

    for m in info["members"]:
        mdir = out / m["dir"]
        again = (mdir / "run.json").exists()
        run = train(m["method"], paths, mdir, val=val, config=None if again else _member_config(
            config, m["name"], choice["representation"]), epochs=epochs, seed=seed, resume=again,
            progress=progress, command=command, executor=executor)
        minfo = read_run_json(run)
        if m["name"] == "density":
            rep = minfo.get("representation", {})
            choice["columns"] = rep.get("columns")
            choice["columns_left_out"] = rep.get("left_out", [])
            if choice["columns_left_out"]:
                echo(f"  columns left out: {', '.join(choice['columns_left_out'])}")
        else:
            gone = minfo.get("representation", {}).get("left_out", [])
            choice[f"{m['name']}_columns_left_out"] = gone
            if gone:
                echo(f"  {m['name']} columns left out: {', '.join(gone)}")
        m["level"] = minfo.get("level", "jet")
    # the combination is an event-level score as soon as one member is (jet members enter by the run's jet rule)
    info["level"] = "event" if any(m.get("level") == "event" for m in info["members"]) else "jet"


def _member_fingerprints(out: Path, info: dict) -> dict:
    """SHA-256 of each member's val_scores.npy: the calibration is redone when one changes (a resumed member
    trained on and chose another best model)."""
    import hashlib

    fp = {}
    for m in info["members"]:
        f = out / m["dir"] / "val_scores.npy"
        fp[m["name"]] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
    return fp


def _val_events(out: Path, info: dict, paths, val) -> tuple[list, float | None, int]:
    """The validation background of the members: the --val datasets (all events), else the training datasets'
    events with ``event_fraction(event_id, seed) < data.val_fraction`` (the split every member used)."""
    from darkshower.models.runs import read_run_config

    cfgs = [read_run_config(out / m["dir"]) for m in info["members"]]
    cfg = cfgs[0]
    split = {(c.seed, c.data.val_fraction) for c in cfgs}
    if not val and len(split) > 1:
        raise ConfigError(f"{out}: the members split their validation events differently (seed, val_fraction: "
                          f"{sorted(split)}), so their combination cannot be calibrated on common events; retrain "
                          "the run with one --seed")
    if val:
        return ([val] if isinstance(val, (str, Path)) else list(val)), None, cfg.seed
    return list(paths), cfg.data.val_fraction, cfg.seed


def _calibrate(out: Path, info: dict, paths, val, progress: bool) -> None:
    """``OUT/val_scores.npy``: the sorted combined scores of the members' validation background, so that
    ``score`` gives the default an ``eff_b`` of its own (the fraction of validation events above)."""
    import shutil

    from darkshower.train.callbacks import _atomic_save_npy
    from darkshower.train.score import score
    from darkshower.train.scorefiles import combine_tables, read_score_file, run_jet_rule

    datasets, fraction, seed = _val_events(out, info, paths, val)
    tmp = out / ".calibration"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tables, n_val = [], []
        for i, m in enumerate(info["members"]):
            f, _ = score(out / m["dir"], datasets, tmp / f"{i}.parquet", progress=progress,
                         val_split=None if fraction is None else (fraction, seed))  # only the validation events
            t, meta = read_score_file(f)
            tables.append(t)
            n_val.append(meta.get("n_val_scores"))
        c = combine_tables(tables, [m["name"] for m in info["members"]], info["combine"], n_val, run_jet_rule(info))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    v = c["score"].to_numpy(np.float64)  # (only validation events were scored: val_split)
    v = np.sort(v[np.isfinite(v)])
    if not len(v):
        raise DatasetError(f"{out}: no validation event has a finite combined score; cannot calibrate the default")
    _atomic_save_npy(out / "val_scores.npy", v)
    info["n_val_scores"] = int(len(v))
    log.info("train auto: %d validation events calibrate the combined score (eff_b)", len(v))
