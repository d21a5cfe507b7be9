"""CMS TreeMaker ntuples (the SVJ search format): AK8 jets with substructure, no constituents.

Jets come from ``JetsAK8`` (ROOT::Math LorentzVector stored as fPt/fEta/fPhi/fE); every
per-jet ``JetsAK8_<name>`` vector (same length as JetsAK8) becomes a jet field ``cms_<name>``
(e.g. ``cms_NsubjettinessTau1``, ``cms_softDropMass``, ``cms_ecfN2b1``, ``cms_girth``),
``JetsAK8_isHV`` becomes ``is_dark``. The constituent lists are empty (``n_constituents`` = 0;
the CMS multiplicity is ``cms_multiplicity``). Event: ``MET``/``METPhi`` → met_pt/met_phi,
``Weight`` → weight, ``MT_AK8`` and other requested scalars kept under their source names.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import awkward as ak
import numpy as np

from darkshower.io.common import Reader, build_jets, check_finite, empty_constituents, event_fields, list_some
from darkshower.io.rootutil import open_tree, read_tree

VEC = "JetsAK8/JetsAK8.fCoordinates."
JET_REQUIRED = tuple(VEC + c for c in ("fPt", "fEta", "fPhi", "fE"))
EVENT_SCALARS = ("MT_AK8", "METSignificance", "HT", "MHT", "NJets", "NJetsISR", "DeltaPhi1", "DeltaPhi2")


class TreeMakerReader(Reader):
    format_name = "treemaker"
    options = {"tree": "PreSelection", "jet_fields": "*"}

    def open(self) -> None:
        self.tree = open_tree(self.path, self.opts["tree"], self.format_name)
        keys = set(self.tree.keys())
        missing = [k for k in JET_REQUIRED if k not in keys]
        if missing:
            raise self.fail(
                f"not a TreeMaker ntuple: tree '{self.opts['tree']}' lacks {', '.join(missing)}; "
                f"it has: {list_some(keys)}"
            )
        pats = [p.strip() for p in str(self.opts["jet_fields"]).split(",") if p.strip()]
        self.jet_extra = []
        for k in sorted(keys):
            if not k.startswith("JetsAK8_") or "/" in k:
                continue
            name = k[len("JetsAK8_") :]
            if name.startswith("subjets") or not any(fnmatch.fnmatchcase(name, p) for p in pats + ["isHV"]):
                continue
            if _is_vector_of_numbers(self.tree[k]):
                self.jet_extra.append(k)
        self.met = [k for k in ("MET", "METPhi") if k in keys]
        self.scalars = [k for k in EVENT_SCALARS if k in keys]
        self.has_weight = "Weight" in keys
        self.n_events = int(self.tree.num_entries)
        if self.n_events == 0:
            raise self.fail(f"tree '{self.opts['tree']}' has no events")
        self.extra_jet_fields = ["is_dark" if k == "JetsAK8_isHV" else "cms_" + k[8:] for k in self.jet_extra]
        self.extra_event_fields = list(self.scalars)
        self.file_meta = {"constituents": False, "met": bool(self.met)}

    def read(self, start: int, stop: int) -> dict[str, Any]:
        extra_ev = list(self.scalars) + (["Weight"] if self.has_weight else [])
        a = read_tree(self.tree, [*JET_REQUIRED, *self.jet_extra, *self.met, *extra_ev], start, stop, self.path)
        n = stop - start
        njet = ak.to_numpy(ak.num(a[VEC + "fPt"], axis=1)).astype(np.int64)
        rows_j = np.repeat(np.arange(n), njet)
        pt, eta, phi, e = (ak.to_numpy(ak.flatten(a[VEC + c])).astype(np.float64) for c in ("fPt", "fEta", "fPhi", "fE"))
        for name, v in (("fPt", pt), ("fEta", eta), ("fPhi", phi), ("fE", e)):
            check_finite(self.path, VEC + name, v, start, rows_j)
        p = pt * np.cosh(eta)
        jf: dict[str, np.ndarray] = {"pt": pt, "eta": eta, "phi": phi, "mass": np.sqrt(np.clip(e * e - p * p, 0, None))}
        for k, name in zip(self.jet_extra, self.extra_jet_fields):
            vals = ak.to_numpy(ak.flatten(a[k]))
            if len(vals) != len(pt):
                raise self.fail(f"{k} has {len(vals)} entries in rows {start}-{stop}, JetsAK8 has {len(pt)}")
            if name != "is_dark" and vals.dtype == np.bool_:
                vals = vals.astype(np.int8)
            jf[name] = vals
        jets = build_jets(njet, jf, np.zeros(len(pt), np.int64), empty_constituents(0))
        extra = {}
        for k in self.scalars:
            v = ak.to_numpy(a[k])
            extra[k] = v.astype(np.float32) if v.dtype.kind == "f" else v
        met_pt = ak.to_numpy(a["MET"]) if "MET" in self.met else None
        met_phi = ak.to_numpy(a["METPhi"]) if "METPhi" in self.met else None
        weight = ak.to_numpy(a["Weight"]) if self.has_weight else None
        for name, v in (("MET", met_pt), ("METPhi", met_phi), ("Weight", weight)):
            if v is not None:
                check_finite(self.path, name, v, start)
        return event_fields(n, jets, met_pt, met_phi, weight, extra)

    @classmethod
    def jet_definition(cls, options):
        return {
            "algorithm": "antikt",
            "radius": 0.8,
            "source": "CMS TreeMaker JetsAK8 as stored (corrected); no constituents",
        }

    @classmethod
    def notes(cls, options):
        return {
            "constituents": "none in this format: jets.constituents are empty lists, n_constituents = 0; "
            "the CMS particle multiplicity is cms_multiplicity",
            "is_dark": "JetsAK8_isHV",
            "weight": "event weight = Weight (cross-section weight) when present",
        }


def _is_vector_of_numbers(branch) -> bool:
    interp = branch.interpretation
    content = getattr(interp, "content", None)
    if content is None:
        return False
    dt = getattr(content, "to_dtype", None)
    return dt is not None and np.dtype(dt).kind in "fiub"
