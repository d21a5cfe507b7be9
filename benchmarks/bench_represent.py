"""Single-core throughput of the representations on realistic toy jets (50-100 constituents).

Run: .venv/bin/python benchmarks/bench_represent.py [--jets N]
Prints a table and writes benchmarks/results/represent.json. Times are end to end from an
awkward array of events (flattening + kernel + output), best of 3 repetitions.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import time
from pathlib import Path

TARGETS = {"point_clouds+standardization": 100_000, "observables": 10_000, "jet_images": 50_000, "lund_graphs": 5_000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jets", type=int, default=20000, help="jets per timing (observables/Lund use a quarter)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "represent.json"))
    args = ap.parse_args()
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    from darkshower.represent import Standardizer, jet_images, jet_observables, lund_graphs, point_clouds
    from darkshower.represent.common import jet_batch
    from darkshower.represent.toys import toy_events

    n_ev = args.jets // 2
    events = toy_events(n_ev, n_prongs=2, seed=1, n_constituents=(50, 100))
    small = events[: max(n_ev // 4, 1)]
    warm = toy_events(50, seed=2)
    std = Standardizer.fit(point_clouds(warm, 64))
    cases = {
        "point_clouds+standardization": (events, lambda e: point_clouds(e, 64, centre=True, rotate=True, flip=True,
                                                                        standardizer=std, max_jets=None)),
        "jet_images": (events, lambda e: jet_images(e, n_pixels=40, half_width=0.8, channels="all")),
        "observables": (small, lambda e: jet_observables(e)),
        "lund_graphs": (small, lambda e: lund_graphs(e, max_level=-1)),
        "flatten_only(jet_batch)": (events, lambda e: jet_batch(e)),
    }
    results = {}
    for name, (ev, fn) in cases.items():
        fn(warm)  # compile / load the numba cache
        n_jets = int(jet_batch(ev).n_jets)
        best = min(_time(fn, ev) for _ in range(3))
        rate = n_jets / best
        results[name] = {"jets": n_jets, "seconds": best, "jets_per_s": rate, "target": TARGETS.get(name)}
        tgt = TARGETS.get(name)
        flag = "" if tgt is None else ("  OK" if rate >= tgt else f"  BELOW target {tgt} ({rate / tgt:.0%})")
        print(f"{name:32s} {rate:12,.0f} jets/s  ({n_jets} jets, {best:.3f} s){flag}")
    b = jet_batch(small)
    results["meta"] = {
        "mean_constituents": float(b.counts.mean()),
        "threads": 1,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "n_constituents_point_cloud": 64,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


def _time(fn, ev) -> float:
    t = time.perf_counter()
    fn(ev)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
