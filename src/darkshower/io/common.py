"""Shared pieces of the importers: the reader interface, event/jet record builders, checks.

Every format module defines one :class:`Reader` subclass. The driver
(:func:`darkshower.io.import_dataset`) opens each input once to check it (``Reader.open``
must fail fast with :class:`InputFormatError` on a file of another format or with missing
fields), then reads it chunk by chunk with ``Reader.read(start, stop)`` (random access, so a
resumed run reads only the missing chunks and memory is bounded by the chunk size).

``read`` returns the event fields *without* ``event_id``/``chunk``/``event``; the driver adds
those. Records are built from flat numpy arrays with :func:`build_jets` (vectorized: no
Python loop over events, jets or particles).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from darkshower.data.schema import CHARGED_HADRON, ELECTRON, MUON, NEUTRAL_HADRON, PHOTON
from darkshower.errors import InputFormatError

#: constituent ``type`` used when the input does not say what a particle is (LHCO, 4-vector HDF5)
UNKNOWN_TYPE = -1

F32 = np.float32


class Reader:
    """One input file of one format. Subclasses set ``format_name`` and implement the methods."""

    format_name: ClassVar[str] = "?"
    #: option name -> default; the driver rejects options a format does not know
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: Path, options: dict[str, Any]):
        self.path = Path(path)
        self.opts = options
        self.n_events = 0
        #: per-event columns beyond the schema (source names), for the manifest
        self.extra_event_fields: list[str] = []
        #: per-jet columns beyond the schema
        self.extra_jet_fields: list[str] = []
        #: constituent fields beyond the required ones (d0, weight, ...)
        self.extra_constituent_fields: list[str] = []
        #: free-form facts about this file for the provenance (scalars stored in it, layout, ...)
        self.file_meta: dict[str, Any] = {}

    # -- interface -------------------------------------------------------------------------
    def open(self) -> None:
        """Open and check the file; set ``n_events``. Raise InputFormatError when unusable."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> dict[str, Any]:
        """Return event fields for rows [start, stop) (see :func:`event_fields`)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    @classmethod
    def jet_definition(cls, options: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def notes(cls, options: dict[str, Any]) -> dict[str, Any]:
        """What this format does not provide (MET, particle ids, ...), for the manifest."""
        return {}

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, what: str) -> InputFormatError:
        return InputFormatError(f"{self.path}: {what}")


# ------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------
def check_finite(path: Path, name: str, values: np.ndarray, row_start: int = 0, rows: np.ndarray | None = None) -> None:
    """Raise InputFormatError naming the file, the column and the first row holding NaN/inf.

    ``rows`` maps each entry of ``values`` (flattened along axis 0) to its row inside the chunk.
    """
    values = np.asarray(values)
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    flat_bad = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1)) if values.ndim > 1 else np.flatnonzero(bad)
    n_bad = int(bad.sum())
    first = int(flat_bad[0])
    row = int(rows[first]) if rows is not None else first
    raise InputFormatError(
        f"{path}: column '{name}' holds {n_bad} NaN/inf value(s), first in event row {row_start + row}; "
        "fix or drop those events (or pass --skip-bad-files to skip this file)"
    )


def check_numeric(path: Path, name: str, dtype, fmt: str, what: str = "numbers") -> None:
    """Raise InputFormatError when the input dataset/column ``name`` does not hold numbers
    (strings, objects, compound records), before anything is read from it."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.fields is not None:
        kind = {"S": "byte strings", "U": "strings", "O": "strings or objects", "V": "records"}.get(dtype.kind, "non-numbers")
        raise InputFormatError(
            f"{path}: dataset '{name}' holds {kind} (dtype {dtype.str}); format '{fmt}' needs {what}: "
            "convert it to a numeric array, or pass --skip-bad-files to skip this file"
        )


#: schema fields that must be finite numbers in every imported chunk (after the float32 cast)
FINITE_FIELDS = (
    ("weight",), ("met_pt",), ("met_phi",),
    ("jets", "pt"), ("jets", "eta"), ("jets", "phi"), ("jets", "mass"),
    ("jets", "constituents", "pt"), ("jets", "constituents", "eta"), ("jets", "constituents", "phi"),
    ("jets", "constituents", "e"),
)


