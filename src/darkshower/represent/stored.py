"""Jet observables stored per jet by formats without constituents (CMS TreeMaker ntuples; the NanoAOD names
serve PFNano jets without linked candidates): what :mod:`darkshower.represent.observables` uses for a jet whose
constituent list is empty.

Such a jet takes its ``pt, eta, phi, mass`` from the jet record and, where the importer kept them, the
substructure observables the format computed (:data:`STORED_FIELDS`; their definitions are the producer's, e.g.
CMS N-subjettiness and N2 on PUPPI-weighted candidates, which match darkshower's within the producer's choices).
``tau21`` and ``tau32`` are the ratios of the stored taus. Every other jet observable needs the constituents; a
run trained on such data leaves it out (:func:`darkshower.represent.build.adapt_to_data`).
"""

from __future__ import annotations

import numpy as np

#: darkshower jet observable -> the stored jet fields that carry it, the first present wins (the importers'
#: ``cms_<branch>``: TreeMaker ``JetsAK8_<x>``, NanoAOD ``FatJet_<x>``; docs/importers.md)
STORED_FIELDS: dict[str, tuple[str, ...]] = {
    "msoftdrop": ("cms_softDropMass", "cms_msoftdrop"),
    "tau1": ("cms_NsubjettinessTau1", "cms_tau1"),
    "tau2": ("cms_NsubjettinessTau2", "cms_tau2"),
    "tau3": ("cms_NsubjettinessTau3", "cms_tau3"),
    "n2": ("cms_ecfN2b1", "cms_n2b1"),
    "girth": ("cms_girth",),
    "ptd": ("cms_ptD",),
    "axis_major": ("cms_axismajor",),
    "axis_minor": ("cms_axisminor",),
    "n_constituents": ("cms_multiplicity", "cms_nConstituents"),
    "n_charged": ("cms_chargedMultiplicity",),
}
#: observables every jet record has (its four-vector)
RECORD_COLUMNS = ("pt", "eta", "phi", "mass")
#: ratios of two stored observables: column -> (numerator, denominator)
DERIVED: dict[str, tuple[str, str]] = {"tau21": ("tau2", "tau1"), "tau32": ("tau3", "tau2")}
#: per-event observables computed from the jet constituents (or the event's particles when it has them)
CONSTITUENT_EVENT_COLUMNS = ("n_event_constituents", "n_event_particles", "sphericity", "aplanarity")


def stored_sources(jet_fields) -> dict[str, str]:
    """The stored field each observable comes from, for a jet record with ``jet_fields``."""
    have = set(jet_fields)
    out = {}
    for col, names in STORED_FIELDS.items():
        for name in names:
            if name in have:
                out[col] = name
                break
    return out


def available_without_constituents(jet_fields) -> list[str]:
    """The jet observables a jet without constituents can have: its four-vector, the stored ones and their
    ratios (:data:`DERIVED`), in :data:`darkshower.represent.config.OBS_JET_COLUMNS` order."""
    from darkshower.represent.config import OBS_JET_COLUMNS

    src = stored_sources(jet_fields)
    have = set(RECORD_COLUMNS) | set(src) | {c for c, (a, b) in DERIVED.items() if a in src and b in src}
    return [c for c in OBS_JET_COLUMNS if c in have]


def fill_empty_jets(arr: np.ndarray, columns, flat_jets, rows: np.ndarray,
                    record: dict[str, np.ndarray]) -> dict[str, int]:
    """Fill rows ``rows`` of the jet-observables array ``arr`` (columns ``columns``) for jets without
    constituents: ``record`` gives the jets' four-vector columns (already flat, all jets), ``flat_jets`` the jet
    records (an awkward array, one per row of ``arr``) whose stored fields give the rest (:data:`STORED_FIELDS`).
    Columns without a source keep their values (0 from the constituent kernel).

    Every stored observable is >= 0; producers write placeholders where one is undefined (CMS: N2 = -99999 or
    -99968 for a jet soft drop leaves with < 3 candidates, msoftdrop = -1). Negative and non-finite stored values
    become 0 — the constituent kernel's value for an undefined observable — and are counted: returns
    ``{column: number of values replaced}`` (columns with none left out)."""
    import awkward as ak

    if not len(rows):
        return {}
    index = {c: i for i, c in enumerate(columns)}
    for c in RECORD_COLUMNS:
        arr[rows, index[c]] = record[c][rows]
    vals: dict[str, np.ndarray] = {}
    replaced: dict[str, int] = {}
    for col, name in stored_sources(ak.fields(flat_jets)).items():
        v = ak.to_numpy(flat_jets[name]).astype(np.float64)[rows]
        bad = ~(np.isfinite(v) & (v >= 0))
        if bad.any():
            v = np.where(bad, 0.0, v)
            replaced[col] = int(bad.sum())
        vals[col] = v
        arr[rows, index[col]] = v
    for col, (a, b) in DERIVED.items():
        if a in vals and b in vals:
            arr[rows, index[col]] = np.divide(vals[a], vals[b], out=np.zeros(len(rows)), where=vals[b] > 0)
    return replaced
