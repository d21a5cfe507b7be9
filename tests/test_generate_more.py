"""More processes: ttbar, t-channel SVJ, emerging jets."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from darkshower.simulate.run import generate


@pytest.fixture(scope="module")
def emj_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("emj")
    return [generate({"process": "emj", "events": 30, "seed": 4, "params": {"ctau": ct}}, base / f"c{ct}",
                     jobs=1, progress=False) for ct in (1.0, 50.0)]


def test_emj_displacement_grows_with_ctau(emj_pair):
    short, long_ = (d.arrays().jets.constituents for d in emj_pair)
    r_s, r_l = (ak.to_numpy(ak.flatten(c.r_prod, axis=None)) for c in (short, long_))
    assert r_l.mean() > 5 * r_s.mean()
    d_s, d_l = (np.abs(ak.to_numpy(ak.flatten(c.d0[c.charge != 0], axis=None))) for c in (short, long_))
    assert np.percentile(d_l, 90) > np.percentile(d_s, 90)
    # displaced tracks are lost: fewer tracks per jet at long lifetime
    n_s, n_l = (ak.mean(ak.num(c[c.charge != 0], axis=2)) for c in (short, long_))
    assert n_l < n_s


def test_ttbar_jets_have_top_mass(tmp_path):
    ds = generate({"process": "ttbar", "events": 60, "seed": 2, "params": {"pthat_min": 400},
                   "jets": {"pt_min": 300, "min_jets": 1}}, tmp_path / "tt", jobs=1, progress=False)
    m = ak.to_numpy(ds.arrays().jets.mass[:, 0])
    assert 130 < np.median(m) < 200
    assert np.mean((m > 120) & (m < 220)) > 0.5


def test_svj_t_channel(tmp_path):
    ds = generate({"process": "svj", "events": 30, "seed": 3, "params": {"channel": "t", "m_med": 1500}},
                  tmp_path / "t", jobs=1, progress=False)
    a = ds.arrays()
    assert "HiddenValley:gg2DvDvbar = on" in ds.manifest["provenance"]["pythia_settings"]
    assert ak.all(ak.num(a.dark_partons) == 2)
    assert ak.mean(a.n_invisible) > 2


def sphericity(particles) -> np.ndarray:
    """Per-event linearized (r = 1, as in the CMS SUEP search) sphericity 3/2 (λ2 + λ3) of the
    tracks with pT > 0.7 GeV and |η| < 2.5, in the lab frame."""
    out = []
    for ev in particles:  # test helper on a few dozen events
        pt, eta, phi = (np.asarray(ev[k], float) for k in ("pt", "eta", "phi"))
        sel = (np.asarray(ev["charge"]) != 0) & (np.abs(eta) < 2.5) & (pt > 0.7)
        p = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=1)[sel]
        a = np.linalg.norm(p, axis=1)
        q = p / np.sqrt(a)[:, None]
        t = q.T @ q / a.sum()
        lam = np.sort(np.linalg.eigvalsh(t))
        out.append(1.5 * (lam[0] + lam[1]))
    return np.array(out)


def test_suep_is_soft_spherical_and_busy(tmp_path):
    common = {"events": 25, "seed": 6, "store_particles": True, "jets": {"min_jets": 0}}
    suep = generate({**common, "process": "suep", "params": {"m_med": 400, "m_dark": 2, "temperature": 2}},
                    tmp_path / "suep", jobs=1, progress=False).arrays()
    qcd = generate({**common, "process": "qcd", "params": {"pthat_min": 150}}, tmp_path / "qcd", jobs=1,
                   progress=False).arrays()
    assert ak.mean(ak.num(suep.particles)) > 1.4 * ak.mean(ak.num(qcd.particles))
    assert ak.mean(ak.flatten(suep.particles.pt)) < 0.7 * ak.mean(ak.flatten(qcd.particles.pt))
    s_suep, s_qcd = sphericity(suep.particles), sphericity(qcd.particles)
    # lab frame, with the underlying event and the mediator's recoil: SUEP clearly more isotropic
    assert np.median(s_suep) > 0.45 and np.median(s_suep) > np.median(s_qcd) + 0.1
    assert ak.mean(suep.n_dark_hadrons) > 20


def test_suep_meson_kinematics_conserve_energy():
    from darkshower.simulate.processes.suep import boost, suep_mesons

    rng = np.random.default_rng(0)
    p4 = suep_mesons(400.0, 2.0, 2.0, rng)
    assert len(p4) >= 3
    np.testing.assert_allclose(p4[:, 3].sum(), 400.0, rtol=1e-9)
    np.testing.assert_allclose(p4[:, :3].sum(axis=0), 0.0, atol=1e-8)
    np.testing.assert_allclose(p4[:, 3] ** 2 - (p4[:, :3] ** 2).sum(axis=1), 4.0, rtol=1e-6)
    parent = np.array([50.0, -20.0, 300.0, np.sqrt(400.0**2 + 50**2 + 20**2 + 300**2)])
    lab = boost(p4, parent)
    np.testing.assert_allclose(lab.sum(axis=0), parent, rtol=1e-9)
    # the momenta follow f(p) ∝ p² exp(-(E - m)/T): compare <E - m> with the integral
    p = np.linspace(0, 200, 200001)
    e = np.sqrt(p * p + 4.0)
    f = p * p * np.exp(-(e - 2.0) / 2.0)
    expected = (f * (e - 2.0)).sum() / f.sum()  # ≈ 4.74 GeV for m = T = 2
    ke = np.concatenate([suep_mesons(1000.0, 2.0, 2.0, rng)[:, 3] - 2.0 for _ in range(30)])
    assert ke.mean() == pytest.approx(expected, rel=0.05)


def pair_mass(partons) -> float:
    pt, eta, phi = (np.asarray(partons[k], float) for k in ("pt", "eta", "phi"))
    m_q = 10.0  # dark quark mass for m_dark = 20
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m_q**2)
    return float(np.sqrt(e.sum() ** 2 - px.sum() ** 2 - py.sum() ** 2 - pz.sum() ** 2))


def test_resimulation_shares_hard_process_and_differs_downstream(tmp_path):
    from darkshower.data.resim import positive_pairs

    ds = generate({"process": "svj", "events": 24, "seed": 9, "resimulate": 3, "jets": {"min_jets": 1}},
                  tmp_path / "rs", jobs=1, progress=False)
    a = ds.arrays()
    rid, ridx = ak.to_numpy(a.resim_id), ak.to_numpy(a.resim_index)
    assert set(ridx.tolist()) <= {0, 1, 2}
    pairs = positive_pairs(rid)
    assert len(pairs) > 0 and (rid[pairs[:, 0]] == rid[pairs[:, 1]]).all()
    same_hard = differ = n_pair_mass = 0
    for i, j in pairs:
        # the hard process is shared: identical pT-hat, and the same dark-quark pair (its invariant
        # mass; the pair as a whole recoils against the realization's own initial-state radiation)
        assert a.pt_hat[i] == a.pt_hat[j] and a.x1[i] == a.x1[j] and a.x2[i] == a.x2[j]
        if len(a.dark_partons[i]) == 2:
            assert pair_mass(a.dark_partons[i]) == pytest.approx(pair_mass(a.dark_partons[j]), rel=1e-3)
            n_pair_mass += 1
        same_hard += 1
        differ += ak.to_list(a.jets[i].constituents.pt) != ak.to_list(a.jets[j].constituents.pt)
    assert differ == same_hard  # every realization has its own shower and hadronization
    assert n_pair_mass > len(pairs) / 2  # the dark-quark pair check ran on most pairs
    # different hard processes across groups
    assert len(set(ak.to_list(a.x1))) == len(set(rid.tolist()))
    rng_pairs = positive_pairs(rid, np.random.default_rng(0))
    assert (rid[rng_pairs[:, 0]] == rid[rng_pairs[:, 1]]).all() and (rng_pairs[:, 0] != rng_pairs[:, 1]).all()


def test_aachen_point_dark_quark_mass_and_jet_pt_window(tmp_path):
    """The DarkCLR 'Aachen' benchmark: m_dark_quark 0.5 GeV with m_dark = Lambda = 5 GeV, r_inv 0.75, jets in
    150 < pT < 350 GeV, |eta| < 2 (jets.pt_max is an analysis window: jets above it are not stored)."""
    import json

    from darkshower.errors import ConfigError

    ds = generate({"process": "svj", "events": 25, "seed": 3,
                   "params": {"m_dark": 5, "m_dark_quark": 0.5, "Lambda": 5, "r_inv": 0.75},
                   "jets": {"pt_min": 150, "pt_max": 350, "eta_max": 2.0, "min_jets": 1}},
                  tmp_path / "aachen", jobs=1, progress=False)
    jets = ds.arrays().jets
    pt = ak.to_numpy(ak.flatten(jets.pt))
    assert len(pt) >= 25 and pt.min() > 150 and pt.max() < 350
    assert np.abs(ak.to_numpy(ak.flatten(jets.eta))).max() < 2.0
    man = json.loads((tmp_path / "aachen" / "manifest.json").read_text())
    assert man["parameters"]["m_dark_quark"] == 0.5 and man["jets"]["pt_max"] == 350
    with pytest.raises(ConfigError, match="m_dark_quark"):
        generate({"process": "svj", "events": 5, "params": {"m_dark_quark": 0.1}}, tmp_path / "bad", jobs=1,
                 progress=False)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match=r"pt_max \(150\) must be above jets\.pt_min"):
        generate({"process": "qcd", "events": 5, "jets": {"pt_min": 200, "pt_max": 150}}, tmp_path / "bad2", jobs=1,
                 progress=False)
    # without the window the recorded config is as before it existed
    plain = generate({"process": "qcd", "events": 5, "seed": 1}, tmp_path / "plain", jobs=1, progress=False)
    assert "pt_max" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["config"]["jets"]
    assert plain.n_events == 5
