"""Physics check of the contrastive methods (numbers for the closing note, not a unit test).

Trains (or reuses) ``clr`` / ``aclr`` runs on background QCD, scores a separate QCD test sample and
signal samples, and reports for the leading jets in a common pT window:

- AUC of the ‖z‖ score and of the kNN score (signal vs QCD test; 0.5 = no separation, < 0.5 =
  the signal looks *more* typical than QCD);
- the linear-probe AUC (labels used: a diagnostic of the representation, reported separately);
- invariance: median relative change of each score under each physical augmentation (QCD test).

Example (datasets from `darkshower generate`):

    .venv/bin/python benchmarks/contrastive_physics_check.py --train data/qcd_train --test data/qcd_test \
        --signal svj=data/svj --signal ttbar=data/ttbar --methods clr,aclr --epochs 20 --out-dir runs/clr_check

Writes OUT_DIR/contrastive_physics.json. Keeps CPU modest (--threads 1 by default).
"""

from __future__ import annotations

import os
import sys

_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--threads"), "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def leading_clouds(rep, dataset, pt_lo: float, pt_hi: float):
    """Point clouds (x, mask) and event ids of the leading jets with pT in [pt_lo, pt_hi)."""
    from darkshower.data.dataset import open_dataset
    from darkshower.represent.build import build

    ds = open_dataset(dataset)
    xs, ms, ev = [], [], []
    for i in range(len(ds.chunks)):
        events = ds.read_chunk(i)
        r = build(rep, events)
        lead = r["jet_idx"] == 0
        import awkward as ak

        jpt = ak.to_numpy(ak.firsts(events["jets"]["pt"]))
        pos = np.searchsorted(np.asarray(events["event_id"]), r["event_id"])  # events sorted by id in a chunk
        ok = np.asarray(events["event_id"])[np.clip(pos, 0, len(jpt) - 1)] == r["event_id"]
        pt = np.where(ok, jpt[np.clip(pos, 0, len(jpt) - 1)], np.nan)
        sel = lead & (pt >= pt_lo) & (pt < pt_hi)
        xs.append(r["x"][sel])
        ms.append(r["mask"][sel])
        ev.append(r["event_id"][sel])
    return np.concatenate(xs), np.concatenate(ms), np.concatenate(ev)


def all_scores(method, x, mask, batch: int = 2048) -> dict:
    import torch

    out: dict[str, list] = {}
    with torch.no_grad():
        for a in range(0, len(x), batch):
            s = method.scores({"x": torch.as_tensor(x[a:a + batch]), "mask": torch.as_tensor(mask[a:a + batch])})
            for k, v in s.items():
                out.setdefault(k, []).append(v.double().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def auc(bkg: np.ndarray, sig: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg, sig]))


def invariance(method, x, mask, seed: int = 0) -> dict:
    """Median |s(aug) - s| / |s| per score and physical augmentation (fixed RNG)."""
    import torch

    from darkshower.represent import augment as A

    f = A.Features(method.spec["names"])
    xt, mt = method.inp.raw(torch.as_tensor(x), torch.as_tensor(mask).bool()), torch.as_tensor(mask).bool()
    base = all_scores(method, xt.numpy(), mt.numpy())
    cfg = method.config.augment
    augs = {
        "rotate": lambda g: A.rotate(xt, mt, f, generator=g),
        "translate_0.1": lambda g: A.translate(xt, mt, f, 0.1, generator=g),
        "permute": lambda g: A.permute(xt, mt, g),
        "smear": lambda g: A.smear(xt, mt, f, cfg.smear or 0.1, g),
        "collinear_split": lambda g: A.collinear_split(xt, mt, f, cfg.collinear or 0.1, g),
        "drop_soft": lambda g: A.drop_soft(xt, mt, f, cfg.drop_soft or 0.5, cfg.soft_pt, g),
        "all_physical(train config)": lambda g: A.physical(xt, mt, f, cfg, g),
    }
    out = {}
    for name, fn in augs.items():
        y, my = fn(torch.Generator().manual_seed(seed))
        s = all_scores(method, y.numpy(), my.numpy())
        out[name] = {k: float(np.median(np.abs(s[k] - base[k]) / np.maximum(np.abs(base[k]), 1e-12))) for k in base}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--signal", action="append", default=[], metavar="NAME=DATASET")
    ap.add_argument("--methods", default="clr,aclr")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pt-window", default="300,500", help="leading-jet pT window (GeV)")
    ap.add_argument("--config", default=None, help="extra train config (YAML) for every method")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="train config override")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    import torch

    from darkshower.config import load_yaml, parse_assignment, set_nested
    from darkshower.train import load_run, train
    from darkshower.train.probe import probe_embeddings

    torch.set_num_threads(args.threads)
    lo, hi = (float(v) for v in args.pt_window.split(","))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signals = dict(s.split("=", 1) for s in args.signal)
    results: dict = {"pt_window": [lo, hi], "train": args.train, "test": args.test, "signals": signals, "methods": {}}
    for method in args.methods.split(","):
        run = out_dir / method
        t0 = time.perf_counter()
        if not (run / "run.json").exists() or json.loads((run / "run.json").read_text()).get("status") != "complete":
            cfg = load_yaml(args.config) if args.config else {}
            cfg.setdefault("threads", args.threads)
            for item in args.set:
                k, v = parse_assignment(item)
                set_nested(cfg, k, v)
            train(method, args.train, run, config=cfg, epochs=args.epochs, progress=False,
                  resume=(run / "checkpoint.pt").exists())
        t_train = time.perf_counter() - t0
        m, rep, cfg, info = load_run(run)
        hist = json.loads((run / "metrics.json").read_text())
        xb, mb, eb = leading_clouds(rep, args.test, lo, hi)
        sb = all_scores(m, xb, mb)
        res = {"train_seconds": t_train, "epochs": len(hist), "best_epoch": info.get("best_epoch"),
               "final_val_loss": hist[-1].get("val_loss"), "n_qcd_test": int(len(xb)), "auc": {}, "probe_auc": {}}
        from darkshower.train.data import event_fraction

        zb = m.embed({"x": torch.as_tensor(xb), "mask": torch.as_tensor(mb)}).detach().double().numpy()
        for name, path in signals.items():
            xs, ms, es = leading_clouds(rep, path, lo, hi)
            ss = all_scores(m, xs, ms)
            res["auc"][name] = {k: auc(sb[k], ss[k]) for k in sb}
            res["auc"][name]["n_signal"] = int(len(xs))
            zs = m.embed({"x": torch.as_tensor(xs), "mask": torch.as_tensor(ms)}).detach().double().numpy()
            res["probe_auc"][name] = probe_embeddings(zb, zs, event_fraction(eb, 1) < 0.5, event_fraction(es, 2) < 0.5)
        res["invariance_median_rel_change"] = invariance(m, xb, mb)
        results["methods"][method] = res
        print(json.dumps({method: res}, indent=1), flush=True)
    (out_dir / "contrastive_physics.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_dir / 'contrastive_physics.json'}")


if __name__ == "__main__":
    main()
