"""``darkshower ensemble INPUT... --data DS... --out S.parquet``."""

from __future__ import annotations

from darkshower.cli.options import add_progress, positive_int
from darkshower.train.scorefiles import COMBINATIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="combine runs (or their score files) by their calibrated scores (rank average, Fisher, min or Stouffer)",
        description=("Score each run on the datasets (or read a score file written by darkshower score) and write "
                     "the ensemble score per sample to OUT, combining the members' eff_b (the fraction of a run's "
                     "validation background above the sample's score) by --combine; per-event scores go to OUT "
                     "with suffix .events.parquet, with one eff_b.NAME column per member. Jet- and event-level "
                     "members combine per event (a jet-level run enters with one calibrated value from its two "
                     "leading jets, by --jets). See docs/training.md."),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="run directories written by darkshower train, or score files S.parquet (two or more)")
    p.add_argument("--data", nargs="+", default=None, metavar="DS",
                   help="dataset directories to score the runs on (needed when an INPUT is a run)")
    p.add_argument("--out", required=True, metavar="S.parquet", help="output Parquet file (a file name)")
    p.add_argument("--combine", default="mean", choices=COMBINATIONS,
                   help="mean: 1 - mean eff_b (rank average; default); fisher: -sum ln eff_b (Fisher's method, "
                        "rare in any member and more so in several); min: 1 - min eff_b (the most anomalous member); "
                        "stouffer: sum of the members' z-scores Phi^-1(1 - eff_b)")
    p.add_argument("--jets", default="min", choices=("min", "fisher"),
                   help="how a jet-level member enters per event when members mix levels: min: 1 - (1 - min eff_b)^k "
                        "over the two leading jets (one anomalous jet decides; default); fisher: Fisher's method over "
                        "the two jets (both unusual ranks higher; train auto's default)")
    p.add_argument("--model", default="best", choices=("best", "last"), help="which model of each run (default best)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="samples per batch (default: each method's)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="T", help="torch threads (default: all cores)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from darkshower.train.ensemble import ensemble

    jets, events = ensemble(args.inputs, args.out, args.data, which=args.model, batch_size=args.batch_size,
                            progress=not args.no_progress, threads=args.threads, combine=args.combine,
                            jets=args.jets)
    n = len(pd.read_parquet(jets, columns=["score"]))
    print(f"wrote {n} ensemble scores of {len(args.inputs)} members to {jets} (per event: {events})")
    return 0
