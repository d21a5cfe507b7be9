"""Contrastive training throughput (jets/s, each jet counted once) at the DarkCLR reference size.

Reference (issue #6, public DarkCLR code on this kind of machine, 2 cores): 21 jets/s at d=128,
4 heads, 4 layers, ff 512, output 512, 50 constituents, batch 256 (its loss builds a 2B×2B×D
tensor). Goal: >= 210 jets/s with the data path + augmentations < 10 % of the step.

Run: .venv/bin/python benchmarks/bench_contrastive.py [--threads 2] [--steps 12] [--data DATASET]
Writes benchmarks/results/bench_contrastive.json. ``jets_per_s`` is wall clock; on a loaded shared
box ``jets_per_cpu_s_x_threads`` (jets per CPU-second of the process times the thread count) is
the load-independent estimate of what the same threads would do on idle cores. Each case runs the trainer's inner loop (batch
from the in-memory store -> ``method.loss`` -> backward -> clip -> Adam step) for ``--steps``
timed steps after 2 warm-up steps; the data path (store -> torch batch) and the augmentations
(all views of a batch) are timed separately on the same batches. The box is shared: the load
average before and after is recorded with the numbers.
"""

from __future__ import annotations

import os
import sys

_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--threads"), "2")
os.environ.setdefault("OMP_NUM_THREADS", _threads)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: the DarkCLR reference size (configs/methods/clr-paper.yaml)
PAPER = {"d_model": 128, "heads": 4, "layers": 4, "ff": 512, "head": [128], "output": 512}
REFERENCE_JETS_PER_S = 21.0
GOAL_JETS_PER_S = 210.0


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def make_store(n_jets: int, n_constituents: int, data: str | None):
    from darkshower.represent.build import build
    from darkshower.represent.config import parse_representation
    from darkshower.represent.store import store_from_rep

    rep = parse_representation({"kind": "constituents", "n_constituents": n_constituents, "standardize": False,
                                "max_jets": 2})
    if data:
        from darkshower.data.dataset import open_dataset

        parts = []
        ds = open_dataset(data)
        for i in range(len(ds.chunks)):
            parts.append(store_from_rep(build(rep, ds.read_chunk(i)), 0.0))
            if sum(len(p["label"]) for p in parts) >= n_jets:
                break
        from darkshower.represent.store import concat

        store = concat(parts)
    else:  # toy QCD-like jets: 20-70 constituents (QCD at pT ~ 400 GeV has ~40 on average)
        from darkshower.represent.toys import toy_events

        store = store_from_rep(build(rep, toy_events(n_jets // 2 + 1, n_prongs=1, seed=3, n_constituents=(20, 70))),
                                0.0)
    return store, rep


def run_case(name: str, method: str, model: dict, store, rep, batch_size: int, steps: int, threads: int) -> dict:
    import torch

    from darkshower.config import validate
    from darkshower.models import get_method
    from darkshower.models.base import StepContext
    from darkshower.represent.store import take, to_torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = get_method(method)
    cfg = validate(cls.Config, model, "bench")
    spec = cls.input_spec(store, rep)
    m = cls(cfg, spec)
    m.prepare(store)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    n = len(store["label"])
    rng = np.random.default_rng(0)
    t_data = t_step = 0.0
    timed_batches = []
    cpu0 = None
    for s in range(steps + 2):
        if s == 2:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        batch = to_torch(take(store, rng.integers(0, n, batch_size)))
        t1 = time.perf_counter()
        loss, _ = m.loss(batch, StepContext(0, s, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
        t2 = time.perf_counter()
        if s >= 2:
            t_data += t1 - t0
            t_step += t2 - t1
            timed_batches.append(batch)
    cpu = time.process_time() - cpu0
    # augmentations alone (all views of each batch), same batches
    t_aug = 0.0
    with torch.no_grad():
        for b in timed_batches:
            mask = b["mask"].bool()
            x = m.inp.raw(b["x"], mask)
            t0 = time.perf_counter()
            m._views(x, mask, b, None)
            t_aug += time.perf_counter() - t0
    total = t_data + t_step
    jets = steps * batch_size
    out = {"method": method, "model": model, "batch_size": batch_size, "steps": steps, "threads": threads,
           "jets_per_s": jets / total, "step_seconds": total / steps,
           # load-independent estimate: jets per CPU-second of this process, times the threads
           "jets_per_cpu_s_x_threads": jets / max(cpu, 1e-9) * threads,
           "data_fraction": t_data / total, "augment_fraction": t_aug / total,
           "data_plus_augment_fraction": (t_data + t_aug) / total,
           "precision": "bf16" if m.encoder.bf16 else "fp32",
           "speedup_vs_darkclr_reference": jets / total / REFERENCE_JETS_PER_S}
    print(f"{name:34s} {out['jets_per_s']:8.1f} jets/s (CPU-time estimate {out['jets_per_cpu_s_x_threads']:6.1f})  "
          f"step {out['step_seconds']:.3f} s  "
          f"data {out['data_fraction']:.1%}  aug {out['augment_fraction']:.1%}  ({out['precision']})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--jets", type=int, default=8192)
    ap.add_argument("--data", default=None, help="a dataset directory (default: toy jets)")
    ap.add_argument("--cases", default="clr-paper,clr-paper-fp32,aclr-paper,clr-demo")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_contrastive.json"))
    args = ap.parse_args()
    import torch

    store, rep = make_store(args.jets, 50, args.data)
    mult = store["mask"].sum(1)
    cases = {
        "clr-paper": ("clr", {**PAPER}),
        "clr-paper-fp32": ("clr", {**PAPER, "precision": "fp32"}),
        "aclr-paper": ("aclr", {**PAPER}),
        "clr-demo": ("clr", {}),
    }
    load_before = loadavg()
    results = {}
    for name in args.cases.split(","):
        method, model = cases[name]
        results[name] = run_case(name, method, model, store, rep, args.batch_size, args.steps, args.threads)
    results["meta"] = {
        "reference_darkclr_jets_per_s": REFERENCE_JETS_PER_S, "goal_jets_per_s": GOAL_JETS_PER_S,
        "n_constituents": 50, "mean_constituents": float(mult.mean()), "full_jets_fraction": float((mult == 50).mean()),
        "data": args.data or "toy_events (20-70 constituents)", "threads": args.threads,
        "loadavg_before": load_before, "loadavg_after": loadavg(), "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "note": "jets/s counts each jet once (2 views for clr/rs3l, 3 for aclr)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"load average before {load_before}, after {results['meta']['loadavg_after']}; wrote {out}")


if __name__ == "__main__":
    main()