def check_chunk_finite(path: Path, events: ak.Array, row_start: int = 0) -> None:
    """Raise InputFormatError naming the file, the field and the first event row where a schema
    kinematic field is NaN/inf in the finished chunk, e.g. an input value near 3.4e38 that
    overflows float32 (the readers check their inputs; this catches what the conversion makes)."""
    for field in FINITE_FIELDS:
        arr = events
        try:
            for part in field:
                arr = arr[part]
        except (KeyError, ValueError, ak.errors.FieldNotFoundError):
            continue
        flat = np.asarray(ak.flatten(arr, axis=None)) if arr.ndim > 1 else np.asarray(arr)
        if flat.dtype.kind != "f" or np.isfinite(flat).all():
            continue
        bad = ~np.isfinite(arr)
        while bad.ndim > 1:
            bad = ak.any(bad, axis=-1)
        rows = np.flatnonzero(np.asarray(bad))
        name = ".".join(field)
        raise InputFormatError(
            f"{path}: field '{name}' is NaN/inf in {len(rows)} event(s), first in event row {row_start + int(rows[0])} "
            "(input values too large for float32, |x| > 3.4e38, or inconsistent); fix or drop those events "
            "(or pass --skip-bad-files to skip this file)"
        )


def list_some(names, limit: int = 25) -> str:
    names = sorted(names)
    if len(names) <= limit:
        return ", ".join(names) if names else "(nothing)"
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def pdg_to_type(pdg: np.ndarray, charge: np.ndarray | None = None) -> np.ndarray:
    """Map (detector-level) PDG ids to CANDIDATE_TYPES, vectorized.

    ±11 electron, ±13 muon, 22 photon, 130 (and other neutrals) neutral hadron, charged others
    charged hadron. CMS HF candidates: 1 (hadronic) → neutral hadron, 2 (e.m.) → photon.
    """
    a = np.abs(np.asarray(pdg, dtype=np.int64))
    if charge is None:
        charged = np.isin(a, (211, 321, 2212, 3222, 3112, 3312, 3334, 11, 13))
    else:
        charged = np.asarray(charge) != 0
    out = np.where(charged, CHARGED_HADRON, NEUTRAL_HADRON).astype(np.int8)
    out[a == 11] = ELECTRON
    out[a == 13] = MUON
    out[(a == 22) | (a == 2)] = PHOTON
    out[(a == 130) | (a == 1)] = NEUTRAL_HADRON
    return out


