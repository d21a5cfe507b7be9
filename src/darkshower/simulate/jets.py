"""Anti-kt jet clustering of many events at once with FastJet's awkward interface.

Shared by the generators and by importers that start from particles (e.g. LHCO), so that
jets are defined identically everywhere.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import awkward as ak
import numpy as np

_BANNER_SHOWN = False


@contextmanager
def _silence_stdout_fd():
    """FastJet prints its banner on the C++ stdout the first time it runs: keep it out of logs."""
    try:
        sys.stdout.flush()
        fd = os.dup(1)
    except (OSError, ValueError):  # pragma: no cover - no real stdout
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)
        os.close(devnull)


def _fastjet():
    import fastjet

    return fastjet


def kinematics_from_p4(px, py, pz, e):
    """(pt, eta, phi, mass) from numpy 4-momentum components (vectorized)."""
    px, py, pz, e = (np.asarray(x, dtype=np.float64) for x in (px, py, pz, e))
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.sign(pz) * 1e3))
    phi = np.arctan2(py, px)
    m2 = e * e - p * p
    mass = np.sqrt(np.clip(m2, 0.0, None))
    return pt, eta, phi, mass


def p4_from_ptetaphie(pt, eta, phi, e):
    pt = np.asarray(pt, dtype=np.float64)
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), np.asarray(e, dtype=np.float64)


def cluster_jets(
    particles: ak.Array,
    radius: float = 0.8,
    pt_min: float = 150.0,
    eta_max: float = 2.4,
    algorithm: str = "antikt",
    with_constituents: bool = True,
    pt_max: float | None = None,
) -> ak.Array:
    """Cluster every event of ``particles`` and return jets sorted by decreasing pT.

    ``particles`` is an (events × var) record array with at least ``px, py, pz, e``; every other
    field is carried into ``jets.constituents`` (so charge, pid, type, displacement travel along).
    Jets must have pT > ``pt_min`` and |η| < ``eta_max`` (and pT < ``pt_max`` when given: an analysis window).
    Returns (events × var) records ``pt, eta, phi, mass, n_constituents[, constituents]``.
    """
    global _BANNER_SHOWN
    fastjet = _fastjet()
    algo = {
        "antikt": fastjet.antikt_algorithm,
        "kt": fastjet.kt_algorithm,
        "cambridge": fastjet.cambridge_algorithm,
    }[algorithm]
    n_events = len(particles)
    counts = ak.to_numpy(ak.num(particles, axis=1)) if n_events else np.zeros(0, dtype=np.int64)
    flat = ak.flatten(particles, axis=1)
    p4 = ak.zip(
        {
            "px": ak.values_astype(particles.px, np.float64),
            "py": ak.values_astype(particles.py, np.float64),
            "pz": ak.values_astype(particles.pz, np.float64),
            "E": ak.values_astype(particles.e, np.float64),
        },
        with_name="Momentum4D",
    )
    jetdef = fastjet.JetDefinition(algo, float(radius))
    if n_events == 0 or counts.sum() == 0:
        return _empty_jets(n_events, flat, with_constituents)
    if not _BANNER_SHOWN:
        with _silence_stdout_fd():
            cs = fastjet.ClusterSequence(p4, jetdef)
            raw = cs.inclusive_jets(float(pt_min))
        _BANNER_SHOWN = True
    else:
        cs = fastjet.ClusterSequence(p4, jetdef)
        raw = cs.inclusive_jets(float(pt_min))
    njet = ak.to_numpy(ak.num(raw, axis=1))
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(raw[c])) for c in ("px", "py", "pz", "E"))
    pt, eta, phi, mass = kinematics_from_p4(jpx, jpy, jpz, je)
    # order inside each event by decreasing pT and apply |eta| cut
    ev_of_jet = np.repeat(np.arange(n_events), njet)
    order = np.lexsort((-pt, ev_of_jet))
    inside = np.abs(eta[order]) < eta_max
    if pt_max is not None:
        inside &= pt[order] < pt_max
    keep = order[inside]
    nkeep = np.bincount(ev_of_jet[keep], minlength=n_events)
    fields = {
        "pt": pt[keep].astype(np.float32),
        "eta": eta[keep].astype(np.float32),
        "phi": phi[keep].astype(np.float32),
        "mass": mass[keep].astype(np.float32),
    }
    ci = cs.constituent_index(float(pt_min))  # events × jets × var (index inside event)
    ncon = ak.to_numpy(ak.num(ak.flatten(ci, axis=1), axis=1))
    fields["n_constituents"] = ncon[keep].astype(np.int32)
    if with_constituents:
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        glob = ak.to_numpy(ak.flatten(ci, axis=None)).astype(np.int64) + np.repeat(
            np.repeat(offsets, njet), ncon
        )
        # reorder jets: build per-jet start positions in the flat constituent array
        jet_start = np.concatenate([[0], np.cumsum(ncon)[:-1]])
        sel_starts, sel_n = jet_start[keep], ncon[keep]
        idx = np.repeat(sel_starts - np.concatenate([[0], np.cumsum(sel_n)[:-1]]), sel_n) + np.arange(sel_n.sum())
        cons_flat = flat[glob[idx]]
        # sort constituents by decreasing pT within each jet
        cpt = ak.to_numpy(cons_flat.pt) if "pt" in ak.fields(cons_flat) else np.hypot(
            ak.to_numpy(cons_flat.px), ak.to_numpy(cons_flat.py)
        )
        jet_of_con = np.repeat(np.arange(len(sel_n)), sel_n)
        corder = np.lexsort((-cpt, jet_of_con))
        fields["constituents"] = ak.unflatten(cons_flat[corder], sel_n)
    jets_flat = ak.zip(fields, depth_limit=1)
    return ak.unflatten(jets_flat, nkeep)


def _empty_jets(n_events: int, flat: ak.Array, with_constituents: bool) -> ak.Array:
    fields = {k: np.zeros(0, np.float32) for k in ("pt", "eta", "phi", "mass")}
    fields["n_constituents"] = np.zeros(0, np.int32)
    if with_constituents:
        fields["constituents"] = ak.unflatten(flat[:0], np.zeros(0, np.int64))
    return ak.unflatten(ak.zip(fields, depth_limit=1), np.zeros(n_events, np.int64))
