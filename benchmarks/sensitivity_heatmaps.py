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


def event_auc(metrics: dict, signal: str, method: str | None = None, supervised: bool = False) -> float:
    """The event-level AUC of ``method`` (supervised: the supervised reference) on ``signal``; NaN when absent."""
    r = next((r for r in metrics["results"] if r["signal"] == signal and r["level"] == "event"
              and bool(r.get("supervised")) == supervised and (method is None or r["method"] == method)), None)
    v = None if r is None else r["auc"]["value"]
    return float("nan") if v is None else float(v)


def ratio(metrics: dict, method: str, signal: str) -> float:
    """``method``'s event-level AUC on ``signal`` over the supervised reference's (NaN when either is missing)."""
    return event_auc(metrics, signal, method) / event_auc(metrics, signal, supervised=True)


def grid(metrics: dict, method: str, process: str = "svj", x: str = "r_inv", y: str = "m_dark"):
    """(xs, ys, ratio[iy, ix], auc[iy, ix]) of ``method``'s event-level AUC over the ``process`` signals."""
    sigs = [s for s in metrics["signals"] if s.get("process") == process]
    if not sigs:
        sys.exit(f"no {process} signals in the evaluation")
    xs = sorted({s["parameters"][x] for s in sigs})
    ys = sorted({s["parameters"][y] for s in sigs})
    ratios, auc = np.full((len(ys), len(xs)), np.nan), np.full((len(ys), len(xs)), np.nan)
    for s in sigs:
        iy, ix = ys.index(s["parameters"][y]), xs.index(s["parameters"][x])
        auc[iy, ix], ratios[iy, ix] = event_auc(metrics, s["name"], method), ratio(metrics, method, s["name"])
    if np.isnan(auc).all():
        sys.exit(f"--methods {method}: no event-level results in the evaluation (methods: "
                 f"{', '.join(m['name'] for m in metrics['methods'])})")
    return xs, ys, ratios, auc


def save(fig, path: Path, dpi: int) -> None:
    """The figure as a PNG, written atomically."""
    from darkshower.evaluate import plots as P

    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(P.to_png_bytes(fig, dpi))
    tmp.replace(path)


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
    methods = args.methods.split(",")
    for meth in methods:
        xs, ys, ratios, auc = grid(metrics, meth)
        fig, ax = P.figure(1, 2, figsize=(10.5, 4.2))
        for a, z, label in ((ax[0, 0], ratios, "AUC / supervised AUC"), (ax[0, 1], auc, "AUC")):
            P.heatmap_plot(xs, ys, z, ax=a, xlabel=r"$r_{inv}$", ylabel=r"$m_{dark}$ [GeV]", zlabel=label,
                           title=f"{meth}: SVJ, m_Z' = 2 TeV", fmt="{:.3f}")
        save(fig, out / f"sensitivity_svj_{meth}.png", args.dpi)
        print(f"{meth}: ratio {np.nanmin(ratios):.3f}-{np.nanmax(ratios):.3f}, AUC {np.nanmin(auc):.3f}-"
              f"{np.nanmax(auc):.3f} -> {out / f'sensitivity_svj_{meth}.png'}")
    names = [s["name"] for s in metrics["signals"]]
    z = np.array([[ratio(metrics, meth, n) for n in names] for meth in methods])
    fig, ax = P.figure(figsize=(1.0 + 0.9 * len(names), 1.6 + 0.55 * len(methods)))
    P.heatmap_plot(names, methods, z, ax=ax[0, 0], zlabel="AUC / supervised", title="event level", fmt="{:.3f}")
    ax[0, 0].tick_params(axis="x", labelrotation=60)
    save(fig, out / "sensitivity_overview.png", args.dpi)
    print(f"overview -> {out / 'sensitivity_overview.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
