"""Recompute a run's validation scores (``RUN/val_scores.npy``, the ``eff_b`` reference of ``score``) with the
installed darkshower, after a scoring fix that leaves the trained model valid (docs/sensitivity.md: the sign of
the flow's missing-jet term). The validation events are the run's own split of its training data
(``event_fraction(event_id, seed) < data.val_fraction``); the old file is kept as ``val_scores_before.npy``.
A ``train auto`` run built on such a member recalibrates on ``darkshower train auto ... --resume``.

    python benchmarks/recompute_val_scores.py runs/sensitivity-aachen/runs/flow-event-x \
        runs/sensitivity-aachen/runs/auto/members/event-flow --data runs/sensitivity-aachen/data/qcd_train
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    from darkshower.models.runs import read_run_config
    from darkshower.train.data import event_fraction
    from darkshower.train.score import score

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", nargs="+", required=True, help="the runs' training datasets")
    args = ap.parse_args(argv)
    for run in args.runs:
        cfg = read_run_config(run)
        if cfg.data.max_val or cfg.data.jet_pt_min or cfg.data.jet_pt_max or cfg.data.jet_mass_min or cfg.data.jet_mass_max:
            raise SystemExit(f"{run}: its data section selects validation rows (max_val / jet window); not supported")
        with tempfile.TemporaryDirectory() as tmp:
            f, _ = score(run, args.data, Path(tmp) / "val.parquet", progress=False)
            t = pd.read_parquet(f)
        v = t[event_fraction(t["event_id"].to_numpy(), cfg.seed) < cfg.data.val_fraction]["score"].to_numpy(np.float64)
        v = np.sort(v[np.isfinite(v)])
        if not (run / "val_scores_before.npy").exists():
            shutil.copy(run / "val_scores.npy", run / "val_scores_before.npy")
        old = np.load(run / "val_scores_before.npy")
        np.save(run / "val_scores.npy", v)
        print(f"{run}: {len(v)} validation scores (before: {len(old)}); median {np.median(v):.4g} "
              f"(before {np.median(old):.4g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
