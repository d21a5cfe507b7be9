"""Point clouds: leading-N constituent features relative to the jet axis."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from darkshower.represent.kernels.common import _JIT, _wrap


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
