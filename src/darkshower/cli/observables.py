"""``darkshower observables DATASET --out TABLE.parquet``: jet + event observables as a flat table."""

from __future__ import annotations

import logging

from darkshower.cli.options import (
    add_executor,
    add_progress,
    executor_of,
    nonnegative_float,
    nonnegative_int,
    positive_float,
)

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "observables",
        help="compute jet substructure and event observables into a Parquet table",
        description=(
            "Stream the chunks of DATASET and write one row per (event_id, jet_idx) with the jet "
            "observables and the per-event columns repeated (see docs/representations.md). "
            "The output is written to a temporary file and renamed when complete."
        ),
    )
    p.add_argument("dataset", metavar="DS", help="dataset directory (darkshower generate / import)")
    p.add_argument("--out", required=True, metavar="TABLE.parquet", help="output Parquet file")
    p.add_argument("--events-out", default=None, metavar="EVENTS.parquet",
                   help="also write the per-event table (one row per event) here")
    p.add_argument("--max-jets", type=nonnegative_int, default=2, metavar="N", help="leading jets per event (default 2; 0 = all)")
    p.add_argument("--zcut", type=nonnegative_float, default=0.1, help="soft-drop z_cut, in [0, 1) (default 0.1)")
    p.add_argument("--sd-beta", type=nonnegative_float, default=0.0, help="soft-drop beta (default 0)")
    p.add_argument("--r0", type=positive_float, default=0.8, help="R0 of soft drop and N-subjettiness (default 0.8)")
    p.add_argument("--no-weights", action="store_true", help="ignore per-constituent weights (PUPPI)")
    p.add_argument("--ecf-ungroomed", action="store_true", help="compute C2/D2/N2 on all constituents")
    add_executor(p, 1, "computing chunks in parallel")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.represent.observables import observables

    with executor_of(args) as ex:
        table, evs = observables(args.dataset, args.out, args.events_out, max_jets=args.max_jets,
                                 use_weights=not args.no_weights, zcut=args.zcut, sd_beta=args.sd_beta, r0=args.r0,
                                 ecf_groomed=not args.ecf_ungroomed, progress=not args.no_progress, executor=ex)
    msg = f"wrote {len(table)} jets of {len(evs)} events to {args.out}"
    if args.events_out:
        msg += f" and {len(evs)} events to {args.events_out}"
    print(msg)
    return 0
