"""The event-level flow on data where many events lack a second jet: ``model.missing_jets: pad`` (the padded
zeros as they are) against ``noise`` (the missing jet marginalized; docs/methods/flow.md; with m_jj, a copy of
the first jet's mass in one-jet events, marginalized too or kept: ``model.missing_pair``), and the default's
event-flow member (``train auto``: + the event shape), next to the density
baseline at event level (gmm on the two jets' mass, multiplicity and pT + MET topology) on the same events.

Each method trains on ``--qcd`` (at most ``--events`` training samples, its own validation split: 20 % of the
events by event_fraction) and is scored on that validation split against ``--signal``: the AUC of the event score.
Label-free: the signal only enters the AUC.

    python benchmarks/flow_missing_jets.py --qcd runs/sensitivity-aachen/data/qcd_test \
        --signal runs/sensitivity-aachen/data/aachen --events 20000 --epochs 8 \
        --out benchmarks/results/flow_missing_jets_aachen.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pileup_validation import _uptime

HLF = ["mass", "msoftdrop", "tau21", "tau32", "c2", "d2", "n2", "girth", "ptd", "axis_major", "axis_minor",
       "n_constituents", "n_charged", "lund_n_primary", "lund_max_lnkt"]


def main(argv=None) -> int:
    from darkshower.data.dataset import atomic_write_json
    from darkshower.evaluate.metrics import auc as auc_of
    from darkshower.train import score, train
    from darkshower.train.auto import EVENT_FLOW_REPRESENTATION
    from darkshower.train.data import event_fraction

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qcd", required=True)
    ap.add_argument("--signal", required=True)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    ev = {"kind": "observables", "level": "event", "max_jets": 2, "include_event": False}
    member = {**EVENT_FLOW_REPRESENTATION, "columns": HLF}
    methods = {
        "gmm-event (baseline)": ("gmm", {"representation": {**ev, "columns": ["mass", "n_constituents", "pt"]}}),
        "flow-event, missing_jets: pad": ("flow", {"representation": {**ev, "columns": HLF},
                                                   "model": {"missing_jets": "pad"}}),
        "flow-event, missing_jets: noise, m_jj kept": ("flow", {"representation": {**ev, "columns": HLF},
                                                                "model": {"missing_jets": "noise",
                                                                          "missing_pair": False}}),
        "flow-event, missing_jets: noise": ("flow", {"representation": {**ev, "columns": HLF},
                                                     "model": {"missing_jets": "noise"}}),
        # the default's event-flow member (train auto): + the event shape
        "event-flow member, m_jj kept": ("flow", {"representation": member, "model": {"missing_pair": False}}),
        "event-flow member": ("flow", {"representation": member}),
    }
    res: dict = {"command": "python benchmarks/flow_missing_jets.py " + " ".join(argv or []), "uptime_before": _uptime(),
                 "qcd": args.qcd, "signal": args.signal, "events": args.events, "epochs": args.epochs, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (method, cfg) in methods.items():
            t0 = time.perf_counter()
            run = train(method, args.qcd, Path(tmp) / method / str(len(res["rows"])),
                        config={**cfg, "seed": args.seed, "threads": 1, "data": {"max_train": args.events}},
                        epochs=args.epochs, progress=False)
            _, evp = score(run, [args.qcd, args.signal], Path(tmp) / f"{len(res['rows'])}.parquet", progress=False)
            t = pd.read_parquet(evp)
            q = t[t.dataset.str.endswith(Path(args.qcd).name)]
            q = q[event_fraction(q.event_id.to_numpy(), args.seed) < 0.2]  # the run's validation events
            s = t[t.dataset.str.endswith(Path(args.signal).name)]
            xb, xs = q.score_max2.to_numpy(), s.score_max2.to_numpy()
            auc = auc_of(xs[np.isfinite(xs)], xb[np.isfinite(xb)])
            res["rows"][name] = {"auc": auc, "n_bkg": int(len(q)), "n_sig": int(len(s)),
                                 "seconds": round(time.perf_counter() - t0, 1)}
            print(f"{name:44s} AUC {auc:.4f}  ({len(q)} QCD validation events, {len(s)} signal; "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)
    res["uptime_after"] = _uptime()
    if args.out:
        atomic_write_json(args.out, res)
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
