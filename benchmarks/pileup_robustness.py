"""Robustness of the anomaly detectors to pileup (issue #15 part 5): AUC when training at mu = 0 and testing at
mu = 60, against training and testing at the same mu, with no mitigation, CHS, PUPPI-like (and DistillNet)
weights. Drives `darkshower benchmark` (darkshower.pipeline.run_benchmark) with per-sample pileup.

Run: nice -n 5 .venv/bin/python benchmarks/pileup_robustness.py
         [--train-events 2000] [--test-events 1000] [--suep-events 500] [--mu 60] [--distillnet RUN]

Conditions (one benchmark directory each under --work; datasets and runs are shared through `path:`/`run:`):
- mu0:            train QCD mu = 0,  test QCD / SVJ / SUEP at mu = 0
- mu0->MU_<mit>:  the mu = 0 runs (no retraining) scoring the test samples at mu = MU with mitigation <mit>
- MU_<mit>:       train QCD at mu = MU with <mit>, test at mu = MU with <mit>
Samples: QCD dijets (pthat_min 300), SVJ (m_med 2 TeV, r_inv 0.3, m_dark 20), SUEP (temperature 2, as in the
default grid); the cms detector, store_particles (suep-ae reads event images of every candidate). The same
seeds at every mu (the same hard events). AUC: event level, QCD test vs SVJ for ae-hlf, wnae, lund-gae; QCD
test vs SUEP for suep-ae (the event-level SUEP autoencoder). Rerunning resumes (finished stages are skipped).
Results: benchmarks/results/pileup_robustness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = [
    {"method": "ae-hlf", "epochs": 20},
    {"method": "wnae", "epochs": 10, "config": {"model": {"pretrain_epochs": 4}}},
    {"method": "lund-gae", "epochs": 6, "config": {"model": {"pretrain_epochs": 3}, "optimizer": {"name": "adam", "lr": 3.0e-3},
                                                 "batch_size": 64, "early_stopping": {"patience": None}}},
    {"method": "suep-ae", "epochs": 30},  # 8 epochs left it far from converged (val loss 14, AUC 0.09)
]
from pileup_validation import _uptime  # noqa: E402  (shared; this directory is on sys.path)

SIGNAL_OF = {"ae-hlf": "svj", "wnae": "svj", "lund-gae": "svj", "suep-ae": "suep"}


def tables(result: dict) -> str:
    """The markdown table of docs/pileup.md ("Robustness of the detectors") from the results."""
    C = result["conditions"]
    methods = [m["method"] for m in METHODS]
    lines = ["| train | test | " + " | ".join(f"{m} ({SIGNAL_OF[m].upper()})" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]

    def row(train: str, test: str, name: str) -> None:
        c = C.get(name)
        if c is None:
            return
        cells = []
        for m in methods:
            a = c["auc"].get(m)
            cells.append("FAILED" if a is None or a.get("value") is None else
                         f"{a['value']:.3f} ± {a['err']:.3f}" if a.get("err") is not None else f"{a['value']:.3f}")
        lines.append(f"| {train} | {test} | " + " | ".join(cells) + " |")

    row("μ = 0", "μ = 0", "mu0")
    for name in C:
        if name.startswith("mu0_to_"):
            tag = name[len("mu0_to_"):]
            mu, mit = tag.split("_", 1)
            row("μ = 0", f"μ = {mu[2:]}, {mit}", name)
    for name in C:
        if name != "mu0" and not name.startswith("mu0_to_"):
            mu, mit = name.split("_", 1)
            row(f"μ = {mu[2:]}, {mit}", f"μ = {mu[2:]}, {mit}", name)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-events", type=int, default=2000)
    ap.add_argument("--test-events", type=int, default=1000)
    ap.add_argument("--suep-events", type=int, default=500)
    ap.add_argument("--library-events", type=int, default=500)
    ap.add_argument("--mu", type=float, default=60)
    ap.add_argument("--mitigations", default="none,chs,puppi")
    ap.add_argument("--methods", default=",".join(m["method"] for m in METHODS))
    ap.add_argument("--distillnet", default=None, help="a DistillNet student run: adds mitigation distillnet:RUN")
    ap.add_argument("--epochs", type=int, default=None, help="override every method's epochs (a quick check)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--work", default=str(HERE / "results" / "pileup_robustness_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "pileup_robustness.json"))
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    args = ap.parse_args()
    if args.table:
        print(tables(json.loads(Path(args.out).read_text())))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from darkshower.pipeline import run_benchmark
    from darkshower.simulate.run import generate

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    result: dict = json.loads(out.read_text()) if out.exists() else {}
    result.setdefault("conditions", {})
    result.setdefault("commands", [])
    cmd = "benchmarks/pileup_robustness.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                        if v is not None)
    if cmd not in result["commands"]:
        result["commands"].append(cmd)
    result.update({"host": platform.node(), "cpus": os.cpu_count()})
    result.setdefault("uptime", []).append(_uptime())
    methods = [m for m in METHODS if m["method"] in args.methods.split(",")]
    if args.epochs:
        methods = [{**m, "epochs": args.epochs} for m in methods]

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out)

    lib = work / "minbias"
    mf = lib / "manifest.json"
    if not mf.exists() or json.loads(mf.read_text()).get("status") != "complete":  # a rewrite changes its checksum
        generate({"process": "minbias", "events": args.library_events, "seed": 41, "chunk_size": 1000}, lib,
                 jobs=args.jobs, progress=False, command=["benchmarks/pileup_robustness.py"])

    def samples(pileup: dict | None) -> dict:
        gen = {"store_particles": True}
        pu = {"pileup": pileup} if pileup else {}
        return {
            "train": {"name": "qcd_train", "process": "qcd", "events": args.train_events, "seed": 31,
                      "params": {"pthat_min": 300}, "generate": gen, **pu},
            "background": {"name": "qcd_test", "process": "qcd", "events": args.test_events, "seed": 32,
                           "params": {"pthat_min": 300}, "generate": gen, **pu},
            "signals": [
                {"name": "svj", "process": "svj", "events": args.test_events, "seed": 33,
                 "params": {"m_med": 2000, "r_inv": 0.3, "m_dark": 20}, "generate": gen, **pu},
                {"name": "suep", "process": "suep", "events": args.suep_events, "seed": 34,
                 "params": {"temperature": 2}, "generate": gen, **pu}],
        }

    def bench(name: str, cfg: dict) -> Path:
        b = work / name
        t0 = time.perf_counter()
        full = {"name": name, "seed": 5, "threads": 1, "minbias": {"path": str(lib)}, "supervised_reference": False,
                "evaluation": {"n_bootstrap": 50, "executor": "local"}, "report": False, **cfg}
        run_benchmark(full, b, jobs=args.jobs, progress=False)
        metrics = json.loads((b / "evaluation" / "metrics.json").read_text())
        aucs = {}
        for r in metrics["results"]:
            if r.get("level") == "event" and r["method"] in SIGNAL_OF and r["signal"] == SIGNAL_OF[r["method"]]:
                a = r.get("auc") or {}
                aucs[r["method"]] = {k: a.get(k) for k in ("value", "err")}
        status = json.loads((b / "status.json").read_text())
        result["conditions"][name] = {"auc": aucs, "seconds": round(time.perf_counter() - t0, 1),
                                      "stage_seconds": {k: v.get("seconds") for k, v in status.items()},
                                      "failed": {k: v.get("message") for k, v in status.items() if v.get("status") == "failed"}}
        save()
        print(f"{name}: {json.dumps({k: v.get('value') for k, v in aucs.items()})} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        return b

    mits = args.mitigations.split(",") + ([f"distillnet:{Path(args.distillnet).resolve()}"] if args.distillnet else [])
    b0 = bench("mu0", {**samples(None), "methods": methods})
    mu = args.mu
    for mit in mits:
        tag = mit.split(":")[0]
        name = f"mu{mu:g}_{tag}"
        b = bench(name, {**samples({"mu": mu, "mitigation": mit}), "methods": methods})
        test = {"background": {"name": "qcd_test", "path": str(b / "data" / "qcd_test")},
                "signals": [{"name": n, "path": str(b / "data" / n)} for n in ("svj", "suep")]}
        bench(f"mu0_to_{name}", {"train": {"name": "qcd_train", "path": str(b0 / "data" / "qcd_train")},
                                 **test, "methods": [{**m, "run": str(b0 / "runs" / m["method"])} for m in methods]})
    result["uptime"].append(_uptime())
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
