"""Flat, numpy views of jets and their constituents, shared by every representation.

All representations start from :class:`JetBatch`: the jets of many events laid out as flat
numpy arrays (one entry per constituent) plus per-jet offsets, so the numba kernels can walk
the jets without any Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from darkshower.errors import DatasetError

TYPE_NAMES = ("charged_hadron", "electron", "muon", "photon", "neutral_hadron")
N_TYPES = len(TYPE_NAMES)


def wrap_phi(x):
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(x) + np.pi) % (2 * np.pi) - np.pi


def _np(a, dtype=None) -> np.ndarray:
    out = ak.to_numpy(a)
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    return out


@dataclass
class JetBatch:
    """Jets of a batch of events as flat arrays.

    Per constituent (length ``offsets[-1]``): ``pt, eta, phi, e`` (float64, PUPPI-style weights
    already applied when asked), ``charge`` (int8), ``type`` (int8), ``d0``/``r_prod`` (float32 or
    None). Per jet (length ``n_jets``): ``jet_pt, jet_eta, jet_phi, jet_mass`` (from the dataset
    record), ``event_index`` (row of the event in the input array), ``jet_idx`` (rank of the jet
    in its event) and ``event_id``.
    """

    offsets: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    e: np.ndarray
    charge: np.ndarray
    type: np.ndarray
    d0: np.ndarray | None
    r_prod: np.ndarray | None
    jet_pt: np.ndarray
    jet_eta: np.ndarray
    jet_phi: np.ndarray
    jet_mass: np.ndarray
    event_index: np.ndarray
    jet_idx: np.ndarray
    event_id: np.ndarray
    n_events: int
    weighted: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def n_jets(self) -> int:
        return len(self.jet_pt)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def jet_index_of_constituent(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_jets), self.counts)

    def select(self, jets: np.ndarray) -> JetBatch:
        """A new batch with only the jets ``jets`` (indices), in that order."""
        jets = np.asarray(jets, dtype=np.int64)
        counts = self.counts[jets]
        starts = self.offsets[:-1][jets]
        offsets = np.zeros(len(jets) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        idx = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])

        def take(a):
            return None if a is None else a[idx]

        return JetBatch(
            offsets=offsets,
            pt=self.pt[idx],
            eta=self.eta[idx],
            phi=self.phi[idx],
            e=self.e[idx],
            charge=self.charge[idx],
            type=self.type[idx],
            d0=take(self.d0),
            r_prod=take(self.r_prod),
            jet_pt=self.jet_pt[jets],
            jet_eta=self.jet_eta[jets],
            jet_phi=self.jet_phi[jets],
            jet_mass=self.jet_mass[jets],
            event_index=self.event_index[jets],
            jet_idx=self.jet_idx[jets],
            event_id=self.event_id[jets],
            n_events=self.n_events,
            weighted=self.weighted,
        )


def _is_event_array(arr: ak.Array) -> bool:
    return "jets" in ak.fields(arr)


def jet_batch(data, max_jets: int | None = None, use_weights: bool = True) -> JetBatch:
    """Build a :class:`JetBatch` from events (records with ``jets``) or from a jets array.

    ``data`` may be: an awkward array of events (``events.jets``), an awkward array of jets
    (records with ``constituents``; one event per jet is assumed) or an existing JetBatch.
    ``max_jets`` keeps only the leading jets of each event. With ``use_weights`` and a
    ``weight`` constituent field, each constituent 4-vector is scaled by its weight and
    constituents of weight <= 0 are dropped.
    """
    if isinstance(data, JetBatch):
        return data if max_jets is None else data.select(np.flatnonzero(data.jet_idx < max_jets))
    arr = data if isinstance(data, ak.Array) else ak.Array(data)
    if _is_event_array(arr):
        n_events = len(arr)
        jets = arr.jets
        if max_jets is not None:
            jets = jets[:, :max_jets]
        njet = _np(ak.num(jets, axis=1), np.int64)
        flat = ak.flatten(jets, axis=1)
        if "event_id" in ak.fields(arr):
            ev_ids = _np(arr.event_id, np.int64)
        else:
            ev_ids = np.arange(n_events, dtype=np.int64)
    else:
        if "constituents" not in ak.fields(arr):
            raise DatasetError(
                f"expected events with a 'jets' field or jets with 'constituents', got fields {ak.fields(arr)}"
            )
        n_events = len(arr)
        njet = np.ones(n_events, np.int64)
        flat = arr
        ev_ids = np.arange(n_events, dtype=np.int64)
    n_jets = int(njet.sum())
    event_index = np.repeat(np.arange(n_events, dtype=np.int64), njet)
    first = np.zeros(n_events + 1, np.int64)
    np.cumsum(njet, out=first[1:])
    jet_idx = np.arange(n_jets, dtype=np.int64) - np.repeat(first[:-1], njet)
    cons = flat.constituents
    cfields = set(ak.fields(cons))
    for name in ("pt", "eta", "phi", "e"):
        if name not in cfields:
            raise DatasetError(f"constituents miss the field '{name}' (have {sorted(cfields)})")
    counts = _np(ak.num(cons, axis=1), np.int64)
    offsets = np.zeros(n_jets + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])

    def col(name, dtype, default=None):
        if name not in cfields:
            return None if default is None else np.full(offsets[-1], default, dtype)
        return _np(ak.flatten(cons[name], axis=1), dtype)

    pt = col("pt", np.float64)
    eta = col("eta", np.float64)
    phi = col("phi", np.float64)
    e = col("e", np.float64)
    charge = col("charge", np.int8, 0)
    ctype = col("type", np.int8, 0)
    d0 = col("d0", np.float32)
    r_prod = col("r_prod", np.float32)
    weighted = False
    if use_weights and "weight" in cfields:
        w = col("weight", np.float64)
        pt = pt * w
        e = e * w
        weighted = True
        keep = w > 0
        if not keep.all():
            jet_of = np.repeat(np.arange(n_jets), counts)
            counts = np.bincount(jet_of[keep], minlength=n_jets).astype(np.int64)
            np.cumsum(counts, out=offsets[1:])
            pt, eta, phi, e, charge, ctype = (x[keep] for x in (pt, eta, phi, e, charge, ctype))
            d0 = None if d0 is None else d0[keep]
            r_prod = None if r_prod is None else r_prod[keep]
    jf = set(ak.fields(flat))
    jet_pt = _np(flat.pt, np.float64) if "pt" in jf else np.zeros(n_jets)
    jet_eta = _np(flat.eta, np.float64) if "eta" in jf else np.zeros(n_jets)
    jet_phi = _np(flat.phi, np.float64) if "phi" in jf else np.zeros(n_jets)
    jet_mass = _np(flat.mass, np.float64) if "mass" in jf else np.zeros(n_jets)
    return JetBatch(
        offsets=offsets,
        pt=pt,
        eta=eta,
        phi=phi,
        e=e,
        charge=charge,
        type=ctype,
        d0=d0,
        r_prod=r_prod,
        jet_pt=jet_pt,
        jet_eta=jet_eta,
        jet_phi=jet_phi,
        jet_mass=jet_mass,
        event_index=event_index,
        jet_idx=jet_idx,
        event_id=ev_ids[event_index] if n_jets else np.zeros(0, np.int64),
        n_events=n_events,
        weighted=weighted,
    )


def jet_energy(pt, eta, mass):
    pt = np.asarray(pt, np.float64)
    return np.sqrt((pt * np.cosh(eta)) ** 2 + np.asarray(mass, np.float64) ** 2)


#: name of the optional per-event collection of all reconstructed candidates (docs/data-format.md)
PARTICLES = "particles"


def event_collection(events, collection: str = "auto") -> str:
    """Which collection the whole-event quantities use: ``"particles"`` or ``"jets"``.

    ``"auto"`` picks ``particles`` (all reconstructed candidates of the event, written with
    ``store_particles: true``) when the events have that field, else the jet constituents.
    """
    if collection == "auto":
        return PARTICLES if PARTICLES in ak.fields(events) else "jets"
    return collection


def event_particles(events, collection: str = PARTICLES, use_weights: bool = True):
    """Flat arrays of an (events x var) particle collection: (event_row, pt, eta, phi, type).

    With ``use_weights`` and a ``weight`` field, pT is scaled by it and weight <= 0 dropped
    (as for jet constituents). ``type`` is -1 when the collection has no such field.
    """
    parts = events[collection]
    fields = ak.fields(parts)
    cnt = _np(ak.num(parts, axis=1), np.int64)
    ev = np.repeat(np.arange(len(cnt)), cnt)
    pt, eta, phi = (_np(ak.flatten(parts[f]), np.float64) for f in ("pt", "eta", "phi"))
    typ = _np(ak.flatten(parts["type"]), np.int8) if "type" in fields else np.full(len(pt), -1, np.int8)
    if use_weights and "weight" in fields:
        w = _np(ak.flatten(parts["weight"]), np.float64)
        keep = w > 0
        ev, pt, eta, phi, typ = ev[keep], (pt * w)[keep], eta[keep], phi[keep], typ[keep]
    return ev, pt, eta, phi, typ


def dijet_met_mass(events) -> tuple[np.ndarray, np.ndarray]:
    """(M_T, m_jj) per event: the transverse mass of the system of the (up to) two leading jets and the MET (the
    CMS SVJ search variable), and the invariant mass of those jets. Events without MET fields count MET as 0."""
    fields = ak.fields(events)
    n = len(events)
    j = events["jets"][:, :2]
    pt, eta, phi, m = (ak.values_astype(j[c], np.float64) for c in ("pt", "eta", "phi", "mass"))
    px = ak.to_numpy(ak.sum(pt * np.cos(phi), axis=1))
    py = ak.to_numpy(ak.sum(pt * np.sin(phi), axis=1))
    pz = ak.to_numpy(ak.sum(pt * np.sinh(eta), axis=1))
    e = ak.to_numpy(ak.sum(np.sqrt((pt * np.cosh(eta)) ** 2 + m**2), axis=1))
    mjj2 = np.clip(e**2 - px**2 - py**2 - pz**2, 0, None)
    et_jj = np.sqrt(mjj2 + px**2 + py**2)
    met = ak.to_numpy(events["met_pt"]).astype(np.float64) if "met_pt" in fields else np.zeros(n)
    mphi = ak.to_numpy(events["met_phi"]).astype(np.float64) if "met_phi" in fields else np.zeros(n)
    mt2 = (et_jj + met) ** 2 - (px + met * np.cos(mphi)) ** 2 - (py + met * np.sin(mphi)) ** 2
    return np.sqrt(np.clip(mt2, 0, None)), np.sqrt(mjj2)
