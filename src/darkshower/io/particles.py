"""Whole-event particle lists → jets with the shared FastJet clustering (``cluster_jets``)."""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from darkshower.io.common import CONSTITUENT_DTYPES, JET_DTYPES


def cluster_particles(flat: dict[str, np.ndarray], per_event: np.ndarray, opts: dict[str, Any]) -> ak.Array:
    """Cluster flat particle columns (pt, eta, phi, e, charge, pid, type[, d0]) grouped by
    ``per_event`` with :func:`darkshower.simulate.jets.cluster_jets`; returns schema-typed jets."""
    from darkshower.simulate.jets import cluster_jets

    pt = np.asarray(flat["pt"], dtype=np.float64)
    eta = np.asarray(flat["eta"], dtype=np.float64)
    phi = np.asarray(flat["phi"], dtype=np.float64)
    cols = {
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
        "e": np.asarray(flat["e"], dtype=np.float64),
    }
    names = [k for k in flat if k not in ("px", "py", "pz")]
    for k in names:
        if k != "e":
            cols[k] = np.asarray(flat[k]).astype(CONSTITUENT_DTYPES.get(k, np.float32), copy=False)
    particles = ak.unflatten(ak.zip(cols, depth_limit=1), np.asarray(per_event, dtype=np.int64))
    jets = cluster_jets(
        particles,
        radius=float(opts["radius"]),
        pt_min=float(opts["jet_pt_min"]),
        eta_max=float(opts["eta_max"]),
    )
    cons = jets.constituents
    cfields = {k: ak.values_astype(cons[k], CONSTITUENT_DTYPES.get(k, np.float32)) for k in names}
    jfields = {k: ak.values_astype(jets[k], JET_DTYPES[k]) for k in ("pt", "eta", "phi", "mass", "n_constituents")}
    jfields["constituents"] = ak.zip(cfields, depth_limit=3)
    return ak.zip(jfields, depth_limit=2)


def reclustered_jet_definition(options: dict[str, Any], source: str) -> dict[str, Any]:
    """Manifest jet definition of formats whose jets darkshower clusters itself (cluster_particles)."""
    return {
        "algorithm": "antikt",
        "radius": float(options["radius"]),
        "pt_min": float(options["jet_pt_min"]),
        "eta_max": float(options["eta_max"]),
        "source": source,
    }
