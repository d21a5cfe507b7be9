"""Importer throughput (jets/s, one core) for h5-4vec and pfnano.

Replicates the small public samples in ../shared/data into a temporary directory (so the
input has a measurable size), imports them with ``darkshower.io.import_dataset`` pinned to one
CPU core, and prints and writes benchmarks/results/import.json. Targets: h5-4vec >= 50k jets/s,
pfnano >= 10k jets/s. The measured time covers the whole import: input check and SHA-256,
reading, record building, Parquet writing and the manifest.

    .venv/bin/python benchmarks/bench_import.py [--replicas-h5 30] [--replicas-nano 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
H5_SRC = SHARED / "cms_b2g24015" / "test_input_QCD.h5"
NANO_SRC = SHARED / "cms_pfnano" / "nano106X_on_mini106X_2017_mc_NANO.root"
TARGETS = {"h5-4vec": 50_000, "pfnano": 10_000}


def one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        desc = f"pinned to CPU {cpu}"
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        desc = "not pinned"
    try:
        import pyarrow

        pyarrow.set_cpu_count(1)
        pyarrow.set_io_thread_count(1)
    except Exception:  # pragma: no cover
        pass
    return desc


def make_h5(dst: Path, replicas: int) -> int:
    import h5py
    import numpy as np

    with h5py.File(H5_SRC) as src, h5py.File(dst, "w") as out:
        for name in ("jet1_PFCands", "jet2_PFCands", "jet_kinematics", "ae_loss1", "ae_loss2", "ae_lossY", "H_jet_idx"):
            a = src[name][:]
            big = np.concatenate([a] * replicas)
            chunks = (min(len(big), 256),) + big.shape[1:]
            out.create_dataset(name, data=big, chunks=chunks, compression="gzip")
        return len(src["jet1_PFCands"]) * replicas


def make_nano(dst: Path, replicas: int) -> int:
    import awkward as ak
    import uproot

    t = uproot.open(NANO_SRC)["Events"]
    names = [k for k in t.keys() if k.startswith(("FatJet_", "FatJetPFCands_"))]
    a = t.arrays(names + ["MET_pt", "MET_phi", "genWeight"])
    jets = ak.zip({k[len("FatJet_"):]: a[k] for k in names if k.startswith("FatJet_")})
    cands = ak.zip({k[len("FatJetPFCands_"):]: a[k] for k in names if k.startswith("FatJetPFCands_")})
    data = {"FatJet": jets, "FatJetPFCands": cands, "MET_pt": a["MET_pt"], "MET_phi": a["MET_phi"], "genWeight": a["genWeight"]}
    with uproot.recreate(dst) as f:
        f.mktree("Events", {k: v.type for k, v in data.items()}, field_name=lambda o, i: f"{o}_{i}", counter_name=lambda c: "n" + c)
        per_basket = max(1, 2000 // len(a))
        for start in range(0, replicas, per_basket):
            k = min(per_basket, replicas - start)
            f["Events"].extend({key: ak.concatenate([v] * k) for key, v in data.items()})
    return len(a) * replicas


def bench(fmt: str, src: Path, out: Path, **opts) -> dict:
    from darkshower.io import import_dataset

    t0 = time.perf_counter()
    ds = import_dataset(fmt, [src], out, chunk_size=5000, progress=False, **opts)
    dt = time.perf_counter() - t0
    n_jets = int(ds.manifest["n_jets"])
    rate = n_jets / dt
    return {
        "format": fmt,
        "events": ds.n_events,
        "jets": n_jets,
        "seconds": round(dt, 3),
        "jets_per_s": round(rate),
        "events_per_s": round(ds.n_events / dt),
        "input_bytes": src.stat().st_size,
        "target_jets_per_s": TARGETS[fmt],
        "meets_target": rate >= TARGETS[fmt],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas-h5", type=int, default=30)
    ap.add_argument("--replicas-nano", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "import.json"))
    args = ap.parse_args()
    if not (H5_SRC.exists() and NANO_SRC.exists()):
        print(f"shared sample data not found under {SHARED}; nothing to benchmark", file=sys.stderr)
        return 1
    pin = one_core()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        tmp = Path(tmp)
        make_h5(tmp / "in.h5", args.replicas_h5)
        make_nano(tmp / "in.root", args.replicas_nano)
        bench("h5-4vec", tmp / "in.h5", tmp / "warmup", extra="ae_loss1")  # warm imports / caches
        results.append(bench("h5-4vec", tmp / "in.h5", tmp / "out_h5", extra="ae_loss1,ae_loss2,ae_lossY,H_jet_idx", jet_kinematics="jet_kinematics"))
        results.append(bench("pfnano", tmp / "in.root", tmp / "out_nano"))
    for r in results:
        flag = "OK" if r["meets_target"] else "BELOW TARGET"
        print(f"{r['format']:8s} {r['events']:7d} events {r['jets']:7d} jets in {r['seconds']:6.2f} s "
              f"-> {r['jets_per_s']:8d} jets/s (target {r['target_jets_per_s']}) {flag}")
    doc = {"benchmark": "import", "cpu": pin, "machine": platform.machine(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
