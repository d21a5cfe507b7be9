"""Quick-look comparison of datasets: distributions of basic jet and event quantities."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from darkshower.represent.common import dijet_met_mass

QUANTITIES = {  # key -> axis label
    "lead_jet_pt": "leading jet $p_T$ [GeV]",
    "lead_jet_mass": "leading jet mass [GeV]",
    "lead_jet_n_constituents": "leading jet constituents",
    "met_pt": "missing $p_T$ [GeV]",
    "mt_dijet_met": "$M_T$(jj, MET) [GeV]",
    "n_jets": "number of jets",
}


def basic_quantities(events: ak.Array) -> dict[str, np.ndarray]:
    """Per-event numpy arrays of the quick-look quantities (events without jets are dropped)."""
    ev = events[ak.num(events.jets) > 0]
    lead = ev.jets[:, 0]
    out = {
        "lead_jet_pt": ak.to_numpy(lead.pt).astype(float),
        "lead_jet_mass": ak.to_numpy(lead.mass).astype(float),
        "lead_jet_n_constituents": ak.to_numpy(lead.n_constituents).astype(float),
        "met_pt": ak.to_numpy(ev.met_pt).astype(float),
        "n_jets": ak.to_numpy(ak.num(ev.jets)).astype(float),
        "weight": ak.to_numpy(ev.weight).astype(float),
    }
    out["mt_dijet_met"] = transverse_mass_dijet_met(ev)
    return out


def transverse_mass_dijet_met(events: ak.Array) -> np.ndarray:
    """MT of the system of the (up to) two leading jets and the MET (CMS SVJ search variable)."""
    return dijet_met_mass(events)[0]


def compare_plots(samples: dict[str, dict[str, np.ndarray]], out_dir: str | Path) -> list[Path]:
    """One normalized histogram per quantity, all samples overlaid; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, label in QUANTITIES.items():
        fig, ax = plt.subplots(figsize=(5, 4))
        allv = np.concatenate([s[key] for s in samples.values() if len(s[key])])
        if not len(allv):
            plt.close(fig)
            continue
        lo, hi = np.percentile(allv, [0.5, 99.5])
        if key in ("n_jets",):
            bins = np.arange(allv.min() - 0.5, allv.max() + 1.5)
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        for name, s in samples.items():
            ax.hist(s[key], bins=bins.tolist(), weights=s["weight"], density=True, histtype="step", lw=1.5, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("normalized")
        ax.legend()
        fig.tight_layout()
        p = out_dir / f"{key}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def summary_table(samples: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    table = {}
    for name, s in samples.items():
        w = s["weight"]
        table[name] = {
            "events": int(len(w)),
            **{f"mean_{k}": float(np.average(s[k], weights=w)) if len(w) else float("nan") for k in QUANTITIES},
        }
    return table
