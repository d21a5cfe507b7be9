"""The event schema of a darkshower dataset, in one place.

Every chunk holds one record per event. The fields below are what every stage may rely
on; producers (generators, importers) may add more fields (documented in docs/data-format.md).
"""

from __future__ import annotations

import awkward as ak

from darkshower.errors import DatasetError

SCHEMA_VERSION = "1.0"
FORMAT_NAME = "darkshower-dataset"

#: Candidate / constituent types (column ``jets.constituents.type``).
CANDIDATE_TYPES = {
    0: "charged hadron (track)",
    1: "electron",
    2: "muon",
    3: "photon (ECAL neutral)",
    4: "neutral hadron (HCAL neutral)",
}
CHARGED_HADRON, ELECTRON, MUON, PHOTON, NEUTRAL_HADRON = range(5)

EVENT_FIELDS = {
    "event_id": ("int64", "unique id inside the dataset: (chunk << 32) | event"),
    "chunk": ("int32", "chunk index"),
    "event": ("int32", "event number inside the chunk (generator event counter for generated data)"),
    "weight": ("float64", "event weight (1 unless biased generation or imported weights)"),
    "met_pt": ("float32", "missing transverse momentum magnitude [GeV] from what the detector sees"),
    "met_phi": ("float32", "missing transverse momentum azimuth"),
    "jets": ("var * record", "anti-kt jets (radius in manifest), sorted by decreasing pT"),
}
JET_FIELDS = {
    "pt": ("float32", "jet transverse momentum [GeV]"),
    "eta": ("float32", "pseudorapidity"),
    "phi": ("float32", "azimuth in (-pi, pi]"),
    "mass": ("float32", "jet mass [GeV]"),
    "constituents": ("var * record", "constituents, sorted by decreasing pT"),
}
CONSTITUENT_FIELDS = {
    "pt": ("float32", "transverse momentum [GeV]"),
    "eta": ("float32", "pseudorapidity"),
    "phi": ("float32", "azimuth"),
    "e": ("float32", "energy [GeV]"),
    "charge": ("int8", "electric charge (0 for neutrals)"),
    "pid": ("int32", "PDG id (generator level) or candidate-type stand-in id (detector level)"),
    "type": ("int8", "candidate type, see CANDIDATE_TYPES"),
}


def validate_events(events: ak.Array, where: str) -> None:
    """Raise DatasetError naming the first missing required field."""
    fields = set(ak.fields(events))
    for name in EVENT_FIELDS:
        if name not in fields:
            raise DatasetError(
                f"{where}: required event field '{name}' is missing (has: {sorted(fields)}); "
                "the dataset was not written by a compatible darkshower version"
            )
    jet_fields = set(ak.fields(events.jets))
    for name in JET_FIELDS:
        if name not in jet_fields:
            raise DatasetError(f"{where}: required jet field 'jets.{name}' is missing (has: {sorted(jet_fields)})")
    cfields = set(ak.fields(events.jets.constituents))
    for name in CONSTITUENT_FIELDS:
        if name not in cfields:
            raise DatasetError(
                f"{where}: required constituent field 'jets.constituents.{name}' is missing (has: {sorted(cfields)})"
            )
