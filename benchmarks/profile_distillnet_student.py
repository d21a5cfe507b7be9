"""Per-event cost of each part of the DistillNet student's path (as `generate --pu-mitigation distillnet:RUN`
runs it) and of the teacher's, on one core, at mu = 60.

Run (after benchmarks/bench_distillnet.py made its samples and runs):
    nice -n 5 .venv/bin/python benchmarks/profile_distillnet_student.py [--events 20] [--repeats 7]

Events: the first 1 + --events of bench_distillnet's mu = 60 test sample (its stored candidates, as float64 like
generate's); the first is a warm-up (compilation), not counted. Each part of each event runs --repeats times;
the time of a part is its best repeat in CPU time of the process (time.process_time; BLAS and torch on one
thread), summed over the events and divided by their number. Parts:
  student: assoc (vertex association), features (particle_features: everything below in one compiled pass),
           sums_only (the neighbourhood sums alone, class_sums), standardize, mlp (the layers, Student.logits), sigmoid, and
           whole = distillnet_weights (assoc given, as in generate) ;
  teacher: features (teacher_features), graph (knn_graph), network (forward + sigmoid, torch), whole (all three).
Writes benchmarks/results/distillnet_student_profile.json (with the command, the load average and the host).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pileup_validation import _uptime  # noqa: E402  (shared benchmark helper)


def best_cpu(fn, repeats: int) -> float:
    """Best CPU time (process_time, s) of ``repeats`` calls of fn()."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--work", type=Path, default=HERE / "results" / "distillnet_work")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "distillnet_student_profile.json")
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(HERE))
    from bench_distillnet import _flat_particles, _save

    from darkshower.data.dataset import open_dataset
    from darkshower.models.pileup_gnn import knn_graph, load_pu_run, teacher_features
    from darkshower.simulate.config import PileupConfig
    from darkshower.simulate.neighbours import class_sums
    from darkshower.simulate.pileup import distillnet_weights, load_student, particle_features, pv_associated

    torch.set_num_threads(1)
    ds = args.work / "test_mu60_puppi"
    pcfg = PileupConfig(**open_dataset(ds).manifest["config"]["pileup"])
    c, _, cnt = _flat_particles(ds)
    c = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in c.items()}  # generate's dtype
    st = load_student(args.work / "student")
    _, tmodel, tcfg, _ = load_pu_run(args.work / "teacher")
    o = np.concatenate([[0], np.cumsum(cnt)])
    n_ev = min(args.events + 1, len(cnt))
    tot: dict[str, float] = {}
    n_part = 0
    start = _uptime()
    with threadpool_limits(1), torch.no_grad():
        for i in range(n_ev):
            ce = {k: v[o[i]:o[i + 1]] for k, v in c.items()}
            ce["ev"] = np.zeros(cnt[i], np.int64)
            a = pv_associated(ce, pcfg)
            x = particle_features(ce, pcfg, None, a, radii=st.radii)
            cls = np.where(a == 1, 0, np.where(a == 0, 1, 2))
            h = st.standardize(x)
            z = st.logits(h)

            xt = teacher_features(ce, pcfg)
            nbr = knn_graph(ce["eta"], ce["phi"], ce["ev"], tcfg.model.k)
            xt_t, nbr_t = torch.from_numpy(xt), torch.from_numpy(nbr)

            def teacher_net(xt_t=xt_t, nbr_t=nbr_t, ce=ce):
                coords = torch.from_numpy(np.column_stack([ce["eta"], ce["phi"]]).astype(np.float32))
                return torch.sigmoid(tmodel(xt_t, coords, nbr_t))

            def teacher_whole(ce=ce):
                xt_t = torch.from_numpy(teacher_features(ce, pcfg))
                nbr_t = torch.from_numpy(knn_graph(ce["eta"], ce["phi"], ce["ev"], tcfg.model.k))
                coords = torch.from_numpy(np.column_stack([ce["eta"], ce["phi"]]).astype(np.float32))
                return torch.sigmoid(tmodel(xt_t, coords, nbr_t))

            parts = {
                "student_assoc": lambda ce=ce: pv_associated(ce, pcfg),
                "student_features": lambda ce=ce, a=a: particle_features(ce, pcfg, None, a, radii=st.radii),
                "student_sums_only": lambda ce=ce, cls=cls: class_sums(ce["ev"], ce["eta"], ce["phi"], ce["pt"], cls,
                                                                       3, st.radii, pcfg.puppi.r_min),
                "student_standardize": lambda x=x: st.standardize(x),
                "student_mlp": lambda h=h: st.logits(h),
                "student_sigmoid": lambda z=z: 0.5 * (1.0 + np.tanh(0.5 * z.astype(np.float64))),
                "student_whole": lambda ce=ce: distillnet_weights(ce, pv_associated(ce, pcfg), None, pcfg, st),
                "teacher_features": lambda ce=ce: teacher_features(ce, pcfg),
                "teacher_graph": lambda ce=ce: knn_graph(ce["eta"], ce["phi"], ce["ev"], tcfg.model.k),
                "teacher_network": teacher_net,
                "teacher_whole": teacher_whole,
            }
            got = {k: best_cpu(f, args.repeats) for k, f in parts.items()}
            if i == 0:  # warm-up
                continue
            n_part += int(cnt[i])
            for k, v in got.items():
                tot[k] = tot.get(k, 0.0) + v
    n = n_ev - 1
    ms = {k: 1e3 * v / n for k, v in tot.items()}
    res = {"command": "nice -n 5 .venv/bin/python benchmarks/profile_distillnet_student.py "
                      f"--events {args.events} --repeats {args.repeats}",
           "host": platform.node(), "cpus": os.cpu_count(), "uptime_start": start, "uptime_end": _uptime(),
           "events": n, "mean_candidates": n_part / max(n, 1), "repeats": args.repeats,
           "cpu_ms_per_event_best_of_repeats": ms,
           "speedup_whole": ms["teacher_whole"] / ms["student_whole"],
           "note": "process_time, one thread (torch.set_num_threads(1), threadpoolctl limits BLAS to 1); per part the "
                   "best of the repeats, summed over events; student_features includes the sums (sums_only is the "
                   "same sums computed alone); whole = the full path of each"}
    _save(res, args.out)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
