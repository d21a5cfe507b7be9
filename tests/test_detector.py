"""The numpy CMS-like detector on hand-made particles."""

from __future__ import annotations

import numpy as np
import pytest

from darkshower.data.schema import CHARGED_HADRON, NEUTRAL_HADRON, PHOTON
from darkshower.simulate import detector as det


def particles(n, pid, pt, eta, phi=0.3, charge=None, r_prod=0.0):
    pid = np.full(n, pid, np.int32)
    pt = np.broadcast_to(np.asarray(pt, float), (n,)).copy()
    eta = np.broadcast_to(np.asarray(eta, float), (n,)).copy()
    phi = np.broadcast_to(np.asarray(phi, float), (n,)).copy()
    q = np.full(n, 0 if charge is None else charge, np.int8)
    return dict(ev=np.arange(n), pt=pt, eta=eta, phi=phi, e=pt * np.cosh(eta), pid=pid, charge=q,
                d0=np.zeros(n), r_prod=np.full(n, float(r_prod)))


def test_soft_tracks_are_lost_and_hard_ones_found():
    rng = np.random.default_rng(1)
    soft = det.cms_detector(particles(4000, 211, 0.08, 0.2, charge=1), rng)
    assert np.sum(soft["type"] == CHARGED_HADRON) == 0
    hard = det.cms_detector(particles(4000, 211, 10.0, 0.2, charge=1), rng)
    eff = np.sum(hard["type"] == CHARGED_HADRON) / 4000
    assert eff == pytest.approx(0.95, abs=0.015)
    forward = det.cms_detector(particles(4000, 211, 10.0, 2.0, charge=1), rng)
    assert np.sum(forward["type"] == CHARGED_HADRON) / 4000 == pytest.approx(0.85, abs=0.02)
    outside = det.cms_detector(particles(500, 211, 10.0, 3.0, charge=1), rng)
    assert np.sum(outside["type"] == CHARGED_HADRON) == 0
    # beyond the tracker the pion is seen by the HCAL as a neutral deposit
    assert np.sum(outside["type"] == NEUTRAL_HADRON) > 400


def test_track_momentum_smearing_matches_card():
    rng = np.random.default_rng(2)
    out = det.cms_detector(particles(20000, 211, 100.0, 0.1, charge=1), rng)
    pt = out["pt"][out["type"] == CHARGED_HADRON]
    expected = np.sqrt(0.06**2 + (1.3e-3 * 100) ** 2)
    assert np.mean(pt) == pytest.approx(100.0, rel=0.01)
    assert np.std(pt) / 100.0 == pytest.approx(expected, rel=0.05)


def test_ecal_energy_smearing_matches_card():
    rng = np.random.default_rng(3)
    out = det.cms_detector(particles(20000, 22, 100.0, 0.0), rng)
    assert np.all(out["type"] == PHOTON)
    e = out["e"]
    sigma = det.ecal_sigma(np.array([100.0]), np.array([0.0]))[0]
    assert np.mean(e) == pytest.approx(100.0, rel=0.005)
    assert np.std(e) == pytest.approx(sigma, rel=0.05)


def test_hcal_thresholds_remove_soft_neutrals():
    rng = np.random.default_rng(4)
    out = det.cms_detector(particles(2000, 130, 0.5, 0.0), rng)  # K0L of 0.5 GeV: below HCAL EnergyMin
    assert len(out["pt"]) < 200
    hard = det.cms_detector(particles(2000, 130, 20.0, 0.0), rng)  # well above it: all seen
    assert len(hard["pt"]) == 2000


def test_displaced_tracks_are_lost_far_out():
    rng = np.random.default_rng(5)
    near = det.cms_detector(particles(3000, 211, 10.0, 0.2, charge=1, r_prod=10.0), rng)
    far = det.cms_detector(particles(3000, 211, 10.0, 0.2, charge=1, r_prod=700.0), rng)
    assert np.sum(near["type"] == CHARGED_HADRON) > 2700
    assert np.sum(far["type"] == CHARGED_HADRON) == 0


def test_tower_geometry_covers_detector():
    for calo in (det.ECAL, det.HCAL):
        eta = np.linspace(-4.99, 4.99, 1001)
        valid, _, tower = calo.tower_index(eta, np.zeros_like(eta))
        assert valid.all() and (tower < calo.n_towers).all()
        e2, p2 = calo.tower_position(tower, np.random.default_rng(0))
        v2, _, t2 = calo.tower_index(e2, p2)
        assert (t2 == tower).all()
