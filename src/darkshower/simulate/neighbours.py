"""Compiled per-event work of the DistillNet student's features (darkshower.simulate.pileup).

:func:`class_sums` gives, for every candidate i of a batch of events and every radius R, the sums over the
other candidates j of the same event, split by a class label of j, of (pT_j / dR_ij)^2 for r_min <= dR_ij < R
(phi periodic) — the PUPPI-like local sums. :func:`student_features` gives the whole feature matrix of
``darkshower.simulate.pileup.particle_features`` (its columns are documented there) in one compiled pass.

Per event, a cell list (cells max(R) wide in eta and phi, phi periodic; candidates counting-sorted into cell
order). For each cell, the candidates of its (up to) 3 x 3 neighbouring cells are copied into one contiguous
block padded to a multiple of 8 with far-away zero-pT entries; each candidate of the cell then runs one
branch-free loop over that block (compiled to SIMD: the six sums — 3 classes x 2 radii — in one pass, in any
order, so sums may differ from a sequential sum in the last bit). O(N x neighbours) per event, no pair list in
memory, no allocation per event (work buffers are sized once per call for the largest event). Also
:func:`bias_relu` for the student's hidden layers.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from darkshower.errors import DatasetError

_ETA_CAP = 15.0
_TWO_PI = 2.0 * math.pi


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"}, error_model="numpy")
def _ring_sums(b0, b1, ea, pa, se, sp, sp2, sc, rmin2, r2_in, r2_out):  # pragma: no cover - compiled
    """Sums of sp2[b] / dR2 over b in b0..b1-1 with 0 < dR2, rmin2 <= dR2, split by class sc[b] (0, 1, 2) and by
    dR2 < r2_in / dR2 < r2_out, dR2 from (ea, pa): six sums. No branch, so the loop vectorizes (the order of
    the sums is free: reassoc)."""
    i0 = i1 = i2 = o0 = o1 = o2 = 0.0
    for b in range(b0, b1):
        deta = se[b] - ea
        dphi = abs(sp[b] - pa)
        dphi = min(dphi, _TWO_PI - dphi)
        d2 = deta * deta + dphi * dphi
        v = sp2[b] / d2
        ok = (d2 > 0.0) & (d2 >= rmin2)
        vi = v if ok & (d2 < r2_in) else 0.0
        vo = v if ok & (d2 < r2_out) else 0.0
        k = sc[b]
        i0 += vi if k == 0 else 0.0
        i1 += vi if k == 1 else 0.0
        i2 += vi if k == 2 else 0.0
        o0 += vo if k == 0 else 0.0
        o1 += vo if k == 1 else 0.0
        o2 += vo if k == 2 else 0.0
    return i0, i1, i2, o0, o1, o2


@nb.njit(cache=True, nogil=True)
def _add(acc, a, r, n_cls, v0, v1, v2):  # pragma: no cover - compiled
    acc[a, r, 0] += v0
    if n_cls > 1:
        acc[a, r, 1] += v1
    if n_cls > 2:
        acc[a, r, 2] += v2


@nb.njit(cache=True, nogil=True)
def _event_sums(s, t, eta, phi, pt, cls, radii2, rmin2, rmax, cell, order, start, se, sp, sp2, sc, ne, np_, nw, nc,
                acc):  # pragma: no cover - compiled
    """Class sums (classes 0..2) of the candidates s..t-1 (one event) into acc[:t - s] (cell order; ``order``
    maps a cell position to the candidate's index within the event). eta is clipped to +-_ETA_CAP, phi any
    real. ``ne, np_, nw, nc``: room for the candidates of one cell's neighbourhood (+ 8)."""
    n = t - s
    n_r, n_cls = acc.shape[1], acc.shape[2]
    for a in range(n):
        for r in range(n_r):
            for k in range(n_cls):
                acc[a, r, k] = 0.0
    if n < 2:
        for a in range(n):
            order[a] = a
        return
    emin, emax = 1e30, -1e30
    for i in range(s, t):
        e = min(max(eta[i], -_ETA_CAP), _ETA_CAP)
        emin = min(emin, e)
        emax = max(emax, e)
    n_eta = int((emax - emin) / rmax) + 1
    n_phi = max(int(_TWO_PI / rmax), 1)
    n_cells = n_eta * n_phi
    for c in range(n_cells + 1):
        start[c] = 0
    for i in range(n):
        e = min(max(eta[s + i], -_ETA_CAP), _ETA_CAP)
        p = (phi[s + i] + math.pi) % _TWO_PI
        if p >= _TWO_PI:
            p = 0.0
        ce = min(int((e - emin) / rmax), n_eta - 1)
        cp = min(int(p / _TWO_PI * n_phi), n_phi - 1)
        cell[i] = ce * n_phi + cp
        start[cell[i] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    for i in range(n):  # counting sort into cell order (start[c] runs to the next cell's start, then shifts)
        a = start[cell[i]]
        start[cell[i]] = a + 1
        order[a] = i
        se[a] = min(max(eta[s + i], -_ETA_CAP), _ETA_CAP)
        p = (phi[s + i] + math.pi) % _TWO_PI
        sp[a] = 0.0 if p >= _TWO_PI else p
        sp2[a] = pt[s + i] * pt[s + i]
        sc[a] = cls[s + i]
    for c in range(n_cells, 0, -1):
        start[c] = start[c - 1]
    start[0] = 0
    n_dp = min(n_phi, 3)  # distinct phi neighbours: -1, 0, +1 (fewer when n_phi < 3)
    for c in range(n_cells):
        a0, a1 = start[c], start[c + 1]
        if a0 == a1:
            continue
        ce, cp = c // n_phi, c % n_phi
        # the candidates of the (up to) 3 x 3 neighbouring cells, copied into one contiguous block, padded to a
        # multiple of 8 with far-away zero-pT entries: one long branch-free loop per candidate of the cell
        m = 0
        for de in range(-1, 2):
            c_e = ce + de
            if c_e < 0 or c_e >= n_eta:
                continue
            for k in range(n_dp):
                c2 = c_e * n_phi + ((cp + k - 1) % n_phi if n_phi >= 3 else k)
                for b in range(start[c2], start[c2 + 1]):
                    ne[m] = se[b]
                    np_[m] = sp[b]
                    nw[m] = sp2[b]
                    nc[m] = sc[b]
                    m += 1
        while m % 8:
            ne[m] = 1e6
            np_[m] = 0.0
            nw[m] = 0.0
            nc[m] = 0
            m += 1
        for a in range(a0, a1):
            for r in range(0, n_r, 2):  # radii in pairs: one pass over the neighbours for two
                r2 = r + 1 if r + 1 < n_r else r
                i0, i1, i2, o0, o1, o2 = _ring_sums(0, m, se[a], sp[a], ne, np_, nw, nc, rmin2, radii2[r], radii2[r2])
                _add(acc, a, r, n_cls, i0, i1, i2)
                if r2 != r:
                    _add(acc, a, r2, n_cls, o0, o1, o2)


def _buffers(n_max: int, n_r: int, n_cls: int, rmax: float):
    n_cells = (int(2 * _ETA_CAP / rmax) + 1) * max(int(_TWO_PI / rmax), 1)
    return (np.empty(n_max, np.int64), np.empty(n_max, np.int64), np.empty(n_cells * n_cls + 1, np.int64),
            np.empty(n_max), np.empty(n_max), np.empty(n_max), np.empty(n_max, np.int64),
            np.empty(n_max + 8), np.empty(n_max + 8), np.empty(n_max + 8), np.empty(n_max + 8, np.int64),
            np.empty((n_max, n_r, n_cls)))


@nb.njit(cache=True, nogil=True)
def _class_sums_kernel(offsets, eta, phi, pt, cls, radii2, rmin2, rmax, cell, order, start, se, sp, sp2, sc, ne, np_, nw, nc, acc,
                       out):  # pragma: no cover - compiled
    for e in range(offsets.shape[0] - 1):
        s, t = offsets[e], offsets[e + 1]
        _event_sums(s, t, eta, phi, pt, cls, radii2, rmin2, rmax, cell, order, start, se, sp, sp2, sc, ne, np_, nw, nc, acc)
        for a in range(t - s):
            out[s + order[a]] = acc[a]


def _check_finite(eta: np.ndarray, phi: np.ndarray, pt: np.ndarray, e: np.ndarray | None = None) -> None:
    """The compiled kernels index cells by (eta, phi): a NaN there would index out of bounds (a crash, not an
    error), so refuse non-finite kinematics with one clear error instead (+-inf eta is clipped, so allowed)."""
    checks = [("eta", eta, ~np.isnan(eta)), ("phi", phi, np.isfinite(phi)), ("pt", pt, np.isfinite(pt))]
    if e is not None:
        checks.append(("e", e, np.isfinite(e)))
    for name, v, ok in checks:
        if not ok.all():
            raise DatasetError(f"pileup neighbourhood sums: {int((~ok).sum())} of {len(v)} candidates have a "
                               f"non-finite {name}; drop or fix those particles in the input dataset")


def _offsets(ev: np.ndarray) -> np.ndarray:
    ev = np.asarray(ev, np.int64)
    n_ev = int(ev.max()) + 1
    offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(np.bincount(ev, minlength=n_ev), out=offsets[1:])
    return offsets


def class_sums(ev: np.ndarray, eta: np.ndarray, phi: np.ndarray, pt: np.ndarray, cls: np.ndarray, n_cls: int,
               radii: tuple[float, ...], r_min: float) -> np.ndarray:
    """[n, len(radii), n_cls] sums of (pT_j / dR_ij)^2 over j != i of the same event (``ev`` sorted) with class
    ``cls[j]`` and r_min <= dR_ij < R, for each R in ``radii``."""
    n = len(pt)
    out = np.zeros((n, len(radii), n_cls))
    if n == 0 or not len(radii):
        return out
    if n_cls > 3:
        raise ValueError(f"class_sums: at most 3 classes (got n_cls={n_cls})")
    _check_finite(np.asarray(eta, np.float64), np.asarray(phi, np.float64), np.asarray(pt, np.float64))
    offsets = _offsets(ev)
    rmax = float(max(radii))
    _class_sums_kernel(  # type: ignore[call-arg]  # (numba's Dispatcher stub and a *tuple)
        offsets, np.asarray(eta, np.float64), np.asarray(phi, np.float64), np.asarray(pt, np.float64),
        np.asarray(cls, np.int64), np.asarray(radii, np.float64) ** 2, float(r_min) ** 2, rmax,
        *_buffers(int(np.diff(offsets).max()), len(radii), n_cls, rmax), out)
    return out


# ---- the student's whole feature matrix ---------------------------------------------------------------------
N_TYPES = 5  # darkshower.data.schema.CANDIDATE_TYPES


@nb.njit(cache=True, nogil=True)
def _features_kernel(offsets, pt, eta, phi, e, charge, typ, assoc, cls, dz, particle_level, dz_a2, dz_b, radii2, rmin2,
                     rmax, min_pu, cell, order, start, se, sp, sp2, sc, ne, np_, nw, nc, acc, vals, lv,
                     out):  # pragma: no cover - compiled
    """Fills ``out`` (float32; every value computed in float64 and rounded once) and ``cls`` (the class of the
    sums: 0 PV track, 1 pileup track, 2 no track)."""
    n_r = radii2.shape[0]
    n_base = 4 + N_TYPES + 3
    for i in range(pt.shape[0]):
        trk = assoc[i] >= 0
        cls[i] = 0 if assoc[i] == 1 else (1 if assoc[i] == 0 else 2)
        out[i, 0] = math.log(max(pt[i], 1e-3))
        out[i, 1] = eta[i]
        out[i, 2] = math.log(max(e[i], 1e-3))
        out[i, 3] = charge[i]
        for t in range(N_TYPES):
            out[i, 4 + t] = 1.0 if typ[i] == t else 0.0
        out[i, 4 + N_TYPES] = 1.0 if trk else 0.0
        out[i, 5 + N_TYPES] = 1.0 if assoc[i] == 1 else 0.0
        dzs = 0.0
        if trk:
            if particle_level:
                dzs = 0.0 if assoc[i] == 1 else 10.0
            else:
                ms = dz_b * math.sqrt(math.cosh(eta[i])) / max(pt[i], 1e-3)
                dzs = abs(dz[i]) / math.sqrt(dz_a2 + ms * ms)
        out[i, 6 + N_TYPES] = math.log1p(min(dzs, 1e6)) if dzs > 0.0 else 0.0
    if n_r == 0:
        return
    for ev in range(offsets.shape[0] - 1):
        s, t = offsets[ev], offsets[ev + 1]
        n = t - s
        _event_sums(s, t, eta, phi, pt, cls, radii2, rmin2, rmax, cell, order, start, se, sp, sp2, sc, ne, np_, nw, nc, acc)
        for r in range(n_r):
            col = n_base + 4 * r
            n_pu = 0
            for a in range(n):
                i = s + order[a]
                for k in range(3):
                    v = acc[a, r, k]
                    x = math.log1p(v) if v > 0.0 else 0.0  # (many are 0: log1p(0) = 0)
                    out[i, col + k] = x
                    if k == 0:
                        lv[a] = x
                if assoc[i] == 0:
                    vals[n_pu] = lv[a]
                    n_pu += 1
            if n_pu < max(min_pu, 1):
                for a in range(n):
                    out[s + a, col + 3] = 0.0
                continue
            v = vals[:n_pu]
            v.sort()
            med = 0.5 * (v[(n_pu - 1) // 2] + v[n_pu // 2])
            dev2 = 0.0
            for a in range(n_pu):
                dev2 += (v[a] - med) ** 2
            rms = max(math.sqrt(dev2 / n_pu), 1e-3)
            for a in range(n):
                out[s + order[a], col + 3] = min(max((lv[a] - med) / rms, -50.0), 50.0)


def student_features(ev: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, e: np.ndarray,
                     charge: np.ndarray, typ: np.ndarray, assoc: np.ndarray, dz: np.ndarray | None,
                     dz_resolution_mm: float, dz_ms_mm_gev: float, radii: tuple[float, ...], r_min: float,
                     min_charged_pu: int) -> np.ndarray:
    """The feature matrix of ``darkshower.simulate.pileup.particle_features`` ([n, 12 + 4 len(radii)], float32;
    computed in float64, rounded once). ``assoc``: 1 PV track, 0 pileup track, -1 no track (it also sets the class
    of the neighbourhood sums: PV tracks, pileup tracks, no track). ``ev`` sorted. ``dz`` None: particle level
    (truth association)."""
    n = len(pt)
    n_col = 4 + N_TYPES + 3 + 4 * len(radii)
    out = np.empty((n, n_col), np.float32)
    if n == 0:
        return out
    offsets = _offsets(ev)
    rmax = float(max(radii)) if len(radii) else 1.0
    f64 = [np.asarray(x, np.float64) for x in (pt, eta, phi, e, charge)]
    _check_finite(f64[1], f64[2], f64[0], f64[3])  # (also without radii: NaN inputs would train a NaN teacher)
    n_max = int(np.diff(offsets).max()) if len(radii) else 1
    _features_kernel(  # type: ignore[call-arg]  # (numba's Dispatcher stub and a *tuple)
        offsets, *f64, np.asarray(typ, np.int64), np.asarray(assoc, np.int64), np.empty(n, np.int64),
        np.zeros(n) if dz is None else np.asarray(dz, np.float64), dz is None, float(dz_resolution_mm) ** 2,
        float(dz_ms_mm_gev), np.asarray(radii, np.float64) ** 2, float(r_min) ** 2, rmax, int(min_charged_pu),
        *_buffers(n_max, len(radii), 3, rmax), np.empty(n_max), np.empty(n_max), out)
    return out


@nb.njit(cache=True, nogil=True)
def bias_relu(h, b):  # pragma: no cover - compiled
    """h <- max(h + b, 0) in place, row by row (the student's hidden layers; float32 in, float32 math)."""
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            v = h[i, j] + b[j]
            h[i, j] = v if v > 0 else 0
