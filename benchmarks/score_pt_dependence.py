"""How a jet-level score depends on the jet's pT on background: Spearman's rank correlation of the score with
the jet pT, and the fraction of jets passing a cut at eff_b < CUT in each pT quartile (flat = decorrelated).

    python benchmarks/score_pt_dependence.py runs/flow-pt/scores/flow-pt-base.parquet \\
        runs/flow-pt/scores/flow-pt-nll.parquet --background runs/sensitivity/data/qcd_test [--cut 0.1] [--out JSON]

Reads the score files (darkshower score: per jet, with eff_b) and the background dataset's jet pT; no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def jet_pt(dataset: Path) -> pd.DataFrame:
    """(event_id, jet_idx, pt) of every jet of a darkshower dataset, numbered as the dataset (and score files)
    number them (darkshower.train.decorrelate.dataset_table, no jet window)."""
    from darkshower.models.runconfig import DataConfig
    from darkshower.train.decorrelate import dataset_table

    if not (Path(dataset) / "manifest.json").is_file():
        sys.exit(f"--background {dataset}: not a darkshower dataset (no manifest.json)")
    return dataset_table(dataset, DataConfig(), "jet", dataset_numbering=True)["pt"].reset_index()


def main(argv=None) -> int:
    from scipy.stats import spearmanr

    from darkshower.train.scorefiles import read_score_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scores", nargs="+", help="per-jet score files with eff_b")
    ap.add_argument("--background", required=True, help="the background dataset the files scored")
    ap.add_argument("--cut", type=float, default=0.1, help="eff_b cut (default 0.1)")
    ap.add_argument("--out", default=None, help="JSON output")
    args = ap.parse_args(argv)
    bkg = Path(args.background).resolve()
    pts = jet_pt(bkg)
    rows = {}
    for f in args.scores:
        t, meta = read_score_file(Path(f))
        if "eff_b" not in t.columns or (t["jet_idx"] < 0).all():
            sys.exit(f"{f}: needs a per-jet score file with eff_b (darkshower score of a calibrated jet-level run)")
        t = t[t["dataset"].map(lambda p: Path(p).resolve() == bkg)].merge(pts, on=["event_id", "jet_idx"])
        t = t[np.isfinite(t["score"])]
        if len(t) < 4:
            sys.exit(f"{f}: {len(t)} finite scores of jets of {bkg}; score the background dataset with it first")
        quartile = pd.qcut(t["pt"], 4, labels=False)
        passing = t.groupby(quartile)["eff_b"].apply(lambda e: float((e < args.cut).mean()))
        rows[Path(f).stem] = {"score_kind": meta.get("score_kind"), "n_jets": len(t),
                              "spearman_score_pt": float(spearmanr(t["score"], t["pt"]).statistic),
                              "pt_quartile_edges": [float(x) for x in np.quantile(t["pt"], [0, .25, .5, .75, 1])],
                              f"pass_fraction_eff_b_lt_{args.cut:g}_by_pt_quartile": [float(x) for x in passing]}
        r = rows[Path(f).stem]
        print(f"{Path(f).stem}: {r['n_jets']} jets, Spearman(score, pT) {r['spearman_score_pt']:+.3f}, "
              f"eff_b < {args.cut:g} by pT quartile " + " / ".join(f"{x:.3f}" for x in passing))
    if args.out:
        from darkshower.data.dataset import atomic_write_json

        atomic_write_json(Path(args.out), {"command": "python " + " ".join(sys.argv), "background": str(bkg),
                                           "rows": rows})
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
