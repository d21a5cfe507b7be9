"""The default end-to-end job behind ``make demo``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from darkshower.data.dataset import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

#: embedded defaults: a small QCD and SVJ sample in a common jet selection
DEMO_SAMPLES = {
    "qcd": {"process": "qcd", "params": {"pthat_min": 300.0}},
    "svj": {"process": "svj", "params": {"m_med": 2000.0, "m_dark": 20.0, "r_inv": 0.3}},
}


def run_demo(out: str | Path, events: int = 1000, seed: int = 1, jobs: int | None = None,
             progress: bool | None = None) -> dict:
    from darkshower.evaluate.quicklook import basic_quantities, compare_plots, summary_table
    from darkshower.simulate.run import generate, versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    configs, samples = {}, {}
    for name, base in DEMO_SAMPLES.items():
        cfg = {**base, "events": events, "seed": seed, "chunk_size": max(events // 4, 50)}
        configs[name] = cfg
        print(f"[demo] generating {events} {name} events ...", flush=True)
        ds = generate(cfg, out / "data" / name, jobs=jobs, progress=progress, command=["darkshower", "demo"])
        samples[name] = basic_quantities(ds.arrays())
    plots = compare_plots(samples, out / "summary")
    table = summary_table(samples)
    result = {
        "seconds": round(time.perf_counter() - t0, 1),
        "samples": table,
        "plots": [str(p.relative_to(out)) for p in plots],
        "datasets": {k: str(out / "data" / k) for k in samples},
    }
    atomic_write_json(out / "run.json", {"kind": "demo", "configs": configs, "seed": seed, "versions": versions()})
    atomic_write_json(out / "summary" / "summary.json", result)
    md = ["# darkshower demo summary", "", "| sample | events | <lead pT> | <lead mass> | <constituents> | <MET> | <MT> |",
          "|---|---|---|---|---|---|---|"]
    for k, r in table.items():
        md.append(f"| {k} | {r['events']} | {r['mean_lead_jet_pt']:.0f} | {r['mean_lead_jet_mass']:.1f} | "
                  f"{r['mean_lead_jet_n_constituents']:.1f} | {r['mean_met_pt']:.1f} | {r['mean_mt_dijet_met']:.0f} |")
    md += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    atomic_write_text(out / "summary" / "summary.md", "\n".join(md) + "\n")
    print("\n".join(md[2:2 + 2 + len(table)]))
    print(f"[demo] done in {result['seconds']} s; summary: {out / 'summary' / 'summary.md'}")
    return result


__all__ = ["run_demo", "DEMO_SAMPLES"]
