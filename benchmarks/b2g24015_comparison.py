"""Compare darkshower anomaly scores with the CMS B2G-24-015 production VAE on its public kit.

The kit (../shared/data/cms_b2g24015/, Delphes) holds QCD and three signals (X->YH with
M_Y = 90 / 125 GeV, T'->tH), each with the CMS (V)AE score of the Y-candidate jet (the jet that
is not ``H_jet_idx``). Overall AUCs are dominated by jet mass and pT, so the fair comparison is
inside the signal's Y-mass window (jet mass within +-20% of M_Y). Models must be trained on QCD
that is NOT the kit's QCD file (that file is the test background).

    python benchmarks/b2g24015_comparison.py RUN [RUN ...] [--combine fisher,mean,min] [--kit DIR] [--work DIR]
                                             [--out JSON]

Imports the kit (h5-4vec, keeping H_jet_idx and the CMS score), scores it with every run and
prints/writes AUCs (overall and in-window) next to the CMS VAE's. ``--combine`` (repeatable or a comma
list of fisher / mean / min) also reports the combination of all given runs per Y-candidate jet
(darkshower.train.ensemble.combine_tables on the runs' calibrated ``eff_b``; the Fisher floor uses each
run's number of validation scores), in rows such as ``fisher(gmm+flow)``. The JSON also holds the
Y-candidate jets' pT / mass / constituent-count quantiles per kit sample and those of the two leading jets
of each run's training data, to check the kinematic overlap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]
KIT = REPO.parent / "shared" / "data" / "cms_b2g24015"
FILES = {"QCD": ("test_input_QCD.h5", "ae_lossY", None),
         "X->YH MY=90": ("delphes_MX2000_MY90.h5", "vae_lossY", 90.0),
         "X->YH MY=125": ("delphes_MX2000_MY125.h5", "vae_lossY", 125.0),
         "T'->tH": ("delphes_MT2000_MH125.h5", "vae_lossY", 125.0)}


def import_kit(kit: Path, work: Path) -> dict[str, Path]:
    from darkshower.data.dataset import open_dataset
    from darkshower.io import import_dataset

    out = {}
    for name, (fname, cms, _) in FILES.items():
        d = work / Path(fname).stem
        if not (d / "manifest.json").exists() or open_dataset(d).manifest.get("status") != "complete":
            import_dataset("h5-4vec", [kit / fname], d, extra=f"H_jet_idx,{cms}")
        out[name] = d
    return out


def y_jets(path: Path, cms_field: str) -> pd.DataFrame:
    """One row per event: the Y-candidate jet's index, pT, mass and the CMS score."""
    from darkshower.data.dataset import open_dataset

    a = open_dataset(path).arrays()
    slot = a["jets"]["slot"]
    is_y = slot != a["H_jet_idx"]
    idx = ak.local_index(slot)[is_y]
    keep = ak.num(idx) == 1
    return pd.DataFrame({"event_id": np.asarray(a["event_id"][keep]), "jet_idx": np.asarray(ak.firsts(idx[keep])),
                         "pt": np.asarray(ak.firsts(a["jets"]["pt"][is_y][keep])),
                         "mass": np.asarray(ak.firsts(a["jets"]["mass"][is_y][keep])),
                         "n_constituents": np.asarray(ak.firsts(a["jets"]["n_constituents"][is_y][keep])),
                         "cms": np.asarray(a[cms_field][keep], np.float64)})


def parse_combine(values: list[str] | None) -> list[str]:
    """``--combine`` values (repeated and/or comma lists) as a de-duplicated list, in order."""
    from darkshower.train.ensemble import COMBINATIONS

    out: list[str] = []
    for v in values or []:
        for c in (x.strip() for x in v.split(",")):
            if c not in COMBINATIONS:
                raise ValueError(f"--combine {c!r}: choose from {', '.join(COMBINATIONS)} (repeat it or give a "
                                 "comma list, e.g. --combine fisher,mean)")
            if c not in out:
                out.append(c)
    return out


