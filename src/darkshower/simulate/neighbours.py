"""Compiled neighbourhood sums in (eta, phi) for the DistillNet student's features (darkshower.simulate.pileup).

:func:`class_sums` gives, for every candidate i of a batch of events and every radius R, the sums over the
other candidates j of the same event, split by a class label of j, of (pT_j / dR_ij)^2 for r_min <= dR_ij < R
(phi periodic) — the PUPPI-like local sums. A cell list per event (cells at least max(R) wide in eta and phi)
visits only the 3 x 3 neighbouring cells: O(N x neighbours) per event, no pair list in memory.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_ETA_CAP = 15.0


@nb.njit(cache=True, nogil=True)
def _class_sums_kernel(offsets, eta, phi, pt, cls, n_cls, radii2, rmin2, out):  # pragma: no cover - compiled
    n_r = radii2.shape[0]
    rmax2 = 0.0
    for k in range(n_r):
        if radii2[k] > rmax2:
            rmax2 = radii2[k]
    rmax = math.sqrt(rmax2)
    two_pi = 2.0 * math.pi
    for e in range(offsets.shape[0] - 1):
        s, t = offsets[e], offsets[e + 1]
        n = t - s
        if n < 2:
            continue
        emin, emax = 1e30, -1e30
        for i in range(s, t):
            if eta[i] < emin:
                emin = eta[i]
            if eta[i] > emax:
                emax = eta[i]
        n_eta = int((emax - emin) / rmax) + 1
        n_phi = int(two_pi / rmax)
        if n_phi < 1:
            n_phi = 1
        cell = np.empty(n, np.int64)
        ph = np.empty(n, np.float64)
        for i in range(n):
            p = phi[s + i] % two_pi
            if p >= two_pi:
                p = 0.0
            ph[i] = p
            ce = int((eta[s + i] - emin) / rmax)
            if ce >= n_eta:
                ce = n_eta - 1
            cp = int(p / two_pi * n_phi)
            if cp >= n_phi:
                cp = n_phi - 1
            cell[i] = ce * n_phi + cp
        n_cells = n_eta * n_phi
        start = np.zeros(n_cells + 1, np.int64)
        for i in range(n):
            start[cell[i] + 1] += 1
        for c in range(n_cells):
            start[c + 1] += start[c]
        fill = start[:-1].copy()
        order = np.empty(n, np.int64)
        for i in range(n):
            order[fill[cell[i]]] = i
            fill[cell[i]] += 1
        # phi cell offsets to visit: -1, 0, 1 (all distinct cells when n_phi < 3)
        n_dp = 3 if n_phi >= 3 else n_phi
        for i in range(n):
            ce = cell[i] // n_phi
            cp = cell[i] % n_phi
            for de in range(-1, 2):
                c_e = ce + de
                if c_e < 0 or c_e >= n_eta:
                    continue
                for k in range(n_dp):
                    c_p = (cp + k - 1) % n_phi if n_phi >= 3 else k
                    c = c_e * n_phi + c_p
                    for a in range(start[c], start[c + 1]):
                        j = order[a]
                        if j == i:
                            continue
                        deta = eta[s + j] - eta[s + i]
                        dphi = abs(ph[j] - ph[i])
                        if dphi > math.pi:
                            dphi = two_pi - dphi
                        d2 = deta * deta + dphi * dphi
                        if d2 >= rmax2 or d2 <= 0.0 or d2 < rmin2:
                            continue
                        v = pt[s + j] * pt[s + j] / d2
                        for r in range(n_r):
                            if d2 < radii2[r]:
                                out[s + i, r, cls[s + j]] += v


def class_sums(ev: np.ndarray, eta: np.ndarray, phi: np.ndarray, pt: np.ndarray, cls: np.ndarray, n_cls: int,
               radii: tuple[float, ...], r_min: float) -> np.ndarray:
    """[n, len(radii), n_cls] sums of (pT_j / dR_ij)^2 over j != i of the same event (``ev`` sorted) with class
    ``cls[j]`` and r_min <= dR_ij < R, for each R in ``radii``."""
    n = len(pt)
    out = np.zeros((n, len(radii), n_cls))
    if n == 0 or not len(radii):
        return out
    ev = np.asarray(ev, np.int64)
    n_ev = int(ev.max()) + 1
    offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(np.bincount(ev, minlength=n_ev), out=offsets[1:])
    _class_sums_kernel(offsets, np.clip(np.asarray(eta, np.float64), -_ETA_CAP, _ETA_CAP),
                       np.asarray(phi, np.float64) + np.pi, np.asarray(pt, np.float64), np.asarray(cls, np.int64),
                       n_cls, np.asarray(radii, np.float64) ** 2, float(r_min) ** 2, out)
    return out
