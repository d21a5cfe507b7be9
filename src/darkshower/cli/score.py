"""``darkshower score RUN DATASET... --out SCORES.parquet``."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score datasets with a trained run (per jet and per event)",
        description=("Write per-jet anomaly scores (dataset, event_id, jet_idx, score) to OUT and per-event scores "
                     "(score_lead = leading jet, score_max2 = max of the two leading jets) to "
                     "OUT with suffix .events.parquet. Works on generated and imported datasets."),
    )
    p.add_argument("run", help="run directory written by darkshower train")
    p.add_argument("datasets", nargs="+", help="dataset directories")
    p.add_argument("--out", required=True, help="output Parquet file")
    p.add_argument("--model", choices=["best", "last"], default="best", help="which model of the run (default best)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (default: the method's, e.g. 4096 "
                   "for dense models, 128 for conv nets)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (per worker with --jobs)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes scoring chunks in parallel (0: all cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from darkshower.train import score

    jets, events = score(args.run, args.datasets, args.out, which=args.model, batch_size=args.batch_size,
                         progress=not args.no_progress, threads=args.threads, jobs=args.jobs)
    n = len(pd.read_parquet(jets, columns=["score"]))
    print(f"wrote {n} scores to {jets} (per event: {events})")
    return 0
