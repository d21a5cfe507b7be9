"""``darkshower info PATH`` — a human summary of a dataset (or of a training run directory).

Example::

    darkshower info data/svj
    darkshower info data/svj --verify     # also check every chunk's checksum
    darkshower info runs/ae-hlf           # a run: method, status, epochs, best epoch's metrics, how to use it
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("info", help="summarize a dataset (or a training run)", description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("path", help="dataset directory (or run directory)")
    p.add_argument("--verify", action="store_true", help="verify all chunk checksums")
    p.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.data.summary import summarize

    if (Path(args.path) / "run.json").is_file() and not (Path(args.path) / "manifest.json").exists():
        return run_info(args)
    if not Path(args.path).exists():
        from darkshower.errors import DatasetError

        raise DatasetError(f"{args.path}: no such run or dataset directory (info reads a dataset, with its "
                           "manifest.json, or a run, with its run.json)")

    summary = summarize(args.path, verify=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    lines = [
        f"dataset   {s['path']}",
        f"process   {s['process']} ({s['kind']}), schema {s['schema_version']}, status {s['status']}",
        f"events    {s['n_events']} in {s['n_chunks']} chunks ({s['bytes'] / 1e6:.1f} MB)"
        + (", checksums verified" if s.get("verified") else ""),
    ]
    if s.get("parameters"):
        lines.append("params    " + ", ".join(f"{k}={v}" for k, v in s["parameters"].items() if v is not None))
    if s.get("jets"):
        j = s["jets"]
        lines.append(f"jets      {j.get('algorithm', '?')} R={j.get('radius')} pT>{j.get('pt_min')} |eta|<{j.get('eta_max')}")
    if s.get("detector"):
        lines.append(f"detector  {s['detector'].get('name')}")
    xs = s.get("cross_section") or {}
    if xs:
        lines.append(f"xsec      sigma_gen={xs['sigma_gen_pb']:.4g} pb, selection eff={xs['selection_efficiency']:.3f}, "
                     f"sigma_sel={xs['sigma_selected_pb']:.4g} pb")
    st = s.get("stats") or {}
    if st:
        lines.append(
            f"first chunk: {st['jets_per_event']:.2f} jets/event, leading-jet pT median {st['lead_pt_median']:.0f} GeV, "
            f"mass median {st['lead_mass_median']:.1f} GeV, {st['constituents_mean']:.1f} constituents/jet, "
            f"MET mean {st['met_mean']:.1f} GeV"
        )
    v = s.get("versions") or {}
    if v:
        lines.append("versions  " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    return "\n".join(lines)


_USE = {
    "pu-gnn": ("DistillNet pileup teacher (per-particle weights, not anomaly scores)",
               "distill it: darkshower distill {run} --student per-particle --data DS --out STUDENT_RUN, then "
               "darkshower generate ... --pileup MU --pu-mitigation distillnet:STUDENT_RUN"),
    "pu-student": ("DistillNet per-particle pileup student (per-particle weights, not anomaly scores)",
                   "apply it: darkshower generate ... --pileup MU --pu-mitigation distillnet:{run}"),
    "auto": ("the recommended default (darkshower train auto): member runs combined at scoring",
             "score it: darkshower score {run} DS... --out S.parquet (members scored and combined)"),
}


def run_info(args) -> int:
    """A run directory (run.json): what it is, how far it got, its best epoch, how to use it."""
    from darkshower.cli.options import run_result
    from darkshower.errors import ConfigError
    from darkshower.models.runs import read_run_json

    if args.verify:
        raise ConfigError(f"--verify checks a dataset's chunk checksums; {args.path} is a training run (run.json)")
    run = Path(args.path)
    read_run_json(run)  # a missing or broken run.json is one clear error
    info, hist, best = run_result(run)
    if args.json:
        print(json.dumps({"run": str(run), **info, "metrics_best_epoch": best}, indent=2, default=str))
        return 0
    print(format_run(run, info, hist, best))
    return 0


def format_run(run: Path, info: dict, hist: list, best: dict) -> str:
    method = info.get("method", "?")
    what, use = _USE.get(method, ("anomaly detector", "score it: darkshower score {run} DS... --out S.parquet"))
    lines = [f"run       {run}", f"method    {method}: {what}"]
    if info.get("members"):  # train auto: no epochs of its own
        lines.append(f"status    {info.get('status', '?')}, {info.get('level', '?')} level"
                     + (f", combined by {info['combine']}" if info.get("combine") else "")
                     + (f", calibrated on {info['n_val_scores']} validation events" if info.get("n_val_scores") else ""))
        for m in info["members"]:
            lines.append(f"member    {m['name']}: {m['method']} ({m.get('level', '?')} level), run {run / m['dir']}")
    else:
        lines.append(f"status    {info.get('status', '?')}, {info.get('epochs_done', len(hist))} epochs, best epoch "
                     f"{info.get('best_epoch')}" + (f" by {info['selection']}" if info.get("selection") else ""))
    for d in info.get("data") or []:
        lines.append(f"data      {d.get('path') if isinstance(d, dict) else d}")
    spec = info.get("spec") or {}
    keep = {k: v for k, v in spec.items() if k not in ("kind", "features", "class_weights")
            and isinstance(v, (int, float, str)) and not (isinstance(v, str) and len(v) > 80)}
    if spec.get("features"):
        keep["features"] = len(spec["features"])
    if keep:
        lines.append("spec      " + ", ".join(f"{k}={v}" for k, v in keep.items()))
    shown = {k: v for k, v in best.items() if k != "epoch" and isinstance(v, (int, float))}
    if shown:
        lines.append("best      " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    if method == "pu-student" and not (run / "student.npz").is_file():
        lines.append("note      no student.npz (the run did not finish); resume it with darkshower distill ... --resume")
    lines.append(f"use       {use.format(run=run)}")
    kinds, configured = _score_kinds(run, method)
    if kinds:  # one trained model, several scores (score --score-kind)
        lines.append(f"scores    {', '.join(kinds)} (configured: {configured}): darkshower score "
                     f"{run} DS... --score-kind KIND --out S.parquet")
    return "\n".join(lines)


def _score_kinds(run: Path, method: str) -> tuple[tuple[str, ...], str | None]:
    """(offered score kinds, configured kind) of a run of a registered method (imports its module)."""
    from darkshower.errors import DarkshowerError
    from darkshower.models import METHODS, get_method
    from darkshower.train.score import score_kinds_of

    if method not in METHODS:
        return (), None
    try:
        return score_kinds_of(run)
    except DarkshowerError as exc:  # e.g. an optional package missing, an unreadable config: info still shows the rest
        return tuple(get_method(method).score_kinds), f"unknown: {exc}"
