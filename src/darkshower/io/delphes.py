"""Delphes ROOT output (tree ``Delphes``).

Jets are *reclustered* from the energy-flow objects (EFlowTrack, EFlowPhoton,
EFlowNeutralHadron) with the shared :func:`darkshower.simulate.jets.cluster_jets` (anti-kt,
``--radius``, ``--jet-pt-min``, ``--eta-max``): the ``FatJet.Constituents`` TRefArray is not
reliably readable outside ROOT, and reclustering defines the jets exactly like darkshower's own
generated data. The stored Delphes jets (``FatJet`` by default, ``--delphes-jets``) are kept
per event as ``delphes_jets`` {pt, eta, phi, mass} for cross-checks when present.

Branches (leaf names; ``Coll.Field``, ``Coll/Coll.Field`` and ``Coll_Field`` spellings accepted):
EFlowTrack.PT/Eta/Phi/Charge/PID[/D0 (mm)/Mass], EFlowPhoton.ET/Eta/Phi/E,
EFlowNeutralHadron.ET/Eta/Phi/E, MissingET.MET/Phi, Event.Weight (optional).
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from darkshower.data.schema import NEUTRAL_HADRON, PHOTON
from darkshower.io.common import Reader, check_finite, energy, event_fields, list_some, pdg_to_type
from darkshower.io.particles import cluster_particles, reclustered_jet_definition
from darkshower.io.rootutil import open_tree, read_tree

TRACK = ("PT", "Eta", "Phi", "Charge", "PID")
TOWER = ("ET", "Eta", "Phi", "E")


class DelphesReader(Reader):
    format_name = "delphes"
    options = {"tree": "Delphes", "radius": 0.8, "jet_pt_min": 150.0, "eta_max": 2.4, "delphes_jets": "FatJet"}

    def open(self) -> None:
        self.tree = open_tree(self.path, self.opts["tree"], self.format_name)
        keys = self.tree.keys(recursive=True)
        self.names: dict[tuple[str, str], str] = {}
        for k in keys:
            leaf = k.split("/")[-1]
            for sep in (".", "_"):
                if sep in leaf:
                    coll, field = leaf.split(sep, 1)
                    self.names.setdefault((coll, field), k)
                    break
        need = [("EFlowTrack", f) for f in TRACK] + [(c, f) for c in ("EFlowPhoton", "EFlowNeutralHadron") for f in TOWER]
        missing = [f"{c}.{f}" for c, f in need if (c, f) not in self.names]
        if missing:
            raise self.fail(
                f"not a Delphes file with energy-flow objects: tree '{self.opts['tree']}' lacks "
                f"{', '.join(missing)}; it has: {list_some(keys)}"
            )
        self.has_d0 = ("EFlowTrack", "D0") in self.names
        self.has_mass = ("EFlowTrack", "Mass") in self.names
        self.has_met = ("MissingET", "MET") in self.names and ("MissingET", "Phi") in self.names
        self.has_weight = ("Event", "Weight") in self.names
        dj = self.opts["delphes_jets"]
        self.jet_coll = dj if dj and all((dj, f) in self.names for f in ("PT", "Eta", "Phi", "Mass")) else None
        self.n_events = int(self.tree.num_entries)
        if self.n_events == 0:
            raise self.fail(f"tree '{self.opts['tree']}' has no events")
        self.extra_constituent_fields = ["d0"] if self.has_d0 else []
        self.extra_event_fields = ["delphes_jets"] if self.jet_coll else []
        self.file_meta = {"met": self.has_met, "stored_jets": self.jet_coll}

    def _branches(self) -> dict[str, str]:
        want = [("EFlowTrack", f) for f in TRACK] + [(c, f) for c in ("EFlowPhoton", "EFlowNeutralHadron") for f in TOWER]
        if self.has_d0:
            want.append(("EFlowTrack", "D0"))
        if self.has_mass:
            want.append(("EFlowTrack", "Mass"))
        if self.has_met:
            want += [("MissingET", "MET"), ("MissingET", "Phi")]
        if self.has_weight:
            want.append(("Event", "Weight"))
        if self.jet_coll:
            want += [(self.jet_coll, f) for f in ("PT", "Eta", "Phi", "Mass")]
        return {f"{c}.{f}": self.names[(c, f)] for c, f in want}

    def read(self, start: int, stop: int) -> dict[str, Any]:
        br = self._branches()
        raw = read_tree(self.tree, list(br.values()), start, stop, self.path)
        a = {logical: raw[key] for logical, key in br.items()}
        n = stop - start

        def flat(name):
            return ak.to_numpy(ak.flatten(a[name])).astype(np.float64)

        def counts(name):
            return ak.to_numpy(ak.num(a[name], axis=1)).astype(np.int64)

        parts = []
        # tracks
        tpt, teta, tphi = flat("EFlowTrack.PT"), flat("EFlowTrack.Eta"), flat("EFlowTrack.Phi")
        tq = ak.to_numpy(ak.flatten(a["EFlowTrack.Charge"])).astype(np.int8)
        tpid = ak.to_numpy(ak.flatten(a["EFlowTrack.PID"])).astype(np.int32)
        te = energy(tpt, teta, flat("EFlowTrack.Mass") if self.has_mass else None)
        nt = counts("EFlowTrack.PT")
        tracks = {"pt": tpt, "eta": teta, "phi": tphi, "e": te, "charge": tq, "pid": tpid, "type": pdg_to_type(tpid, tq)}
        if self.has_d0:
            tracks["d0"] = flat("EFlowTrack.D0")
        parts.append((tracks, nt))
        for coll, pid, typ in (("EFlowPhoton", 22, PHOTON), ("EFlowNeutralHadron", 130, NEUTRAL_HADRON)):
            pt = flat(f"{coll}.ET")
            m = len(pt)
            d = {
                "pt": pt,
                "eta": flat(f"{coll}.Eta"),
                "phi": flat(f"{coll}.Phi"),
                "e": flat(f"{coll}.E"),
                "charge": np.zeros(m, np.int8),
                "pid": np.full(m, pid, np.int32),
                "type": np.full(m, typ, np.int8),
            }
            if self.has_d0:
                d["d0"] = np.zeros(m)
            parts.append((d, counts(f"{coll}.ET")))
        for d, c in parts:
            rows = np.repeat(np.arange(n), c)
            for k in ("pt", "eta", "phi", "e") + (("d0",) if "d0" in d else ()):
                check_finite(self.path, k, d[k], start, rows)
        # merge the three collections event by event (vectorized: stable sort by event)
        ev = np.concatenate([np.repeat(np.arange(n), c) for _, c in parts])
        order = np.argsort(ev, kind="stable")
        merged = {k: np.concatenate([d[k] for d, _ in parts])[order] for k in parts[0][0]}
        per_event = sum(c for _, c in parts)
        jets = cluster_particles(merged, per_event, self.opts)

        met_pt = met_phi = weight = None
        if self.has_met:
            met_pt = ak.to_numpy(ak.fill_none(ak.firsts(a["MissingET.MET"]), 0.0))
            met_phi = ak.to_numpy(ak.fill_none(ak.firsts(a["MissingET.Phi"]), 0.0))
        if self.has_weight:
            weight = ak.to_numpy(ak.fill_none(ak.firsts(a["Event.Weight"]), 1.0))
        for name, v in (("MissingET.MET", met_pt), ("MissingET.Phi", met_phi), ("Event.Weight", weight)):
            if v is not None:
                check_finite(self.path, name, v, start)
        extra = {}
        if self.jet_coll:
            c = self.jet_coll
            stored = ak.zip(
                {
                    "pt": ak.values_astype(a[f"{c}.PT"], np.float32),
                    "eta": ak.values_astype(a[f"{c}.Eta"], np.float32),
                    "phi": ak.values_astype(a[f"{c}.Phi"], np.float32),
                    "mass": ak.values_astype(a[f"{c}.Mass"], np.float32),
                }
            )
            extra["delphes_jets"] = stored
        return event_fields(n, jets, met_pt, met_phi, weight, extra)

    @classmethod
    def jet_definition(cls, options):
        return reclustered_jet_definition(
            options, "reclustered from EFlowTrack + EFlowPhoton + EFlowNeutralHadron with cluster_jets (FastJet)"
        )

    @classmethod
    def notes(cls, options):
        return {
            "pid": "tracks: Delphes PID of the track (true particle id); photons 22; neutral hadrons 130",
            "d0_units": "mm (Delphes)",
            "reclustering": "FatJet.Constituents refs are not read; jets are reclustered from EFlow objects",
        }
