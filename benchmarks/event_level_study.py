"""Event-level vs jet-level detectors (issue #12 part 8): gmm and ae-hlf on the jet observables of each jet
(event score: leading jet, or max of the two leading jets) and on one row per event (the two leading jets'
observables + the MET topology: met_pt, M_T, R_T, m_jj, dphi_min, dphi to each jet); gmm also on the two jets
without the MET topology (ablation). Event-level runs have one score per event, so both columns agree.

    nice -n 5 python benchmarks/event_level_study.py --data DATA --out OUT [--epochs 20] [--bootstrap 100]

DATA holds the datasets qcd_train, qcd_test, svj_r03 and svj_r05 (see docs/methods/gmm.md for how they were
made). Resumable: a complete run, an existing score file and a written evaluation are kept. Writes
OUT/results.json (and benchmarks/results/event_level_study.json) and prints a markdown table of event-level AUCs (bootstrap errors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SIGNALS = ("svj_r03", "svj_r05")
#: representation keys merged over each method's default (jet: the default, one row per jet)
LEVELS = {"jet": {}, "event": {"level": "event"},
          "event_jets_only": {"level": "event", "event_columns": []}}  # ablation: the two jets, no MET topology
RUNS = (("gmm", "jet"), ("gmm", "event"), ("gmm", "event_jets_only"), ("ae-hlf", "jet"), ("ae-hlf", "event"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=20, help="ae-hlf epochs (gmm is fitted once)")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    from darkshower import evaluate, score, train

    d, out = a.data, a.out
    bkg, sigs = d / "qcd_test", [d / s for s in SIGNALS]
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for m, level in RUNS:
        name = f"{m}_{level}"
        run = out / "runs" / name
        info = run / "run.json"
        if not (info.exists() and json.loads(info.read_text()).get("status") == "complete"):
            cfg: dict = {"threads": a.threads}
            if level != "jet":
                cfg["representation"] = dict(LEVELS[level])
            train(m, d / "qcd_train", run, config=cfg, epochs=a.epochs if m != "gmm" else None, progress=False,
                  command=[sys.executable, *sys.argv])
        f = out / "scores" / f"{name}.parquet"
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            score(run, [bkg, *sigs], f, progress=False)
        files[name] = f
    results = {}
    for es in ("max2", "lead"):
        ev_dir = out / f"evaluation_{es}"
        mfile = ev_dir / "metrics.json"
        if not mfile.exists():
            evaluate(list(files.values()), background=bkg, signal=sigs, out=ev_dir, event_score=es,
                     n_bootstrap=a.bootstrap, supervised=(es == "max2"))
        metrics = json.loads(mfile.read_text())
        for r in metrics["results"]:
            if r["level"] != "event":
                continue
            results.setdefault(es, {})[f"{r['method']} | {r['signal']}"] = {
                "auc": r["auc"]["value"], "err": r["auc"].get("err"), "supervised": r.get("supervised_auc")}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "event_level_study.json").write_text(json.dumps(results, indent=1))
    print("| run | signal | AUC leading jet | AUC max of 2 jets / event level | supervised BDT |")
    print("|---|---|---|---|---|")
    for key, r in results["max2"].items():
        if "(decor)" in key or key.startswith("supervised"):
            continue
        lead = results["lead"].get(key, {})
        sup = (r.get("supervised") or {}).get("value")
        print(f"| {key.split(' | ')[0]} | {key.split(' | ')[1]} | {lead.get('auc', float('nan')):.3f} ± "
              f"{lead.get('err') or 0:.3f} | {r['auc']:.3f} ± {r['err'] or 0:.3f} | {sup if sup is None else round(sup, 3)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
