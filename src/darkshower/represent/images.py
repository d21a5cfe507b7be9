"""Jet images (eta-phi grids around the jet axis) and sparse full-detector event images."""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from darkshower.errors import ConfigError
from darkshower.represent import kernels as K
from darkshower.represent.common import N_TYPES, JetBatch, event_collection, event_particles, jet_batch

#: channel presets: name -> list of (channel name, candidate types)
CHANNEL_PRESETS: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "all": [("all", (0, 1, 2, 3, 4))],
    "charged_neutral": [("charged", (0, 1, 2)), ("neutral", (3, 4))],
    "all_charged_neutral": [("all", (0, 1, 2, 3, 4)), ("charged", (0, 1, 2)), ("neutral", (3, 4))],
    "detector": [("tracks", (0, 1, 2)), ("ecal", (3,)), ("hcal", (4,))],
}


def resolve_channels(channels) -> list[tuple[str, tuple[int, ...]]]:
    """A preset name, or a list of type groups (lists of type codes), or {name: types}."""
    if isinstance(channels, str):
        if channels not in CHANNEL_PRESETS:
            raise ConfigError(f"image channels {channels!r}: unknown preset; choose one of {sorted(CHANNEL_PRESETS)}")
        return CHANNEL_PRESETS[channels]
    if isinstance(channels, dict):
        items = list(channels.items())
    else:
        items = [("+".join(map(str, g)), g) for g in channels]
    out = []
    for name, g in items:
        g = tuple(int(t) for t in g)
        if not g or any(t < 0 or t >= N_TYPES for t in g):
            raise ConfigError(f"image channel {name!r}: types must be a non-empty list of codes 0..{N_TYPES - 1}")
        out.append((str(name), g))
    return out


def is_type_agnostic(types) -> bool:
    """A channel that takes every candidate type (e.g. ``"all"``) also takes unknown types."""
    return set(types) >= set(range(N_TYPES))


#: column of the membership matrix for constituents of unknown type (-1, or any code >= N_TYPES)
UNKNOWN = N_TYPES


def _membership(chans) -> np.ndarray:
    """(C, N_TYPES + 1) bool: member[c, t] = type t enters channel c; the last column is the
    unknown type, which enters the type-agnostic channels only."""
    m = np.zeros((len(chans), N_TYPES + 1), np.bool_)
    for c, (_, types) in enumerate(chans):
        m[c, list(types)] = True
        m[c, UNKNOWN] = is_type_agnostic(types)
    return m


def check_types(chans, types: np.ndarray, what: str = "constituents") -> None:
    """Type-specific channels need typed data: raise naming the channel when some of ``types`` are unknown.

    Imported samples (h5-4vec, h5-constituents, lhco) carry type -1; a channel that selects
    some types would silently drop them (an empty image), so that is an error.
    """
    types = np.asarray(types)
    n_unknown = int(np.count_nonzero((types < 0) | (types >= N_TYPES)))
    if n_unknown == 0:
        return
    for name, g in chans:
        if not is_type_agnostic(g):
            raise ConfigError(
                f"image channel {name!r} selects candidate types {list(g)}, but {n_unknown} of {len(types)} "
                f"{what} have no type (type -1: no particle identification, as in h5-4vec, h5-constituents or lhco "
                f"imports, or a collection without a 'type' field), "
                f"so they would be dropped from it. Use channels \"all\" (type-agnostic channels take "
                f"constituents of unknown type), or data with candidate types"
            )


@dataclass
class JetImages:
    images: np.ndarray  # (n_jets, C, n_pixels, n_pixels) float32, axis 2 = eta, axis 3 = phi
    channels: list[str]
    half_width: float
    event_id: np.ndarray
    jet_idx: np.ndarray


def jet_images(
    data,
    n_pixels: int = 40,
    half_width: float = 0.8,
    channels="all",
    normalize: bool = True,
    centre: str = "axis",
    max_jets: int | None = None,
    use_weights: bool = True,
) -> JetImages:
    """pT-weighted images over [-half_width, half_width]^2 in (deta, dphi) around the jet.

    ``centre``: ``"axis"`` (the jet's eta, phi) or ``"centroid"`` (pT-weighted centroid of the
    constituents). Before normalisation each image channel sums to the pT of the in-window
    constituents of its types; ``normalize`` divides by the in-window pT of all constituents.
    Constituents of unknown type (-1) enter the type-agnostic channels (those that take every
    type, e.g. ``"all"``); a type-specific channel on data with unknown types is a ConfigError.
    """
    b: JetBatch = jet_batch(data, max_jets=max_jets, use_weights=use_weights)
    chans = resolve_channels(channels)
    check_types(chans, b.type)
    if centre == "axis":
        ref_eta, ref_phi = b.jet_eta, b.jet_phi
    elif centre == "centroid":
        j = b.jet_index_of_constituent
        w = np.bincount(j, b.pt, b.n_jets)
        w[w == 0] = 1.0
        ref_eta = np.bincount(j, b.pt * b.eta, b.n_jets) / w
        dphi = (b.phi - b.jet_phi[j] + np.pi) % (2 * np.pi) - np.pi
        ref_phi = b.jet_phi + np.bincount(j, b.pt * dphi, b.n_jets) / w
    else:
        raise ConfigError(f"image centre {centre!r}: choose 'axis' or 'centroid'")
    out = np.empty((b.n_jets, len(chans), n_pixels, n_pixels), np.float32)
    if b.n_jets:
        K.jet_image_kernel(
            b.offsets, b.pt, b.eta, b.phi, b.type, np.ascontiguousarray(ref_eta, np.float64),
            np.ascontiguousarray(ref_phi, np.float64), _membership(chans), float(half_width), bool(normalize), out,
        )
    return JetImages(out, [c[0] for c in chans], half_width, b.event_id, b.jet_idx)


