"""A jet-only supervised reference for the sensitivity grid (issue #12, docs/sensitivity.md).

The grid's supervised upper bound (``evaluate``'s BDT) sees the event: MET, M_T, m_jj, ... and the two
leading jets' observables. A detector that sees only jets (``train auto`` on data without MET; any jet-level
method) is bounded by what the jets carry, so its fair reference is the same classifier on the jet columns
alone (``j0_*``, ``j1_*``); a detector on data without MET that also sees m_jj and the event shape
(``train auto``'s event-level flow without the MET topology) compares with the BDT on every column but
the MET ones (``no_met_bdt``: :func:`darkshower.represent.config.met_column`). This script trains all
three (same halves, seeds and classifier as ``evaluate``: :func:`darkshower.evaluate.supervised.train_and_score`,
seed = 0 + signal index) and prints/writes their AUC
and, given a combinations JSON of ``benchmarks/sensitivity_combinations.py``, the ratio of its rows to each.

    python benchmarks/jet_level_reference.py runs/sensitivity [--combinations JSON] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from darkshower.data.dataset import atomic_write_json
    from darkshower.evaluate import supervised as sup
    from darkshower.evaluate.metrics import auc
    from darkshower.evaluate.tables import load_dataset
    from darkshower.represent.config import met_column

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="benchmark directory (evaluation/metrics.json names the samples)")
    ap.add_argument("--combinations", default=str(REPO / "benchmarks" / "results" / "sensitivity_combinations.json"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sensitivity_jet_reference.json"))
    ap.add_argument("--rows", default="", help="comma-separated further rows of the combinations JSON to compare "
                    "(e.g. fisher(gmm+flow+flow-event-jets))")
    args = ap.parse_args(argv)
    args.rows = [r for r in args.rows.split(",") if r]
    bench = Path(args.bench)
    metrics = json.loads((bench / "evaluation" / "metrics.json").read_text())
    ref = {r["signal"]: r["auc"]["value"] for r in metrics["results"] if r.get("supervised")}
    bkg = load_dataset(metrics["background"][0]["path"], "background", features=True)
    wb = bkg.events["weight"].to_numpy(np.float64)
    out: dict = {"command": "python " + " ".join(sys.argv), "signals": {}}
    for j, s in enumerate(metrics["signals"]):
        sd = load_dataset(s["path"], "signal", features=True)
        ws = sd.events["weight"].to_numpy(np.float64)
        row = {"event_bdt_in_metrics": ref.get(s["name"])}
        refs = (("event_bdt", None), ("jet_bdt", lambda c: c.startswith(("j0_", "j1_"))),
                ("no_met_bdt", lambda c: not met_column(c)))
        for label, keep in refs:
            fb, fs = bkg.features, sd.features
            if keep is not None:
                cols = ["event_id", *[c for c in fb.columns if keep(c) and c != "event_id"]]
                fb, fs = fb[cols], fs[[c for c in cols if c in fs.columns]]
            r = sup.train_and_score(fb, fs, wb, ws, seed=j)
            row[label] = float(auc(r["score_sig"][r["test_sig"]], r["score_bkg"][r["test_bkg"]],
                                   ws[r["test_sig"]], wb[r["test_bkg"]]))
            row[f"{label}_features"] = len(r["features"])
        out["signals"][s["name"]] = row
        print(f"{s['name']:14s} event BDT {row['event_bdt']:.3f} (metrics.json {row['event_bdt_in_metrics']:.3f})  "
              f"jet-only BDT {row['jet_bdt']:.3f}  without MET {row['no_met_bdt']:.3f}", flush=True)
    comb = Path(args.combinations)
    if comb.exists():
        rows = json.loads(comb.read_text())["rows"]
        keep = [k for k in rows if k.endswith("per jet") or k in ("gmm", "flow") or k in args.rows]
        for ref in ("jet_bdt", "no_met_bdt"):
            out[f"ratios_to_{ref}"] = {k: {n: rows[k][n]["auc"] / out["signals"][n][ref] for n in out["signals"]}
                                       for k in keep}
            print(f"ratio to the {ref}")
            for k, v in out[f"ratios_to_{ref}"].items():
                print(f"{k:36s}" + "".join(f"{x:7.3f}" for x in v.values()))
    atomic_write_json(args.out, out)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