def n_val_scores(run: Path, score_file: Path) -> int | None:
    """The run's number of validation scores: the score file's ``n_val_scores``, else len(RUN/val_scores.npy)."""
    import pyarrow.parquet as pq

    meta = json.loads((pq.read_schema(score_file).metadata or {}).get(b"darkshower", b"{}") or b"{}")
    if meta.get("n_val_scores"):
        return int(meta["n_val_scores"])
    f = run / "val_scores.npy"
    return len(np.load(f)) if f.exists() else None


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def quantiles(x) -> dict:
    x = np.asarray(x, np.float64)
    qs = {f"q{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))}
    return qs | {"max": float(x.max()), "n": int(len(x))}


def train_kinematics(runs: list[str]) -> dict:
    """pT / mass / n_constituents quantiles of the two leading jets of the runs' training data (run.json)."""
    from darkshower.data.dataset import open_dataset

    out: dict = {}
    for run in runs:
        for d in json.loads((Path(run) / "run.json").read_text()).get("data") or []:
            path = Path(d["path"])
            if str(path) in out:
                continue
            if not (path / "manifest.json").exists():
                out[str(path)] = "not found"
                continue
            j = open_dataset(path).arrays(["jets.pt", "jets.mass", "jets.n_constituents"])["jets"][:, :2]
            out[str(path)] = {v: quantiles(ak.flatten(j[v])) for v in ("pt", "mass", "n_constituents")}
    return out


def hanley_mcneil_se(auc: float, n_b: int, n_s: int) -> float:
    """Standard error of an AUC from n_b background and n_s signal samples (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return float(np.sqrt((auc * (1 - auc) + (n_s - 1) * (q1 - auc**2) + (n_b - 1) * (q2 - auc**2)) / (n_b * n_s)))


def aucs(bkg: pd.DataFrame, sig: pd.DataFrame, col: str, m_y: float | None) -> dict:
    """Overall and in-window (jet mass within +-20% of m_y) AUC of ``col``, with the window's Hanley-McNeil
    standard error; samples without a finite ``col`` are left out and counted (``n_nan``)."""
    n_nan = int((~np.isfinite(bkg[col].to_numpy(np.float64))).sum() + (~np.isfinite(sig[col].to_numpy(np.float64))).sum())
    bkg, sig = bkg[np.isfinite(bkg[col].to_numpy(np.float64))], sig[np.isfinite(sig[col].to_numpy(np.float64))]
    out: dict = {"overall": float(roc_auc_score(np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg[col], sig[col]]))}
    if m_y:
        lo, hi = 0.8 * m_y, 1.2 * m_y
        b = bkg[(bkg.mass > lo) & (bkg.mass < hi)]
        s = sig[(sig.mass > lo) & (sig.mass < hi)]
        out["window"] = float(roc_auc_score(np.r_[np.zeros(len(b)), np.ones(len(s))], np.r_[b[col], s[col]]))
        out["window_se"] = hanley_mcneil_se(out["window"], len(b), len(s))
        out["n_window"] = [int(len(b)), int(len(s))]
    if n_nan:
        out["n_nan"] = n_nan
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--combine", action="append", metavar="fisher|mean|min",
                    help="also report the combination of all runs (repeatable or a comma list)")
    ap.add_argument("--decorrelate", action="store_true",
                    help="also report each run's pT/mass-decorrelated score (score --decorrelate; runs with val_decor.npz)")
    ap.add_argument("--kit", default=str(KIT))
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "results" / "b2g24015"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "b2g24015_comparison.json"))
    args = ap.parse_args(argv)
    try:
        combines = parse_combine(args.combine)
    except ValueError as exc:
        ap.error(str(exc))
    if combines and len(args.runs) < 2:
        ap.error(f"--combine {','.join(combines)}: give at least two runs to combine, got {len(args.runs)}")
    names = [Path(r).name for r in args.runs]
    if combines and len(set(names)) != len(names):
        ap.error(f"--combine: the runs' directory names must differ (they name the members), got {names}")
    from darkshower.data.dataset import atomic_write_text
    from darkshower.train import score
    from darkshower.train.ensemble import combine_tables

    work = Path(args.work)
    ds = import_kit(Path(args.kit), work)
    tables = {name: y_jets(p, FILES[name][1]) for name, p in ds.items()}
    result: dict = {"cms_vae": {}, "reference": {}, "runs": {}, "combinations": {}}
    for name, (_, _, m_y) in FILES.items():
        if m_y:
            result["cms_vae"][name] = aucs(tables["QCD"], tables[name], "cms", m_y)
            for v in ("pt", "n_constituents"):  # references: how much a single kinematic variable separates
                result["reference"].setdefault(f"Y-jet {v} alone", {})[name] = aucs(tables["QCD"], tables[name], v, m_y)

    def evaluate(sc: pd.DataFrame) -> dict:
        res = {}
        for name, p in ds.items():
            s = sc[sc.dataset == str(p.resolve())][["event_id", "jet_idx", "score"]]
            tables[name] = tables[name].drop(columns=["score"], errors="ignore").merge(s, on=["event_id", "jet_idx"], how="left")
        for name, (_, _, m_y) in FILES.items():
            if m_y:
                res[name] = aucs(tables["QCD"], tables[name], "score", m_y)
        return res

    members: list[pd.DataFrame] = []
    n_vals: list[int | None] = []
    for run in args.runs:
        jets, _ = score(run, list(ds.values()), work / f"scores_{Path(run).name}.parquet", progress=False,
                        decorrelate=args.decorrelate)
        sc = pd.read_parquet(jets)
        method = json.loads((Path(run) / "run.json").read_text())["method"]
        n_val = n_val_scores(Path(run), jets)
        result["runs"][str(run)] = {"method": method, "n_val_scores": n_val, "auc": evaluate(sc)}
        if "score_decor" in sc.columns:
            result["runs"][str(run)]["auc_decor"] = evaluate(sc.drop(columns="score").rename(columns={"score_decor": "score"}))
        members.append(sc)
        n_vals.append(n_val)
    for c in combines:
        label = f"{c}({'+'.join(names)})"
        sc = combine_tables(members, names, c, n_vals)
        result["combinations"][label] = {"combine": c, "members": [str(r) for r in args.runs], "n_val_scores": n_vals,
                                         "auc": evaluate(sc)}
    result["kinematics"] = {"kit_y_jets": {name: {v: quantiles(t[v]) for v in ("pt", "mass", "n_constituents")}
                                           for name, t in tables.items()},
                            "training_leading_two_jets": train_kinematics(args.runs)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"{'model':34s}" + "".join(f"{n:>26s}" for n in FILES if FILES[n][2]))
    print(f"{'':34s}" + "".join(f"{'overall / in-window':>26s}" for n in FILES if FILES[n][2]))
    rows = ([("CMS VAE (kit scores)", result["cms_vae"])] + list(result["reference"].items())
            + [(f"{v['method']} {Path(k).name}", v["auc"]) for k, v in result["runs"].items()]
            + [(f"{v['method']} {Path(k).name} decorrelated", v["auc_decor"]) for k, v in result["runs"].items()
               if "auc_decor" in v]
            + [(k, v["auc"]) for k, v in result["combinations"].items()])
    for label, r in rows:
        print(f"{label[:34]:34s}" + "".join(f"{r[n]['overall']:>12.3f} / {r[n]['window']:.3f}±{r[n]['window_se']:.3f}"
                                             for n in r))
    print("(± : Hanley-McNeil standard error of the in-window AUC; in-window QCD/signal jets: "
          + ", ".join(f"{n} {v['n_window'][0]}/{v['n_window'][1]}" for n, v in result["cms_vae"].items()) + ")")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
