"""Label-free scores of contrastive runs next to any other run (e.g. the gmm baseline or an NAE on the
frozen representation), on the leading jets of a common pT window (numbers for docs/methods/clr.md).

For every ``--run NAME=RUN_DIR``: the run's own score (``darkshower score``, best model) of the QCD test
sample and of each signal, restricted to the leading jet (jet_idx 0) with pT in the window, and the
AUC signal vs QCD. For contrastive runs (``clr``/``aclr``/``rs3l``) also every score the model has
(``norm`` = ‖z‖, ``knn``, ``maha``: Mahalanobis distance to the Gaussian of the training jets, fitted
by the run), and, with ``--probe``, the linear-probe AUC (labels: a diagnostic, never for selection) on z
(``probe (labels)``) and on the pooled encoder output before the head (``probe pooled (labels)``).
No labels are used by any score.

    .venv/bin/python benchmarks/contrastive_label_free.py --test data/qcd_test --signal svj=data/svj \
        --run clr=runs/clr --run gmm=runs/gmm --run nae_on_clr=runs/nae_on_clr --pt-window 300,500 \
        --out runs/label_free.json

Keeps CPU modest (--threads 1 by default). Results are written atomically to --out (JSON).
"""

from __future__ import annotations

import os
import sys

_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--threads"), "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CONTRASTIVE = ("clr", "aclr", "rs3l")


def leading_ids(dataset: str, lo: float, hi: float) -> np.ndarray:
    """Event ids whose leading jet has lo <= pT < hi."""
    import awkward as ak

    from darkshower.data.dataset import open_dataset

    ds = open_dataset(dataset)
    out = []
    for i in range(len(ds.chunks)):
        ev = ds.read_chunk(i)
        pt = ak.to_numpy(ak.fill_none(ak.firsts(ev["jets"]["pt"]), -1.0))
        sel = (pt >= lo) & (pt < hi)
        out.append(np.asarray(ev["event_id"], np.int64)[sel])
    return np.concatenate(out)


def run_scores(run: Path, dataset: str, ids: np.ndarray, tmp: Path) -> np.ndarray:
    """The run's score of the leading jets of ``dataset`` whose event id is in ``ids``."""
    import pyarrow.parquet as pq

    from darkshower.train.score import score

    out = tmp / f"{run.name}_{Path(dataset).name}.parquet"
    jets, _ = score(run, [dataset], out, progress=False, jobs=1)
    t = pq.read_table(jets).to_pandas()
    t = t[(t["jet_idx"] == 0) & t["event_id"].isin(ids)] if "jet_idx" in t else t[t["event_id"].isin(ids)]
    return t["score"].to_numpy(np.float64)


def contrastive_scores(run: Path, dataset: str, ids: np.ndarray, embeddings: bool = False) -> tuple[dict, dict]:
    """Every score of a contrastive run ({name: [n]}) and, with ``embeddings``, its embeddings of the selected
    leading jets ({"z": [n, output], "pooled": [n, d_model]}: the head's output and the encoder output before it;
    else {})."""
    import torch

    from darkshower.data.dataset import open_dataset
    from darkshower.models.runs import load_run
    from darkshower.represent.build import build

    m, rep, _, _ = load_run(run)
    m.eval()
    ds = open_dataset(dataset)
    scores: dict[str, list] = {}
    zs: dict[str, list] = {"z": [], "pooled": []}
    with torch.no_grad():
        for i in range(len(ds.chunks)):
            r = build(rep, ds.read_chunk(i))
            sel = (np.asarray(r["jet_idx"]) == 0) & np.isin(np.asarray(r["event_id"], np.int64), ids)
            for a in range(0, int(sel.sum()), 2048):
                b = {"x": torch.as_tensor(r["x"][sel][a:a + 2048]), "mask": torch.as_tensor(r["mask"][sel][a:a + 2048])}
                for k, v in m.scores(b).items():
                    scores.setdefault(k, []).append(v.double().numpy())
                if embeddings:
                    mk = b["mask"].bool()
                    pooled, z = m.encode_both(m.inp.raw(b["x"], mk), mk)
                    zs["pooled"].append(pooled.double().numpy())
                    zs["z"].append(z.double().numpy())
    return ({k: np.concatenate(v) for k, v in scores.items()},
            {k: np.concatenate(v) for k, v in zs.items()} if embeddings else {})


def auc(bkg: np.ndarray, sig: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok_b, ok_s = np.isfinite(bkg), np.isfinite(sig)
    return float(roc_auc_score(np.r_[np.zeros(ok_b.sum()), np.ones(ok_s.sum())], np.r_[bkg[ok_b], sig[ok_s]]))


def probe(zb: np.ndarray, zs: np.ndarray, seed: int = 0) -> float:
    """Logistic regression on an embedding (z or pooled), half the jets for fitting, AUC on the other half
    (uses labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    x = np.r_[zb, zs]
    y = np.r_[np.zeros(len(zb)), np.ones(len(zs))]
    fit = rng.random(len(x)) < 0.5
    sc = StandardScaler().fit(x[fit])
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(x[fit]), y[fit])
    p = clf.decision_function(sc.transform(x[~fit]))
    return auc(p[y[~fit] == 0], p[y[~fit] == 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", required=True, help="QCD test dataset (never seen in training)")
    ap.add_argument("--signal", action="append", default=[], metavar="NAME=DATASET")
    ap.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR")
    ap.add_argument("--pt-window", default="300,500", help="leading-jet pT window (GeV)")
    ap.add_argument("--probe", action="store_true", help="also the linear-probe AUC of z and of the pooled encoder output (uses labels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON file (merged with an existing one: runs are added)")
    args = ap.parse_args()
    import torch

    from darkshower.data.dataset import atomic_write_json
    from darkshower.models.runs import read_run_json

    torch.set_num_threads(args.threads)
    lo, hi = (float(v) for v in args.pt_window.split(","))
    signals = dict(s.split("=", 1) for s in args.signal)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.setdefault("runs", {})
    res.update({"pt_window": [lo, hi], "test": args.test, "signals": signals})
    ids = {"qcd": leading_ids(args.test, lo, hi)} | {k: leading_ids(v, lo, hi) for k, v in signals.items()}
    res["n_jets"] = {k: int(len(v)) for k, v in ids.items()}
    with tempfile.TemporaryDirectory(prefix="label_free_") as td:
        for item in args.run:
            name, rd = item.split("=", 1)
            run = Path(rd)
            method = read_run_json(run)["method"]
            row: dict = {"method": method, "run": str(run), "auc": {}}
            bkg = run_scores(run, args.test, ids["qcd"], Path(td))
            for sname, path in signals.items():
                row["auc"][sname] = {"score": auc(bkg, run_scores(run, path, ids[sname], Path(td)))}
            if method in CONTRASTIVE:
                sb, zb = contrastive_scores(run, args.test, ids["qcd"], embeddings=args.probe)
                for sname, path in signals.items():
                    ss, zsig = contrastive_scores(run, path, ids[sname], embeddings=args.probe)
                    row["auc"][sname].update({k: auc(sb[k], ss[k]) for k in sb if k in ss})
                    if args.probe:
                        row["auc"][sname]["probe (labels)"] = probe(zb["z"], zsig["z"])
                        row["auc"][sname]["probe pooled (labels)"] = probe(zb["pooled"], zsig["pooled"])
            res["runs"][name] = row
            print(json.dumps({name: row}), flush=True)
            atomic_write_json(out, res)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
