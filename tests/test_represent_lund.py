"""Lund-plane graphs: known declustering sequence, agreement with FastJet, graph bookkeeping."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from darkshower.represent.lund import lund_graphs
from darkshower.represent.toys import toy_jets


def _jet(parts):
    """One jet from (pt, eta, phi) massless particles."""
    cons = [{"pt": pt, "eta": eta, "phi": phi, "e": pt * np.cosh(eta), "charge": 0, "pid": 22, "type": 3}
            for pt, eta, phi in parts]
    return ak.Array([{"pt": 1.0, "eta": 0.0, "phi": 0.0, "mass": 0.0, "n_constituents": len(parts), "constituents": cons}])


def test_primary_plane_reproduces_known_subjets():
    # A (hard) at the origin, C close to A (dR 0.1), B wide (dR 0.4): C/A merges A+C first, then +B
    g = lund_graphs(_jet([(500.0, 0.0, 0.0), (100.0, 0.4, 0.0), (50.0, 0.0, 0.1)]), max_level=0)
    assert g.node_counts.tolist() == [2]
    assert g.edge_index.T.tolist() == [[0, 1]]
    x = g.x.astype(np.float64)
    # first declustering: (A+C) vs B
    ac_eta = 0.0  # A and C both at eta 0 (rapidity = eta for massless)
    ac_phi = np.arctan2(50 * np.sin(0.1), 500 + 50 * np.cos(0.1))
    ac_pt = np.hypot(500 + 50 * np.cos(0.1), 50 * np.sin(0.1))
    d1 = np.hypot(0.4 - ac_eta, ac_phi)
    np.testing.assert_allclose(np.exp(x[0, 1]), d1, rtol=1e-5)
    np.testing.assert_allclose(np.exp(x[0, 0]), 100 * d1, rtol=1e-5)
    np.testing.assert_allclose(np.exp(x[0, 2]), 100 / (100 + ac_pt), rtol=1e-5)
    # second: A vs C
    np.testing.assert_allclose(np.exp(x[1, 1]), 0.1, rtol=1e-5)
    np.testing.assert_allclose(np.exp(x[1, 0]), 5.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(x[1, 2]), 50 / 550, rtol=1e-5)
    np.testing.assert_allclose(x[1, 4], np.arctan2(0.0, 0.1), atol=1e-6)  # psi: C is along +phi of A


def test_primary_matches_fastjet_declusterings():
    fastjet = pytest.importorskip("fastjet")
    jets = toy_jets(20, n_prongs=2, seed=11)
    c = jets.constituents
    pt, eta, phi, e = (ak.values_astype(c[f], np.float64) for f in ("pt", "eta", "phi", "e"))
    p4 = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "E": e},
                with_name="Momentum4D")
    cs = fastjet.ClusterSequence(p4, fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0))
    ref = cs.exclusive_jets_lund_declusterings(1)[:, 0]
    g = lund_graphs(jets, max_level=0)
    ours = np.split(g.x.astype(np.float64), np.cumsum(g.node_counts)[:-1])
    for j in range(len(jets)):
        np.testing.assert_allclose(np.exp(ours[j][:, 1]), ak.to_numpy(ref[j].Delta), rtol=1e-6)
        np.testing.assert_allclose(np.exp(ours[j][:, 0]), ak.to_numpy(ref[j].kt), rtol=1e-6)


def test_levels_edges_and_select():
    jets = toy_jets(6, seed=2, n_constituents=(20, 30))
    full = lund_graphs(jets, max_level=-1)
    prim = lund_graphs(jets, max_level=0)
    sec = lund_graphs(jets, max_level=1)
    n = ak.to_numpy(jets.n_constituents)
    assert (full.node_counts == n - 1).all()  # a full binary tree has n-1 internal nodes
    assert (full.edge_counts == n - 2).all()
    assert (prim.node_counts <= sec.node_counts).all() and (sec.node_counts <= full.node_counts).all()
    assert (prim.level == 0).all() and set(np.unique(sec.level)) <= {0, 1}
    # edges stay inside their graph and point parent -> child (child created later)
    b = full.batch
    assert (b[full.edge_index[0]] == b[full.edge_index[1]]).all()
    assert (full.edge_index[0] < full.edge_index[1]).all()
    sub = full.select([3, 1])
    ref3 = full.select([3])
    np.testing.assert_array_equal(sub.x[: sub.node_counts[0]], ref3.x)
    np.testing.assert_array_equal(sub.edge_index[:, : sub.edge_counts[0]], ref3.edge_index)
    und = lund_graphs(jets, undirected=True)
    assert und.edge_index.shape[1] == 2 * full.edge_index.shape[1]
