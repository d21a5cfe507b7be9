"""Compare darkshower anomaly scores with the CMS B2G-24-015 production VAE on its public kit.

The kit (../shared/data/cms_b2g24015/, Delphes) holds QCD and three signals (X->YH with
M_Y = 90 / 125 GeV, T'->tH), each with the CMS (V)AE score of the Y-candidate jet (the jet that
is not ``H_jet_idx``). Overall AUCs are dominated by jet mass and pT, so the fair comparison is
inside the signal's Y-mass window (jet mass within +-20% of M_Y). Models must be trained on QCD
that is NOT the kit's QCD file (that file is the test background).

    python benchmarks/b2g24015_comparison.py RUN [RUN ...] [--kit DIR] [--work DIR] [--out JSON]

Imports the kit (h5-4vec, keeping H_jet_idx and the CMS score), scores it with every run and
prints/writes AUCs (overall and in-window) next to the CMS VAE's.
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
                         "cms": np.asarray(a[cms_field][keep], np.float64)})


def aucs(bkg: pd.DataFrame, sig: pd.DataFrame, col: str, m_y: float | None) -> dict:
    out = {"overall": float(roc_auc_score(np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg[col], sig[col]]))}
    if m_y:
        lo, hi = 0.8 * m_y, 1.2 * m_y
        b = bkg[(bkg.mass > lo) & (bkg.mass < hi)]
        s = sig[(sig.mass > lo) & (sig.mass < hi)]
        out["window"] = float(roc_auc_score(np.r_[np.zeros(len(b)), np.ones(len(s))], np.r_[b[col], s[col]]))
        out["n_window"] = [int(len(b)), int(len(s))]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--kit", default=str(KIT))
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "results" / "b2g24015"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "b2g24015_comparison.json"))
    args = ap.parse_args(argv)
    from darkshower.train import score

    work = Path(args.work)
    ds = import_kit(Path(args.kit), work)
    tables = {name: y_jets(p, FILES[name][1]) for name, p in ds.items()}
    result = {"cms_vae": {}, "runs": {}}
    for name, (_, _, m_y) in FILES.items():
        if m_y:
            result["cms_vae"][name] = aucs(tables["QCD"], tables[name], "cms", m_y)
    for run in args.runs:
        jets, _ = score(run, list(ds.values()), work / f"scores_{Path(run).name}.parquet", progress=False)
        sc = pd.read_parquet(jets)
        method = json.loads((Path(run) / "run.json").read_text())["method"]
        res = {}
        for name, p in ds.items():
            s = sc[sc.dataset == str(p.resolve())][["event_id", "jet_idx", "score"]]
            tables[name] = tables[name].drop(columns=["score"], errors="ignore").merge(s, on=["event_id", "jet_idx"], how="left")
        for name, (_, _, m_y) in FILES.items():
            if m_y:
                res[name] = aucs(tables["QCD"], tables[name], "score", m_y)
        result["runs"][str(run)] = {"method": method, "auc": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'model':34s}" + "".join(f"{n:>26s}" for n in FILES if FILES[n][2]))
    print(f"{'':34s}" + "".join(f"{'overall / in-window':>26s}" for n in FILES if FILES[n][2]))
    rows = [("CMS VAE (kit scores)", result["cms_vae"])] + [(f"{v['method']} {Path(k).name}", v["auc"])
                                                             for k, v in result["runs"].items()]
    for label, r in rows:
        print(f"{label[:34]:34s}" + "".join(f"{r[n]['overall']:>15.3f} / {r[n]['window']:.3f}" for n in r))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
