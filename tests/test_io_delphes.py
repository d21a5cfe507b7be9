"""Delphes reader against a small ROOT file written here with uproot (documented branch layout)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from darkshower.io import import_dataset

uproot = pytest.importorskip("uproot")


def _spray(rng, n, pt_tot, eta0, phi0):
    frac = rng.dirichlet(np.ones(n)) * pt_tot
    return frac, eta0 + rng.normal(0, 0.1, n), phi0 + rng.normal(0, 0.1, n)


def write_delphes(path, n_events=12, seed=1, nan_row=None):
    """Two back-to-back sprays of tracks/photons/neutral hadrons per event + their FatJet sums."""
    rng = np.random.default_rng(seed)
    coll = {k: {f: [] for f in fs} for k, fs in {
        "EFlowTrack": ("PT", "Eta", "Phi", "Charge", "PID", "D0"),
        "EFlowPhoton": ("ET", "Eta", "Phi", "E"),
        "EFlowNeutralHadron": ("ET", "Eta", "Phi", "E"),
        "FatJet": ("PT", "Eta", "Phi", "Mass"),
        "MissingET": ("MET", "Phi"),
        "Event": ("Weight",),
    }.items()}
    for ev in range(n_events):
        parts = {"EFlowTrack": [], "EFlowPhoton": [], "EFlowNeutralHadron": []}
        jets = []
        for k, (eta0, phi0) in enumerate(((0.3, 0.5), (-0.5, 0.5 - np.pi))):
            p4 = np.zeros(4)
            for c, nn in (("EFlowTrack", 12), ("EFlowPhoton", 6), ("EFlowNeutralHadron", 4)):
                pt, eta, phi = _spray(rng, nn, 400.0 / (k + 1) / 3, eta0, phi0)
                e = pt * np.cosh(eta)
                p4 += [np.sum(pt * np.cos(phi)), np.sum(pt * np.sin(phi)), np.sum(pt * np.sinh(eta)), np.sum(e)]
                parts[c].append((pt, eta, phi, e))
            jpt = np.hypot(p4[0], p4[1])
            jets.append((jpt, np.arcsinh(p4[2] / jpt), np.arctan2(p4[1], p4[0]), np.sqrt(max(p4[3] ** 2 - p4[:3] @ p4[:3], 0))))
        tr = [np.concatenate(x) for x in zip(*parts["EFlowTrack"])]
        if nan_row == ev:
            tr[0][0] = np.nan
        q = rng.choice([-1, 1], len(tr[0]))
        pid = np.where(rng.random(len(q)) < 0.1, 11 * -q, 211 * q)
        for f, v in (("PT", tr[0]), ("Eta", tr[1]), ("Phi", tr[2]), ("Charge", q.astype(np.int32)),
                     ("PID", pid.astype(np.int32))):
            coll["EFlowTrack"][f].append(v)
        coll["EFlowTrack"]["D0"].append(rng.normal(0, 0.05, len(q)))
        for c in ("EFlowPhoton", "EFlowNeutralHadron"):
            pt, eta, phi, e = (np.concatenate(x) for x in zip(*parts[c]))
            for f, v in (("ET", pt), ("Eta", eta), ("Phi", phi), ("E", e)):
                coll[c][f].append(v)
        for f, i in (("PT", 0), ("Eta", 1), ("Phi", 2), ("Mass", 3)):
            coll["FatJet"][f].append(np.array([j[i] for j in jets]))
        coll["MissingET"]["MET"].append(np.array([rng.uniform(1, 50)]))
        coll["MissingET"]["Phi"].append(np.array([0.1]))
        coll["Event"]["Weight"].append(np.array([2.0]))
    data = {c: ak.zip({f: ak.Array(v) for f, v in fs.items()}) for c, fs in coll.items()}
    with uproot.recreate(path) as f:
        f["Delphes"] = data
    return coll


def test_delphes_recluster_matches_fatjet(tmp_path):
    src = tmp_path / "delphes.root"
    coll = write_delphes(src)
    ds = import_dataset("delphes", [src], tmp_path / "ds", chunk_size=5, jet_pt_min=50.0)
    ev = ds.arrays()
    assert len(ev) == 12 and len(ds.chunks) == 3
    assert ak.all(ak.num(ev.jets) == 2)
    ref = ev.delphes_jets
    np.testing.assert_allclose(ak.to_numpy(ev.jets.pt), ak.to_numpy(ref.pt), rtol=1e-4)
    np.testing.assert_allclose(ak.to_numpy(ev.jets.mass), ak.to_numpy(ref.mass), rtol=1e-3)
    assert ak.all(ev.jets.n_constituents == 22)
    c = ev.jets.constituents
    types = ak.to_numpy(ak.flatten(c["type"], axis=None))
    assert set(np.unique(types).tolist()) <= {0, 1, 3, 4}
    assert np.sum(types == 3) == 12 * 2 * 6 and np.sum(types == 4) == 12 * 2 * 4
    assert "d0" in ak.fields(c)
    np.testing.assert_allclose(ak.to_numpy(ev.met_pt), np.concatenate(coll["MissingET"]["MET"]), rtol=1e-6)
    assert ak.all(ev.weight == 2.0)
    assert ds.manifest["jets"]["radius"] == 0.8


def test_delphes_nan_is_reported(tmp_path):
    src = tmp_path / "bad.root"
    write_delphes(src, n_events=4, nan_row=2)
    from darkshower.errors import InputFormatError

    with pytest.raises(InputFormatError, match=r"bad\.root.*NaN/inf.*row 2"):
        import_dataset("delphes", [src], tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_delphes_missing_branches_named(tmp_path):
    src = tmp_path / "nojets.root"
    with uproot.recreate(src) as f:
        f["Delphes"] = {"EFlowTrack": ak.zip({"PT": ak.Array([[1.0]]), "Eta": ak.Array([[0.0]])})}
    from darkshower.errors import InputFormatError

    with pytest.raises(InputFormatError, match=r"lacks EFlowTrack\.Phi.*EFlowPhoton\.ET"):
        import_dataset("delphes", [src], tmp_path / "ds")
