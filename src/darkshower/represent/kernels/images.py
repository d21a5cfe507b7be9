"""Jet images: pT-weighted eta-phi histograms around a reference direction."""

from __future__ import annotations

import numba as nb

from darkshower.represent.kernels.common import _JIT, _wrap


@nb.njit(**_JIT)
def jet_image_kernel(offsets, pt, eta, phi, ctype, ref_eta, ref_phi, member, half_width, normalize, out):
    """pT-weighted eta-phi histograms; member[c, t] says whether type t enters channel c.

    ``member`` has one column per type plus a last column for unknown types (t < 0 or beyond
    the known codes), see ``represent.images._membership``.
    """
    nj, nc, npix, _ = out.shape
    unknown = member.shape[1] - 1
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
            if t < 0 or t >= unknown:
                t = unknown
            tot += pt[i]
            for c in range(nc):
                if member[c, t]:
                    out[j, c, ix, iy] += pt[i]
        if normalize and tot > 0:
            inv = 1.0 / tot
            for c in range(nc):
                for a in range(npix):
                    for b in range(npix):
                        out[j, c, a, b] *= inv
