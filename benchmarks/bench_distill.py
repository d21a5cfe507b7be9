"""Inference speed of distilled students vs their teacher, on one CPU core.

Run: .venv/bin/python benchmarks/bench_distill.py [--data QCD_DATASET] [--teacher RUN] [--events N]
Without --data, generates N QCD events (pT-hat > 300 GeV) under benchmarks/results/data/; without
--teacher, trains a small lund-gae teacher there (its speed does not depend on how well it is
trained), then distills it into an MLP (observables) and a DeepSets (constituents) student.
Prints a table and writes benchmarks/results/bench_distill.json.

Per model, all with torch.set_num_threads(1), under torch.inference_mode:
- latency at batch 1: one event (its 1-2 jets, inputs prepared) per call, median / p99 over
  --latency-events calls, eager and torch.jit.trace'd export module;
- batched model inference on prepared inputs, jets/s at each --batch size (best one reported);
- end to end: representation built from the raw events (awkward, 2000 events at a time) + model
  (batches of 1024 jets), jets/s.
The machine is shared: run it when idle (``uptime``); the JSON records the load average.
Targets (issue #6): student <= 1 ms per event at batch 1, >= 100k jets/s batched.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGET_LATENCY_MS = 1.0
TARGET_JETS_PER_S = 100_000


def _ensure_data(args) -> Path:
    if args.data:
        return Path(args.data)
    from darkshower.data.dataset import open_dataset
    from darkshower.simulate.run import generate

    out = HERE / "results" / "data" / f"qcd_distill_{args.events}"
    try:
        open_dataset(out)
        return out
    except Exception:
        pass
    generate({"process": "qcd", "events": args.events, "seed": 7, "params": {"pthat_min": 300}}, out, jobs=1,
             progress=False, command=["bench_distill"])
    return out


def _train_models(args, data: Path) -> dict[str, Path]:
    from darkshower.cli.distill import build_config
    from darkshower.train import train

    base = HERE / "results" / "data" / f"distill_runs_{data.name}"
    runs = {}
    fast = {"threads": 1, "early_stopping": {"patience": None}, "batch_size": 64, "optimizer": {"lr": 3e-3}}
    teacher = Path(args.teacher) if args.teacher else base / "teacher_lund_gae"
    if not args.teacher and not (teacher / "model_last.pt").exists():
        import shutil

        shutil.rmtree(teacher, ignore_errors=True)
        train("lund-gae", data, teacher, config={**fast, "model": {"pretrain_epochs": 3}}, epochs=3, progress=False)
    runs["teacher"] = teacher
    for kind in ("mlp", "deepsets"):
        out = base / f"student_{kind}_{'given' if args.teacher else 'lund_gae'}"
        if not (out / "model_last.pt").exists():
            import shutil

            shutil.rmtree(out, ignore_errors=True)
            train("distill", data, out, config=build_config(teacher, kind, dict(fast)), epochs=args.student_epochs,
                  progress=False)
        runs[f"student_{kind}"] = out
    return runs


def bench_model(run: Path, events, n_latency: int, batch: int, min_seconds: float) -> dict:
    import torch

    from darkshower.represent.build import build
    from darkshower.represent.store import store_from_rep, store_len, take, to_torch
    from darkshower.train import load_run

    method, rep, _cfg, info = load_run(run)
    res = {"run": str(run), "method": info["method"], "representation": rep.kind,
           "parameters": int(sum(p.numel() for p in method.parameters()))}
    build(rep, events[:5])  # compile numba kernels
    store = store_from_rep(build(rep, events), 0.0)
    n = store_len(store)
    ev_ids = np.asarray(store["event_id"])
    # batch 1: one event (all its jets) per call, inputs prepared beforehand
    uniq, first = np.unique(ev_ids, return_index=True)
    order = np.argsort(first)
    starts = first[order]
    ends = np.r_[starts[1:], n]
    sel = slice(0, min(n_latency, len(starts)))
    per_event = [to_torch(take(store, np.arange(a, b))) for a, b in zip(starts[sel], ends[sel])]
    module, example = method.export()
    with torch.inference_mode():
        traced = torch.jit.trace(module, example, check_trace=False)
    keys = {"lund": ("x", "edge_index", "batch", "node_counts"), "constituents": ("x", "mask")}.get(rep.kind, ("x",))

    def lat(fn):
        t = []
        with torch.inference_mode():
            for b in per_event[:20]:
                fn(b)
            for b in per_event:
                t0 = time.perf_counter()
                fn(b)
                t.append(time.perf_counter() - t0)
        t = np.asarray(t) * 1e3
        return {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "events": len(t)}

    res["latency_batch1_eager"] = lat(method.score)
    res["latency_batch1_traced"] = lat(lambda b: traced(*(b[k] for k in keys)))
    # batched, prepared inputs: jets/s at each batch size, the best one reported
    res["batched_jets_per_s_by_batch"] = {}
    for bs in batch:
        batches = [to_torch(take(store, np.arange(a, min(a + bs, n)))) for a in range(0, n, bs)]
        with torch.inference_mode():
            method.score(batches[0])
            t0, done = time.perf_counter(), 0
            while True:
                for b in batches:
                    method.score(b)
                done += n
                el = time.perf_counter() - t0
                if el >= min_seconds:
                    break
        res["batched_jets_per_s_by_batch"][str(bs)] = done / el
    best = max(res["batched_jets_per_s_by_batch"].items(), key=lambda kv: kv[1])
    res["batched_jets_per_s"], res["batch_size"] = best[1], int(best[0])
    # end to end from raw events (build + tensors + model), one pass per chunk-sized piece
    t0 = time.perf_counter()
    with torch.inference_mode():
        for a in range(0, len(events), 2000):
            s = store_from_rep(build(rep, events[a:a + 2000]), 0.0)
            m = store_len(s)
            for c in range(0, m, 1024):
                method.score(to_torch(take(s, np.arange(c, min(c + 1024, m)))))
    el = time.perf_counter() - t0
    res["end_to_end_jets_per_s"] = n / el
    res["jets"] = n
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="QCD dataset (default: generate --events)")
    ap.add_argument("--teacher", default=None, help="teacher run (default: train a small lund-gae)")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--student-epochs", type=int, default=10)
    ap.add_argument("--latency-events", type=int, default=1000)
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024, 4096], help="batch sizes (jets)")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_distill.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from darkshower.data.dataset import open_dataset

    data = _ensure_data(args)
    runs = _train_models(args, data)
    events = open_dataset(data).arrays()
    results = {}
    for name, run in runs.items():
        r = bench_model(run, events, args.latency_events, args.batch, args.min_seconds)
        results[name] = r
        print(f"{name:18s} {r['method']:9s} {r['representation']:12s} params {r['parameters']:7d}  "
              f"batch-1 {r['latency_batch1_eager']['median_ms']:.3f} ms/event (traced "
              f"{r['latency_batch1_traced']['median_ms']:.3f}, p99 {r['latency_batch1_traced']['p99_ms']:.3f})  "
              f"batched {r['batched_jets_per_s']:,.0f} jets/s  end-to-end {r['end_to_end_jets_per_s']:,.0f} jets/s")
    t = results["teacher"]
    for name in ("student_mlp", "student_deepsets"):
        s = results[name]
        s["speedup_batched_vs_teacher"] = s["batched_jets_per_s"] / t["batched_jets_per_s"]
        s["speedup_end_to_end_vs_teacher"] = s["end_to_end_jets_per_s"] / t["end_to_end_jets_per_s"]
        s["speedup_batch1_vs_teacher"] = (t["latency_batch1_eager"]["median_ms"]
                                          / s["latency_batch1_eager"]["median_ms"])
        best_lat = min(s["latency_batch1_eager"]["median_ms"], s["latency_batch1_traced"]["median_ms"])
        s["meets_latency_target"] = best_lat <= TARGET_LATENCY_MS
        s["meets_throughput_target"] = s["batched_jets_per_s"] >= TARGET_JETS_PER_S
        print(f"{name}: {s['speedup_batched_vs_teacher']:.0f}x teacher batched, "
              f"{s['speedup_end_to_end_vs_teacher']:.1f}x end to end, {s['speedup_batch1_vs_teacher']:.1f}x at "
              f"batch 1; latency target {'OK' if s['meets_latency_target'] else 'MISSED'}, throughput target "
              f"{'OK' if s['meets_throughput_target'] else 'MISSED'}")
    results["meta"] = {"threads": 1, "load_average_1min": os.getloadavg()[0],
                       "cpu": platform.processor() or platform.machine(),
                       "python": platform.python_version(), "torch": torch.__version__, "data": str(data),
                       "targets": {"latency_ms_per_event": TARGET_LATENCY_MS, "batched_jets_per_s": TARGET_JETS_PER_S}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
