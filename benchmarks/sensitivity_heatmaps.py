"""Heatmaps of the SVJ grid for docs/sensitivity.md: per method, the event-level AUC divided by the supervised
reference's, and the AUC, over (r_inv, m_dark), read from a finished benchmark's evaluation (no training, no
scoring).

    python benchmarks/sensitivity_heatmaps.py runs/sensitivity --methods auto,gmm --out-dir docs/img

Writes OUT_DIR/sensitivity_svj_METHOD.png (one figure per method: ratio and AUC side by side) and
OUT_DIR/sensitivity_overview.png (the ratio of every method at every signal of the grid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def grid(metrics: dict, method: str, process: str = "svj", x: str = "r_inv", y: str = "m_dark"):
    """(xs, ys, ratio[iy, ix], auc[iy, ix]) of ``method``'s event-level AUC over the ``process`` signals."""
    sigs = [s for s in metrics["signals"] if s.get("process") == process]
    if not sigs:
        sys.exit(f"no {process} signals in the evaluation")
    xs = sorted({s["parameters"][x] for s in sigs})
    ys = sorted({s["parameters"][y] for s in sigs})
    ratio, auc = np.full((len(ys), len(xs)), np.nan), np.full((len(ys), len(xs)), np.nan)

    def value(meth, name, supervised):
        r = next((r for r in metrics["results"] if r["method"] == meth and r["signal"] == name
                  and r["level"] == "event" and bool(r.get("supervised")) == supervised), None)
        return None if r is None else r["auc"]["value"]

    sup_name = next((r["method"] for r in metrics["results"] if r.get("supervised")), None)
    for s in sigs:
        a, b = value(method, s["name"], False), value(sup_name, s["name"], True)
        iy, ix = ys.index(s["parameters"][y]), xs.index(s["parameters"][x])
        if a is not None:
            auc[iy, ix] = a
            if b:
                ratio[iy, ix] = a / b
    if np.isnan(auc).all():
        sys.exit(f"--methods {method}: no event-level results in the evaluation (methods: "
                 f"{', '.join(m['name'] for m in metrics['methods'])})")
    return xs, ys, ratio, auc


def main(argv=None) -> int:
    from darkshower.evaluate import plots as P

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="benchmark directory (evaluation/metrics.json)")
    ap.add_argument("--methods", required=True, help="comma list of method labels as in metrics.json")
    ap.add_argument("--out-dir", default="docs/img")
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)
    metrics = json.loads((Path(args.bench) / "evaluation" / "metrics.json").read_text())
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for meth in args.methods.split(","):
        xs, ys, ratio, auc = grid(metrics, meth)
        fig, ax = P.figure(1, 2, figsize=(10.5, 4.2))
        P.heatmap_plot(xs, ys, ratio, ax=ax[0, 0], xlabel=r"$r_{inv}$", ylabel=r"$m_{dark}$ [GeV]",
                       zlabel="AUC / supervised AUC", title=f"{meth}: SVJ, m_Z' = 2 TeV", fmt="{:.3f}")
        P.heatmap_plot(xs, ys, auc, ax=ax[0, 1], xlabel=r"$r_{inv}$", ylabel=r"$m_{dark}$ [GeV]", zlabel="AUC",
                       title=f"{meth}: SVJ, m_Z' = 2 TeV", fmt="{:.3f}")
        path = out / f"sensitivity_svj_{meth}.png"
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(P.to_png_bytes(fig, args.dpi))
        tmp.replace(path)
        print(f"{meth}: ratio {np.nanmin(ratio):.3f}-{np.nanmax(ratio):.3f}, AUC {np.nanmin(auc):.3f}-"
              f"{np.nanmax(auc):.3f} -> {path}")
    names = [s["name"] for s in metrics["signals"]]
    methods = args.methods.split(",")
    z = np.array([[overview_ratio(metrics, meth, n) for n in names] for meth in methods])
    fig, ax = P.figure(figsize=(1.0 + 0.9 * len(names), 1.6 + 0.55 * len(methods)))
    P.heatmap_plot(names, methods, z, ax=ax[0, 0], zlabel="AUC / supervised", title="event level", fmt="{:.3f}")
    ax[0, 0].tick_params(axis="x", labelrotation=60)
    path = out / "sensitivity_overview.png"
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(P.to_png_bytes(fig, args.dpi))
    tmp.replace(path)
    print(f"overview -> {path}")
    return 0


def overview_ratio(metrics: dict, method: str, signal: str) -> float:
    """Event-level AUC of ``method`` on ``signal`` over the supervised reference's (NaN when either is missing)."""
    def auc(supervised: bool, meth: str | None = None):
        r = next((r for r in metrics["results"] if r["signal"] == signal and r["level"] == "event"
                  and bool(r.get("supervised")) == supervised and (meth is None or r["method"] == meth)), None)
        return None if r is None else r["auc"]["value"]

    a, b = auc(False, method), auc(True)
    return float(a / b) if a is not None and b else float("nan")


if __name__ == "__main__":
    sys.exit(main())
