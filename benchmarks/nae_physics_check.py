"""Physics check of the energy-based AEs (complexity bias): train ae-hlf, nae and wnae on QCD and
compare their AUCs for QCD vs SVJ and QCD vs top (ttbar) leading jets in a common pT window.

Run (datasets from ``darkshower generate``; see docs/methods/nae.md):
    .venv/bin/python benchmarks/nae_physics_check.py --qcd data/qcd --qcd-test data/qcd_test \\
        --signal svj=data/svj --signal ttbar=data/ttbar --out runs/nae_check [--set nae:model.x_steps=8 ...]
Prints a table and writes OUT/auc.json. Labels are used here only to evaluate, never to train
or select. A plain AE often scores top jets *lower* than QCD (AUC < 0.5, complexity bias);
the NAE/WNAE should do better.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def leading_jet_scores(run: Path, datasets: dict[str, str], pt_window: tuple[float, float]) -> dict[str, np.ndarray]:
    import awkward as ak
    import pandas as pd

    from darkshower.data.dataset import open_dataset
    from darkshower.train import score

    out = {}
    for name, path in datasets.items():
        jets_file, _ = score(run, [path], run / f"scores_{name}.parquet", progress=False, threads=1)
        df = pd.read_parquet(jets_file)
        lead = df[df.jet_idx == 0].set_index("event_id")["score"]
        ev = open_dataset(path).arrays()
        pt = ak.to_numpy(ak.fill_none(ak.firsts(ev["jets"]["pt"]), 0.0))
        ids = ak.to_numpy(ev["event_id"])
        ptmap = pd.Series(pt, index=ids)
        joined = pd.concat([lead, ptmap.rename("pt")], axis=1, join="inner")
        sel = (joined.pt > pt_window[0]) & (joined.pt < pt_window[1])
        out[name] = joined.score[sel].to_numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qcd", required=True, help="QCD training dataset")
    ap.add_argument("--qcd-test", required=True, help="independent QCD dataset for the AUCs")
    ap.add_argument("--signal", action="append", default=[], metavar="NAME=DIR", help="anomaly datasets")
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="ae-hlf,nae,wnae")
    ap.add_argument("--epochs", default="ae-hlf:30,nae:30,wnae:30", help="METHOD:EPOCHS,...")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE", help="config override")
    ap.add_argument("--pt-min", type=float, default=300.0)
    ap.add_argument("--pt-max", type=float, default=700.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="best", choices=["best", "last"])
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from darkshower.config import parse_assignment, set_nested
    from darkshower.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = dict(kv.split(":") for kv in args.epochs.split(","))
    signals = dict(s.split("=", 1) for s in args.signal)
    results = {}
    for method in args.methods.split(","):
        cfg = {"threads": 1, "data": {"jet_pt_min": args.pt_min}, "early_stopping": {"patience": None}}
        for item in args.set:
            m, _, kv = item.partition(":")
            if m == method:
                k, v = parse_assignment(kv)
                set_nested(cfg, k, v)
        run = out / method
        t0 = time.perf_counter()
        if not (run / "run.json").exists():
            train(method, args.qcd, run, config=cfg, epochs=int(epochs.get(method, 30)), seed=args.seed, progress=False)
        t_train = time.perf_counter() - t0
        hist = json.loads((run / "metrics.json").read_text())
        info = json.loads((run / "run.json").read_text())
        scores = leading_jet_scores(run, {"qcd": args.qcd_test, **signals}, (args.pt_min, args.pt_max))
        row = {"train_seconds": t_train, "best_epoch": info.get("best_epoch"), "epochs": len(hist),
               "n_qcd": int(len(scores["qcd"]))}
        for name in signals:
            s_b, s_s = scores["qcd"], scores[name]
            y = np.r_[np.zeros(len(s_b)), np.ones(len(s_s))]
            row[f"auc_{name}"] = float(roc_auc_score(y, np.r_[s_b, s_s]))
            row[f"n_{name}"] = int(len(s_s))
        results[method] = row
        print(method, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    (out / "auc.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    names = list(signals)
    print(f"\n{'method':10s} " + " ".join(f"{'AUC ' + n:>10s}" for n in names) + "  best epoch")
    for m, r in results.items():
        print(f"{m:10s} " + " ".join(f"{r['auc_' + n]:10.3f}" for n in names) + f"  {r['best_epoch']}/{r['epochs']}")


if __name__ == "__main__":
    main()
