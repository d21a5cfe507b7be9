"""Jet and event observables on toy jets: physics sanity, exact cross-checks with FastJet, CLI."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from darkshower.represent.observables import event_observables, jet_observables, observables_table
from darkshower.represent.toys import toy_events, toy_jets


def test_tau21_two_prong_below_one_prong():
    one = jet_observables(toy_jets(150, n_prongs=1, seed=1))
    two = jet_observables(toy_jets(150, n_prongs=2, seed=2))
    assert np.median(two.tau21) < 0.8 * np.median(one.tau21)
    assert np.median(two.n2) < np.median(one.n2) * 1.5  # finite and of the same order
    assert (two.tau1 >= two.tau2).all() and (two.tau2 >= two.tau3).all()


def test_mass_is_constituent_invariant_mass():
    jets = toy_jets(50, n_prongs=3, seed=3)
    df = jet_observables(jets)
    c = jets.constituents
    pt, eta, phi, e = (ak.values_astype(c[f], np.float64) for f in ("pt", "eta", "phi", "e"))
    px, py, pz, E = (ak.to_numpy(ak.sum(v, axis=1)) for v in (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e))
    m = np.sqrt(E**2 - px**2 - py**2 - pz**2)
    np.testing.assert_allclose(df.mass, m, rtol=1e-9)
    np.testing.assert_allclose(df.pt, np.hypot(px, py), rtol=1e-12)
    assert (df.msoftdrop <= df.mass + 1e-9).all()
    assert (df.n_constituents == ak.to_numpy(ak.num(c))).all()


def test_exact_agreement_with_fastjet_contrib():
    fastjet = pytest.importorskip("fastjet")
    jets = toy_jets(30, n_prongs=2, seed=5)
    c = jets.constituents
    pt, eta, phi, e = (ak.values_astype(c[f], np.float64) for f in ("pt", "eta", "phi", "e"))
    p4 = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "E": e},
                with_name="Momentum4D")
    cs = fastjet.ClusterSequence(p4, fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0))
    # njettiness returns one row per "event" (here: per jet) with tau_N for the requested N
    tau = ak.to_numpy(cs.njettiness(njets=[1, 2, 3], beta=1.0, R0=0.8))
    sd = cs.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    n2 = ak.to_numpy(cs.exclusive_jets_energy_correlator(njets=1, func="nseries", npoint=2, beta=1.0))
    d2 = ak.to_numpy(cs.exclusive_jets_energy_correlator(njets=1, func="D2", beta=1.0))
    ours = jet_observables(jets, ecf_groomed=False)
    np.testing.assert_allclose(ours[["tau1", "tau2", "tau3"]].to_numpy(), tau, rtol=1e-8)
    np.testing.assert_allclose(ours.msoftdrop, np.ravel(ak.to_numpy(sd.msoftdrop)), rtol=1e-8)
    np.testing.assert_allclose(ours.n2, n2, rtol=1e-8)
    np.testing.assert_allclose(ours.d2, d2, rtol=1e-8)


def test_puppi_weights_scale_four_vectors():
    jets = toy_jets(20, seed=7)
    w = ak.ones_like(jets.constituents.pt) * 0.5
    weighted = ak.with_field(jets, ak.with_field(jets.constituents, w, "weight"), "constituents")
    a = jet_observables(jets)
    b = jet_observables(weighted)
    np.testing.assert_allclose(b.pt, 0.5 * a.pt, rtol=1e-9)
    np.testing.assert_allclose(b.mass, 0.5 * a.mass, rtol=1e-9)
    np.testing.assert_allclose(b.tau21, a.tau21, rtol=1e-9)  # scale invariant
    np.testing.assert_allclose(jet_observables(weighted, use_weights=False).pt, a.pt)


def _event(jet_pts, jet_phis, met, met_phi, jet_eta=(0.0, 0.0), mass=(0.0, 0.0)):
    jets = []
    for pt, phi, eta, m in zip(jet_pts, jet_phis, jet_eta, mass):
        cons = [{"pt": pt, "eta": eta, "phi": phi, "e": float(np.sqrt((pt * np.cosh(eta)) ** 2 + m**2)),
                 "charge": 0, "pid": 22, "type": 3}]
        jets.append({"pt": pt, "eta": eta, "phi": phi, "mass": m, "n_constituents": 1, "constituents": cons})
    return {"event_id": 0, "chunk": 0, "event": 0, "weight": 1.0, "met_pt": met, "met_phi": met_phi, "jets": jets}


def test_event_observables_mt_and_dphi():
    ev = ak.Array([_event([500.0, 400.0], [0.0, np.pi], 100.0, np.pi / 2, mass=(50.0, 30.0))])
    df = event_observables(ev)
    # by hand: MT^2 = (E_T,jj + MET)^2 - |pT_jj + MET|^2
    p = np.array([[500.0, 0, 0, np.hypot(500, 50)], [-400.0, 0, 0, np.hypot(400, 30)]])
    s = p.sum(axis=0)
    mjj2 = s[3] ** 2 - s[0] ** 2
    etjj = np.sqrt(mjj2 + s[0] ** 2)
    mt = np.sqrt((etjj + 100) ** 2 - (s[0] ** 2 + 100.0**2))
    assert df.mt[0] == pytest.approx(mt, rel=1e-6)
    assert df.dphi_min[0] == pytest.approx(np.pi / 2, rel=1e-6)
    assert df.n_event_constituents[0] == 2
    # back-to-back pencil event: sphericity 0; isotropic-ish events: large
    assert df.sphericity[0] == pytest.approx(0.0, abs=1e-9)
    iso = event_observables(ak.Array([_event([100.0, 100.0, 100.0], [0.0, 2.1, 4.2], 0.0, 0.0, jet_eta=(0, 0.5, -0.5))]))
    assert iso.sphericity[0] > 0.3


def test_table_layout():
    ev = toy_events(20, seed=3)
    t = observables_table(ev, max_jets=2)
    assert len(t) == 40
    assert list(t.columns[:2]) == ["event_id", "jet_idx"]
    assert {"tau21", "msoftdrop", "n2", "mt", "dphi_min", "sphericity"} <= set(t.columns)
    assert t.groupby("event_id").mt.nunique().max() == 1  # per-event columns repeated


def test_cli_observables(tmp_path):
    from darkshower.cli.main import main
    from darkshower.data import DatasetWriter

    w = DatasetWriter(tmp_path / "ds", {"toy": 1}, {"kind": "generated", "process": "toy"})
    w.open()
    w.write(0, toy_events(10, seed=1))
    ev1 = toy_events(8, seed=2)
    w.write(1, ak.with_field(ev1, ak.Array(np.arange(8) + (1 << 32)), "event_id"))
    w.finalize()
    out = tmp_path / "obs.parquet"
    rc = main(["observables", str(tmp_path / "ds"), "--out", str(out), "--max-jets", "1", "--no-progress",
               "--events-out", str(tmp_path / "ev.parquet")])
    assert rc == 0
    t = pd.read_parquet(out)
    assert len(t) == 18 and (t.jet_idx == 0).all()
    assert len(pd.read_parquet(tmp_path / "ev.parquet")) == 18
    assert not list(tmp_path.glob(".*.tmp"))
    assert main(["observables", str(tmp_path / "nope"), "--out", str(out)]) != 0


def test_sphericity_of_an_event_with_a_nan_particle_is_nan_not_a_crash():
    from darkshower.represent.observables import _sphericity_eigenvalues

    ev = np.array([0, 0, 0, 1, 1, 1])
    pt = np.array([10.0, 20.0, 5.0, 10.0, np.nan, 3.0])
    eta = np.array([0.1, -0.5, 1.0, 0.2, 0.3, -1.0])
    phi = np.array([0.0, 2.0, -2.0, 1.0, 0.5, -1.0])
    lam = _sphericity_eigenvalues(ev, pt, eta, phi, 2)
    assert np.isfinite(lam[0]).all() and abs(lam[0].sum() - 1.0) < 1e-9
    assert np.isnan(lam[1]).all()
