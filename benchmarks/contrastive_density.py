"""A Gaussian-mixture density on the frozen representation of a contrastive run, next to the run's own
scores, on a finished sensitivity benchmark (issue #12 item 5: a label-free score of clr/aclr/rs3l).

The run's ``maha`` score is the one-Gaussian density on its pooled encoder output (``model.maha_space``). This
script fits mixtures of ``k`` full-covariance Gaussians (sklearn ``GaussianMixture``) on the training QCD jets'
features — the pooled encoder output and the representation z — choosing ``k`` by the mean log-likelihood of
held-out training jets (label-free; 20 % of the events by ``event_fraction``), and scores every jet by
``-log p``. Event score: the max of the two leading jets, as for any jet-level method. AUC against the
benchmark's QCD test sample, with the run's ``maha`` and ``norm`` scores on the same jets beside it.
No signal is used except in the AUC.

    python benchmarks/contrastive_density.py runs/sensitivity --run runs/sensitivity/runs/aclr-label-free \
        --signals svj_r0.3_m20,svj_r0.3_m10 --out benchmarks/results/contrastive_density_1e5.json
"""

from __future__ import annotations

import os
import sys

_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--threads"), "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def features(run: Path, dataset: str, max_jets: int | None = None) -> dict[str, np.ndarray]:
    """Per jet (jet_idx 0 and 1 inside the run's jet window, as in training): event_id, jet_idx, pooled
    encoder output, z, and the run's scores."""
    import torch

    from darkshower.data.dataset import open_dataset
    from darkshower.models.runs import load_run
    from darkshower.represent.build import build
    from darkshower.represent.window import select_jets

    m, rep, cfg, _ = load_run(run)
    m.eval()
    ds = open_dataset(dataset)
    out: dict[str, list] = {}
    n = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(len(ds.chunks)):
            r = build(rep, select_jets(ds.read_chunk(i), cfg.data))
            sel = np.asarray(r["jet_idx"]) < 2
            x, mask = np.asarray(r["x"])[sel], np.asarray(r["mask"])[sel]
            out.setdefault("event_id", []).append(np.asarray(r["event_id"], np.int64)[sel])
            out.setdefault("jet_idx", []).append(np.asarray(r["jet_idx"], np.int64)[sel])
            for a in range(0, len(x), 4096):
                b = {"x": torch.as_tensor(x[a:a + 4096]), "mask": torch.as_tensor(mask[a:a + 4096])}
                mk = b["mask"].bool()
                pooled, z = m.encode_both(m.inp.raw(b["x"], mk), mk)
                out.setdefault("pooled", []).append(pooled.double().numpy())
                out.setdefault("z", []).append(z.double().numpy())
                for k, v in m.scores(b).items():
                    out.setdefault(k, []).append(v.double().numpy())
            n += int(sel.sum())
            print(f"  {Path(dataset).name}: chunk {i + 1}/{len(ds.chunks)}, {n} jets embedded "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if max_jets is not None and n >= max_jets:
                break
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_gmm(x: np.ndarray, val: np.ndarray, ks, seed: int):
    """The mixture with the highest mean validation log-likelihood among ``ks`` components (label-free)."""
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x)
    best, table = None, {}
    for k in ks:
        g = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=300).fit(
            sc.transform(x))
        table[k] = float(g.score(sc.transform(val)))
        if best is None or table[k] > table[best[0]]:
            best = (k, g)
    assert best is not None
    return sc, best[1], best[0], table


def event_max(f: dict[str, np.ndarray], s: np.ndarray) -> np.ndarray:
    """The max of the two leading jets' scores per event."""
    import pandas as pd

    return pd.Series(s).groupby(f["event_id"]).max().to_numpy()


def main(argv=None) -> int:
    from darkshower.data.dataset import atomic_write_json
    from darkshower.evaluate.metrics import auc
    from darkshower.train.data import event_fraction

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="benchmark directory (data/qcd_train, data/qcd_test, data/SIGNAL)")
    ap.add_argument("--run", required=True, help="contrastive run directory")
    ap.add_argument("--signals", required=True, help="comma list of signal sample names")
    ap.add_argument("--train-jets", type=int, default=60000)
    ap.add_argument("--components", default="1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    bench, run = Path(args.bench), Path(args.run)
    ks = [int(k) for k in args.components.split(",")]
    t0 = time.perf_counter()
    tr = features(run, str(bench / "data" / "qcd_train"), args.train_jets)
    is_val = event_fraction(tr["event_id"], args.seed) < 0.2
    res: dict = {"command": "python benchmarks/contrastive_density.py " + " ".join(argv or sys.argv[1:]),
                 "run": str(run), "train_jets": int((~is_val).sum()), "val_jets": int(is_val.sum()), "spaces": {},
                 "auc": {}}
    fits = {}
    for space in ("pooled", "z"):
        sc, g, k, table = fit_gmm(tr[space][~is_val], tr[space][is_val], ks, args.seed)
        fits[space] = (sc, g)
        res["spaces"][space] = {"chosen_components": k, "val_loglik": table}
        print(f"{space}: k = {k} (val log-lik {table})", flush=True)
    test = {"qcd_test": features(run, str(bench / "data" / "qcd_test"))}
    for s in args.signals.split(","):
        test[s] = features(run, str(bench / "data" / s))
    scores = {}
    for name, f in test.items():
        per = {f"gmm({sp})": -fits[sp][1].score_samples(fits[sp][0].transform(f[sp])) for sp in fits}
        per |= {k: f[k] for k in ("maha", "norm", "knn") if k in f}
        scores[name] = {k: event_max(f, v) for k, v in per.items()}
    for s in args.signals.split(","):
        res["auc"][s] = {}
        for k, sig in scores[s].items():
            bkg = scores["qcd_test"][k]
            res["auc"][s][k] = auc(sig[np.isfinite(sig)], bkg[np.isfinite(bkg)])
        print(f"{s:14s} " + "  ".join(f"{k} {v:.3f}" for k, v in res["auc"][s].items()), flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        atomic_write_json(args.out, res)
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
