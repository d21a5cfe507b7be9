"""Point clouds: phi wrapping, per-jet preprocessing, standardization round trip."""

from __future__ import annotations

import awkward as ak
import numpy as np

from darkshower.represent.constituents import Standardizer, point_clouds
from darkshower.represent.toys import toy_jets


def _rotate_phi(jets, dphi):
    c = jets.constituents
    newc = ak.with_field(c, ((c.phi + dphi + np.pi) % (2 * np.pi)) - np.pi, "phi")
    j = ak.with_field(jets, newc, "constituents")
    return ak.with_field(j, ((jets.phi + dphi + np.pi) % (2 * np.pi)) - np.pi, "phi")


def test_phi_wrapping_jet_at_pi():
    jets = toy_jets(5, seed=1, phi=np.full(5, np.pi - 0.05))  # constituents straddle +-pi
    assert (ak.to_numpy(ak.flatten(jets.constituents.phi)) < 0).any()
    moved = _rotate_phi(jets, -(np.pi - 0.05))
    for kw in ({}, {"centre": True, "rotate": True, "flip": True}):
        a = point_clouds(jets, 64, **kw)
        b = point_clouds(moved, 64, **kw)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.features, b.features, atol=2e-5)
        assert np.abs(a.features[..., 1][a.mask]).max() < 3.0  # unwrapped would be ~2 pi


def test_preprocessing_is_per_jet():
    j1 = toy_jets(1, seed=3, eta=np.array([-2.0]))
    j2 = toy_jets(1, seed=4, eta=np.array([1.8]))
    both = ak.concatenate([j1, j2])
    kw = {"centre": True, "rotate": True, "flip": True}
    pb = point_clouds(both, 80, **kw)
    np.testing.assert_allclose(pb.features[0], point_clouds(j1, 80, **kw).features[0], atol=1e-6)
    np.testing.assert_allclose(pb.features[1], point_clouds(j2, 80, **kw).features[0], atol=1e-6)
    # centring puts the pT-weighted centroid at 0; rotation aligns the principal axis with deta
    pc = point_clouds(both, 200, **kw)
    w = np.exp(pc.features[..., 2]) * pc.mask
    for j in range(2):
        x, y = pc.features[j, :, 0], pc.features[j, :, 1]
        assert abs((w[j] * x).sum() / w[j].sum()) < 1e-4 and abs((w[j] * y).sum() / w[j].sum()) < 1e-4
        assert (w[j] * x * x).sum() >= (w[j] * y * y).sum()
        assert abs((w[j] * x * y).sum()) / (w[j] * x * x).sum() < 1e-4
        assert (w[j] * x**3).sum() >= 0 and (w[j] * y**3).sum() >= 0


def test_padding_features_and_standardization_roundtrip():
    jets = toy_jets(40, seed=5, n_constituents=(10, 60), displacement=True)
    pc = point_clouds(jets, 50)
    assert pc.names[-2:] == ["d0", "r_prod"]
    n = ak.to_numpy(jets.n_constituents)
    assert (pc.mask.sum(axis=1) == np.minimum(n, 50)).all()
    assert (pc.features[~pc.mask] == 0).all()
    i_pt = pc.names.index("log_pt")
    lead = ak.to_numpy(ak.max(jets.constituents.pt, axis=1))
    np.testing.assert_allclose(np.exp(pc.features[:, 0, i_pt]), lead, rtol=1e-5)
    std = Standardizer.fit(pc)
    std2 = Standardizer.from_json(std.to_json())
    fused = point_clouds(jets, 50, standardizer=std2)  # standardization inside the kernel
    x = fused.features[fused.mask]
    cont = [i for i, n_ in enumerate(pc.names) if not (n_.startswith("is_") or n_ == "charge")]
    np.testing.assert_allclose(x[:, cont].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x[:, cont].std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(std2.invert(fused.features, fused.mask), pc.features, atol=1e-4)
    manual = std.apply(point_clouds(jets, 50))
    np.testing.assert_allclose(manual.features, fused.features, atol=1e-5)
