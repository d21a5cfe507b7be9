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
