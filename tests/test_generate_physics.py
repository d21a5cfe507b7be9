"""Physics of generated samples: SVJ vs QCD, r_inv, jet selection, truth."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from darkshower.evaluate.quicklook import transverse_mass_dijet_met


def test_svj_has_more_met_than_qcd(qcd_ds, svj_ds):
    met_qcd = ak.to_numpy(qcd_ds.arrays().met_pt)
    met_svj = ak.to_numpy(svj_ds.arrays().met_pt)
    assert met_svj.mean() > 2.5 * met_qcd.mean()
    assert np.median(met_svj) > np.median(met_qcd)


@pytest.mark.slow  # two more samples; r_inv's effect: test_invisible_fraction_tracks_rinv
def test_met_grows_with_rinv(svj_low_rinv_ds, svj_ds, svj_high_rinv_ds):
    low, mid, high = (ak.to_numpy(d.arrays().met_pt).mean() for d in (svj_low_rinv_ds, svj_ds, svj_high_rinv_ds))
    assert low < mid and high > 1.3 * low


def test_invisible_fraction_tracks_rinv(svj_unbiased_ds, svj_ds):
    # without a jet selection the fraction of invisible decays is r_inv itself
    a = svj_unbiased_ds.arrays()
    # each invisible dark-meson decay gives two stable invisible stand-ins (51 51bar or 53 53bar)
    frac = ak.sum(a.n_invisible) / 2 / ak.sum(a.n_dark_hadrons)
    assert abs(frac - 0.5) < 0.03, frac
    # with the jet selection it is biased low (fewer invisible decays -> harder visible jets), but close
    b = svj_ds.arrays()
    frac_sel = ak.sum(b.n_invisible) / 2 / ak.sum(b.n_dark_hadrons)
    assert 0.22 < frac_sel < 0.33, frac_sel


def test_qcd_has_no_dark_truth(qcd_ds):
    a = qcd_ds.arrays()
    assert ak.sum(a.n_dark_hadrons) == 0 and ak.sum(a.n_invisible) == 0
    assert not ak.any(a.jets.is_dark)


def test_jets_pass_selection_and_are_sorted(qcd_ds, svj_ds):
    for ds in (qcd_ds, svj_ds):
        cfg = ds.manifest["jets"]
        a = ds.arrays()
        assert ak.all(ak.num(a.jets) >= cfg["min_jets"])
        assert ak.all(a.jets.pt > cfg["pt_min"]) and ak.all(abs(a.jets.eta) < cfg["eta_max"])
        pt = a.jets.pt
        assert ak.all(pt[:, :-1] >= pt[:, 1:])
        cpt = a.jets.constituents.pt
        assert ak.all(cpt[:, :, :-1] >= cpt[:, :, 1:])


def test_jet_four_vector_is_sum_of_constituents(svj_ds):
    j = svj_ds.read_chunk(0).jets
    c = j.constituents
    pt, eta, phi, e = (ak.values_astype(c[k], np.float64) for k in ("pt", "eta", "phi", "e"))
    px, py, pz, E = (ak.sum(x, axis=-1) for x in (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e))
    m2 = ak.to_numpy(ak.flatten(E**2 - px**2 - py**2 - pz**2))
    m = np.sqrt(np.clip(m2, 0, None))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(np.hypot(px, py))), ak.to_numpy(ak.flatten(j.pt)), rtol=1e-4)
    np.testing.assert_allclose(m, ak.to_numpy(ak.flatten(j.mass)), rtol=2e-3, atol=0.05)
    assert ak.all(j.n_constituents == ak.num(c, axis=-1))


def test_svj_jets_match_dark_partons(svj_ds):
    a = svj_ds.arrays()
    # Z' -> dark quarks in ~98% of events (the small Z' -> q qbar channels make the rest)
    assert ak.mean(ak.num(a.dark_partons) == 2) > 0.9
    lead = a.jets[:, 0]
    assert ak.mean(lead.is_dark) > 0.7
    assert ak.mean(a.jets[:, :2].mass) > 60  # dark showers are wide, massive jets


def test_invisibles_never_reach_the_detector(svj_ds):
    a = svj_ds.arrays()
    pid = np.abs(ak.to_numpy(ak.flatten(a.jets.constituents.pid, axis=None)))
    assert not np.isin(pid, [12, 14, 16, 51, 52, 53]).any()
    assert not ((pid >= 4900000) & (pid < 5000000)).any()
    # the missing pT follows the invisible truth
    met, truth = ak.to_numpy(a.met_pt), ak.to_numpy(a.truth_met_pt)
    assert np.corrcoef(met, truth)[0, 1] > 0.8


def test_mt_exceeds_dijet_scale(svj_ds):
    a = svj_ds.arrays()
    mt = transverse_mass_dijet_met(a)
    assert np.all(mt > 0)
    # the signal's MT peaks below the 2 TeV mediator mass, at the TeV scale
    assert 800 < np.median(mt) < 2100
