"""Jet observables: N-subjettiness, energy correlation functions, soft drop, primary Lund summary."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from darkshower.represent.kernels.clustering import _cluster, _collect_leaves, _init_nn
from darkshower.represent.kernels.common import _JIT, INF, _jet_axis_phi, _load_jet, _mass, _rap, _wrap


@nb.njit(**_JIT)
def _tau(n, ny, nphi, npt, ax_y, ax_phi, nax, beta):
    num = 0.0
    for i in range(n):
        best = INF
        for k in range(nax):
            dy = ny[i] - ax_y[k]
            dp = _wrap(nphi[i] - ax_phi[k])
            d = dy * dy + dp * dp
            if d < best:
                best = d
        if beta == 1.0:
            num += npt[i] * math.sqrt(best)
        else:
            num += npt[i] * best ** (0.5 * beta)
    return num


@nb.njit(**_JIT)
def _one_pass(n, ny, nphi, npt, ax_y, ax_phi, nax, beta, precision, halt, assign, wy, wp, ww):
    """One pass of the iterative axis minimisation (the one-pass-optimised axes of N-subjettiness)."""
    p2 = precision * precision
    for _ in range(halt):
        for k in range(nax):
            wy[k] = 0.0
            wp[k] = 0.0
            ww[k] = 0.0
        for i in range(n):
            best = INF
            kb = 0
            for k in range(nax):
                dy = ny[i] - ax_y[k]
                dp = _wrap(nphi[i] - ax_phi[k])
                d = dy * dy + dp * dp
                if d < best:
                    best = d
                    kb = k
            if beta == 1.0:
                w = npt[i] / math.sqrt(p2 + best)
            elif beta == 2.0:
                w = npt[i]
            else:
                w = npt[i] * (p2 + best) ** (0.5 * beta - 1.0)
            wy[kb] += w * ny[i]
            wp[kb] += w * (ax_phi[kb] + _wrap(nphi[i] - ax_phi[kb]))
            ww[kb] += w
        cmp = 0.0
        for k in range(nax):
            if ww[k] > 0:
                y = wy[k] / ww[k]
                p = wp[k] / ww[k]
            else:
                y = ax_y[k]
                p = ax_phi[k]
            dy = y - ax_y[k]
            dp = _wrap(p - ax_phi[k])
            cmp += math.sqrt(dy * dy + dp * dp)
            ax_y[k] = y
            ax_phi[k] = p
        cmp /= nax
        if cmp <= precision:  # mean axis displacement (not squared)
            break


@nb.njit(fastmath=True, boundscheck=False, **_JIT)
def _ecf(idx, m, ny, nphi, npt, dmat, z):
    """Normalised ECFs with beta=1 on the nodes idx[:m]: (e2, e3, 2e3) (pt_R measure).

    The triple sum over i<j<k is evaluated as (1/3) sum_{i<j} sum_{all k}: the k = i, j terms
    vanish exactly (zero diagonal), and the full-length inner loop over k (zero-padded to a
    multiple of 32) is SIMD-vectorised. ``dmat`` needs (m+32)^2 and ``z`` m+32 entries.
    """
    tot = 0.0
    for a in range(m):
        tot += npt[idx[a]]
    if tot <= 0:
        return 0.0, 0.0, 0.0
    mp = (m + 31) & ~31
    for a in range(m):
        z[a] = npt[idx[a]] / tot
    for a in range(m, mp):
        z[a] = 0.0
    D = dmat[: mp * mp].reshape((mp, mp))
    for a in range(m):
        ia = idx[a]
        D[a, a] = 0.0
        for b in range(a + 1, m):
            ib = idx[b]
            dy = ny[ia] - ny[ib]
            dp = nphi[ia] - nphi[ib]
            d = math.sqrt(dy * dy + dp * dp)
            D[a, b] = d
            D[b, a] = d
        for b in range(m, mp):
            D[a, b] = 0.0
    e2 = 0.0
    e3 = 0.0
    g3 = 0.0
    for i in range(m):
        zi = z[i]
        Di = D[i]
        for j in range(i + 1, m):
            Dj = D[j]
            dij = Di[j]
            zij = zi * z[j]
            e2 += zij * dij
            s3 = 0.0
            sg = 0.0
            for k in range(mp):
                dik = Di[k]
                djk = Dj[k]
                zk = z[k]
                pk = dik * djk
                s3 += zk * pk
                q = dij * min(dik, djk)  # min of the three pair products = product of the two smallest
                sg += zk * min(q, pk)
            e3 += zij * dij * s3
            g3 += zij * sg
    return e2, e3 / 3.0, g3 / 3.0


N_OBS = 24
OBS_COLUMNS = (
    "pt", "eta", "phi", "mass", "msoftdrop", "pt_softdrop", "tau1", "tau2", "tau3", "tau21", "tau32",
    "c2", "d2", "n2", "girth", "ptd", "axis_major", "axis_minor", "n_constituents", "n_charged",
    "n_softdrop", "lund_n_primary", "lund_n_primary_lnkt_gt0", "lund_max_lnkt",
)


@nb.njit(**_JIT)
def observables_kernel(offsets, pt, eta, phi, e, charge, zcut, sd_beta, r0, tau_beta, ecf_groomed, out):
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
    stack = np.empty(size + 2, np.int64)
    leaves = np.empty(size, np.int64)
    dmat = np.empty((maxn + 32) * (maxn + 32))
    zbuf = np.empty(maxn + 32)
    sk2 = np.empty(size)
    nn0 = np.empty(size, np.int64)
    nnd0 = np.empty(size)
    rec = np.empty((3, 3, 4))
    rec_n = np.empty(3, np.int64)
    norec = np.empty((0, 3, 4))
    ax_y = np.empty(3)
    ax_p = np.empty(3)
    wy = np.empty(3)
    wp = np.empty(3)
    ww = np.empty(3)
    assign = np.empty(size, np.int64)
    for j in range(nj):
        s = offsets[j]
        n = offsets[j + 1] - s
        for c in range(N_OBS):
            out[j, c] = 0.0
        out[j, 18] = n
        if n == 0:
            continue
        phi0 = _jet_axis_phi(s, n, pt, phi)
        _load_jet(s, n, pt, eta, phi, e, phi0, npx, npy, npz, ne, ny, nphi, npt)
        jx = 0.0
        jy = 0.0
        jz = 0.0
        je = 0.0
        spt = 0.0
        spt2 = 0.0
        nch = 0
        for i in range(n):
            jx += npx[i]
            jy += npy[i]
            jz += npz[i]
            je += ne[i]
            spt += npt[i]
            spt2 += npt[i] * npt[i]
            if charge[s + i] != 0:
                nch += 1
        jpt = math.sqrt(jx * jx + jy * jy)
        jphi_l = math.atan2(jy, jx)
        jyr = _rap(jx, jy, jz, je)
        out[j, 0] = jpt
        out[j, 1] = math.asinh(jz / jpt) if jpt > 0 else 0.0
        out[j, 2] = _wrap(phi0 + jphi_l)
        out[j, 3] = _mass(jx, jy, jz, je)
        out[j, 19] = nch
        # girth, pT_D, axes (rapidity-azimuth relative to the jet axis)
        g = 0.0
        sw = 0.0
        my = 0.0
        mp = 0.0
        for i in range(n):
            dy = ny[i] - jyr
            dp = _wrap(nphi[i] - jphi_l)
            g += npt[i] * math.sqrt(dy * dy + dp * dp)
            w = npt[i] * npt[i]
            sw += w
            my += w * dy
            mp += w * dp
        out[j, 14] = g / spt if spt > 0 else 0.0
        out[j, 15] = math.sqrt(spt2) / spt if spt > 0 else 0.0
        if sw > 0:
            my /= sw
            mp /= sw
            cyy = 0.0
            cpp = 0.0
            cyp = 0.0
            for i in range(n):
                dy = ny[i] - jyr - my
                dp = _wrap(nphi[i] - jphi_l) - mp
                w = npt[i] * npt[i]
                cyy += w * dy * dy
                cpp += w * dp * dp
                cyp += w * dy * dp
            cyy /= sw
            cpp /= sw
            cyp /= sw
            tr = 0.5 * (cyy + cpp)
            det = math.sqrt(max(0.25 * (cyy - cpp) ** 2 + cyp * cyp, 0.0))
            out[j, 16] = math.sqrt(max(tr + det, 0.0))
            out[j, 17] = math.sqrt(max(tr - det, 0.0))
        # --- N-subjettiness with one-pass optimised exclusive-kt axes -----------------------
        rec_n[:] = -1
        _init_nn(n, ny, nphi, nn0, nnd0, tmp)  # leaf nearest neighbours, shared by both passes
        _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
                 nn0, nnd0, 1, 1e-6, rec, rec_n)  # exclusive kt, R = 1000 (no beam)
        norm = spt * r0 ** tau_beta
        for nax in range(1, 4):
            if n <= nax or rec_n[nax - 1] < 0:
                out[j, 5 + nax] = 0.0
                continue
            na = rec_n[nax - 1]
            for q in range(na):
                ax_y[q] = _rap(rec[nax - 1, q, 0], rec[nax - 1, q, 1], rec[nax - 1, q, 2], rec[nax - 1, q, 3])
                ax_p[q] = math.atan2(rec[nax - 1, q, 1], rec[nax - 1, q, 0])
            _one_pass(n, ny, nphi, npt, ax_y, ax_p, na, tau_beta, 1e-4, 1000, assign, wy, wp, ww)
            out[j, 5 + nax] = _tau(n, ny, nphi, npt, ax_y, ax_p, na, tau_beta) / norm if norm > 0 else 0.0
        out[j, 9] = out[j, 7] / out[j, 6] if out[j, 6] > 0 else 0.0
        out[j, 10] = out[j, 8] / out[j, 7] if out[j, 7] > 0 else 0.0
        # --- C/A reclustering: soft drop and the primary Lund plane ------------------------
        # (the kt pass only appended nodes; leaves 0..n-1 are untouched)
        nnode = _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
                         nn0, nnd0, 0, 1.0, norec, rec_n)
        root = nnode - 1
        node = root
        nprim = 0
        nkt0 = 0
        maxkt = -INF
        sd_node = -1
        while node >= n:
            a = ch1[node]
            b = ch2[node]
            if npt[a] < npt[b]:
                a, b = b, a
            dy = ny[a] - ny[b]
            dp = nphi[a] - nphi[b]
            dr = math.sqrt(dy * dy + dp * dp)
            z = npt[b] / (npt[a] + npt[b]) if npt[a] + npt[b] > 0 else 0.0
            kt = npt[b] * dr
            lnkt = math.log(kt) if kt > 0 else -INF
            nprim += 1
            if lnkt > 0:
                nkt0 += 1
            if lnkt > maxkt:
                maxkt = lnkt
            if sd_node < 0:
                thr = zcut if sd_beta == 0.0 else zcut * (dr / r0) ** sd_beta
                if z > thr:
                    sd_node = node
            node = a
        if sd_node < 0:
            sd_node = node  # groomed down to a single constituent
        out[j, 4] = _mass(npx[sd_node], npy[sd_node], npz[sd_node], ne[sd_node])
        out[j, 5] = npt[sd_node]
        out[j, 21] = nprim
        out[j, 22] = nkt0
        out[j, 23] = maxkt if nprim > 0 else 0.0
        if ecf_groomed:
            m = _collect_leaves(sd_node, n, ch1, ch2, stack, leaves)
        else:
            m = n
            for i in range(n):
                leaves[i] = i
        out[j, 20] = m
        e2, e3, g3 = _ecf(leaves, m, ny, nphi, npt, dmat, zbuf)
        if e2 > 0:
            out[j, 11] = e3 / (e2 * e2)
            out[j, 12] = e3 / (e2 * e2 * e2)
            out[j, 13] = g3 / (e2 * e2)
