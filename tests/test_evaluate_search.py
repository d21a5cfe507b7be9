"""Bump hunt on toy spectra: finds an injected Gaussian, no false discoveries, sane limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkshower.errors import EvaluationError
from darkshower.evaluate.bumphunt import DijetModel, SearchInputs, bump_hunt, gaussian_signal, run_search

EDGES = np.linspace(1000.0, 4000.0, 31)
THETA = [2e4, 10.0, 5.0, 0.0]
MASS, WIDTH = 2200.0, 150.0


def _toy_background():
    return DijetModel(EDGES, 13000.0, 4).expected(THETA)


def _signal(b, z_naive):
    """Gaussian signal scaled so that sqrt(sum s^2/b) = z_naive."""
    s = gaussian_signal(EDGES, MASS, WIDTH, 1.0)
    return s * z_naive / math.sqrt(np.sum(s**2 / b))


def test_model_gradient_and_signal_shape():
    m = DijetModel(EDGES, 13000.0, 4)
    th = np.array([1e4, 8.0, 4.0, 0.3])
    nu, jac = m.expected_and_jacobian(th)
    assert nu.sum() == pytest.approx(1e4)
    for k in range(4):
        d = np.zeros(4)
        d[k] = 1e-6 * max(1.0, abs(th[k]))
        num = (m.expected(th + d) - m.expected(th - d)) / (2 * d[k])
        np.testing.assert_allclose(jac[:, k], num, rtol=1e-5, atol=1e-6 * np.abs(jac[:, k]).max())
    g = gaussian_signal(EDGES, MASS, WIDTH, 50.0)
    assert g.sum() == pytest.approx(50.0)
    assert EDGES[np.argmax(g)] <= MASS <= EDGES[np.argmax(g) + 1]
    with pytest.raises(EvaluationError, match="x = MT/sqrt"):
        DijetModel([1000.0, 14000.0], 13000.0)


def test_finds_injected_signal():
    """Mean local Z over toys is close to the Asimov expectation and to s/sqrt(b) in the peak window."""
    b = _toy_background()
    s = _signal(b, 5.0)
    win = (EDGES[:-1] >= MASS - 2 * WIDTH) & (EDGES[1:] <= MASS + 2 * WIDTH)
    s_over_sqrt_b = s[win].sum() / math.sqrt(b[win].sum())
    z_asimov = bump_hunt(b + s, EDGES, s, limits=False)["z"]
    rng = np.random.default_rng(7)
    zs, mus = [], []
    for _ in range(12):
        r = bump_hunt(rng.poisson(b + s), EDGES, s, limits=False)
        zs.append(r["z"])
        mus.append(r["mu_hat"])
    mean_z = float(np.mean(zs))
    # profiling the 4 background parameters absorbs part of a bump: Z is below the naive s/sqrt(b)
    assert 0.6 * s_over_sqrt_b <= mean_z <= 1.2 * s_over_sqrt_b
    assert abs(mean_z - z_asimov) < 1.0
    assert np.mean(mus) == pytest.approx(1.0, abs=0.35)
    assert np.mean(np.array(zs) > 2) >= 0.75


def test_background_only_false_positive_rate():
    b = _toy_background()
    s = _signal(b, 5.0)
    rng = np.random.default_rng(11)
    zs = np.array([bump_hunt(rng.poisson(b), EDGES, s, limits=False)["z"] for _ in range(30)])
    assert np.mean(zs > 3) <= 0.05
    assert np.mean(zs < 0.1) >= 0.3  # mu_hat at (or next to) 0 in about half of the toys
    # goodness of fit of the background-only fit: chi2/ndf ~ 1
    r = bump_hunt(rng.poisson(b), EDGES, s, limits=False)
    assert r["chi2"] / r["ndf"] < 2.5


def test_expected_limit_on_asimov():
    b = _toy_background()
    s = _signal(b, 1.0)  # naive sigma_mu = 1
    r = bump_hunt(b, EDGES, s)
    el = r["expected_limit"]
    assert el["minus2"] < el["minus1"] < el["median"] < el["plus1"] < el["plus2"]
    # profiling can only loosen the limit relative to the known-background value 1.96 sigma
    assert 1.96 <= el["median"] <= 2 * 1.96
    # the background-only Asimov data are their own median experiment
    assert r["observed_limit"] == pytest.approx(el["median"], rel=0.05)
    # a strong signal in the data pushes the observed limit above the expected one
    r2 = bump_hunt(b + 3 * s, EDGES, s)
    assert r2["observed_limit"] > el["plus1"]


def test_run_search_with_cut_improves_significance():
    """A score that selects the signal raises Z; cuts are placed on background only."""
    rng = np.random.default_rng(3)
    nb, ns = 200000, 3000
    xb = rng.uniform(size=nb)
    # MT of background drawn from the toy dijet spectrum by inverse CDF on a fine grid
    fine = np.linspace(1000.0, 4000.0, 601)
    cdf = np.r_[0.0, np.cumsum(DijetModel(fine, 13000.0, 3).expected([1.0, 10.0, 5.0]))]
    mt_b = np.interp(xb, cdf / cdf[-1], fine)
    mt_s = rng.normal(MASS, WIDTH, ns)
    inp = SearchInputs(mt_bkg=mt_b, yield_bkg=np.full(nb, 0.5), score_bkg=rng.normal(0, 1, nb),
                       mt_sig=mt_s, yield_sig=np.full(ns, 0.5 * 500 / ns * 2), score_sig=rng.normal(2.5, 1, ns),
                       xsec_ref_pb=None)
    res = run_search(inp, cut_effs=(0.1,), mt_range=(1000.0, 4000.0), pseudo_data="asimov", seed=1)
    none, cut = res["levels"]
    assert cut["bkg_eff"] == pytest.approx(0.1, abs=0.005)
    assert cut["sig_eff"] > 0.6
    assert cut["z"] > none["z"] + 1.0
    assert cut["expected_limit"]["median"] < none["expected_limit"]["median"]
