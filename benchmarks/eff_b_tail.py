"""Samples beyond a run's largest validation score: how many, do they tie in `train auto`'s Fisher combination,
and would an exponential tail (peaks over threshold) estimate eff_b there?

    python benchmarks/eff_b_tail.py runs/sensitivity --members gmm-event,flow,flow-event-x,gmm,ae-image \
        --combined auto-5 [--n-cal 2000] [--repeats 30] [--out benchmarks/results/eff_b_tail.json]

Reads BENCH/scores/NAME.parquet and BENCH/runs/NAME/val_scores.npy of each member (and of the combined run).
Prints and writes:
- per member: n_val, the fraction of scored samples beyond its largest validation score;
- the Fisher combination (as `train auto`) with eff_b as counted, and with an exponential tail beyond the
  largest validation score (0.5/n_val * exp(-(s - max)/beta), beta = mean excess of the top 1 %): the AUC of
  each signal and the number of distinct combined values;
- the tail's accuracy: fitted on N_CAL random validation+test QCD scores, the efficiency it predicts at
  q < 0.5/N_CAL against the fraction of the other QCD scores above that threshold (mean over repeats).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sensitivity_combinations import _per_event, auc_rows

REPO = Path(__file__).resolve().parents[1]


def tail_beta(v: np.ndarray, frac: float = 0.01, k_min: int = 10) -> float:
    """Mean excess of the top max(k_min, frac * n) scores over the next one (the exponential's ML scale)."""
    k = min(len(v) - 1, max(k_min, int(frac * len(v))))
    return float(np.mean(v[-k:] - v[-k - 1]))


def eff_b_tail(val_sorted: np.ndarray, scores: np.ndarray) -> np.ndarray:
    from darkshower.train.scorefiles import eff_b

    e = eff_b(val_sorted, scores)
    n, top, beta = len(val_sorted), float(val_sorted[-1]), tail_beta(val_sorted)
    beyond = np.isfinite(scores) & (scores >= top)
    e[beyond] = 0.5 / n * np.exp(-(scores[beyond] - top) / beta)
    return e


def main(argv=None) -> int:
    from darkshower.data.dataset import atomic_write_json
    from darkshower.train.scorefiles import combine_tables, read_score_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench")
    ap.add_argument("--members", required=True)
    ap.add_argument("--combined", default=None, help="a combined run (scores/NAME.parquet, runs/NAME/val_scores.npy)")
    ap.add_argument("--n-cal", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eff_b_tail.json"))
    args = ap.parse_args(argv)
    bench = Path(args.bench)
    metrics = json.loads((bench / "evaluation" / "metrics.json").read_text())
    sup = {r["signal"]: r["auc"]["value"] for r in metrics["results"] if r.get("supervised")}
    bkg = str(Path(metrics["background"][0]["path"]).resolve())
    signals = {s["name"]: s["path"] for s in metrics["signals"]}
    names = args.members.split(",")

    members, counted, tailed, n_val, result = {}, [], [], [], {"members": {}}
    for m in names:
        t, _ = read_score_file(bench / "scores" / f"{m}.parquet")
        val = np.sort(np.load(bench / "runs" / m / "val_scores.npy").astype(np.float64))
        s = t["score"].to_numpy(np.float64)
        members[m] = (t, val)
        counted.append(t)
        tailed.append(t.assign(eff_b=eff_b_tail(val, s)))
        n_val.append(len(val))
        result["members"][m] = {"n_val": len(val), "fraction_beyond_val_max": float(np.mean(s[np.isfinite(s)] > val[-1]))}
        print(f"{m}: n_val {len(val)}, beyond the largest validation score: "
              f"{result['members'][m]['fraction_beyond_val_max']:.2e} of {np.isfinite(s).sum()} scored samples")

    def fisher_tail(tables):
        c = combine_tables(tables, names, "mean", n_val, "fisher")  # the join; the Fisher sum below keeps the tail
        effs = c[[f"eff_b.{x}" for x in names]].to_numpy()
        floor = np.array([0.5 / n for n in n_val])
        c["score"] = -np.log(np.where(effs > 0, effs, floor)).sum(axis=1)
        return c

    combos = {"fisher, eff_b counted (train auto)": combine_tables(counted, names, "fisher", n_val, "fisher"),
              "fisher, exponential tail beyond the largest validation score": fisher_tail(tailed)}
    result["combinations"] = {}
    for label, c in combos.items():
        ev = _per_event(c)
        v = ev.to_numpy()
        v = v[np.isfinite(v)]
        result["combinations"][label] = {"rows": auc_rows(ev, bkg, signals, sup), "n_events": len(v),
                                         "n_distinct": int(len(np.unique(v)))}
        print(f"{label}: {len(np.unique(v))} distinct values of {len(v)} events; AUC "
              + " ".join(f"{k} {r['auc']:.4f}" for k, r in result["combinations"][label]["rows"].items()))

    result["tail_accuracy"] = {}
    rng = np.random.default_rng(1)
    qs = [q for q in (2e-4, 1e-4, 5e-5) if q < 0.5 / args.n_cal]
    for m in names + ([args.combined] if args.combined else []):
        t, _ = read_score_file(bench / "scores" / f"{m}.parquet")
        ds = t["dataset"].map(lambda p: str(Path(p).resolve()))
        test = t.loc[ds == bkg, "score"].to_numpy(np.float64)
        val = np.load(bench / "runs" / m / "val_scores.npy").astype(np.float64)
        pool = np.concatenate([val, test])
        pool = pool[np.isfinite(pool)]
        obs = {q: [] for q in qs}
        for _ in range(args.repeats):
            perm = rng.permutation(len(pool))
            cal, chk = np.sort(pool[perm[:args.n_cal]]), pool[perm[args.n_cal:]]
            beta = tail_beta(cal)
            for q in qs:
                obs[q].append(float(np.mean(chk > cal[-1] + beta * np.log(0.5 / (args.n_cal * q)))))
        result["tail_accuracy"][m] = {f"{q:g}": {"predicted": q, "observed": float(np.mean(o)),
                                                 "ratio": float(np.mean(o) / q)} for q, o in obs.items()}
        result["tail_accuracy"][m]["n_check"] = int(len(pool) - args.n_cal)
        print(f"tail fitted on {args.n_cal} of {m}'s QCD scores, checked on {len(pool) - args.n_cal}: "
              + " ".join(f"predicted {q:g} observed {np.mean(o):.2e} ({np.mean(o) / q:.2f}x)" for q, o in obs.items()))
    result["command"] = "python " + " ".join(sys.argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
