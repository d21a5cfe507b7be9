"""Generation rate with pileup (issue 15 acceptance: at mu = 60 with a minimum-bias library >= 0.5x the rate at
mu = 0, same detector).

    python benchmarks/bench_pileup_rate.py [--events 1000] [--repeats 2] [--mu 60] [--library DIR] [--student RUN]

Generates the same QCD events (pTHat > 300 GeV, cms detector, one process, chunks of the default 500 events, so
each chunk's Pythia initialization counts as in a real run) at mu = 0 and at mu with
mitigation none / chs / puppi (and distillnet:RUN with --student), alternating, --repeats times; the rate is events
per CPU second of this process (time.process_time: the shared machine's other jobs do not count), best of the
repeats. The library (default: 300 minimum-bias events made here) is read once before timing. JSON:
benchmarks/results/pileup_rate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mu", type=float, default=60.0)
    ap.add_argument("--library", help="an existing `generate minbias` dataset (default: 300 events made here)")
    ap.add_argument("--student", help="a DistillNet per-particle student run: also time --pu-mitigation distillnet:RUN")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)

    from darkshower.simulate.pileup import open_library
    from darkshower.simulate.run import generate

    work = Path(tempfile.mkdtemp(prefix="bench-pileup-rate-"))
    try:
        lib = args.library
        if lib is None:
            lib = str(generate({"process": "minbias", "events": 300, "seed": 3, "chunk_size": 300}, work / "mb",
                               jobs=1, progress=False).path)
        open_library(lib)  # read once (cached per process), as a worker does before its first chunk
        modes = [("mu0", None)] + [(m, m) for m in ("none", "chs", "puppi")]
        if args.student:
            modes.append(("distillnet", f"distillnet:{Path(args.student).resolve()}"))
        base = {"process": "qcd", "events": args.events, "seed": 21, "params": {"pthat_min": 300}}
        best: dict[str, float] = {}
        for rep in range(args.repeats):
            for name, mit in modes:
                cfg = dict(base)
                if mit is not None:
                    cfg["pileup"] = {"mu": args.mu, "library": lib, "mitigation": mit}
                out = work / f"{name}_{rep}"
                t0 = time.process_time()
                ds = generate(cfg, out, jobs=1, progress=False)
                cpu = time.process_time() - t0
                rate = ds.n_events / cpu
                print(f"{name:>10} repeat {rep}: {ds.n_events} events in {cpu:.1f} CPU s = {rate:.1f} events/CPU s",
                      flush=True)
                best[name] = max(best.get(name, 0.0), rate)
                shutil.rmtree(out)
        result = {"events": args.events, "mu": args.mu, "repeats": args.repeats, "library": lib,
                  "load_average_start": os.getloadavg()[0], "events_per_cpu_s": best,
                  "ratio_to_mu0": {k: v / best["mu0"] for k, v in best.items() if k != "mu0"},
                  "goal": "ratio >= 0.5 at mu = 60 (issue 15)"}
        print(json.dumps(result["ratio_to_mu0"]))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pileup_rate.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out / 'pileup_rate.json'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