@dataclass
class SparseEventImages:
    """Sparse (C, n_eta, n_phi) images: event e has entries offsets[e]:offsets[e+1] of
    ``index`` (flat pixel index c * n_eta * n_phi + i_eta * n_phi + i_phi) and ``value`` (pT)."""

    index: np.ndarray  # int32
    value: np.ndarray  # float32
    offsets: np.ndarray  # int64, n_events + 1
    shape: tuple[int, int, int]
    channels: list[str]
    eta_max: float
    event_id: np.ndarray
    collection: str = "jets"  # what filled the images: "particles", "jets" or another collection

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def occupancy(self) -> float:
        n = len(self)
        return float(len(self.index)) / max(n * int(np.prod(self.shape)), 1)

    def dense(self, events=None) -> np.ndarray:
        """Densify events (indices or slice; all by default) -> (n, C, n_eta, n_phi) float32."""
        sel = np.arange(len(self))[events] if events is not None else np.arange(len(self))
        sel = np.atleast_1d(sel)
        npix = int(np.prod(self.shape))
        out = np.zeros((len(sel), npix), np.float32)
        counts = self.offsets[sel + 1] - self.offsets[sel]
        starts = self.offsets[sel]
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        rows = np.repeat(np.arange(len(sel)), counts)
        out[rows, self.index[pos]] = self.value[pos]
        return out.reshape((len(sel),) + tuple(self.shape))

    def select(self, events) -> SparseEventImages:
        sel = np.atleast_1d(np.arange(len(self))[events])
        counts = self.offsets[sel + 1] - self.offsets[sel]
        starts = self.offsets[sel]
        offs = np.zeros(len(sel) + 1, np.int64)
        np.cumsum(counts, out=offs[1:])
        pos = np.repeat(starts - offs[:-1], counts) + np.arange(offs[-1])
        return SparseEventImages(self.index[pos], self.value[pos], offs, self.shape, self.channels,
                                 self.eta_max, self.event_id[sel], self.collection)

    def to_arrays(self) -> dict:
        return {"index": self.index, "value": self.value, "offsets": self.offsets,
                "shape": np.asarray(self.shape), "event_id": self.event_id}


def event_images(
    events,
    n_eta: int = 50,
    n_phi: int = 64,
    eta_max: float = 2.5,
    channels="detector",
    collection: str = "auto",
    use_weights: bool = True,
) -> SparseEventImages:
    """Full-detector images (|eta| < eta_max x [-pi, pi)), one per event, stored sparse.

    ``collection="auto"`` (default) uses the per-event ``particles`` collection (all
    reconstructed candidates) when the events have it, else the constituents of all jets;
    ``"jets"`` forces the jet constituents; any other name is read as an (events x var)
    particle collection with pt, eta, phi, type fields. ``.collection`` records which was used.
    Default channels: tracks (types 0,1,2), ECAL (3), HCAL (4). Duplicate pixels are summed.
    Candidates of unknown type (-1; or a collection without a ``type`` field) enter only the
    type-agnostic channels (e.g. ``channels="all"``); with type-specific channels they are a
    ConfigError naming the channel.
    """
    chans = resolve_channels(channels)
    collection = event_collection(events, collection)
    if collection == "jets":
        b = jet_batch(events, use_weights=use_weights)
        ev = np.repeat(b.event_index, b.counts)
        pt, eta, phi, typ = b.pt, b.eta, b.phi, b.type
        n_events = b.n_events
    else:
        if collection not in ak.fields(events):
            raise ConfigError(f"event image collection {collection!r} is not a field of the events ({ak.fields(events)}); "
                              "a run trained on whole-event images (collection particles) needs data generated with "
                              "`store_particles: true`, or set representation.collection to jets")
        n_events = len(events)
        ev, pt, eta, phi, typ = event_particles(events, collection, use_weights)  # no type field: -1
    check_types(chans, typ, "candidates" if collection != "jets" else "constituents")
    ev_ids = ak.to_numpy(events.event_id).astype(np.int64) if "event_id" in ak.fields(events) else np.arange(n_events)
    memb = _membership(chans)
    ie = np.floor((eta + eta_max) / (2 * eta_max) * n_eta).astype(np.int64)
    ip = np.floor((((phi + np.pi) % (2 * np.pi))) / (2 * np.pi) * n_phi).astype(np.int64)
    ip = np.clip(ip, 0, n_phi - 1)
    inwin = (ie >= 0) & (ie < n_eta)
    npix_c = n_eta * n_phi
    tcol = np.where((typ < 0) | (typ >= N_TYPES), UNKNOWN, typ).astype(np.int64)
    keys, vals = [], []
    for c in range(len(chans)):
        sel = inwin & memb[c][tcol]
        keys.append(ev[sel] * (len(chans) * npix_c) + c * npix_c + ie[sel] * n_phi + ip[sel])
        vals.append(pt[sel])
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    val = np.concatenate(vals) if vals else np.zeros(0)
    uk, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv.ravel(), weights=val, minlength=len(uk))
    tot = len(chans) * npix_c
    ev_of = uk // tot
    offsets = np.zeros(n_events + 1, np.int64)
    np.cumsum(np.bincount(ev_of, minlength=n_events), out=offsets[1:])
    return SparseEventImages(
        index=(uk % tot).astype(np.int32),
        value=summed.astype(np.float32),
        offsets=offsets,
        shape=(len(chans), n_eta, n_phi),
        channels=[c[0] for c in chans],
        eta_max=eta_max,
        event_id=ev_ids,
        collection=collection,
    )
