"""Sequential-recombination clustering (kt, Cambridge/Aachen) of one jet; tree helpers."""

from __future__ import annotations

import math

import numba as nb

from darkshower.represent.kernels.common import _JIT, INF, _rap


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
def _cluster(n, npx, npy, npz, ne, ny, nphi, npt, ch1, ch2, act, nn, nnd, sy, sp, sk2,
             nn0, nnd0, ktmode, inv_r2, rec, rec_n):
    """Cluster leaves 0..n-1 into one tree; merged nodes are appended at n, n+1, ... (root last).

    ktmode 1 = kt (d_ij = min(pt_i^2, pt_j^2) dR_ij^2 / R^2), 0 = Cambridge/Aachen (dR_ij^2 / R^2);
    ``inv_r2`` = 1/R^2. There is no beam distance: clustering continues until one node is left
    (exclusive clustering). With ``rec`` of shape (3, 3, 4) the active (exclusive) jets are
    recorded when 3, 2, 1 of them remain (the kt axes of N-subjettiness); pass an empty
    (0, 3, 4) array not to record. Returns the number of nodes.

    The leaves' nearest neighbours come precomputed (``nn0, nnd0`` from :func:`_init_nn`; they
    do not depend on ktmode, so a kt and a C/A pass over the same leaves can share them), and
    the search for the smallest d_ij is fused into the neighbour-update pass after each merge
    (one O(n) pass per step). Ties go to the lowest slot, so the result equals that of the
    textbook pairwise scan (see tests/test_represent_clustering.py for the reference).
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
