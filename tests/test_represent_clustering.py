"""The compiled clustering against a slow, independent textbook reference.

The reference below is plain Python on global 4-vectors (no nearest-neighbour caching, no local
frame, phi differences wrapped each time): it reclusters each jet with C/A and exclusive kt by
the O(n^3) pairwise search and derives the Lund trees, soft drop, ECFs and N-subjettiness
from its trees. The compiled kernels (represent/kernels/clustering.py, shared by the Lund and
observables kernels) must give the same trees -- same declustering sequence, same members of
every branch, same parent -> child edges -- and the same numbers. Deterministic random jets of
2..12 massive constituents, some straddling phi = +-pi.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest

from darkshower.represent.lund import lund_graphs
from darkshower.represent.observables import jet_observables

# --------------------------------------------------------------------------- reference


def _wrap(x):
    return (x + math.pi) % (2 * math.pi) - math.pi


class Node:
    def __init__(self, p4, leaves, children=None):
        self.px, self.py, self.pz, self.e = p4
        self.leaves = leaves  # frozenset of constituent indices
        self.children = children  # (a, b) or None for a constituent
        self.pt = math.hypot(self.px, self.py)
        self.phi = math.atan2(self.py, self.px)
        self.y = 0.5 * math.log((self.e + self.pz) / (self.e - self.pz))

    @property
    def mass(self):
        m2 = self.e ** 2 - self.px ** 2 - self.py ** 2 - self.pz ** 2
        return math.sqrt(m2) if m2 > 0 else 0.0


def _dr2(a, b):
    return (a.y - b.y) ** 2 + _wrap(a.phi - b.phi) ** 2


def _leaves(pt, eta, phi, m):
    out = []
    for i in range(len(pt)):
        e = math.sqrt((pt[i] * math.cosh(eta[i])) ** 2 + m[i] ** 2)
        p4 = (pt[i] * math.cos(phi[i]), pt[i] * math.sin(phi[i]), pt[i] * math.sinh(eta[i]), e)
        out.append(Node(p4, frozenset([i])))
    return out


def ref_cluster(leaves, kt: bool, record=()):
    """Textbook sequential recombination down to one node (no beam distance), E-scheme.

    Returns the root and {k: list of the k active nodes} for k in ``record`` (exclusive jets)."""
    active = list(leaves)
    rec = {}
    while len(active) > 1:
        if len(active) in record:
            rec[len(active)] = list(active)
        best = None
        for i in range(len(active)):
            for j in range(i + 1, len(active)):
                a, b = active[i], active[j]
                d = _dr2(a, b) * (min(a.pt, b.pt) ** 2 if kt else 1.0)
                if best is None or d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        a, b = active[i], active[j]
        p4 = (a.px + b.px, a.py + b.py, a.pz + b.pz, a.e + b.e)
        merged = Node(p4, a.leaves | b.leaves, (a, b))
        active = [x for k, x in enumerate(active) if k not in (i, j)] + [merged]
    if 1 in record:
        rec[1] = list(active)
    return active[0], rec


def _split(node):
    a, b = node.children
    return (a, b) if a.pt >= b.pt else (b, a)


def _lund_features(node):
    a, b = _split(node)
    dy = b.y - a.y
    dp = _wrap(b.phi - a.phi)
    dr = math.hypot(dy, dp)
    z = b.pt / (a.pt + b.pt)
    return [math.log(b.pt * dr), math.log(dr), math.log(z), math.log(node.mass), math.atan2(dy, dp)]


def ref_lund_tree(root):
    """Pre-order walk, harder branch first: (features, level, parent index, softer-branch leaves)."""
    nodes = []

    def visit(node, level, parent):
        if node.children is None:
            return
        a, b = _split(node)
        me = len(nodes)
        nodes.append((_lund_features(node), level, parent, b.leaves))
        visit(a, level, me)
        visit(b, level + 1, me)

    visit(root, 0, -1)
    return nodes


def ref_observables(leaves, zcut=0.1, r0=0.8):
    root, _ = ref_cluster(leaves, kt=False)
    # primary Lund plane and soft drop (beta = 0)
    node, sd, n_prim, n_kt0, max_lnkt = root, None, 0, 0, -math.inf
    while node.children is not None:
        a, b = _split(node)
        lnkt = _lund_features(node)[0]
        n_prim += 1
        n_kt0 += lnkt > 0
        max_lnkt = max(max_lnkt, lnkt)
        if sd is None and b.pt / (a.pt + b.pt) > zcut:
            sd = node
        node = a
    sd = sd if sd is not None else node
    out = {"mass": root.mass, "msoftdrop": sd.mass, "pt_softdrop": sd.pt, "n_softdrop": len(sd.leaves),
           "lund_n_primary": n_prim, "lund_n_primary_lnkt_gt0": n_kt0,
           "lund_max_lnkt": max_lnkt if n_prim else 0.0}
    # ECFs (beta = 1) on the groomed constituents, brute force
    g = [leaves[i] for i in sorted(sd.leaves)]
    tot = sum(p.pt for p in g)
    z = [p.pt / tot for p in g]
    d = [[math.sqrt(_dr2(p, q)) for q in g] for p in g]
    e2 = e3 = g3 = 0.0
    m = len(g)
    for i in range(m):
        for j in range(i + 1, m):
            e2 += z[i] * z[j] * d[i][j]
            for k in range(j + 1, m):
                prods = sorted([d[i][j] * d[i][k], d[i][j] * d[j][k], d[i][k] * d[j][k]])
                e3 += z[i] * z[j] * z[k] * d[i][j] * d[i][k] * d[j][k]
                g3 += z[i] * z[j] * z[k] * prods[0]
    out.update(c2=e3 / e2 ** 2, d2=e3 / e2 ** 3, n2=g3 / e2 ** 2)
    # N-subjettiness (beta = 1): exclusive-kt axes, then one-pass minimisation
    _, rec = ref_cluster(leaves, kt=True, record=(1, 2, 3))
    spt = sum(p.pt for p in leaves)
    for nax in (1, 2, 3):
        if len(leaves) <= nax:
            out[f"tau{nax}"] = 0.0
            continue
        axes = [[x.y, x.phi] for x in rec[nax]]
        for _ in range(1000):
            sums = [[0.0, 0.0, 0.0] for _ in axes]
            for p in leaves:
                dist = [(p.y - ay) ** 2 + _wrap(p.phi - ap) ** 2 for ay, ap in axes]
                k = int(np.argmin(dist))
                w = p.pt / math.sqrt(1e-8 + dist[k])
                sums[k][0] += w * p.y
                sums[k][1] += w * (axes[k][1] + _wrap(p.phi - axes[k][1]))
                sums[k][2] += w
            shift = 0.0
            for k, (sy, sp, sw) in enumerate(sums):
                new = [sy / sw, sp / sw] if sw > 0 else axes[k]
                shift += math.hypot(new[0] - axes[k][0], _wrap(new[1] - axes[k][1]))
                axes[k] = new
            if shift / len(axes) <= 1e-4:
                break
        num = sum(p.pt * min(math.sqrt((p.y - ay) ** 2 + _wrap(p.phi - ap) ** 2) for ay, ap in axes)
                  for p in leaves)
        out[f"tau{nax}"] = num / (spt * r0)
    return out


# --------------------------------------------------------------------------- inputs


def _random_jets(n_jets=24, seed=20240611):
    rng = np.random.default_rng(seed)
    jets = []
    for j in range(n_jets):
        n = 2 + j % 11  # 2 .. 12 constituents
        eta0 = rng.uniform(-2.0, 2.0)
        phi0 = math.pi - 0.05 if j % 3 == 0 else rng.uniform(-math.pi, math.pi)  # every third straddles +-pi
        pt = np.sort(rng.exponential(40.0, n) + 1.0)[::-1]
        eta = eta0 + rng.normal(0, 0.25, n)
        phi = np.array([_wrap(x) for x in phi0 + rng.normal(0, 0.25, n)])
        mass = rng.uniform(0.0, 0.5, n)
        jets.append((pt, eta, phi, mass))
    return jets


def _as_array(jets):
    recs = []
    for pt, eta, phi, mass in jets:
        e = np.sqrt((pt * np.cosh(eta)) ** 2 + mass ** 2)
        cons = [{"pt": float(pt[i]), "eta": float(eta[i]), "phi": float(phi[i]), "e": float(e[i]),
                 "charge": 0, "pid": 0, "type": 0} for i in range(len(pt))]
        recs.append({"pt": float(pt.sum()), "eta": float(eta[0]), "phi": float(phi[0]), "mass": 0.0,
                     "constituents": cons})
    return ak.Array(recs)


JETS = _random_jets()


# --------------------------------------------------------------------------- tests


def test_reference_finds_a_nontrivial_tree():
    """Guard on the inputs: wide-angle splittings, secondary branches and phi wrap-around all occur."""
    levels = [lvl for jet in JETS for (_, lvl, _, _) in ref_lund_tree(ref_cluster(_leaves(*jet), kt=False)[0])]
    assert max(levels) >= 2
    assert any(np.ptp(phi) > math.pi for _, _, phi, _ in JETS)


@pytest.mark.parametrize("max_level", [0, 1, -1])
def test_lund_trees_match_the_reference(max_level):
    g = lund_graphs(_as_array(JETS), max_level=max_level)
    node_off = g.node_offsets
    edge_off = np.concatenate([[0], np.cumsum(g.edge_counts)])
    for j, jet in enumerate(JETS):
        root, _ = ref_cluster(_leaves(*jet), kt=False)
        ref = [r for r in ref_lund_tree(root) if max_level < 0 or r[1] <= max_level]
        x = g.x[node_off[j]:node_off[j + 1]].astype(np.float64)
        assert len(x) == len(ref), f"jet {j}: {len(x)} declusterings, reference {len(ref)}"
        np.testing.assert_allclose(x, np.array([r[0] for r in ref]).reshape(-1, 5), rtol=2e-6, atol=2e-6,
                                   err_msg=f"jet {j}")
        assert g.level[node_off[j]:node_off[j + 1]].tolist() == [r[1] for r in ref]
        # edges parent -> child, local node indices, in the reference's order
        e = g.edge_index[:, edge_off[j]:edge_off[j + 1]] - node_off[j]
        ref_edges = [(r[2], i) for i, r in enumerate(ref) if r[2] >= 0]
        assert sorted(map(tuple, e.T.tolist())) == sorted(ref_edges)
        if max_level == 0:  # the primary chain: declustering i has parent i - 1
            assert ref_edges == [(i - 1, i) for i in range(1, len(ref))]


def test_observables_match_the_reference():
    df = jet_observables(_as_array(JETS))
    for j, jet in enumerate(JETS):
        ref = ref_observables(_leaves(*jet))
        row = df.iloc[j]
        for name, want in ref.items():
            assert row[name] == pytest.approx(want, rel=1e-9, abs=1e-12), f"jet {j}: {name} {row[name]} != {want}"
