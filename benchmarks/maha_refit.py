"""Does the Mahalanobis score of a contrastive run improve when its Gaussian is fitted on more training jets?
(issue #12, docs/sensitivity.md "Where the contrastive representation holds the signal").

A contrastive run fits the Gaussian of its ``maha`` score on ``model.bank_size`` (4096) training jets at the
end of each epoch. This script embeds the two leading jets of the first ``--train-jets`` jets of the QCD
training sample with the run's best model (``contrastive_density.features``), refits the Gaussian with the
run's own ``fit_gaussian`` (its ``maha_space`` and ``maha_shrink``) on random subsets of N jets, and compares
the event AUC (max of the two leading jets' scores) of each refit with the run's own Gaussian on the QCD test
sample against each signal. Label-free fits; the labels only enter the AUC.

    python benchmarks/maha_refit.py runs/sensitivity --run runs/sensitivity/runs/aclr-label-free \
        --signals svj_r0.3_m20,svj_r0.1_m10,ttbar --out benchmarks/results/maha_refit.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    import torch
    from contrastive_density import event_max, features

    from darkshower.data.dataset import atomic_write_json
    from darkshower.evaluate.metrics import auc
    from darkshower.models.runs import load_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", help="benchmark directory (data/qcd_train, data/qcd_test, data/<signal>)")
    ap.add_argument("--run", required=True, help="contrastive run with model.score maha")
    ap.add_argument("--signals", required=True, help="comma-separated signal names under BENCH/data")
    ap.add_argument("--sizes", default="4096,16384,0", help="training jets per refit (0: all embedded)")
    ap.add_argument("--train-jets", type=int, default=40000, help="training jets to embed (whole chunks)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    bench = Path(args.bench)
    method, _, _, _ = load_run(args.run)
    space = method.config.maha_space
    train = features(Path(args.run), str(bench / "data" / "qcd_train"), args.train_jets)[space]
    gauss = {f"run ({method.config.bank_size} jets)": (method.gauss_mean.clone(), method.gauss_prec.clone())}
    perm = np.random.default_rng(0).permutation(len(train))
    for n in (int(v) for v in args.sizes.split(",")):
        n = len(train) if n <= 0 else min(n, len(train))
        method.fit_gaussian(torch.as_tensor(train[perm[:n]]))
        gauss[f"refit {n}"] = (method.gauss_mean.clone(), method.gauss_prec.clone())

    def scores(f: dict, mean, prec) -> np.ndarray:
        method.gauss_mean.copy_(mean)
        method.gauss_prec.copy_(prec)
        x = torch.as_tensor(f[space]).float()
        with torch.no_grad():
            s = event_max(f, method.maha_distance(x, x, check=False).double().numpy())
        return s[np.isfinite(s)]

    qcd = features(Path(args.run), str(bench / "data" / "qcd_test"))
    out: dict = {"command": "python " + " ".join(sys.argv), "run": str(args.run), "space": space,
                 "shrink": float(method.config.maha_shrink), "train_jets_embedded": int(len(train)),
                 "auc_max_of_two": {}}
    for sig in args.signals.split(","):
        f = features(Path(args.run), str(bench / "data" / sig))
        row = {name: auc(scores(f, *g), scores(qcd, *g)) for name, g in gauss.items()}
        out["auc_max_of_two"][sig] = row
        print(sig, {k: round(v, 4) for k, v in row.items()}, flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
