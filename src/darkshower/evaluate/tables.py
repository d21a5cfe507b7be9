"""Per-event and per-jet tables of datasets for evaluation: weights, truth, MT, features.

Evaluation only sees scores, truth and observables joined by ``(dataset, event_id[, jet_idx])``.
This module reads the datasets chunk by chunk and returns flat pandas tables:

- events: ``event_id, weight, n_jets, met_pt, mt, lead_jet_mass, lead_jet_pt``; ``mt`` is the
  transverse mass of the two leading jets and the MET (:func:`quicklook.transverse_mass_dijet_met`,
  the CMS SVJ search variable), ``lead_jet_mass`` is NaN for events without jets;
- jets: ``event_id, jet_idx, pt`` (+ ``is_dark`` where the dataset has that truth);
- features (for the supervised reference, optional): the event observables and the jet
  observables of the two leading jets (``j0_*``, ``j1_*``) from :mod:`darkshower.represent.observables`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd

from darkshower.data.dataset import Dataset, open_dataset
from darkshower.data.fingerprint import dataset_fingerprint
from darkshower.evaluate.quicklook import transverse_mass_dijet_met

log = logging.getLogger(__name__)

EVENT_FEATURES = ("met_pt", "mt", "mjj", "dphi_min", "ht", "n_jets", "n_event_constituents",
                  "sphericity", "aplanarity")
JET_FEATURES = ("pt", "mass", "msoftdrop", "tau21", "tau32", "c2", "d2", "n2", "girth", "ptd",
                "axis_major", "axis_minor", "n_constituents", "n_charged", "lund_n_primary", "lund_max_lnkt")


@dataclass
class DatasetTables:
    """One dataset opened for evaluation (metadata + tables)."""

    path: str  # resolved absolute path (the join key)
    name: str  # short display name
    role: str  # "background" or "signal"
    process: str
    kind: str
    parameters: dict
    cross_section_pb: float | None
    n_events: int
    events: pd.DataFrame
    jets: pd.DataFrame
    features: pd.DataFrame | None = None
    fingerprint: str | None = None  # content identity (darkshower.data.fingerprint)

    @property
    def n_jets(self) -> int:
        return int(len(self.jets))

    def describe(self) -> dict:
        return {
            "name": self.name, "path": self.path, "role": self.role, "process": self.process, "kind": self.kind,
            "parameters": self.parameters, "cross_section_pb": self.cross_section_pb, "n_events": self.n_events,
            "n_jets": self.n_jets, "fingerprint": self.fingerprint,
        }


def _jet_fields(ds: Dataset) -> list[str]:
    import pyarrow.parquet as pq

    if not ds.chunks:
        return []
    schema = pq.read_schema(ds.path / ds.chunks[0]["file"])
    try:
        t = schema.field("jets").type
    except KeyError:
        return []
    while hasattr(t, "value_type"):
        t = t.value_type
    return [t.field(i).name for i in range(t.num_fields)] if hasattr(t, "num_fields") else []


def _event_fields(ds: Dataset) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(ds.path / ds.chunks[0]["file"]).names) if ds.chunks else []


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in [
        ("event_id", np.int64), ("weight", np.float64), ("n_jets", np.int64), ("met_pt", np.float64),
        ("mt", np.float64), ("lead_jet_mass", np.float64), ("lead_jet_pt", np.float64)]})


def _chunk_tables(chunk: ak.Array, has_dark: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    fields = ak.fields(chunk)
    n = len(chunk)
    njet = ak.to_numpy(ak.num(chunk.jets)).astype(np.int64)
    lead = ak.firsts(chunk.jets)
    ev = pd.DataFrame({
        "event_id": ak.to_numpy(chunk.event_id).astype(np.int64),
        "weight": ak.to_numpy(chunk.weight).astype(np.float64) if "weight" in fields else np.ones(n),
        "n_jets": njet,
        "met_pt": ak.to_numpy(chunk.met_pt).astype(np.float64) if "met_pt" in fields else np.zeros(n),
        "mt": transverse_mass_dijet_met(chunk) if "met_pt" in fields else np.full(n, np.nan),
        "lead_jet_mass": ak.to_numpy(ak.fill_none(lead.mass, np.nan)).astype(np.float64),
        "lead_jet_pt": ak.to_numpy(ak.fill_none(lead.pt, np.nan)).astype(np.float64),
    })
    jets = {
        "event_id": np.repeat(ev["event_id"].to_numpy(), njet),
        "jet_idx": ak.to_numpy(ak.flatten(ak.local_index(chunk.jets.pt, axis=1))).astype(np.int64),
        "pt": ak.to_numpy(ak.flatten(chunk.jets.pt)).astype(np.float64),
    }
    if has_dark:
        jets["is_dark"] = ak.to_numpy(ak.flatten(chunk.jets.is_dark)).astype(bool)
    return ev, pd.DataFrame(jets)


def _chunk_features(chunk: ak.Array, basic: pd.DataFrame) -> pd.DataFrame:
    from darkshower.represent.observables import event_observables, jet_observables

    try:
        evo = event_observables(chunk)[["event_id", *EVENT_FEATURES]].copy()
    except Exception as exc:  # e.g. imported jets without constituents: basic kinematics only
        log.warning("event observables unavailable (%s: %s); supervised reference uses MET, MT and jet kinematics",
                    type(exc).__name__, exc)
        return basic[["event_id", "met_pt", "mt", "n_jets", "lead_jet_mass", "lead_jet_pt"]].copy()
    try:
        jo = jet_observables(chunk, max_jets=2)
    except Exception as exc:  # datasets without constituents: event features only
        log.warning("jet observables unavailable (%s: %s); supervised reference uses event features only",
                    type(exc).__name__, exc)
        return evo
    for j in (0, 1):
        part = jo[jo["jet_idx"] == j].set_index("event_id")[list(JET_FEATURES)].add_prefix(f"j{j}_")
        evo = evo.join(part, on="event_id")
    return evo


def _chunk_all(task) -> tuple[int, pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]:
    """The tables of one chunk (runs where the executor runs it): (index, events, jets, features)."""
    path, i, cols, has_dark, features = task
    chunk = open_dataset(path).read_chunk(i, cols)
    if not len(chunk):
        return i, None, None, None
    e, j = _chunk_tables(chunk, has_dark)
    return i, e, j, (_chunk_features(chunk, e) if features else None)


def load_dataset(path, role: str, name: str | None = None, features: bool = False, executor=None) -> DatasetTables:
    """Read a dataset into evaluation tables (``features=True`` also computes observables), one task per chunk
    on ``executor`` (darkshower.execute: ``Local()``, ``Processes(n)``, ``Dask(...)``; default in process)."""
    from darkshower.execute import using

    ds = open_dataset(path)
    m = ds.manifest
    xs = (m.get("cross_section") or {}).get("sigma_selected_pb")
    jf = _jet_fields(ds)
    has_dark = "is_dark" in jf
    ev_parts, jet_parts, feat_parts = [], [], []
    if ds.n_events:
        efields = _event_fields(ds)
        cols: list[str] | None = None
        if not features:
            cols = [c for c in ("event_id", "weight", "met_pt", "met_phi") if c in efields]
            cols += [f"jets.{c}" for c in ("pt", "eta", "phi", "mass", "is_dark") if c in jf]
        parts: dict[int, tuple] = {}

        def fold(res) -> None:
            parts[res[0]] = res[1:]

        # observables for the supervised reference take a while on large datasets: show progress
        with using(executor if executor is not None else "local") as ex:  # in process unless asked
            ex.run(_chunk_all, [(str(ds.path), i, cols, has_dark, features) for i in range(len(ds.chunks))], fold,
                   desc=f"reading {Path(ds.path).name}", unit="chunk", name=lambda t: f"{t[0]} chunk {t[1]}")
        for i in sorted(parts):
            e, j, f = parts[i]
            if e is None:
                continue
            ev_parts.append(e)
            jet_parts.append(j)
            if features:
                feat_parts.append(f)
    events = pd.concat(ev_parts, ignore_index=True) if ev_parts else _empty_events()
    jets = (pd.concat(jet_parts, ignore_index=True) if jet_parts
            else pd.DataFrame({"event_id": pd.Series(dtype=np.int64), "jet_idx": pd.Series(dtype=np.int64),
                               "pt": pd.Series(dtype=np.float64)}))
    feats = pd.concat(feat_parts, ignore_index=True) if feat_parts else None
    return DatasetTables(
        path=str(Path(ds.path).resolve()), name=name or Path(ds.path).name, role=role, process=ds.process,
        kind=str(m.get("kind", "?")), parameters=dict(ds.parameters), cross_section_pb=None if xs is None else float(xs),
        n_events=int(len(events)), events=events, jets=jets, features=feats, fingerprint=dataset_fingerprint(ds),
    )


def short_names(paths) -> list[str]:
    """Unique short names for dataset paths: the directory name, with parents added when needed."""
    ps = [Path(p).resolve() for p in paths]
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in ps]
        if len(set(names)) == len(names) or depth > 8:
            return names
        depth += 1
