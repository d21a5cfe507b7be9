"""Shared compiled helpers: JIT options, rapidity, azimuth wrapping, loading a jet in local coordinates."""

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


@nb.njit(inline="always", **_JIT)
def _mass(px, py, pz, e):
    m2 = e * e - px * px - py * py - pz * pz
    return math.sqrt(m2) if m2 > 0 else 0.0
