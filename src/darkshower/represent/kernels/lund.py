"""Lund trees: one node per C/A declustering, edges parent -> child."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from darkshower.represent.kernels.clustering import _cluster, _init_nn
from darkshower.represent.kernels.common import _JIT, _jet_axis_phi, _load_jet, _mass


@nb.njit(**_JIT)
def lund_kernel(offsets, pt, eta, phi, e, max_level, feats, level, edges, counts, ecounts):
    """C/A Lund trees: one node per declustering (up to ``max_level`` soft-branch changes; -1 = all).

    feats[:, :] = (ln kT, ln dR, ln z, ln m, psi); edges parent -> child (global node indices).
    Returns (n_nodes, n_edges).
    """
    nj = len(offsets) - 1
    maxn = 1
    for j in range(nj):
        c = offsets[j + 1] - offsets[j]
        if c > maxn:
            maxn = c
    size = 2 * maxn + 2
    npx = np.empty(size)
    npy = np.empty(size)
    npz = np.empty(size)
    ne = np.empty(size)
    ny = np.empty(size)
    nphi = np.empty(size)
    npt = np.empty(size)
    ch1 = np.empty(size, np.int64)
    ch2 = np.empty(size, np.int64)
    act = np.empty(size, np.int64)
    nn = np.empty(size, np.int64)
    nnd = np.empty(size)
    tmp = np.empty(size)
    sy = np.empty(size)
    sp = np.empty(size)
    st_node = np.empty(size + 2, np.int64)
    st_lvl = np.empty(size + 2, np.int64)
    st_par = np.empty(size + 2, np.int64)
    sk2 = np.empty(size)
    nn0 = np.empty(size, np.int64)
    nnd0 = np.empty(size)
    norec = np.empty((0, 3, 4))
    rec_n = np.empty(3, np.int64)
    o = 0
    ne_out = 0
    tiny = 1e-30
    for j in range(nj):
        s = offsets[j]
        n = offsets[j + 1] - s
        start = o
        start_e = ne_out
        if n >= 2:
            phi0 = _jet_axis_phi(s, n, pt, phi)
            _load_jet(s, n, pt, eta, phi, e, phi0, npx, npy, npz, ne, ny, nphi, npt)
            _init_nn(n, ny, nphi, nn0, nnd0, tmp)
            nnode = _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
                             nn0, nnd0, 0, 1.0, norec, rec_n)  # C/A, R = 1
            top = 1
            st_node[0] = nnode - 1
            st_lvl[0] = 0
            st_par[0] = -1
            while top > 0:
                top -= 1
                node = st_node[top]
                lvl = st_lvl[top]
                par = st_par[top]
                if node < n or (max_level >= 0 and lvl > max_level):
                    continue
                a = ch1[node]
                b = ch2[node]
                if npt[a] < npt[b]:
                    a, b = b, a
                dy = ny[b] - ny[a]
                dp = nphi[b] - nphi[a]
                dr = math.sqrt(dy * dy + dp * dp)
                ptsum = npt[a] + npt[b]
                z = npt[b] / ptsum if ptsum > 0 else 0.0
                feats[o, 0] = math.log(max(npt[b] * dr, tiny))
                feats[o, 1] = math.log(max(dr, tiny))
                feats[o, 2] = math.log(max(z, tiny))
                feats[o, 3] = math.log(max(_mass(npx[node], npy[node], npz[node], ne[node]), tiny))
                feats[o, 4] = math.atan2(dy, dp)
                level[o] = lvl
                if par >= 0:
                    edges[0, ne_out] = par
                    edges[1, ne_out] = o
                    ne_out += 1
                st_node[top] = b
                st_lvl[top] = lvl + 1
                st_par[top] = o
                st_node[top + 1] = a
                st_lvl[top + 1] = lvl
                st_par[top + 1] = o
                top += 2
                o += 1
        counts[j] = o - start
        ecounts[j] = ne_out - start_e
    return o, ne_out
