"""CMS NanoAOD with PF candidates (PFNano), both layouts.

(a) candidates stored per fat jet: ``FatJetPFCands_{pt,eta,phi,mass,charge,pdgId,...}`` with
    ``FatJetPFCands_jetIdx`` (index into ``FatJet``);
(b) index-linked: the full ``PFCands_*`` list plus ``FatJetPFCands_pFCandsIdx`` (index into
    ``PFCands``) and ``FatJetPFCands_jetIdx``.

Jets keep the stored (corrected, PUPPI) ``FatJet_pt/eta/phi/mass``; every other numeric
``FatJet_*`` column becomes a jet field ``cms_<name>`` (e.g. ``cms_msoftdrop``, ``cms_tau1``,
``cms_rawFactor``). Candidates: ``weight`` = ``puppiWeight``; ``d0``/``dz`` converted cm → mm.
Event weight = ``genWeight`` when present.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import awkward as ak
import numpy as np

from darkshower.io.common import Reader, build_jets, check_finite, energy, event_fields, list_some, pdg_to_type
from darkshower.io.rootutil import open_tree, read_tree

CAND_REQUIRED = ("pt", "eta", "phi", "mass", "charge", "pdgId")
CAND_OPTIONAL = ("d0", "dz", "puppiWeight")
JET_REQUIRED = ("FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass")


class PFNanoReader(Reader):
    format_name = "pfnano"
    options = {"tree": "Events", "jet_fields": "*"}

    def open(self) -> None:
        self.tree = open_tree(self.path, self.opts["tree"], self.format_name)
        keys = set(self.tree.keys())
        missing = [k for k in (*JET_REQUIRED, "FatJetPFCands_jetIdx") if k not in keys]
        if "FatJetPFCands_pFCandsIdx" in keys:
            self.layout = "indexed"
            prefix = "PFCands_"
        else:
            self.layout = "per-jet"
            prefix = "FatJetPFCands_"
        missing += [prefix + c for c in CAND_REQUIRED if prefix + c not in keys]
        if missing:
            hint = ""
            if "PreSelection" in str(self.opts["tree"]) or any(k.startswith("JetsAK8") for k in keys):
                hint = " (this looks like a TreeMaker ntuple: use format 'treemaker')"
            raise self.fail(
                f"not a PFNano file{hint}: tree '{self.opts['tree']}' lacks {', '.join(missing)}; "
                f"it has: {list_some(keys)}"
            )
        self.cand_prefix = prefix
        self.cand_branches = [prefix + c for c in CAND_REQUIRED] + [prefix + c for c in CAND_OPTIONAL if prefix + c in keys]
        pats = [p.strip() for p in str(self.opts["jet_fields"]).split(",") if p.strip()]
        self.jet_extra = sorted(
            k
            for k in keys
            if k.startswith("FatJet_")
            and k not in JET_REQUIRED
            and any(fnmatch.fnmatchcase(k[len("FatJet_") :], p) for p in pats)
            and _is_per_jet(self.tree[k])
        )
        self.met = [k for k in ("MET_pt", "MET_phi") if k in keys]
        self.has_weight = "genWeight" in keys
        self.n_events = int(self.tree.num_entries)
        if self.n_events == 0:
            raise self.fail(f"tree '{self.opts['tree']}' has no events")
        self.extra_jet_fields = ["cms_" + k[len("FatJet_") :] for k in self.jet_extra]
        self.extra_constituent_fields = [
            {"puppiWeight": "weight", "d0": "d0", "dz": "dz"}[c] for c in CAND_OPTIONAL if prefix + c in keys
        ]
        self.file_meta = {"layout": self.layout, "met": bool(self.met), "event_weight": "genWeight" if self.has_weight else None}

    def read(self, start: int, stop: int) -> dict[str, Any]:
        branches = [*JET_REQUIRED, *self.jet_extra, "FatJetPFCands_jetIdx", *self.cand_branches, *self.met]
        if self.layout == "indexed":
            branches.append("FatJetPFCands_pFCandsIdx")
        if self.has_weight:
            branches.append("genWeight")
        a = read_tree(self.tree, branches, start, stop, self.path)
        n = stop - start
        p = self.cand_prefix

        njet = ak.to_numpy(ak.num(a["FatJet_pt"], axis=1)).astype(np.int64)
        jet_off = np.concatenate([[0], np.cumsum(njet)[:-1]])
        jidx_j = a["FatJetPFCands_jetIdx"]
        ncand_link = ak.to_numpy(ak.num(jidx_j, axis=1)).astype(np.int64)
        ev_of_link = np.repeat(np.arange(n), ncand_link)
        jidx = ak.to_numpy(ak.flatten(jidx_j)).astype(np.int64)
        bad = (jidx < 0) | (jidx >= njet[ev_of_link])
        if bad.any():
            row = start + int(ev_of_link[np.flatnonzero(bad)[0]])
            raise self.fail(f"FatJetPFCands_jetIdx points outside FatJet (first in event row {row}); file is inconsistent")

        if self.layout == "indexed":
            cidx_j = a["FatJetPFCands_pFCandsIdx"]
            ncands = ak.to_numpy(ak.num(a[p + "pt"], axis=1)).astype(np.int64)
            cidx = ak.to_numpy(ak.flatten(cidx_j)).astype(np.int64)
            if len(cidx) != len(jidx):
                raise self.fail("FatJetPFCands_pFCandsIdx and FatJetPFCands_jetIdx differ in length")
            badc = (cidx < 0) | (cidx >= ncands[ev_of_link])
            if badc.any():
                row = start + int(ev_of_link[np.flatnonzero(badc)[0]])
                raise self.fail(f"FatJetPFCands_pFCandsIdx points outside PFCands (first in event row {row})")
            glob = cidx + np.repeat(np.concatenate([[0], np.cumsum(ncands)[:-1]]), ncand_link)

            def cand(name):
                return ak.to_numpy(ak.flatten(a[p + name]))[glob]
        else:

            def cand(name):
                flat = ak.to_numpy(ak.flatten(a[p + name]))
                if len(flat) != len(jidx):
                    raise self.fail(f"{p + name} and FatJetPFCands_jetIdx differ in length")
                return flat

        gjet = jet_off[ev_of_link] + jidx  # global jet index of each candidate link
        order = np.argsort(gjet, kind="stable")
        c = {name: cand(name)[order] for name in self.cand_branches_short()}
        rows_of_c = ev_of_link[order]
        for name in ("pt", "eta", "phi", "mass", "puppiWeight", "d0", "dz"):
            if name in c:
                check_finite(self.path, p + name, c[name], start, rows_of_c)
        ncon = np.bincount(gjet, minlength=int(njet.sum()))
        pdg = c["pdgId"].astype(np.int32)
        cons = {
            "pt": c["pt"],
            "eta": c["eta"],
            "phi": c["phi"],
            "e": energy(c["pt"], c["eta"], c["mass"]),
            "charge": c["charge"],
            "pid": pdg,
            "type": pdg_to_type(pdg, c["charge"]),
        }
        if "d0" in c:
            cons["d0"] = c["d0"] * 10.0  # NanoAOD: cm
        if "dz" in c:
            cons["dz"] = c["dz"] * 10.0
        if "puppiWeight" in c:
            cons["weight"] = c["puppiWeight"]

        jf: dict[str, np.ndarray] = {}
        for src, dst in (("FatJet_pt", "pt"), ("FatJet_eta", "eta"), ("FatJet_phi", "phi"), ("FatJet_mass", "mass")):
            jf[dst] = ak.to_numpy(ak.flatten(a[src]))
        rows_of_j = np.repeat(np.arange(n), njet)
        for src in (*JET_REQUIRED,):
            check_finite(self.path, src, jf[src[len("FatJet_") :]], start, rows_of_j)
        for src in self.jet_extra:
            vals = ak.to_numpy(ak.flatten(a[src]))
            if len(vals) != len(jf["pt"]):
                raise self.fail(f"{src} has {len(vals)} entries in rows {start}-{stop}, FatJet_pt has {len(jf['pt'])}")
            if vals.dtype == np.bool_:
                vals = vals.astype(np.int8)
            jf["cms_" + src[len("FatJet_") :]] = vals
        jets = build_jets(njet, jf, ncon, cons)
        met_pt = ak.to_numpy(a["MET_pt"]) if "MET_pt" in self.met else None
        met_phi = ak.to_numpy(a["MET_phi"]) if "MET_phi" in self.met else None
        weight = ak.to_numpy(a["genWeight"]) if self.has_weight else None
        for name, v in (("MET_pt", met_pt), ("MET_phi", met_phi), ("genWeight", weight)):
            if v is not None:
                check_finite(self.path, name, v, start)
        return event_fields(n, jets, met_pt, met_phi, weight)

    def cand_branches_short(self) -> list[str]:
        return [b[len(self.cand_prefix) :] for b in self.cand_branches]

    @classmethod
    def jet_definition(cls, options):
        return {
            "algorithm": "antikt",
            "radius": 0.8,
            "source": "CMS FatJet (AK8 PUPPI) as stored; pt/eta/phi/mass are the corrected values",
            "constituents": "PF candidates linked by FatJetPFCands_jetIdx; pt unweighted, PUPPI weight in 'weight'",
        }

    @classmethod
    def notes(cls, options):
        return {
            "pid": "CMS PF candidate pdgId as stored (±211, ±11, ±13, 22, 130; 1/2 = HF hadronic/e.m.)",
            "d0_units": "mm (converted from NanoAOD cm)",
            "weight": "event weight = genWeight when present",
            "raw_jet_pt": "pt * (1 - cms_rawFactor) equals the PUPPI-weighted sum of the constituents",
        }


def _is_per_jet(branch) -> bool:
    """Jagged numeric branch counted by nFatJet (skips nested / non-numeric ones)."""
    try:
        interp = branch.interpretation
    except Exception:  # pragma: no cover
        return False
    content = getattr(interp, "content", None)
    if content is None:
        return False
    dt = getattr(content, "to_dtype", None)
    if dt is None or np.dtype(dt).kind not in "fiub":
        return False
    counter = getattr(branch, "count_branch", None)
    return counter is None or counter.name == "nFatJet"
