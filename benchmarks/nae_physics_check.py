"""Physics check of the energy-based AEs (complexity bias): train ae-hlf, nae and wnae on QCD and
compare their AUCs for QCD vs SVJ and QCD vs top (ttbar) leading jets in a common pT window.

Run (datasets from ``darkshower generate``; see docs/methods/nae.md):
    .venv/bin/python benchmarks/nae_physics_check.py --qcd data/qcd --qcd-test data/qcd_test \\
        --signal svj=data/svj --signal ttbar=data/ttbar --out runs/nae_check [--seeds 0,1,2] \\
        [--set nae:model.x_steps=8 ...] [--config nae=configs/methods/nae-paper.yaml]
Prints a table and writes OUT/auc.json. Labels are used here only to evaluate, never to train
or select. A plain AE often scores top jets *lower* than QCD (AUC < 0.5, complexity bias);
the NAE/WNAE should do better.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import numpy as np


def leading_jet_scores(run: Path, datasets: dict[str, str], pt_window: tuple[float, float],
                       which: str = "best") -> dict[str, np.ndarray]:
    import awkward as ak
    import pandas as pd

    from darkshower.data.dataset import open_dataset
    from darkshower.train import score

    out = {}
    for name, path in datasets.items():
        jets_file, _ = score(run, [path], run / f"scores_{name}.parquet", which=which, progress=False, threads=1)
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
    ap.add_argument("--epochs", default="ae-hlf:30,nae:30,wnae:30", help="METHOD:EPOCHS,... (0 or not listed: the "
                    "config's epochs)")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE", help="config override")
    ap.add_argument("--pt-min", type=float, default=300.0)
    ap.add_argument("--pt-max", type=float, default=700.0)
    ap.add_argument("--config", action="append", default=[], metavar="METHOD=FILE", help="training config YAML")
    ap.add_argument("--seeds", default="0", help="comma-separated run seeds (AUCs reported per seed and averaged)")
    ap.add_argument("--model", default="best", choices=["best", "last"])
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from darkshower.config import load_yaml, parse_assignment, set_nested
    from darkshower.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = dict(kv.split(":") for kv in args.epochs.split(","))
    signals = dict(s.split("=", 1) for s in args.signal)
    configs = dict(c.split("=", 1) for c in args.config)
    seeds = [int(x) for x in args.seeds.split(",")]
    results = {}
    for method in args.methods.split(","):
        cfg = load_yaml(configs[method]) if method in configs else {}
        cfg.setdefault("threads", 1)
        cfg.setdefault("data", {}).setdefault("jet_pt_min", args.pt_min)
        cfg.setdefault("early_stopping", {"patience": None})
        for item in args.set:
            m, _, kv = item.partition(":")
            if m == method:
                k, v = parse_assignment(kv)
                set_nested(cfg, k, v)
        rows = []
        for seed in seeds:
            run = out / f"{method}_s{seed}"
            t0 = time.perf_counter()
            if not (run / "run.json").exists():
                n_ep = int(epochs.get(method, 0)) or None  # 0 / not listed: the config's epochs
                train(method, args.qcd, run, config=cfg, epochs=n_ep, seed=seed, progress=False)
            t_train = time.perf_counter() - t0
            hist = json.loads((run / "metrics.json").read_text())
            info = json.loads((run / "run.json").read_text())
            scores = leading_jet_scores(run, {"qcd": args.qcd_test, **signals}, (args.pt_min, args.pt_max), args.model)
            row = {"seed": seed, "train_seconds": t_train, "best_epoch": info.get("best_epoch"), "epochs": len(hist),
                   "n_qcd": int(len(scores["qcd"]))}
            for name in signals:
                s_b, s_s = scores["qcd"], scores[name]
                y = np.r_[np.zeros(len(s_b)), np.ones(len(s_s))]
                row[f"auc_{name}"] = float(roc_auc_score(y, np.r_[s_b, s_s]))
                row[f"n_{name}"] = int(len(s_s))
            rows.append(row)
            print(method, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        summary = {f"auc_{n}_mean": float(np.mean([r[f"auc_{n}"] for r in rows])) for n in signals}
        summary.update({f"auc_{n}_std": float(np.std([r[f"auc_{n}"] for r in rows])) for n in signals})
        results[method] = {"runs": rows, **summary}
    (out / "auc.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    names = list(signals)
    print(f"\n{'method':10s} " + " ".join(f"{'AUC ' + n:>16s}" for n in names) + f"   (mean +- std over seeds {seeds})")
    for m, r in results.items():
        print(f"{m:10s} " + " ".join(f"{r[f'auc_{n}_mean']:9.3f} +- {r[f'auc_{n}_std']:.3f}" for n in names))

if __name__ == "__main__":
    main()
