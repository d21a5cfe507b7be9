"""Scoring throughput of trained runs (issue target: >= 20k jets/s for ae-hlf, >= 5k jets/s for
image models, on 2 cores).

Run: .venv/bin/python benchmarks/bench_score.py [--events N] [--methods ae-hlf,ae-image,...]
Generates (or reuses) a QCD dataset, trains each method for one epoch (throughput does not
depend on training), then measures
  - inference: method.score on prepared representation batches (2 threads),
  - end to end: `darkshower score` from the Parquet dataset (representation building included),
    serial and with 2 worker processes, the dataset listed --repeat-data times in one call.
Prints a table and writes benchmarks/results/bench_score.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"ae-hlf": 20_000, "ae-image": 5_000, "codae": 5_000, "suep-ae": 5_000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--methods", default="ae-hlf,ae-image,nae,wnae,codae,clr,lund-gae,suep-ae")
    ap.add_argument("--repeat-data", type=int, default=6,
                    help="end to end: score the dataset this many times in one call (worker start-up amortized)")
    ap.add_argument("--work", default=str(HERE / "results" / "score_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "bench_score.json"))
    args = ap.parse_args()
    import torch

    from darkshower.models import available_methods
    from darkshower.represent.build import build
    from darkshower.represent.store import store_from_rep
    from darkshower.simulate.run import generate
    from darkshower.train import load_run, train
    from darkshower.train.data import batches

    work = Path(args.work)
    data = work / "qcd"
    generate({"process": "qcd", "events": args.events, "seed": 5, "chunk_size": 500, "params": {"pthat_min": 300}},
             data, jobs=2, progress=False)
    from darkshower.data.dataset import open_dataset

    events = open_dataset(data).arrays()
    results = {"host": platform.node(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0],
               "events": args.events, "methods": {}}
    for m in [x.strip() for x in args.methods.split(",")]:
        if m not in available_methods():
            print(f"{m}: not available, skipped")
            continue
        run = work / "runs" / m
        if not (run / "run.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            train(m, data, run, config={"threads": 2, "data": {"max_train": 2000}, "early_stopping": {"patience": None}},
                  epochs=1, progress=False)
        method, rep, _, _ = load_run(run)
        torch.set_num_threads(2)
        store = store_from_rep(build(rep, events), 0.0)
        bl = list(batches(store, method.score_batch_size))
        n = sum(len(b["label"]) for b in bl)
        with torch.no_grad():
            method.score(bl[0])
            t0 = time.perf_counter()
            for b in bl:
                method.score(b)
            t_inf = time.perf_counter() - t0
        row = {"samples": n, "inference_per_s": n / t_inf}
        for jobs in (1, 2):  # the CLI in a fresh process, as a user runs it (start-up included)
            cmd = [sys.executable, "-m", "darkshower.cli.main", "score", str(run), *[str(data)] * args.repeat_data,
                   "--out", str(work / f"scores_{m}_{jobs}.parquet"), "--no-progress", "--jobs", str(jobs),
                   "--threads", "2" if jobs == 1 else "1"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            row[f"end_to_end_jobs{jobs}_per_s"] = n * args.repeat_data / (time.perf_counter() - t0)
        row["target"] = TARGETS.get(m)
        results["methods"][m] = row
        print(f"{m:10s} inference {row['inference_per_s']:10.0f}/s   end-to-end 1 proc {row['end_to_end_jobs1_per_s']:8.0f}/s"
              f"   2 procs {row['end_to_end_jobs2_per_s']:8.0f}/s   target {row['target']}", flush=True)
    results["loadavg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
