"""Lund-plane graphs: the Cambridge/Aachen declustering tree of each jet as a graph.

Each node is one declustering j -> a + b (a the harder branch, pT_a >= pT_b) with features
``ln kT, ln dR, ln z, ln m, psi``: kT = pT_b dR_ab, z = pT_b / (pT_a + pT_b), m the mass of j,
psi = atan2(y_b - y_a, phi_b - phi_a). Edges go from a declustering to the declusterings of
its two branches. ``max_level`` keeps the primary plane (0), primary + secondary (1), ... or
the full tree (-1). The batch is flattened (PyTorch-Geometric style).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkshower.represent import kernels as K
from darkshower.represent.common import JetBatch, jet_batch

LUND_FEATURES = ("ln_kt", "ln_dr", "ln_z", "ln_m", "psi")


@dataclass
class LundGraphs:
    x: np.ndarray  # (n_nodes, 5) float32
    edge_index: np.ndarray  # (2, n_edges) int64, global node indices
    level: np.ndarray  # (n_nodes,) int8: 0 primary, 1 secondary, ...
    node_counts: np.ndarray  # (n_graphs,)
    edge_counts: np.ndarray  # (n_graphs,)
    event_id: np.ndarray
    jet_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.node_counts)

    @property
    def node_offsets(self) -> np.ndarray:
        o = np.zeros(len(self.node_counts) + 1, np.int64)
        np.cumsum(self.node_counts, out=o[1:])
        return o

    @property
    def batch(self) -> np.ndarray:
        """Graph index of every node."""
        return np.repeat(np.arange(len(self.node_counts)), self.node_counts)

    def select(self, graphs) -> LundGraphs:
        """Sub-batch of the graphs ``graphs`` (indices), re-indexed."""
        g = np.atleast_1d(np.asarray(graphs, np.int64))
        noff = self.node_offsets
        eoff = np.zeros(len(self.edge_counts) + 1, np.int64)
        np.cumsum(self.edge_counts, out=eoff[1:])
        nc = self.node_counts[g]
        ec = self.edge_counts[g]
        new_noff = np.zeros(len(g) + 1, np.int64)
        np.cumsum(nc, out=new_noff[1:])
        npos = np.repeat(noff[g] - new_noff[:-1], nc) + np.arange(new_noff[-1])
        new_eoff = np.zeros(len(g) + 1, np.int64)
        np.cumsum(ec, out=new_eoff[1:])
        epos = np.repeat(eoff[g] - new_eoff[:-1], ec) + np.arange(new_eoff[-1])
        shift = np.repeat(new_noff[:-1] - noff[g], ec)
        return LundGraphs(self.x[npos], self.edge_index[:, epos] + shift, self.level[npos], nc, ec,
                          self.event_id[g], self.jet_idx[g])


def lund_graphs(data, max_level: int = -1, undirected: bool = False, max_jets: int | None = None,
                use_weights: bool = True) -> LundGraphs:
    b: JetBatch = jet_batch(data, max_jets=max_jets, use_weights=use_weights)
    cap = int(np.clip(b.counts - 1, 0, None).sum())
    feats = np.empty((cap, 5), np.float64)
    level = np.empty(cap, np.int64)
    edges = np.empty((2, cap), np.int64)
    counts = np.zeros(b.n_jets, np.int64)
    ecounts = np.zeros(b.n_jets, np.int64)
    nn, ne = (0, 0)
    if b.n_jets:
        nn, ne = K.lund_kernel(b.offsets, b.pt, b.eta, b.phi, b.e, int(max_level), feats, level, edges, counts, ecounts)
    edge_index = edges[:, :ne]
    if undirected:
        # interleave per graph so that edges stay grouped by graph
        jet_of_edge = np.repeat(np.arange(b.n_jets), ecounts)
        both = np.concatenate([edge_index, edge_index[::-1]], axis=1)
        order = np.argsort(np.concatenate([jet_of_edge, jet_of_edge]), kind="stable")
        edge_index = both[:, order]
        ecounts = 2 * ecounts
    return LundGraphs(feats[:nn].astype(np.float32), np.ascontiguousarray(edge_index), level[:nn].astype(np.int8),
                      counts, ecounts, b.event_id, b.jet_idx)
