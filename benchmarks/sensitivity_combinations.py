"""Label-free combinations of scored methods on a finished benchmark directory (issue #12, docs/sensitivity.md).

Reads ``BENCH/scores/NAME.parquet`` (``--scores-dir``: another directory) of the given methods and combines their
calibrated scores (``eff_b``) with :func:`darkshower.train.ensemble.combine_tables` — ``mean`` (rank average),
``fisher`` (-sum ln eff_b), ``min`` or ``stouffer`` (sum of z-scores)
— per event (jet-level members enter with one calibrated value from their two leading jets, by ``--jets``:
``min`` the calibrated max, ``fisher`` Fisher's method over the two, as ``train auto``) and, when every member
is jet level, per jet (the event score then is the max of the two leading jets, as for any jet-level method).
Prints and writes the AUC of each member and combination against the benchmark's background sample, and its
ratio to the supervised reference of ``BENCH/evaluation/metrics.json``. No training, no labels in the
combination; the signals only enter the AUC.

    python benchmarks/sensitivity_combinations.py runs/sensitivity --members gmm-event,flow,gmm \
        --combos gmm-event+flow,gmm+flow,gmm-event+gmm,gmm-event+gmm+flow [--jets min|fisher] [--out JSON]
    (a member LABEL=NAME reads NAME's scores under another label: ae-image-copy=ae-image counts a run twice)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _member(scores_dir: Path, name: str) -> tuple[pd.DataFrame, int | None]:
    from darkshower.train.scorefiles import read_score_file

    t, meta = read_score_file(scores_dir / f"{name}.parquet")
    return t, meta.get("n_val_scores")


def _per_event(t: pd.DataFrame, event_score: str = "max2", n_val: int | None = None) -> pd.Series:
    """Event score of a per-sample table, as ``score`` writes it (darkshower.train.scorefiles.event_table): the
    event-level score, or of the two leading scored jets their max (``max2``) or Fisher's method over their eff_b
    (``pair``)."""
    from darkshower.train.scorefiles import event_table

    return event_table(t, n_val).set_index(["dataset", "event_id"])[f"score_{event_score}"]


def auc_rows(s: pd.Series, bkg: str, signals: dict[str, str], sup: dict[str, float]) -> dict[str, dict]:
    """AUC of each signal against the background in an event-score series indexed by (dataset, event_id), its
    ratio to the supervised AUC and the counts; dataset paths compare resolved, NaN scores are left out."""
    from darkshower.evaluate.metrics import auc

    level = s.index.get_level_values("dataset")
    ds = level.map({v: str(Path(v).resolve()) for v in level.unique()}).to_numpy()
    b = s[ds == str(Path(bkg).resolve())].to_numpy()
    b = b[np.isfinite(b)]
    row = {}
    for name, path in signals.items():
        x = s[ds == str(Path(path).resolve())].to_numpy()
        x = x[np.isfinite(x)]
        a = float(auc(x, b))
        row[name] = {"auc": a, "ratio_to_supervised": a / sup[name] if name in sup else None, "n_signal": len(x),
                     "n_background": len(b)}
    return row


def print_ratios(rows: dict[str, dict], signals) -> None:
    """The ratio-to-supervised table of :func:`auc_rows` rows, one line per detector."""
    width = max(len(k) for k in rows) + 2
    print("ratio to the supervised AUC (AUC in the JSON)")
    print(f"{'':{width}s}" + "".join(f"{n[:12]:>13s}" for n in signals))
    for label, row in rows.items():
        print(f"{label:{width}s}" + "".join(f"{row[n]['ratio_to_supervised'] or float('nan'):13.3f}" for n in signals))


def main(argv=None) -> int:
    from darkshower.train.ensemble import COMBINATIONS, combine_tables

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="benchmark directory (scores/, evaluation/metrics.json)")
    ap.add_argument("--members", required=True,
                    help="comma list of scored method names (BENCH/scores/NAME.parquet, or in --scores-dir); "
                         "LABEL=NAME reads NAME's scores under another label, e.g. ae-image-copy=ae-image to count "
                         "one run twice in a combination")
    ap.add_argument("--combos", default="", help="comma list of A+B[+C] combinations of members (none: the members alone)")
    ap.add_argument("--rules", default="fisher,mean,min", help=f"combination rules, of {','.join(COMBINATIONS)}")
    ap.add_argument("--jets", default="min", choices=("min", "fisher"),
                    help="how jet-level members enter per event when levels mix (darkshower.train.ensemble JET_RULES; "
                         "min: as in the JSONs written before 2026-11-30's fourth session; train auto now uses fisher)")
    ap.add_argument("--event-score", default="max2", choices=("max2", "pair"),
                    help="event score of jet-level members on their own: max of the two leading jets (default) or "
                         "pair (Fisher over their eff_b, as evaluate --event-score pair)")
    ap.add_argument("--scores-dir", default=None, help="where the members' score files are (default BENCH/scores)")
    ap.add_argument("--data-dir", default=None,
                    help="score datasets of the same names in this directory instead of BENCH's (e.g. the TreeMaker-like "
                         "copies of benchmarks/stored_observables.py); the supervised reference stays BENCH's")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/<bench>_combinations.json)")
    args = ap.parse_args(argv)
    bench = Path(args.bench)
    metrics = json.loads((bench / "evaluation" / "metrics.json").read_text())
    sup = {r["signal"]: r["auc"]["value"] for r in metrics["results"] if r.get("supervised")}
    bkg = metrics["background"][0]["path"]
    signals = {s["name"]: s["path"] for s in metrics["signals"]}
    if args.data_dir:
        bkg = str(Path(args.data_dir) / Path(bkg).name)
        signals = {k: str(Path(args.data_dir) / Path(v).name) for k, v in signals.items()}
    scores_dir = Path(args.scores_dir) if args.scores_dir else bench / "scores"
    pairs = [m.split("=", 1) if "=" in m else (m, m) for m in args.members.split(",")]
    if not all(label and src for label, src in pairs):
        sys.exit(f"--members {args.members}: an empty member name (a doubled comma, or LABEL= without NAME)")
    sources = dict(pairs)  # label -> score file
    if len(sources) < len(pairs):
        sys.exit(f"--members {args.members}: a label appears twice; give each member its own label (LABEL=NAME)")
    missing = sorted({n for c in filter(None, args.combos.split(",")) for n in c.split("+")} - set(sources))
    if missing:
        sys.exit(f"--combos uses {', '.join(missing)}, which --members does not list; add them to --members")
    absent = [f"{scores_dir / src}.parquet" for src in dict.fromkeys(sources.values())
              if not (scores_dir / f"{src}.parquet").is_file()]
    if absent:
        sys.exit(f"--members: no score file {', '.join(absent)}; score the run first (darkshower benchmark ... "
                 "--stages score, or darkshower score RUN DS... --out FILE) or give --scores-dir")
    loaded = {src: _member(scores_dir, src) for src in dict.fromkeys(sources.values())}
    members = {label: loaded[src] for label, src in sources.items()}
    scores: dict[str, pd.Series] = {m: _per_event(t, args.event_score, n) for m, (t, n) in members.items()}
    for combo in filter(None, args.combos.split(",")):
        names = combo.split("+")
        tables = [members[n][0] for n in names]
        n_val = [members[n][1] for n in names]
        jet_level = all(not (t["jet_idx"] < 0).all() for t in tables)
        for rule in args.rules.split(","):
            c = combine_tables(tables, names, rule, n_val, args.jets)
            scores[f"{rule}({combo}){' per jet' if jet_level else ''}"] = _per_event(c)
    rows = {label: auc_rows(s, bkg, signals, sup) for label, s in scores.items()}
    empty = sorted({n for r in rows.values() for n, v in r.items() if not v["n_signal"] or not v["n_background"]})
    if empty:  # e.g. --data-dir without the --scores-dir of the scores made on those datasets: AUC NaN
        print(f"WARNING: no scored events of {', '.join(empty)} (or of the background) in some score file: their AUC "
              "is NaN; check --scores-dir / --data-dir", file=sys.stderr)
    print_ratios(rows, signals)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{bench.name}_combinations.json")
    from darkshower.data.dataset import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"bench": str(bench), "command": "python " + " ".join(sys.argv), "supervised": sup,
                            "rows": rows})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