def energy(pt, eta, mass=None) -> np.ndarray:
    pt = np.asarray(pt, dtype=np.float64)
    p = pt * np.cosh(np.asarray(eta, dtype=np.float64))
    if mass is None:
        return p
    m = np.asarray(mass, dtype=np.float64)
    return np.sqrt(p * p + m * m)


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Into (-pi, pi]."""
    out = np.mod(np.asarray(phi, dtype=np.float64) + math.pi, 2 * math.pi) - math.pi
    out[out <= -math.pi] += 2 * math.pi
    return out


def jet_p4_sums(pt, eta, phi, e, jet_of_con: np.ndarray, n_jets: int):
    """E-scheme sums per jet from flat constituent arrays → (pt, eta, phi, mass) float64."""
    from darkshower.simulate.jets import kinematics_from_p4

    pt = np.asarray(pt, dtype=np.float64)
    px = np.bincount(jet_of_con, pt * np.cos(phi), minlength=n_jets)
    py = np.bincount(jet_of_con, pt * np.sin(phi), minlength=n_jets)
    pz = np.bincount(jet_of_con, pt * np.sinh(np.asarray(eta, dtype=np.float64)), minlength=n_jets)
    ee = np.bincount(jet_of_con, np.asarray(e, dtype=np.float64), minlength=n_jets)
    return kinematics_from_p4(px, py, pz, ee)


# ------------------------------------------------------------------------------------------
# record builders
# ------------------------------------------------------------------------------------------
CONSTITUENT_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "e": np.float32,
    "charge": np.int8,
    "pid": np.int32,
    "type": np.int8,
    "d0": np.float32,
    "dz": np.float32,
    "weight": np.float32,
}
JET_DTYPES = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32, "n_constituents": np.int32}


def _cast(name: str, arr, table: dict) -> np.ndarray:
    arr = np.asarray(arr)
    dt = table.get(name)
    if dt is None and arr.dtype.kind == "f":
        dt = np.float32
    if dt is not None:
        arr = arr.astype(dt, copy=False)
    return np.ascontiguousarray(arr)  # Arrow needs contiguous buffers


def build_jets(
    jets_per_event: np.ndarray,
    jet_fields: dict[str, np.ndarray],
    cons_per_jet: np.ndarray,
    cons_fields: dict[str, np.ndarray],
    sort_jets: bool = True,
    sort_constituents: bool = True,
) -> ak.Array:
    """Events × jets × constituents from flat arrays (jets flat over events, constituents flat
    over jets, both in event/jet order). Sorts constituents (and, if asked, jets) by decreasing pT.

    ``jet_fields`` must hold pt, eta, phi, mass and may hold more; ``n_constituents`` is set here.
    """
    jets_per_event = np.asarray(jets_per_event, dtype=np.int64)
    cons_per_jet = np.asarray(cons_per_jet, dtype=np.int64)
    n_jets = int(jets_per_event.sum())
    cons = {k: _cast(k, v, CONSTITUENT_DTYPES) for k, v in cons_fields.items()}
    if sort_constituents and n_jets and not is_sorted_within(cons["pt"], cons_per_jet):
        jet_of_con = np.repeat(np.arange(n_jets), cons_per_jet)
        order = np.lexsort((-cons["pt"], jet_of_con))
        cons = {k: v[order] for k, v in cons.items()}
    cons_rec = ak.unflatten(ak.zip(cons, depth_limit=1), cons_per_jet) if cons else None
    jets = {k: _cast(k, v, JET_DTYPES) for k, v in jet_fields.items()}
    jets["n_constituents"] = cons_per_jet.astype(np.int32)
    if cons_rec is not None:
        jets["constituents"] = cons_rec
    flat = ak.zip(jets, depth_limit=1)
    if sort_jets and n_jets:
        ev_of_jet = np.repeat(np.arange(len(jets_per_event)), jets_per_event)
        order = np.lexsort((-jets["pt"], ev_of_jet))
        if not np.array_equal(order, np.arange(n_jets)):
            flat = flat[order]
    return ak.unflatten(flat, jets_per_event)


def is_sorted_within(values: np.ndarray, counts: np.ndarray) -> bool:
    """True when ``values`` decrease (weakly) inside every group of ``counts`` consecutive entries."""
    m = len(values)
    if m < 2:
        return True
    ok = values[1:] <= values[:-1]
    starts = np.cumsum(counts)[:-1]
    starts = starts[(starts > 0) & (starts < m)]
    ok[starts - 1] = True  # no order across group boundaries
    return bool(ok.all())


def empty_constituents(n_jets: int, with_d0: bool = False) -> dict[str, np.ndarray]:
    """Typed empty constituent columns (formats without constituents)."""
    names = ["pt", "eta", "phi", "e", "charge", "pid", "type"] + (["d0"] if with_d0 else [])
    return {k: np.zeros(0, CONSTITUENT_DTYPES[k]) for k in names}


def event_fields(
    n: int,
    jets: ak.Array,
    met_pt=None,
    met_phi=None,
    weight=None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The schema's per-event fields for one chunk (MET and weight default to 0 and 1)."""
    out: dict[str, Any] = {
        "weight": np.ones(n, np.float64) if weight is None else np.asarray(weight, dtype=np.float64),
        "met_pt": np.zeros(n, F32) if met_pt is None else np.asarray(met_pt, dtype=F32),
        "met_phi": np.zeros(n, F32) if met_phi is None else np.asarray(met_phi, dtype=F32),
        "jets": jets,
    }
    for k, v in (extra or {}).items():
        out[k] = v
    return out


def finish_chunk(fields: dict[str, Any], chunk_index: int, row_start: int) -> ak.Array:
    """Add event_id/chunk/event and zip into the chunk's record array."""
    n = len(fields["jets"])
    rows = np.arange(row_start, row_start + n, dtype=np.int64)
    if row_start + n >= 2**31:
        raise InputFormatError(f"input has more than 2^31 events in one file (row {row_start + n}); split it")
    head = {
        "event_id": (np.int64(chunk_index) << np.int64(32)) | rows,
        "chunk": np.full(n, chunk_index, np.int32),
        "event": rows.astype(np.int32),
    }
    return ak.zip({**head, **fields}, depth_limit=1)
