"""Real cross-check: darkshower observables vs CMS's own values for 209 AK8 PUPPI jets (PFNano)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILE = SHARED / "cms_pfnano" / "nano106X_on_mini106X_2017_mc_NANO.root"


def load_cms_jets():
    """AK8 jets with their PF candidates (PUPPI weight as the constituent 'weight') + CMS values."""
    uproot = pytest.importorskip("uproot")
    t = uproot.open(FILE)["Events"]
    a = t.arrays(filter_name=["FatJet_*", "FatJetPFCands_*", "nFatJet", "SubJet_*", "nSubJet"])
    nfj = ak.to_numpy(a.nFatJet).astype(np.int64)
    ev_of_jet = np.repeat(np.arange(len(a)), nfj)
    first_jet = np.concatenate([[0], np.cumsum(nfj)[:-1]])
    jidx = ak.flatten(a.FatJetPFCands_jetIdx)
    ncand = ak.to_numpy(ak.num(a.FatJetPFCands_jetIdx))
    gjet = ak.to_numpy(jidx).astype(np.int64) + np.repeat(first_jet, ncand)  # global jet index
    order = np.argsort(gjet, kind="stable")
    counts = np.bincount(gjet, minlength=len(ev_of_jet))

    def cand(name, dtype=np.float64):
        return ak.to_numpy(ak.flatten(a[f"FatJetPFCands_{name}"])).astype(dtype)[order]

    pt, eta, phi, mass = cand("pt"), cand("eta"), cand("phi"), cand("mass")
    e = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    pdg = np.abs(cand("pdgId", np.int64))
    typ = np.select([pdg == 211, pdg == 11, pdg == 13, pdg == 22], [0, 1, 2, 3], 4).astype(np.int8)
    cons = ak.zip({
        "pt": pt, "eta": eta, "phi": phi, "e": e, "charge": cand("charge", np.int8), "pid": cand("pdgId", np.int32),
        "type": typ, "d0": cand("d0", np.float32), "weight": cand("puppiWeight"),
    })

    def fj(name):
        return ak.to_numpy(ak.flatten(a[f"FatJet_{name}"])).astype(np.float64)

    jets = ak.zip({"pt": fj("pt"), "eta": fj("eta"), "phi": fj("phi"), "mass": fj("mass"),
                   "n_constituents": counts, "constituents": ak.unflatten(cons, counts)}, depth_limit=1)
    ref = {k: fj(k) for k in ("pt", "mass", "rawFactor", "msoftdrop", "tau1", "tau2", "tau3", "n2b1")}
    # uncorrected soft-drop mass: invariant mass of the two raw (pre-JEC) soft-drop subjets
    nsub = ak.to_numpy(a.nSubJet).astype(np.int64)
    sub_first = np.repeat(np.concatenate([[0], np.cumsum(nsub)[:-1]]), nfj)
    p4 = np.zeros((len(ev_of_jet), 4))
    raw = {k: ak.to_numpy(ak.flatten(a[f"SubJet_{k}"])).astype(np.float64) for k in ("pt", "eta", "phi", "mass", "rawFactor")}
    for which in ("subJetIdx1", "subJetIdx2"):
        idx = fj(which).astype(np.int64)
        ok = idx >= 0
        g = sub_first[ok] + idx[ok]
        spt = raw["pt"][g] * (1 - raw["rawFactor"][g])
        sm = raw["mass"][g] * (1 - raw["rawFactor"][g])
        p4[ok, 0] += spt * np.cos(raw["phi"][g])
        p4[ok, 1] += spt * np.sin(raw["phi"][g])
        p4[ok, 2] += spt * np.sinh(raw["eta"][g])
        p4[ok, 3] += np.sqrt((spt * np.cosh(raw["eta"][g])) ** 2 + sm**2)
    m2 = p4[:, 3] ** 2 - (p4[:, :3] ** 2).sum(axis=1)
    ref["msoftdrop_raw"] = np.sqrt(np.clip(m2, 0, None))
    ref["has_subjets"] = (fj("subJetIdx1") >= 0) & (fj("subJetIdx2") >= 0)
    return jets, ref


def rel(a, b):
    return np.abs(a / b - 1.0)


@pytest.mark.skipif(not FILE.exists(), reason=f"CMS PFNano sample not available ({FILE}); ../shared/data is absent")
def test_cms_pfnano_observables_agree():
    from darkshower.represent.observables import jet_observables

    jets, ref = load_cms_jets()
    df = jet_observables(jets)  # PUPPI weights applied as 4-vector scaling (CMS definitions are the defaults)
    raw_pt = ref["pt"] * (1 - ref["rawFactor"])
    raw_m = ref["mass"] * (1 - ref["rawFactor"])
    # PFNano stores the candidates' pT *without* the PUPPI weight: the weighted sum reproduces the
    # raw (uncorrected) jet pT, the unweighted one does not
    assert np.median(rel(df.pt.to_numpy(), raw_pt)) < 2e-3
    unweighted = jet_observables(jets, use_weights=False)
    assert np.median(rel(unweighted.pt.to_numpy(), raw_pt)) > 5 * np.median(rel(df.pt.to_numpy(), raw_pt))

    sub = ref["has_subjets"] & (ref["msoftdrop_raw"] > 0)
    n2ok = ref["n2b1"] > 0  # CMS stores -99968 when the groomed jet has < 3 constituents
    checks = {  # name: (ours, CMS, selection, tolerance on median, tolerance on 90th percentile)
        "mass (raw)": (df.mass, raw_m, slice(None), 3e-3, 1e-2),
        "tau1": (df.tau1, ref["tau1"], slice(None), 3e-3, 1e-2),
        "tau2": (df.tau2, ref["tau2"], slice(None), 3e-3, 1e-2),
        "tau3": (df.tau3, ref["tau3"], slice(None), 3e-3, 1e-2),
        "tau21": (df.tau21, ref["tau2"] / ref["tau1"], slice(None), 3e-3, 1e-2),
        "n2 (n2b1)": (df.n2, ref["n2b1"], n2ok, 3e-3, 1e-2),
        "msoftdrop (raw subjets)": (df.msoftdrop, ref["msoftdrop_raw"], sub, 3e-3, 1.5e-2),
    }
    for name, (ours, cms, sel, tmed, t90) in checks.items():
        r = rel(np.asarray(ours)[sel], np.asarray(cms)[sel])
        med, p90 = np.median(r), np.percentile(r, 90)
        print(f"{name:24s} n={len(r):3d} median {med:.1e} p90 {p90:.1e}")
        assert med < tmed, (name, med)
        assert p90 < t90, (name, p90)
    # FatJet_msoftdrop has the subjet energy corrections applied: ours (uncorrected) is lower by the JEC
    ratio = ref["msoftdrop"][sub] / df.msoftdrop.to_numpy()[sub]
    print(f"CMS corrected msoftdrop / ours: median {np.median(ratio):.3f}")
    assert 1.0 < np.median(ratio) < 1.25
