"""``darkshower ensemble INPUT... --data DS... --out S.parquet``."""

from __future__ import annotations

from darkshower.cli.options import add_progress, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="combine runs (or their score files) by the rank average of their calibrated scores",
        description=("Score each run on the datasets (or read a score file written by darkshower score) and write "
                     "the ensemble score 1 - mean eff_b per sample to OUT (eff_b: the fraction of a run's validation "
                     "background above the sample's score), with per-event scores in OUT with suffix "
                     ".events.parquet and one eff_b.NAME column per member. See docs/training.md."),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="run directories written by darkshower train, or score files S.parquet (two or more)")
    p.add_argument("--data", nargs="+", default=None, metavar="DS",
                   help="dataset directories to score the runs on (needed when an INPUT is a run)")
    p.add_argument("--out", required=True, metavar="S.parquet", help="output Parquet file (a file name)")
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
                            progress=not args.no_progress, threads=args.threads)
    n = len(pd.read_parquet(jets, columns=["score"]))
    print(f"wrote {n} ensemble scores of {len(args.inputs)} members to {jets} (per event: {events})")
    return 0
