"""The recommended default on jets without constituents (CMS TreeMaker-like data), side by side with the default
trained on the same events with constituents (issue #12 item 9, docs/sensitivity.md).

Copies every dataset of a finished benchmark directory (``BENCH/data/*``) into a TreeMaker-like dataset: each
jet keeps its four-vector and carries the observables the CMS TreeMaker importer stores (``cms_softDropMass``,
``cms_NsubjettinessTau1..3``, ``cms_ecfN2b1``, ``cms_girth``, ``cms_ptD``, ``cms_axismajor/axisminor``,
``cms_multiplicity``, ``cms_chargedMultiplicity``: the first name of each entry of
``darkshower.represent.stored.STORED_FIELDS``, values computed by darkshower from the constituents), and its
constituent list is emptied. Then ``train auto`` on the copied QCD training sample, ``score`` of the copied
background and signals, and the AUC of each signal next to the benchmark's own ``auto`` scores
(``BENCH/scores/auto.parquet``) and the supervised reference. Every step resumes: copies, run and scores that
exist are kept (the run continues with ``--resume`` semantics).

    OMP_NUM_THREADS=1 python benchmarks/stored_observables.py runs/sensitivity --work runs/sensitivity-stored \\
        --epochs 30 [--out benchmarks/results/sensitivity_stored_observables.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def strip_dataset(src: Path, dst: Path) -> Path:
    """TreeMaker-like copy of dataset ``src`` at ``dst`` (kept when its manifest exists); chunks are written
    atomically and the manifest last, so an interrupted copy restarts cleanly."""
    from darkshower.data.dataset import atomic_write_text, open_dataset, sha256_file
    from darkshower.represent.observables import jet_observables
    from darkshower.represent.stored import STORED_FIELDS

    if (dst / "manifest.json").exists():
        return dst
    ds = open_dataset(src)
    dst.mkdir(parents=True, exist_ok=True)
    man = json.loads((src / "manifest.json").read_text())
    for i, entry in enumerate(man["chunks"]):
        target = dst / entry["file"]
        chunk = ds.read_chunk(i)
        obs = jet_observables(chunk, max_jets=None)
        counts = ak.num(chunk.jets, axis=1)
        jets = chunk.jets[[f for f in ("pt", "eta", "phi", "mass", "is_dark") if f in chunk.jets.fields]]
        for col, names in STORED_FIELDS.items():
            jets = ak.with_field(jets, ak.unflatten(obs[col].to_numpy(np.float32), counts), names[0])
        jets = ak.with_field(jets, ak.zeros_like(chunk.jets.pt, dtype=np.int32), "n_constituents")
        jets = ak.with_field(jets, chunk.jets.constituents[:, :, :0], "constituents")
        tmp = target.with_suffix(".tmp.parquet")
        ak.to_parquet(ak.with_field(chunk, jets, "jets"), tmp)
        tmp.replace(target)
        entry.update(bytes=target.stat().st_size, sha256=sha256_file(target))
        print(f"  {dst.name}: chunk {i + 1}/{len(man['chunks'])}", flush=True)
    man.setdefault("notes", {})["stored_observables"] = (
        f"TreeMaker-like copy of {src}: constituents removed, observables stored per jet as cms_* fields "
        "(benchmarks/stored_observables.py)")
    atomic_write_text(dst / "manifest.json", json.dumps(man, indent=1))
    return dst


def main(argv=None) -> int:
    from sensitivity_combinations import _member, _per_event, auc_rows, print_ratios

    from darkshower.data.dataset import atomic_write_json
    from darkshower.train import score
    from darkshower.train.auto import train_auto

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="finished benchmark directory (data/, scores/auto.parquet, evaluation/metrics.json)")
    ap.add_argument("--work", required=True, help="directory for the copies, the run and its scores")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the flow members (default 30, as the grid)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training (default 1)")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/<bench>_stored_observables.json)")
    args = ap.parse_args(argv)
    bench, work = Path(args.bench), Path(args.work)
    metrics = json.loads((bench / "evaluation" / "metrics.json").read_text())
    sup = {r["signal"]: r["auc"]["value"] for r in metrics["results"] if r.get("supervised")}
    bkg = Path(metrics["background"][0]["path"])
    signals = {s["name"]: Path(s["path"]) for s in metrics["signals"]}
    train_src = bench / "data" / "qcd_train"
    t0 = time.perf_counter()
    copies = {p: strip_dataset(p, work / "data" / p.name) for p in [train_src, bkg, *signals.values()]}
    t_copy = time.perf_counter() - t0
    run = work / "runs" / "auto"
    t0 = time.perf_counter()
    resume = (run / "run.json").exists()
    train_auto(copies[train_src], run, config={"threads": args.threads}, epochs=None if resume else args.epochs,
               resume=resume, progress=True)
    t_train = time.perf_counter() - t0
    scores = work / "scores" / "auto.parquet"
    if not scores.exists():
        score(run, [copies[bkg], *(copies[p] for p in signals.values())], scores, progress=True)
    stored = _per_event(_member(work / "scores", "auto")[0])
    full = _per_event(_member(bench / "scores", "auto")[0])
    info = json.loads((run / "run.json").read_text())
    rows = {"auto, stored observables (no constituents)": auc_rows(stored, copies[bkg], {n: copies[p] for n, p in
                                                                                         signals.items()}, sup),
            "auto, with constituents (the grid's run)": auc_rows(full, bkg, signals, sup)}
    print_ratios(rows, signals)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{bench.name}_stored_observables.json")
    atomic_write_json(out, {
        "bench": str(bench), "command": "python " + " ".join(sys.argv), "supervised": sup, "rows": rows,
        "left_out": {k: v for k, v in info["auto"].items() if k.endswith("left_out")},
        "why": info["auto"]["why"], "seconds": {"copy": round(t_copy, 1), "train": round(t_train, 1)}})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
