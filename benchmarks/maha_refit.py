"""Does the Mahalanobis score of a contrastive run improve when its Gaussian is fitted on more training jets?
(issue #12, docs/sensitivity.md "Where the contrastive representation holds the signal").

A contrastive run fits the Gaussian of its ``maha`` score on ``model.bank_size`` (4096) training jets at the
end of each epoch. This script embeds the first ``--train-chunks`` chunks of the QCD training sample with the
run's best model (``embed_in(batch, model.maha_space)``), refits mean and shrunk covariance (the run's
``maha_shrink``) on random subsets of N jets, and compares the event AUC (max of the two leading jets' scores)
of each refit with the run's own Gaussian on the QCD test sample against each signal. Label-free fits; the
labels only enter the AUC.

    python benchmarks/maha_refit.py runs/sensitivity --run runs/sensitivity/runs/aclr-label-free \
        --signals svj_r0.3_m20,svj_r0.1_m10,ttbar --out benchmarks/results/maha_refit.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def embed(method, rep, space: str, path: Path, max_chunks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, D], event_id [n]) of the two leading jets of every event in ``path``."""
    import torch

    from darkshower.data.dataset import open_dataset
    from darkshower.represent.build import build

    ds = open_dataset(path)
    feats, ev = [], []
    n = len(ds.chunks) if max_chunks is None else min(max_chunks, len(ds.chunks))
    for i in range(n):
        r = build(rep, ds.read_chunk(i))
        keep = np.asarray(r["jet_idx"]) < 2
        x, mask = r["x"][keep], r["mask"][keep]
        with torch.no_grad():
            for a in range(0, len(x), 4096):
                b = {"x": torch.as_tensor(x[a:a + 4096]), "mask": torch.as_tensor(mask[a:a + 4096])}
                feats.append(method.embed_in(b, space).double().numpy())
        ev.append(np.asarray(r["event_id"])[keep])
    return np.concatenate(feats), np.concatenate(ev)


def event_max(score: np.ndarray, event_id: np.ndarray) -> np.ndarray:
    order = np.argsort(event_id, kind="stable")
    _, start = np.unique(event_id[order], return_index=True)
    return np.maximum.reduceat(score[order], start)


def fit(feats: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of a Gaussian with covariance + shrink * mean variance * identity (as the run's fit)."""
    cov = np.cov(feats.T)
    cov += shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    return feats.mean(0), np.linalg.inv(cov)


def main(argv=None) -> int:
    import torch
    from sklearn.metrics import roc_auc_score

    from darkshower.data.dataset import atomic_write_json
    from darkshower.models.runs import load_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", help="benchmark directory (data/qcd_train, data/qcd_test, data/<signal>)")
    ap.add_argument("--run", required=True, help="contrastive run with model.score maha")
    ap.add_argument("--signals", required=True, help="comma-separated signal names under BENCH/data")
    ap.add_argument("--sizes", default="4096,16384,0", help="training jets per refit (0: all embedded)")
    ap.add_argument("--train-chunks", type=int, default=40, help="chunks of the training sample to embed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    bench = Path(args.bench)
    method, rep, _, _ = load_run(args.run)
    space = method.config.maha_space
    shrink = float(method.config.maha_shrink)
    train, _ = embed(method, rep, space, bench / "data" / "qcd_train", args.train_chunks)
    gauss = {f"run ({method.config.bank_size} jets)": (method.gauss_mean.double().numpy(),
                                                        method.gauss_prec.double().numpy())}
    perm = np.random.default_rng(0).permutation(len(train))
    for n in (int(v) for v in args.sizes.split(",")):
        n = len(train) if n <= 0 else min(n, len(train))
        gauss[f"refit {n}"] = fit(train[perm[:n]], shrink)
    qcd, qcd_ev = embed(method, rep, space, bench / "data" / "qcd_test")
    out: dict = {"command": "python " + " ".join(sys.argv), "run": str(args.run), "space": space, "shrink": shrink,
                 "train_jets_embedded": int(len(train)), "auc_max_of_two": {}}
    for sig in args.signals.split(","):
        feats, ev = embed(method, rep, space, bench / "data" / sig)
        row = {}
        for name, (mu, prec) in gauss.items():
            b = event_max((((qcd - mu) @ prec) * (qcd - mu)).sum(1), qcd_ev)
            s = event_max((((feats - mu) @ prec) * (feats - mu)).sum(1), ev)
            row[name] = float(roc_auc_score(np.r_[np.zeros(len(b)), np.ones(len(s))], np.r_[b, s]))
        out["auc_max_of_two"][sig] = row
        print(sig, {k: round(v, 4) for k, v in row.items()}, flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
