"""The default end-to-end job behind ``make demo``: generate a small QCD + SVJ + ttbar sample,
train two fast background-only methods and the gmm density baseline, score, evaluate, search and write the HTML report.

It is a :mod:`darkshower.pipeline.benchmark` run on embedded defaults (resumable the same way).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


# the recommended default (`train auto`), the density baseline it must beat, and two fast autoencoders
DEMO_METHODS: tuple[str, ...] = ("auto", "gmm", "ae-hlf", "nae")


def demo_config(events: int = 1500, seed: int = 1, methods: tuple[str, ...] = DEMO_METHODS,
                epochs: int = 20) -> dict:
    """The embedded demo benchmark: QCD train/test, SVJ (2 TeV Z', m_dark 20, r_inv 0.3), ttbar."""
    return {
        "name": "demo",
        "seed": seed,
        "train": {"name": "qcd_train", "process": "qcd", "events": 2 * events, "params": {"pthat_min": 300.0}},
        "background": {"name": "qcd_test", "process": "qcd", "events": events, "params": {"pthat_min": 300.0}},
        "signals": [
            {"name": "svj", "process": "svj", "events": events, "params": {"m_med": 2000.0, "m_dark": 20.0, "r_inv": 0.3}},
            {"name": "ttbar", "process": "ttbar", "events": events, "params": {"pthat_min": 300.0}},
        ],
        "methods": [{"method": m, "epochs": epochs} for m in methods],
        "supervised_reference": True,
        "evaluation": {"n_bootstrap": 100},
        # signal injected at 1 pb (Pythia's default HV couplings give ~1e-6 pb); the fit uses the simulated signal MT
        # shape (template): the SVJ MT spectrum is too broad for a Gaussian bump
        "search": {"signal": "svj", "xsec_pb": 1.0, "signal_shape": "template"},
    }


def auc_table(metrics: dict) -> list[str]:
    """Markdown lines: event-level AUC (± bootstrap) and AUC / supervised per method and signal."""
    lines = ["| method | signal | AUC | 1/eps_B @ eps_S=0.3 | AUC / supervised |", "|---|---|---|---|---|"]
    for r in metrics.get("results", []):
        if r.get("level") != "event":
            continue
        a = r["auc"]
        auc = "—" if a.get("value") is None else f"{a['value']:.3f} ± {a.get('err') or 0:.3f}"
        rej = (r.get("rejection") or {}).get("0.3", {}) if isinstance(r.get("rejection"), dict) else {}
        rej_s = "—" if not rej or rej.get("value") is None else f"{rej['value']:.3g}"
        ratio = (r.get("ratio_to_supervised") or {}).get("value")
        ratio_s = "—" if ratio is None or r.get("supervised") else f"{ratio:.3f}"
        lines.append(f"| {r['method']} | {r['signal']} | {auc} | {rej_s} | {ratio_s} |")
    return lines


def run_demo(out: str | Path, events: int = 1500, seed: int = 1, jobs: int | None = None,
             progress: bool | None = None, methods: tuple[str, ...] = DEMO_METHODS, epochs: int = 20) -> dict:
    from darkshower.pipeline import run_benchmark

    out = Path(out)
    t0 = time.perf_counter()
    summary = run_benchmark(demo_config(events, seed, methods, epochs), out, jobs=jobs,
                            progress=True if progress is None else progress)
    seconds = round(time.perf_counter() - t0, 1)
    metrics_path = out / "evaluation" / "metrics.json"
    if not metrics_path.exists():
        print(f"[demo] no evaluation was produced; see {out / 'status.json'}")
        return summary
    metrics = json.loads(metrics_path.read_text())
    table = auc_table(metrics)
    print("\n".join(table))
    for w in metrics.get("warnings", []):
        print(f"[demo] warning: {w}")
    s = out / "evaluation" / "search" / "search.json"
    if s.exists():
        print(f"[demo] search results: {s}")
    print(f"[demo] done in {seconds} s; report: {summary.get('report')}")
    summary["auc_table"] = table
    return summary


__all__ = ["run_demo", "demo_config", "auc_table", "DEMO_METHODS"]
