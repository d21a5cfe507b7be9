"""Benchmark of `darkshower generate` against bare Pythia, scaling with --jobs, and memory.

Measures in one run on this machine:
- bare Pythia: `pythia.next()` only, same settings (process + seed), events/s;
- darkshower generate with --detector none and --detector cms, one job, events/s counted in
  *generated* Pythia events (selected and rejected), so the ratio compares like with like;
- scaling from 1 to 2 jobs;
- peak memory (RSS of the worker) for two different --events at fixed chunk size.

Prints a table and writes benchmarks/results/generate.json.
Usage: python benchmarks/bench_generate.py [--events 600] [--process qcd]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bare_pythia(cfg: dict, n: int) -> float:
    """Events/s of bare ``pythia.next()`` in a fresh subprocess (same conditions as darkshower's)."""
    code = "import json,sys;from bench_generate import _bare;print(_bare(json.loads(sys.argv[1]), int(sys.argv[2])))"
    res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(n)], capture_output=True, text=True,
                         check=True, cwd=HERE)
    return float(res.stdout.strip().splitlines()[-1])


def _bare(cfg: dict, n: int) -> float:
    from darkshower.simulate.config import resolve_config
    from darkshower.simulate.pythia import make_pythia
    from darkshower.simulate.run import derive_seed, process_settings

    c, _ = resolve_config(cfg)
    py = make_pythia(process_settings(c), derive_seed(c.seed, 0))
    t0 = time.perf_counter()
    done = 0
    while done < n:
        if py.next():
            done += 1
    return n / (time.perf_counter() - t0)


def darkshower_rate(cfg: dict, out: Path, jobs: int) -> tuple[float, int, float]:
    """(generated events/s, generated events, wall seconds) from a fresh subprocess run."""
    code = (
        "import json,sys,time;from darkshower.simulate.run import generate;"
        "cfg=json.loads(sys.argv[1]);t=time.perf_counter();"
        "ds=generate(cfg, sys.argv[2], jobs=int(sys.argv[3]), progress=False);"
        "dt=time.perf_counter()-t;xs=ds.manifest['cross_section'];"
        "print(json.dumps({'dt':dt,'n_gen':xs['n_generated'],'cpu':sum(c['cpu_seconds'] for c in ds.chunks)}))"
    )
    res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(out), str(jobs)],
                         capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return r["n_gen"] / r["dt"], r["n_gen"], r["dt"]


def chunk_rate(cfg: dict, out: Path) -> tuple[float, float]:
    """Generated events/s in the event loop (Pythia init excluded, as for bare Pythia), peak RSS MB."""
    code = (
        "import json,sys,time,resource;from darkshower.simulate.run import generate;"
        "cfg=json.loads(sys.argv[1]);ds=generate(cfg, sys.argv[2], jobs=1, progress=False);"
        "n=sum(c['n_generated'] for c in ds.chunks);cpu=sum(c['event_seconds'] for c in ds.chunks);"
        "print(json.dumps({'rate':n/cpu,'rss':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}))"
    )
    res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(out)], capture_output=True, text=True,
                         check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return r["rate"], r["rss"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--process", default="qcd,svj,ttbar,emj,suep",
                    help="comma-separated processes for the ratio to bare Pythia (scaling and memory use the first)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept")
    ap.add_argument("--out", default=str(HERE / "results" / "generate.json"))
    args = ap.parse_args()
    processes = args.process.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    results: dict = {"events": args.events, "machine_cores": __import__("os").cpu_count(), "processes": {}}
    try:
        for proc in processes:
            params = {"pthat_min": 300} if proc == "qcd" else {}
            # no jet requirement, so generated == stored events and the comparison is like for like
            base = {"process": proc, "events": args.events, "seed": 5, "chunk_size": args.events,
                    "params": params, "jets": {"min_jets": 0}}
            r: dict = {}
            # for suep, "bare" is the production instance alone (gg -> mediator + UE); the dark-meson
            # sampling and decays are part of what darkshower adds
            # best of --repeat runs for every rate (timings on a shared machine are noisy)
            r["bare_pythia_events_per_s"] = bare = max(
                bare_pythia({**base, "detector": {"name": "none"}}, args.events) for _ in range(args.repeat))
            for det in ("none", "cms"):
                rate = max(chunk_rate({**base, "detector": {"name": det}}, tmp / f"r_{proc}_{det}_{k}")[0]
                           for k in range(args.repeat))
                r[f"darkshower_{det}_events_per_s"] = rate
                r[f"ratio_{det}"] = rate / bare
            results["processes"][proc] = r
            print(proc, {k: round(v, 3) for k, v in r.items()}, flush=True)
        first = processes[0]
        base = {"process": first, "events": args.events, "seed": 5, "chunk_size": args.events,
                "params": {"pthat_min": 300} if first == "qcd" else {}, "jets": {"min_jets": 0}}
        # scaling: four chunks, 1 job vs 2 jobs, wall clock including process start-up and Pythia init
        sc = {**base, "detector": {"name": "cms"}, "events": 4 * args.events, "chunk_size": args.events}
        r1, _, t1 = darkshower_rate(sc, tmp / "s1", 1)
        r2, _, t2 = darkshower_rate(sc, tmp / "s2", 2)
        results.update({"scaling_process": first, "jobs1_wall_s": t1, "jobs2_wall_s": t2,
                        "scaling_1_to_2_jobs": t1 / t2})
        # memory: same chunk size, 1x and 4x the events
        small = {**base, "detector": {"name": "cms"}, "events": 200, "chunk_size": 100}
        big = {**small, "events": 800}
        _, rss_small = chunk_rate(small, tmp / "m1")
        _, rss_big = chunk_rate(big, tmp / "m2")
        results.update({"peak_rss_mb_200_events": rss_small, "peak_rss_mb_800_events": rss_big})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for k, v in results.items():
        if k != "processes":
            print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(f"targets: ratio_none >= 0.85, ratio_cms >= 0.75, scaling >= 1.8; wrote {out}")
    _ = resource
    return 0


if __name__ == "__main__":
    sys.exit(main())
