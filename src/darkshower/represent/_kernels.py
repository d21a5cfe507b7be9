"""Numba kernels: sequential-recombination clustering, N-subjettiness, ECFs, Lund trees, images.

Every kernel walks all jets of a batch inside compiled code (flat constituent arrays plus
``offsets``); there is no per-jet Python loop. Coordinates inside a jet are *local*: rapidity
and azimuth relative to the jet axis (phi wrapped once), so distances never need wrapping again.

Clustering follows the usual pairwise algorithm with nearest-neighbour caching
(O(n^2) per jet): d_ij = min(kt_i^2p, kt_j^2p) dR_ij^2 / R^2, d_iB = kt_i^2p, E-scheme
recombination, rapidity-azimuth distances.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True)
INF = np.inf


@nb.njit(inline="always", **_JIT)
def _rap(px, py, pz, e):
    pt2 = px * px + py * py
    mt2 = e * e - pz * pz
    if mt2 < pt2:
        mt2 = pt2
    if mt2 <= 0.0:
        return 0.0 if pz == 0.0 else (1e3 if pz > 0 else -1e3)
    apz = abs(pz)
    y = math.log((e + apz) / math.sqrt(mt2)) if e + apz > 0 else 0.0
    return y if pz >= 0 else -y


@nb.njit(inline="always", **_JIT)
def _wrap(x):
    while x >= math.pi:
        x -= 2 * math.pi
    while x < -math.pi:
        x += 2 * math.pi
    return x


@nb.njit(**_JIT)
def _load_jet(s, n, pt, eta, phi, e, phi0, npx, npy, npz, ne, ny, nphi, npt):
    """Fill leaf nodes 0..n-1 with local 4-vectors (azimuth relative to phi0)."""
    for i in range(n):
        p = pt[s + i]
        dphi = _wrap(phi[s + i] - phi0)
        px = p * math.cos(dphi)
        py = p * math.sin(dphi)
        pz = p * math.sinh(eta[s + i])
        en = e[s + i]
        npx[i] = px
        npy[i] = py
        npz[i] = pz
        ne[i] = en
        ny[i] = _rap(px, py, pz, en)
        nphi[i] = dphi
        npt[i] = p


@nb.njit(**_JIT)
def _jet_axis_phi(s, n, pt, phi):
    sx = 0.0
    sy = 0.0
    for i in range(s, s + n):
        sx += pt[i] * math.cos(phi[i])
        sy += pt[i] * math.sin(phi[i])
    return math.atan2(sy, sx)


@nb.njit(**_JIT)
def _rescan(x, nact, nn, nnd, sy, sp):
    ya = sy[x]
    pa = sp[x]
    best = INF
    bi = -1
    for t in range(x):
        dy = ya - sy[t]
        dp = pa - sp[t]
        d = dy * dy + dp * dp
        if d < best:
            best = d
            bi = t
    for t in range(x + 1, nact):
        dy = ya - sy[t]
        dp = pa - sp[t]
        d = dy * dy + dp * dp
        if d < best:
            best = d
            bi = t
    nn[x] = bi
    nnd[x] = best


@nb.njit(**_JIT)
def _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, flag, tmp, sy, sp,
             ktmode, inv_r2, use_beam, rec, rec_n):
    """Cluster leaves 0..n-1; merged nodes are appended at n, n+1, ...

    ktmode 1 = kt (momentum factor pt^2), 0 = Cambridge/Aachen. With ``rec`` of shape (3, 3, 4)
    the active (exclusive) jets are recorded when 3, 2, 1 of them remain (kt axes).
    Returns the number of nodes; the last node is the root when there is no beam merging.
    """
    for i in range(n):
        ch1[i] = -1
        ch2[i] = -1
        act[i] = i
        nn[i] = -1
        nnd[i] = INF
        sy[i] = ny[i]
        sp[i] = nphi[i]
    for s in range(n):
        ys = ny[s]
        ps = nphi[s]
        for t in range(s + 1, n):
            dy = ys - ny[t]
            dp = ps - nphi[t]
            d = dy * dy + dp * dp
            if d < nnd[s]:
                nnd[s] = d
                nn[s] = t
            if d < nnd[t]:
                nnd[t] = d
                nn[t] = s
    nact = n
    nnode = n
    recording = rec.shape[0] > 0
    while nact > 1:
        if recording and nact <= 3 and rec_n[nact - 1] < 0:
            rec_n[nact - 1] = nact
            for q in range(nact):
                a = act[q]
                rec[nact - 1, q, 0] = npx[a]
                rec[nact - 1, q, 1] = npy[a]
                rec[nact - 1, q, 2] = npz[a]
                rec[nact - 1, q, 3] = ne[a]
        best = INF
        bs = -1
        bbeam = False
        for s in range(nact):
            a = act[s]
            d = INF
            if nn[s] >= 0:
                if ktmode == 1:
                    k2a = npt[a] * npt[a]
                    b = act[nn[s]]
                    k2b = npt[b] * npt[b]
                    d = nnd[s] * (k2a if k2a < k2b else k2b) * inv_r2
                else:
                    d = nnd[s] * inv_r2
            isb = False
            if use_beam:
                db = npt[a] * npt[a] if ktmode == 1 else 1.0
                if db < d:
                    d = db
                    isb = True
            if d < best:
                best = d
                bs = s
                bbeam = isb
        if bs < 0:
            break
        if not bbeam:
            t = nn[bs]
            sa = bs if bs < t else t
            sb = t if bs < t else bs
            a = act[sa]
            b = act[sb]
            k = nnode
            nnode += 1
            px = npx[a] + npx[b]
            py = npy[a] + npy[b]
            pz = npz[a] + npz[b]
            en = ne[a] + ne[b]
            npx[k] = px
            npy[k] = py
            npz[k] = pz
            ne[k] = en
            npt[k] = math.sqrt(px * px + py * py)
            yk = _rap(px, py, pz, en)
            pk = math.atan2(py, px)
            ny[k] = yk
            nphi[k] = pk
            ch1[k] = a
            ch2[k] = b
            act[sa] = k
            sy[sa] = yk
            sp[sa] = pk
            last = nact - 1
            if sb != last:
                act[sb] = act[last]
                nn[sb] = nn[last]
                nnd[sb] = nnd[last]
                sy[sb] = sy[last]
                sp[sb] = sp[last]
            nact -= 1
            # one pass: distances to the new node, stale neighbours, renamed slot
            best = INF
            bi = -1
            for x in range(nact):
                if x == sa:
                    continue
                dy = yk - sy[x]
                dp = pk - sp[x]
                d = dy * dy + dp * dp
                if d < best:
                    best = d
                    bi = x
                nx = nn[x]
                if nx == sa or nx == sb:
                    _rescan(x, nact, nn, nnd, sy, sp)
                else:
                    if nx == last:
                        nn[x] = sb
                    if d < nnd[x]:
                        nnd[x] = d
                        nn[x] = sa
            nn[sa] = bi
            nnd[sa] = best
        else:
            s = bs
            for x in range(nact):
                flag[x] = nn[x] == s
            last = nact - 1
            if s != last:
                act[s] = act[last]
                nn[s] = nn[last]
                nnd[s] = nnd[last]
                flag[s] = flag[last]
                sy[s] = sy[last]
                sp[s] = sp[last]
            nact -= 1
            if s != last:
                for x in range(nact):
                    if nn[x] == last:
                        nn[x] = s
            for x in range(nact):
                if flag[x]:
                    _rescan(x, nact, nn, nnd, sy, sp)
    if recording and nact >= 1 and rec_n[nact - 1] < 0:
        rec_n[nact - 1] = nact
        for q in range(nact):
            a = act[q]
            rec[nact - 1, q, 0] = npx[a]
            rec[nact - 1, q, 1] = npy[a]
            rec[nact - 1, q, 2] = npz[a]
            rec[nact - 1, q, 3] = ne[a]
    return nnode


@nb.njit(**_JIT)
def _init_nn(n, ny, nphi, nn0, nnd0, row):
    """Nearest geometric neighbour (dR^2) of every leaf; shared by the kt and C/A passes.

    Row by row: a branch-free (vectorised) distance pass, then the first index of the row
    minimum -- the same neighbour (ties: lowest index) and distance as the pairwise scan.
    """
    for s in range(n):
        ys = ny[s]
        ps = nphi[s]
        for t in range(n):
            dy = ys - ny[t]
            dp = ps - nphi[t]
            row[t] = dy * dy + dp * dp
        row[s] = INF
        best = _row_min(row, n)
        bi = -1
        if best < INF:
            for t in range(n):
                if row[t] == best:
                    bi = t
                    break
        nn0[s] = bi
        nnd0[s] = best


@nb.njit(fastmath={"nnan", "ninf", "nsz", "reassoc"}, **_JIT)
def _row_min(row, n):
    best = INF
    for t in range(n):
        best = min(best, row[t])
    return best


@nb.njit(inline="always", **_JIT)
def _dij(x, nn, nnd, sk2, ktmode, inv_r2):
    nx = nn[x]
    if nx < 0:
        return INF
    if ktmode == 1:
        ka = sk2[x]
        kb = sk2[nx]
        return nnd[x] * (ka if ka < kb else kb) * inv_r2
    return nnd[x] * inv_r2


@nb.njit(**_JIT)
def _cluster_nobeam(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
                    nn0, nnd0, ktmode, inv_r2, rec, rec_n):
    """Same clustering (and identical results, ties included) as :func:`_cluster` without beam.

    The leaves' nearest neighbours come precomputed (``nn0, nnd0`` from :func:`_init_nn`), and
    the search for the smallest d_ij is fused into the neighbour-update pass after each merge
    (one O(n) pass per step instead of two). Ties go to the lowest slot, as in ``_cluster``.
    """
    for i in range(n):
        ch1[i] = -1
        ch2[i] = -1
        act[i] = i
        nn[i] = nn0[i]
        nnd[i] = nnd0[i]
        sy[i] = ny[i]
        sp[i] = nphi[i]
        sk2[i] = npt[i] * npt[i]
    nact = n
    nnode = n
    recording = rec.shape[0] > 0
    gbest = INF
    bs = -1
    for s in range(nact):
        d = _dij(s, nn, nnd, sk2, ktmode, inv_r2)
        if d < gbest:
            gbest = d
            bs = s
    while nact > 1:
        if recording and nact <= 3 and rec_n[nact - 1] < 0:
            rec_n[nact - 1] = nact
            for q in range(nact):
                a = act[q]
                rec[nact - 1, q, 0] = npx[a]
                rec[nact - 1, q, 1] = npy[a]
                rec[nact - 1, q, 2] = npz[a]
                rec[nact - 1, q, 3] = ne[a]
        if bs < 0:
            break
        t = nn[bs]
        sa = bs if bs < t else t
        sb = t if bs < t else bs
        a = act[sa]
        b = act[sb]
        k = nnode
        nnode += 1
        px = npx[a] + npx[b]
        py = npy[a] + npy[b]
        pz = npz[a] + npz[b]
        en = ne[a] + ne[b]
        npx[k] = px
        npy[k] = py
        npz[k] = pz
        ne[k] = en
        ptk = math.sqrt(px * px + py * py)
        npt[k] = ptk
        yk = _rap(px, py, pz, en)
        pk = math.atan2(py, px)
        ny[k] = yk
        nphi[k] = pk
        ch1[k] = a
        ch2[k] = b
        act[sa] = k
        sy[sa] = yk
        sp[sa] = pk
        sk2[sa] = ptk * ptk
        last = nact - 1
        if sb != last:
            act[sb] = act[last]
            nn[sb] = nn[last]
            nnd[sb] = nnd[last]
            sy[sb] = sy[last]
            sp[sb] = sp[last]
            sk2[sb] = sk2[last]
        nact -= 1
        # one pass: distances to the new node, stale neighbours, renamed slot, next minimum
        best = INF
        bi = -1
        gbest = INF
        bs = -1
        for x in range(nact):
            if x == sa:
                continue
            dy = yk - sy[x]
            dp = pk - sp[x]
            d = dy * dy + dp * dp
            if d < best:
                best = d
                bi = x
            nx = nn[x]
            if nx == sa or nx == sb:
                _rescan(x, nact, nn, nnd, sy, sp)
            else:
                if nx == last:
                    nn[x] = sb
                if d < nnd[x]:
                    nnd[x] = d
                    nn[x] = sa
            dx = _dij(x, nn, nnd, sk2, ktmode, inv_r2)
            if dx < gbest:
                gbest = dx
                bs = x
        nn[sa] = bi
        nnd[sa] = best
        dx = _dij(sa, nn, nnd, sk2, ktmode, inv_r2)
        if dx < gbest or (dx == gbest and sa < bs):
            gbest = dx
            bs = sa
    if recording and nact >= 1 and rec_n[nact - 1] < 0:
        rec_n[nact - 1] = nact
        for q in range(nact):
            a = act[q]
            rec[nact - 1, q, 0] = npx[a]
            rec[nact - 1, q, 1] = npy[a]
            rec[nact - 1, q, 2] = npz[a]
            rec[nact - 1, q, 3] = ne[a]
    return nnode


@nb.njit(inline="always", **_JIT)
def _mass(px, py, pz, e):
    m2 = e * e - px * px - py * py - pz * pz
    return math.sqrt(m2) if m2 > 0 else 0.0


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
    for h in range(halt):
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
def _collect_leaves(root, n, ch1, ch2, stack, out):
    m = 0
    top = 0
    stack[0] = root
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        if node < n:
            out[m] = node
            m += 1
        else:
            stack[top] = ch1[node]
            stack[top + 1] = ch2[node]
            top += 2
    return m


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
    flag = np.empty(size, np.bool_)
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
        _cluster_nobeam(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
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
        nnode = _cluster_nobeam(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
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
    flag = np.empty(size, np.bool_)
    tmp = np.empty(size)
    sy = np.empty(size)
    sp = np.empty(size)
    st_node = np.empty(size + 2, np.int64)
    st_lvl = np.empty(size + 2, np.int64)
    st_par = np.empty(size + 2, np.int64)
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
            nnode = _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, flag, tmp, sy, sp,
                             0, 1.0, False, norec, rec_n)
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


@nb.njit(**_JIT)
def point_cloud_kernel(offsets, pt, eta, phi, e, charge, ctype, d0, r_prod, has_disp,
                       jet_pt, jet_eta, jet_phi, jet_e, centre, rotate, flip,
                       mean, std, out, mask):
    """Leading-N constituent features relative to the jet axis (see constituents.FEATURES)."""
    nj, nmax, nf = out.shape
    maxn = 1
    for j in range(nj):
        c = offsets[j + 1] - offsets[j]
        if c > maxn:
            maxn = c
    deta = np.empty(maxn)
    dphi = np.empty(maxn)
    order = np.empty(maxn, np.int64)
    do_std = len(mean) == nf
    for j in range(nj):
        s = offsets[j]
        n = offsets[j + 1] - s
        sorted_ok = True
        for i in range(1, n):
            if pt[s + i] > pt[s + i - 1]:
                sorted_ok = False
                break
        if sorted_ok:
            for i in range(n):
                order[i] = i
        else:
            o = np.argsort(-pt[s:s + n], kind="mergesort")
            for i in range(n):
                order[i] = o[i]
        je = jet_eta[j]
        jp = jet_phi[j]
        spt = 0.0
        cy = 0.0
        cp = 0.0
        for i in range(n):
            deta[i] = eta[s + i] - je
            dphi[i] = _wrap(phi[s + i] - jp)
            spt += pt[s + i]
            cy += pt[s + i] * deta[i]
            cp += pt[s + i] * dphi[i]
        if centre and spt > 0:
            cy /= spt
            cp /= spt
            for i in range(n):
                deta[i] -= cy
                dphi[i] -= cp
        if rotate and spt > 0 and n > 1:
            a = 0.0
            b = 0.0
            c = 0.0
            for i in range(n):
                w = pt[s + i]
                a += w * deta[i] * deta[i]
                b += w * deta[i] * dphi[i]
                c += w * dphi[i] * dphi[i]
            # angle of the principal (largest-eigenvalue) axis; rotate it onto the eta axis
            theta = 0.5 * math.atan2(2 * b, a - c)
            ct = math.cos(theta)
            sn = math.sin(theta)
            for i in range(n):
                x = deta[i]
                yv = dphi[i]
                deta[i] = ct * x + sn * yv
                dphi[i] = -sn * x + ct * yv
        if flip:
            sx = 0.0
            sy = 0.0
            for i in range(n):
                w = pt[s + i]
                sx += w * deta[i] ** 3
                sy += w * dphi[i] ** 3
            if sx < 0:
                for i in range(n):
                    deta[i] = -deta[i]
            if sy < 0:
                for i in range(n):
                    dphi[i] = -dphi[i]
        m = n if n < nmax else nmax
        jpt = jet_pt[j] if jet_pt[j] > 0 else 1.0
        jen = jet_e[j] if jet_e[j] > 0 else 1.0
        for q in range(nmax):
            if q >= m:
                mask[j, q] = False
                for f in range(nf):
                    out[j, q, f] = 0.0
                continue
            mask[j, q] = True
            i = order[q]
            p = pt[s + i]
            en = e[s + i]
            out[j, q, 0] = deta[i]
            out[j, q, 1] = dphi[i]
            out[j, q, 2] = math.log(p) if p > 0 else -30.0
            out[j, q, 3] = math.log(en) if en > 0 else -30.0
            out[j, q, 4] = p / jpt
            out[j, q, 5] = en / jen
            out[j, q, 6] = math.sqrt(deta[i] ** 2 + dphi[i] ** 2)
            out[j, q, 7] = charge[s + i]
            t = ctype[s + i]
            for k in range(5):
                out[j, q, 8 + k] = 1.0 if t == k else 0.0
            if has_disp:
                out[j, q, 13] = d0[s + i]
                out[j, q, 14] = r_prod[s + i]
            if do_std:
                for f in range(nf):
                    out[j, q, f] = (out[j, q, f] - mean[f]) / std[f]


@nb.njit(**_JIT)
def jet_image_kernel(offsets, pt, eta, phi, ctype, ref_eta, ref_phi, member, half_width, normalize, out):
    """pT-weighted eta-phi histograms; member[c, t] says whether type t enters channel c."""
    nj, nc, npix, _ = out.shape
    scale = npix / (2.0 * half_width)
    for j in range(nj):
        s = offsets[j]
        n = offsets[j + 1] - s
        tot = 0.0
        for c in range(nc):
            for a in range(npix):
                for b in range(npix):
                    out[j, c, a, b] = 0.0
        for i in range(s, s + n):
            x = (eta[i] - ref_eta[j] + half_width) * scale
            yv = (_wrap(phi[i] - ref_phi[j]) + half_width) * scale
            if x < 0 or yv < 0:
                continue
            ix = int(x)
            iy = int(yv)
            if ix >= npix or iy >= npix:
                continue
            t = ctype[i]
            tot += pt[i]
            for c in range(nc):
                if t >= 0 and t < member.shape[1] and member[c, t]:
                    out[j, c, ix, iy] += pt[i]
        if normalize and tot > 0:
            inv = 1.0 / tot
            for c in range(nc):
                for a in range(npix):
                    for b in range(npix):
                        out[j, c, a, b] *= inv
