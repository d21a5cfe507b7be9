"""Per-row ONNX Runtime cost at batch 1 vs larger batches, one thread: how much dynamic batching can save per
sample on this CPU (docs/deployment.md, the 5x dynamic-batching goal).

    python benchmarks/bench_batch_cost.py RUN [RUN ...] [--batches 1,64] [--calls 30] [--repeats 3]

Each run is exported to ONNX (checked against torch) and called with random inputs of its own shapes; the time per
call is the best of --calls calls, best of --repeats rounds, rounds interleaved over the batch sizes (side by side
on a shared machine). JSON: benchmarks/results/batch_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _feeds(sess, batch: int, rng) -> dict:
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in i.shape]
        if "float" in i.type:
            feeds[i.name] = rng.random(shape, dtype=np.float32)
        elif "bool" in i.type:
            feeds[i.name] = np.ones(shape, dtype=np.bool_)
        else:
            feeds[i.name] = np.ones(shape, dtype=np.int64)
    return feeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from darkshower.export.onnx import export_onnx

    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    result: dict = {"load_average_start": os.getloadavg()[0], "batches": batches, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            f = Path(tmp) / f"{Path(run).name}.onnx"
            export_onnx(run, f)
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
            feeds = {b: _feeds(sess, b, rng) for b in batches}
            for b in batches:
                sess.run(None, feeds[b])  # warm up
            best = {b: float("inf") for b in batches}
            for _ in range(args.repeats):
                for b in batches:
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        sess.run(None, feeds[b])
                        best[b] = min(best[b], time.perf_counter() - t)
            per_row = {b: best[b] / b * 1e6 for b in batches}
            r = {"us_per_call": {b: best[b] * 1e6 for b in batches}, "us_per_row": per_row,
                 "saving_per_row": {b: per_row[batches[0]] / per_row[b] for b in batches}}
            result["runs"][str(run)] = r
            print(Path(run).name, " ".join(f"batch {b}: {per_row[b]:.1f} us/row" for b in batches),
                  f"-> saving {r['saving_per_row'][batches[-1]]:.2f}x", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'batch_cost.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
