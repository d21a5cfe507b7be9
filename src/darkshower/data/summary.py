"""Human-readable summary of a dataset (used by ``darkshower info``)."""

from __future__ import annotations

import awkward as ak
import numpy as np

from darkshower.data.dataset import open_dataset


def summarize(path, verify: bool = False) -> dict:
    ds = open_dataset(path, verify=verify)
    m = ds.manifest
    out = {
        "path": str(ds.path),
        "process": ds.process,
        "kind": m.get("kind", "?"),
        "schema_version": m.get("schema_version"),
        "status": m.get("status"),
        "n_events": ds.n_events,
        "n_chunks": len(ds.chunks),
        "bytes": sum(c["bytes"] for c in ds.chunks),
        "verified": verify,
        "parameters": m.get("parameters", {}),
        "jets": m.get("jets"),
        "detector": m.get("detector"),
        "cross_section": m.get("cross_section"),
        "versions": (m.get("provenance") or {}).get("versions"),
    }
    if ds.chunks:
        a = ds.read_chunk(0, columns=["met_pt", "jets.pt", "jets.mass", "jets.n_constituents"])
        lead = ak.drop_none(ak.firsts(a.jets))
        has = ak.num(a.jets) > 0
        out["stats"] = {
            "jets_per_event": float(ak.mean(ak.num(a.jets))) if len(a) else 0.0,
            "lead_pt_median": float(np.median(ak.to_numpy(lead.pt))) if ak.any(has) else float("nan"),
            "lead_mass_median": float(np.median(ak.to_numpy(lead.mass))) if ak.any(has) else float("nan"),
            "constituents_mean": float(ak.mean(ak.flatten(a.jets.n_constituents))) if ak.any(has) else 0.0,
            "met_mean": float(ak.mean(a.met_pt)) if len(a) else 0.0,
        }
    return out
