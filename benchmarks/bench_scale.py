"""Scale-out throughput of the executors (issue #13): generate events/s and score jets/s with 1 and 2 Dask
workers, and Dask vs Processes overhead at the same number of workers.

Run: .venv/bin/python benchmarks/bench_scale.py [--events N] [--chunk-size N] [--score-copies K]

- generate: a QCD dataset of --events in chunks of --chunk-size, from scratch each time, with
  Processes(1), Processes(2), Dask(local:1), Dask(local:2); events/s = events / wall time of generate()
  (Pythia initialization per chunk included, the LocalCluster start-up excluded: it is started before
  the clock and reused, as a cluster is in practice).
- score: ae-hlf trained for one epoch (throughput does not depend on training), the dataset scored
  --score-copies times in one call (the same dataset listed K times) with Processes(1/2), Dask(local:1/2);
  jets/s = jets / wall time of score(), one torch thread per worker.
- speed-up 2 vs 1 worker and the overhead of Dask relative to Processes (wall-time ratio - 1).

Writes benchmarks/results/bench_scale.json (with `uptime` before and after: the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--chunk-size", type=int, default=250)
    ap.add_argument("--score-copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration (the best is kept)")
    ap.add_argument("--work", default=str(HERE / "results" / "scale_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "bench_scale.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from darkshower.execute import Processes
    from darkshower.execute.dask import Dask
    from darkshower.simulate.run import generate
    from darkshower.train import score, train

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gen_cfg = {"process": "qcd", "events": args.events, "seed": 7, "chunk_size": args.chunk_size,
               "params": {"pthat_min": 300}}
    result: dict = {"uptime_before": _uptime(), "host": platform.node(), "cpus": os.cpu_count(),
                    "events": args.events, "chunk_size": args.chunk_size, "score_copies": args.score_copies}

    clusters = {n: Dask(scheduler=f"local:{n}") for n in (1, 2)}
    for ex in clusters.values():
        ex.workers  # start the clusters before the clocks  # noqa: B018
    executors = {"processes-1": Processes(1), "processes-2": Processes(2),
                 "dask-1": clusters[1], "dask-2": clusters[2]}

    gen: dict = {}
    for name, ex in executors.items():
        best = float("inf")
        for r in range(args.repeat):
            out = work / f"gen-{name}-{r}"
            t0 = time.perf_counter()
            generate(gen_cfg, out, progress=False, command=["bench_scale"], executor=ex)
            best = min(best, time.perf_counter() - t0)
            if r or name != "processes-1":
                shutil.rmtree(out)
        gen[name] = {"seconds": round(best, 2), "events_per_s": round(args.events / best, 1)}
        print(f"generate {name:12s} {gen[name]['events_per_s']:8.1f} ev/s ({best:.1f} s)", flush=True)
    data = work / "gen-processes-1-0"

    run = train("ae-hlf", data, work / "run", config={"batch_size": 256, "threads": 1}, epochs=1, progress=False)
    sc: dict = {}
    for name, ex in executors.items():
        best, n = float("inf"), 0
        for r in range(args.repeat):
            t0 = time.perf_counter()
            jets, _ = score(run, [data] * args.score_copies, work / f"score-{name}-{r}.parquet", progress=False,
                            threads=1, executor=ex)
            best = min(best, time.perf_counter() - t0)
            import pyarrow.parquet as pq

            n = pq.read_metadata(jets).num_rows
        sc[name] = {"seconds": round(best, 2), "jets": n, "jets_per_s": round(n / best, 1)}
        print(f"score    {name:12s} {sc[name]['jets_per_s']:8.1f} jets/s ({best:.1f} s, {n} jets)", flush=True)
    for ex in clusters.values():
        ex.close()

    def ratio(d, a, b, key):
        return round(d[a][key] / d[b][key], 3)

    result["generate"] = gen
    result["score"] = sc
    result["summary"] = {
        "generate_speedup_dask_2_vs_1": ratio(gen, "dask-2", "dask-1", "events_per_s"),
        "generate_speedup_processes_2_vs_1": ratio(gen, "processes-2", "processes-1", "events_per_s"),
        "generate_dask_overhead_vs_processes_2": round(gen["dask-2"]["seconds"] / gen["processes-2"]["seconds"] - 1, 3),
        "score_speedup_dask_2_vs_1": ratio(sc, "dask-2", "dask-1", "jets_per_s"),
        "score_speedup_processes_2_vs_1": ratio(sc, "processes-2", "processes-1", "jets_per_s"),
        "score_dask_overhead_vs_processes_2": round(sc["dask-2"]["seconds"] / sc["processes-2"]["seconds"] - 1, 3),
    }
    result["uptime_after"] = _uptime()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
