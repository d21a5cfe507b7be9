"""Training at scale: peak memory and throughput of streaming vs in-memory training, and DDP ranks.

    .venv/bin/python benchmarks/bench_train_scale.py [--jets 100000 1000000] [--method ae-hlf]
        [--epochs 2] [--ddp] [--out benchmarks/results/train_scale.json]

For each training-set size a toy dataset (darkshower.represent.toys, two jets per event, chunks of
50k events) is written once under --work, then ``darkshower train`` runs in a fresh process with
``data.streaming`` on and off; the child's peak RSS comes from the kernel (wait4), the throughput
(jets/s) from the run's last epoch (the first one also builds the representation cache). With --ddp
the smallest size is also trained with --nproc 2 (each rank's process is a grandchild, so its RSS
is not in the figure; jets/s is the whole job's).
Prints a table and writes JSON. The machine is shared: run it on an idle box (uptime is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHUNK_EVENTS = 50_000


def make_dataset(path: Path, n_jets: int, seed: int = 1, chunk_events: int = CHUNK_EVENTS) -> Path:
    from darkshower.data import DatasetWriter, open_dataset
    from darkshower.represent.toys import toy_events

    if (path / "manifest.json").exists():
        ds = open_dataset(path)
        if ds.manifest.get("status") == "complete":
            return path
    n_events = n_jets // 2
    w = DatasetWriter(path, {"toy": seed, "n_jets": n_jets}, {"kind": "generated", "process": "toy"})
    w.open()
    for i, a in enumerate(range(0, n_events, chunk_events)):
        n = min(chunk_events, n_events - a)
        ev = toy_events(n, n_prongs=1, seed=seed * 1000 + i, n_constituents=(15, 30))
        ev = ak.with_field(ev, ak.Array(np.arange(n, dtype=np.int64) + a), "event_id")
        w.write(i, ev)
    w.finalize()
    return path


def run_train(data: Path, out: Path, method: str, epochs: int, streaming: str, nproc: int = 1,
              extra: list[str] | None = None) -> dict:
    cmd = [str(REPO / ".venv/bin/darkshower"), "train", method, "--data", str(data), "--out", str(out),
           "--epochs", str(epochs), "--no-progress", "--set", f"data.streaming={streaming}",
           "--set", "early_stopping.patience=null"]
    for kv in extra or []:
        cmd += ["--set", kv]
    cmd += ["--nproc", str(nproc)] if nproc > 1 else ["--threads", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    hist = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run.json").read_text())
    return {"streaming": info.get("streaming"), "nproc": nproc, "peak_rss_mb": usage.ru_maxrss / 1024,
            "jets_per_s_last_epoch": hist[-1]["jets_per_s"], "n_train": info["n_train"], "wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jets", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--method", default="ae-hlf")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ddp", action="store_true", help="also train the smallest size with --nproc 2")
    ap.add_argument("--max-train", type=int, default=None,
                    help="data.max_train: samples per epoch (the whole set is still built and, in memory, held)")
    ap.add_argument("--chunk-events", type=int, default=CHUNK_EVENTS, help="events per toy-dataset chunk")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training config")
    ap.add_argument("--work", default="/tmp/darkshower_bench_train_scale")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/train_scale_METHOD.json)")
    args = ap.parse_args()
    args.out = args.out or str(REPO / f"benchmarks/results/train_scale_{args.method}.json")
    work = Path(args.work)
    rows = []
    for n in args.jets:
        data = make_dataset(work / f"toy_{n}_c{args.chunk_events}", n, chunk_events=args.chunk_events)
        for streaming in ("on", "off"):
            out = work / f"run_{args.method}_{n}_{streaming}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            extra = [*args.set, *([f"data.max_train={args.max_train}"] if args.max_train else [])]
            r = run_train(data, out, args.method, args.epochs, streaming, extra=extra)
            r.update(jets=n, method=args.method)
            rows.append(r)
            print(f"{args.method} {n:>9} jets streaming={streaming:<3}: peak RSS {r['peak_rss_mb']:8.0f} MB, "
                  f"{r['jets_per_s_last_epoch']:9.0f} jets/s, wall {r['wall_s']:.0f} s", flush=True)
    if args.ddp:
        n = min(args.jets)
        for nproc in (1, 2):
            out = work / f"run_{args.method}_{n}_ddp{nproc}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            r = run_train(work / f"toy_{n}_c{args.chunk_events}", out, args.method, args.epochs, "off", nproc=nproc)
            r.update(jets=n, method=args.method)
            rows.append(r)
            print(f"{args.method} {n:>9} jets nproc={nproc}: {r['jets_per_s_last_epoch']:9.0f} jets/s", flush=True)
    summary: dict = {}
    sizes = sorted(args.jets)
    if len(sizes) >= 2:
        def pick(n, s):
            return next(r for r in rows if r["jets"] == n and r["streaming"] == (s == "on") and r["nproc"] == 1)

        lo, hi = sizes[0], sizes[-1]
        summary["rss_growth_streaming"] = pick(hi, "on")["peak_rss_mb"] / pick(lo, "on")["peak_rss_mb"]
        summary["rss_growth_in_memory"] = pick(hi, "off")["peak_rss_mb"] / pick(lo, "off")["peak_rss_mb"]
        summary["throughput_streaming_over_in_memory"] = {
            n: pick(n, "on")["jets_per_s_last_epoch"] / pick(n, "off")["jets_per_s_last_epoch"] for n in sizes}
    result = {"benchmark": "train_scale", "max_train": args.max_train, "set": args.set,
              "chunk_events": args.chunk_events, "uptime": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows,
              "summary": summary, "command": " ".join([sys.executable, *sys.argv])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
