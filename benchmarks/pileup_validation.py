"""Pileup physics validation vs mu (issue #15 part 4): MET and leading-jet mass response to pileup with each
mitigation, and the PUPPI-like weight as a per-particle classifier of the hard interaction.

Run: nice -n 5 .venv/bin/python benchmarks/pileup_validation.py
         [--events 1000] [--events-high 400] [--library-events 500] [--jobs 1]
         [--distillnet RUN]   # add --pu-mitigation distillnet:RUN (when that exists)

- A minimum-bias library (--library-events, seed 11), then for QCD dijets (pthat_min 300) and one SVJ point
  (m_med 2 TeV, r_inv 0.3, m_dark 20): the same hard events (seed 21 / 22) at mu = 0 (no mitigation: the
  reference) and at mu = 30, 60, 140, 200 with every mitigation; --events per sample at mu <= 60,
  --events-high at mu = 140, 200 (fewer: the events are big and slow). cms detector, R = 0.8 jets.
- mu = 0 with CHS is the floor: the pileup machinery consumes random numbers, so the detector smearing
  of the hard event is drawn anew (from the second batch of 100 events on) and CHS drops the few PV
  tracks outside the dz window; at mu > 0 the smearing of the hard event is drawn anew too.
- Pairing: the same (chunk, event) is the same hard collision at every mu (docs/pileup.md); only events
  selected in both samples count.
- MET: Delta = MET_x,y(mu, mitigation) - MET_x,y(mu = 0), x and y pooled: mean, RMS and a robust width
  (half the 16-84 % interquantile range).
- Leading-jet mass: the mu = 0 leading jet is matched to the nearest jet of the pileup sample within
  Delta R < 0.4; Delta m = m(mu) - m(mu = 0): mean (bias), median, RMS, robust width; match efficiency.
- Per-particle ROC AUC of the stored weight (puppi; distillnet) for truth from_pv over all stored candidates
  (`particles`) and over neutral candidates; the CHS decision as a score (tracks: associated or not, which
  is the PUPPI weight of a track; neutrals: 1) over all candidates.

Every sample is generated once into --work (resumable: a complete dataset is reused, an interrupted one
completes); results go to benchmarks/results/pileup_validation.json (rewritten after each sample).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MUS = (0, 30, 60, 140, 200)
PROCESSES = {
    "qcd": {"process": "qcd", "seed": 21, "params": {"pthat_min": 300}},
    "svj": {"process": "svj", "seed": 22, "params": {"m_med": 2000, "r_inv": 0.3, "m_dark": 20}},
}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """ROC AUC (ties count one half), from ranks; None when one class is empty."""
    from scipy.stats import rankdata

    label = np.asarray(label, bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return None
    r = rankdata(score)
    return float((r[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _width(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {"n": 0}
    q16, q50, q84 = np.quantile(x, [0.16, 0.5, 0.84])
    return {"n": int(len(x)), "mean": float(x.mean()), "median": float(q50), "rms": float(np.sqrt(np.mean(x**2))),
            "robust_width": float((q84 - q16) / 2)}


def _complete(path: Path) -> bool:
    mf = path / "manifest.json"
    return mf.exists() and json.loads(mf.read_text()).get("status") == "complete"


def _np(x, fill: float = np.nan) -> np.ndarray:
    import awkward as ak

    return np.asarray(np.ma.filled(ak.to_numpy(ak.fill_none(x, fill)), fill), dtype=float)


def _events(path: Path):
    import awkward as ak

    from darkshower.data.dataset import open_dataset

    ds = open_dataset(path)
    a = ds.arrays(columns=["chunk", "event", "met_pt", "met_phi", "jets.pt", "jets.eta", "jets.phi", "jets.mass"])
    key = ak.to_numpy(a.chunk).astype(np.int64) << 32 | ak.to_numpy(a.event).astype(np.int64)
    return key, a


def compare(ref_path: Path, path: Path) -> dict:
    """MET and leading-jet mass of ``path`` against the mu = 0 reference, paired by (chunk, event)."""
    import awkward as ak

    k0, a0 = _events(ref_path)
    k1, a1 = _events(path)
    common, i0, i1 = np.intersect1d(k0, k1, return_indices=True)
    a0, a1 = a0[i0], a1[i1]
    m0, p0 = _np(a0.met_pt), _np(a0.met_phi)
    m1, p1 = _np(a1.met_pt), _np(a1.met_phi)
    dmet = np.concatenate([m1 * np.cos(p1) - m0 * np.cos(p0), m1 * np.sin(p1) - m0 * np.sin(p0)])
    # leading jet at mu = 0 -> nearest jet of the pileup sample within dR < 0.4
    has = ak.to_numpy(ak.num(a0.jets.pt) > 0)
    j0 = a0.jets[has][:, 0]
    j1 = a1.jets[has]
    dphi = (j1.phi - j0.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((j1.eta - j0.eta) ** 2 + dphi**2)
    best = ak.argmin(dr, axis=1, keepdims=True)
    dr_best = _np(ak.firsts(dr[best]), 99.0)
    m_best = _np(ak.firsts(j1.mass[best]))
    ok = dr_best < 0.4
    mass0 = _np(j0.mass)
    dm = (m_best - mass0)[ok]
    n1 = ak.to_numpy(ak.num(a1.jets.pt))
    return {"n_paired": int(len(common)), "n_ref": int(len(k0)), "n_sample": int(len(k1)),
            "met_ref_mean": float(m0.mean()), "met_mean": float(m1.mean()), "delta_met_xy": _width(dmet),
            "jet_match_eff": float(ok.mean()) if len(ok) else None,
            "lead_mass_ref_mean": float(mass0.mean()), "lead_mass_mean": float(np.nanmean(m_best[ok])),
            "delta_mass": _width(dm), "n_jets_mean": float(n1.mean())}


def per_particle(path: Path) -> dict:
    """AUC of the stored per-candidate weight (and of the CHS decision) for from_pv, over `particles`."""
    import awkward as ak

    from darkshower.data.dataset import open_dataset

    ds = open_dataset(path)
    w, pv, q = [], [], []
    for arr in ds.iter_chunks(["particles.weight", "particles.from_pv", "particles.charge"]):
        p = ak.flatten(arr.particles)
        w.append(ak.to_numpy(p.weight).astype(float))
        pv.append(ak.to_numpy(p.from_pv).astype(bool))
        q.append(ak.to_numpy(p.charge).astype(int))
    wa, pva, qa = np.concatenate(w), np.concatenate(pv), np.concatenate(q)
    neu = qa == 0
    chs = np.where(neu, 1.0, wa)  # puppi: a track's weight is its PV association (1/0); neutrals are kept
    return {"n_candidates": int(len(wa)), "frac_from_pv": float(pva.mean()), "n_neutral": int(neu.sum()),
            "frac_from_pv_neutral": float(pva[neu].mean()) if neu.any() else None,
            "auc_all": auc(wa, pva), "auc_neutral": auc(wa[neu], pva[neu]), "auc_chs_all": auc(chs, pva)}


def tables(result: dict) -> str:
    """The markdown tables of docs/pileup.md ("Validation vs mu") from the results."""
    S = result["samples"]
    lines = []
    for proc in PROCESSES:
        ref = S.get(f"{proc}_mu0")
        if ref is None:
            continue
        floor = S.get(f"{proc}_mu0_chs", {})
        rows = sorted((e for n, e in S.items() if e["process"] == proc and "delta_met_xy" in e),
                      key=lambda e: (e["mu"], ["none", "chs", "puppi", "distillnet"].index(e["mitigation"])))
        lines += [f"**{proc.upper()}**: {ref['events']} events at mu <= 60, "
                  f"{next((e['events'] for e in rows if e['mu'] > 60), '-')} at mu = 140, 200 (paired: n)", "",
                  "| mu | mitigation | n | MET: RMS of Delta [GeV] | MET: robust width | MET: pileup part, "
                  "sqrt(RMS^2 - floor^2) | lead-jet Delta m: mean / median [GeV] | Delta m: RMS / robust width |"
                  " jet matched |",
                  "|---|---|---|---|---|---|---|---|---|"]
        f_rms = floor.get("delta_met_xy", {}).get("rms")
        for e in rows:
            d, m = e["delta_met_xy"], e["delta_mass"]
            pu = (f"{np.sqrt(max(d['rms'] ** 2 - f_rms ** 2, 0.0)):.0f}" if f_rms is not None and e["mu"] > 0
                  else "—")
            mu = f"{e['mu']}" if e["mu"] > 0 else "0 (floor)"
            lines.append(f"| {mu} | {e['mitigation']} | {e['n_paired']} | {d['rms']:.1f} | {d['robust_width']:.1f} | {pu} | "
                         f"{m['mean']:+.1f} / {m['median']:+.1f} | {m['rms']:.1f} / {m['robust_width']:.1f} | "
                         f"{e['jet_match_eff']:.2f} |")
        lines.append("")
    lines += ["| process | mu | weight | candidates | from PV | AUC all | AUC neutrals | CHS decision AUC all |",
              "|---|---|---|---|---|---|---|---|"]
    for _n, e in sorted(S.items(), key=lambda kv: (kv[1]["process"], kv[1]["mu"], kv[1]["mitigation"])):
        pp = e.get("per_particle")
        if pp:
            lines.append(f"| {e['process']} | {e['mu']} | {e['mitigation']} | {pp['n_candidates']} | "
                         f"{pp['frac_from_pv']:.3f} | {pp['auc_all']:.3f} | {pp['auc_neutral']:.3f} | "
                         + (f"{pp['auc_chs_all']:.3f} |" if e["mitigation"] == "puppi" else "— |"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000, help="events per sample at mu <= 60")
    ap.add_argument("--events-high", type=int, default=400, help="events per sample at mu = 140, 200")
    ap.add_argument("--library-events", type=int, default=500)
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--mus", default=",".join(map(str, MUS)))
    ap.add_argument("--processes", default="qcd,svj")
    ap.add_argument("--distillnet", default=None, help="a DistillNet student run: adds mitigation distillnet:RUN")
    ap.add_argument("--work", default=str(HERE / "results" / "pileup_validation_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "pileup_validation.json"))
    ap.add_argument("--table", action="store_true", help="print the markdown tables of --out and exit")
    args = ap.parse_args()
    if args.table:
        print(tables(json.loads(Path(args.out).read_text())))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from darkshower.simulate.run import generate

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    mus = [int(m) for m in args.mus.split(",")]
    mitigations = ["none", "chs", "puppi"] + ([f"distillnet:{Path(args.distillnet).resolve()}"] if args.distillnet else [])
    result: dict = {"command": "benchmarks/pileup_validation.py " + " ".join(
                        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
                    "uptime_before": _uptime(), "host": platform.node(), "cpus": os.cpu_count(), "samples": {}}
    if out.exists():  # resumed or extended (e.g. --distillnet): keep the samples and the earlier commands
        old = json.loads(out.read_text())
        result["samples"] = old.get("samples", {})
        result["commands"] = old.get("commands", [old["command"]] if "command" in old else [])
        result["uptime_before"] = old.get("uptime_before", result["uptime_before"])
    result.setdefault("commands", []).append(result["command"])

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out)

    def gen(cfg: dict, path: Path) -> float:
        if _complete(path):  # never reopened: generate() would rewrite the manifest (a library's checksum)
            return float("nan")
        t0 = time.perf_counter()
        generate(cfg, path, jobs=args.jobs, progress=False, command=["benchmarks/pileup_validation.py"])
        return time.perf_counter() - t0

    lib = work / "minbias"
    t = gen({"process": "minbias", "events": args.library_events, "seed": 11, "chunk_size": 1000}, lib)
    print(f"library: {lib} ({t:.0f} s)", flush=True)
    result["library"] = {"path": str(lib), "events": args.library_events, "seed": 11}
    for proc in args.processes.split(","):
        base = PROCESSES[proc]
        ref = work / f"{proc}_mu0"
        for mu in mus:
            for mit in (["none", "chs"] if mu == 0 else mitigations):
                tag = mit.split(":")[0]
                name = f"{proc}_mu{mu}" + ("" if mu == 0 and tag == "none" else f"_{tag}")
                n = args.events if mu <= 60 else args.events_high
                cfg = {**base, "events": n, "chunk_size": args.chunk_size,
                       "store_particles": tag in ("puppi", "distillnet")}
                if mu > 0 or tag != "none":
                    cfg["pileup"] = {"mu": mu, "library": str(lib), "mitigation": mit}
                path = work / name
                t0 = time.perf_counter()
                secs = gen(cfg, path)
                entry = result["samples"].get(name, {}) if np.isnan(secs) else {}
                entry.update({"process": proc, "mu": mu, "mitigation": tag, "events": n})
                if not np.isnan(secs):
                    entry["generate_seconds"] = round(secs, 1)
                if path != ref and ("delta_met_xy" not in entry or (tag in ("puppi", "distillnet")
                                                                    and "per_particle" not in entry)):
                    entry.update(compare(ref, path))  # (a reused sample keeps its numbers)
                    if tag in ("puppi", "distillnet"):
                        entry["per_particle"] = per_particle(path)
                result["samples"][name] = entry
                save()
                dm = entry.get("delta_met_xy", {})
                print(f"{name}: {time.perf_counter() - t0:.0f} s; MET rms {dm.get('rms', float('nan')):.1f} "
                      f"width {dm.get('robust_width', float('nan')):.1f}; "
                      f"dm {entry.get('delta_mass', {}).get('mean', float('nan')):.1f}", flush=True)
    result["uptime_after"] = _uptime()
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
