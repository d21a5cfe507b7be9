"""Helpers for the evaluation tests: synthetic score files in the `darkshower score` format."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def synthetic_scores(ds, kind: str = "met", seed: int = 0, level: str = "jet") -> pd.DataFrame:
    """Per-jet (or per-event, jet_idx -1) scores of a dataset.

    kind: ``met`` (MET/100 + jet mass/50 + small noise: separates SVJ from QCD), ``random``,
    ``constant`` (all 1.0: degenerate).
    """
    rng = np.random.default_rng(seed)
    a = ds.arrays(columns=["event_id", "met_pt", "jets.mass"])
    ev = ak.to_numpy(a.event_id).astype(np.int64)
    met = ak.to_numpy(a.met_pt).astype(np.float64)
    if level == "event":
        n = len(ev)
        jet_idx = np.full(n, -1, np.int64)
        eid, base = ev, met / 100.0
    else:
        nj = ak.to_numpy(ak.num(a.jets)).astype(np.int64)
        eid = np.repeat(ev, nj)
        jet_idx = ak.to_numpy(ak.flatten(ak.local_index(a.jets.mass, axis=1))).astype(np.int64)
        base = np.repeat(met, nj) / 100.0 + ak.to_numpy(ak.flatten(a.jets.mass)).astype(np.float64) / 50.0
    n = len(eid)
    if kind == "met":
        score = base + rng.normal(0, 0.1, n)
    elif kind == "random":
        score = rng.normal(0, 1, n)
    elif kind == "constant":
        score = np.ones(n)
    else:
        raise ValueError(kind)
    return pd.DataFrame({"dataset": str(Path(ds.path).resolve()), "event_id": eid, "jet_idx": jet_idx,
                         "score": score.astype(np.float64)})


def write_scores(path, datasets, kind: str = "met", method: str | None = "toy", seed: int = 0,
                 level: str = "jet", events_file: bool = True, run: str = "runs/toy", identity: bool = True) -> Path:
    """Write SCORES.parquet (+ SCORES.events.parquet) like `darkshower score` does (``identity=False``:
    without the datasets' fingerprints, like files written before they were recorded)."""
    from darkshower.data.fingerprint import dataset_fingerprint

    path = Path(path)
    jets = pd.concat([synthetic_scores(d, kind, seed + i, level) for i, d in enumerate(datasets)], ignore_index=True)
    table = pa.Table.from_pandas(jets, preserve_index=False)
    if method is not None:
        md = dict(table.schema.metadata or {})
        meta = {"method": method, "run": run}
        if identity:
            meta["datasets"] = {str(Path(d.path).resolve()): dataset_fingerprint(d) for d in datasets}
        md[b"darkshower"] = json.dumps(meta).encode()
        table = table.replace_schema_metadata(md)
    pq.write_table(table, path)
    if events_file:
        g = jets.groupby(["dataset", "event_id"], sort=False)
        lead = jets[jets["jet_idx"] <= 0].groupby(["dataset", "event_id"], sort=False)["score"].max()
        max2 = jets[jets["jet_idx"] < 2].groupby(["dataset", "event_id"], sort=False)["score"].max()
        ev = pd.DataFrame({"score_lead": lead, "score_max2": max2}).reset_index()
        assert len(ev) == g.ngroups
        pq.write_table(pa.Table.from_pandas(ev, preserve_index=False), path.with_name(path.stem + ".events.parquet"))
    return path


def empty_dataset(src, dst) -> Path:
    """A complete dataset with no events, with the manifest of ``src``."""
    dst = Path(dst)
    dst.mkdir(parents=True)
    man = json.loads((Path(src.path) / "manifest.json").read_text())
    man.update(chunks=[], n_chunks=0, n_events=0)
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def no_jet_dataset(src, dst) -> Path:
    """A copy of dataset ``src`` whose events keep everything but their jets (no event has a jet)."""
    import awkward as ak

    from darkshower.data.dataset import sha256_file

    dst = Path(dst)
    dst.mkdir(parents=True)
    man = json.loads((Path(src.path) / "manifest.json").read_text())
    for i, entry in enumerate(man["chunks"]):
        chunk = src.read_chunk(i)
        ak.to_parquet(ak.with_field(chunk, chunk.jets[:, :0], "jets"), dst / entry["file"])
        entry.update(bytes=(dst / entry["file"]).stat().st_size, sha256=sha256_file(dst / entry["file"]))
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


#: darkshower observable -> the TreeMaker branch name (cms_<JetsAK8_x>) a stored-observables copy writes
TREEMAKER_NAMES = {"msoftdrop": "cms_softDropMass", "tau1": "cms_NsubjettinessTau1", "tau2": "cms_NsubjettinessTau2",
                   "tau3": "cms_NsubjettinessTau3", "n2": "cms_ecfN2b1", "girth": "cms_girth", "ptd": "cms_ptD",
                   "axis_major": "cms_axismajor", "axis_minor": "cms_axisminor", "n_constituents": "cms_multiplicity",
                   "n_charged": "cms_chargedMultiplicity"}


def stored_observables_dataset(src, dst) -> Path:
    """A TreeMaker-like copy of dataset ``src``: every jet keeps its four-vector and carries its observables as
    the CMS TreeMaker importer names them (``cms_softDropMass``, ``cms_NsubjettinessTau1``, ...), its constituent
    list emptied (n_constituents 0, as the treemaker importer writes)."""
    from darkshower.data.dataset import sha256_file
    from darkshower.represent.observables import jet_observables

    dst = Path(dst)
    dst.mkdir(parents=True)
    man = json.loads((Path(src.path) / "manifest.json").read_text())
    for i, entry in enumerate(man["chunks"]):
        chunk = src.read_chunk(i)
        obs = jet_observables(chunk, max_jets=None)
        counts = ak.num(chunk.jets, axis=1)
        jets = chunk.jets[["pt", "eta", "phi", "mass"]]
        for col, name in TREEMAKER_NAMES.items():
            jets = ak.with_field(jets, ak.unflatten(obs[col].to_numpy(np.float32), counts), name)
        jets = ak.with_field(jets, ak.zeros_like(chunk.jets.pt, dtype=np.int32), "n_constituents")
        jets = ak.with_field(jets, chunk.jets.constituents[:, :, :0], "constituents")
        ak.to_parquet(ak.with_field(chunk, jets, "jets"), dst / entry["file"])
        entry.update(bytes=(dst / entry["file"]).stat().st_size, sha256=sha256_file(dst / entry["file"]))
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst
