"""Jet images and sparse event images."""

from __future__ import annotations

import awkward as ak
import numpy as np

from darkshower.represent.images import event_images, jet_images
from darkshower.represent.toys import toy_events, toy_jets


def test_jet_images_conserve_pt():
    jets = toy_jets(30, seed=1)
    im = jet_images(jets, n_pixels=40, half_width=0.8, channels="all_charged_neutral", normalize=False)
    c = jets.constituents
    deta = c.eta - jets.eta
    dphi = (c.phi - jets.phi + np.pi) % (2 * np.pi) - np.pi
    inwin = (abs(deta) < 0.8) & (abs(dphi) < 0.8)
    tot = ak.to_numpy(ak.sum(c.pt[inwin], axis=1))
    np.testing.assert_allclose(im.images[:, 0].sum(axis=(1, 2)), tot, rtol=1e-5)
    np.testing.assert_allclose(im.images[:, 1:].sum(axis=(1, 2, 3)), tot, rtol=1e-5)  # charged + neutral = all
    charged = ak.to_numpy(ak.sum(c.pt[inwin & (c["type"] <= 2)], axis=1))
    np.testing.assert_allclose(im.images[:, 1].sum(axis=(1, 2)), charged, rtol=1e-5)
    norm = jet_images(jets, channels="all")
    np.testing.assert_allclose(norm.images.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    # the jet axis sits in the central pixels; a jet at phi ~ pi is handled
    wrapped = jet_images(toy_jets(3, seed=2, phi=np.full(3, np.pi - 0.01)), normalize=False)
    assert wrapped.images.sum() > 0 and wrapped.images[:, 0, 15:25, 15:25].sum() > 0.5 * wrapped.images.sum()


def test_event_images_sparse_roundtrip():
    ev = toy_events(12, seed=4)
    sp = event_images(ev, n_eta=50, n_phi=64, eta_max=2.5)
    assert sp.shape == (3, 50, 64) and sp.channels == ["tracks", "ecal", "hcal"]
    dense = sp.dense()
    assert dense.shape == (12, 3, 50, 64)
    c = ev.jets.constituents
    inwin = abs(c.eta) < 2.5
    tot = ak.to_numpy(ak.sum(ak.sum(c.pt[inwin], axis=2), axis=1))
    np.testing.assert_allclose(dense.sum(axis=(1, 2, 3)), tot, rtol=1e-5)
    ecal = ak.to_numpy(ak.sum(ak.sum(c.pt[inwin & (c["type"] == 3)], axis=2), axis=1))
    np.testing.assert_allclose(dense[:, 1].sum(axis=(1, 2)), ecal, rtol=1e-5)
    assert sp.occupancy < 0.05
    np.testing.assert_array_equal(sp.select([5, 2]).dense(), dense[[5, 2]])
