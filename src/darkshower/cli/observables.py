"""``darkshower observables DATASET --out TABLE.parquet``: jet + event observables as a flat table."""

from __future__ import annotations

import logging
from pathlib import Path

from darkshower.cli.options import add_progress, nonnegative_float, nonnegative_int, positive_float
from darkshower.errors import ConfigError, DarkshowerError

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
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from darkshower.data.dataset import atomic_write_parquet, open_dataset
    from darkshower.progress import progress
    from darkshower.represent.observables import event_observables, jet_observables

    if args.max_jets < 0:
        raise ConfigError(f"--max-jets {args.max_jets}: must be >= 0 (0 = all jets)")
    if not 0 <= args.zcut < 1:
        raise ConfigError(f"--zcut {args.zcut:g}: the soft-drop z_cut must lie in [0, 1)")
    out = Path(args.out)
    if out.is_dir():
        raise DarkshowerError(f"--out {out}: is a directory; give a file name such as table.parquet")
    ds = open_dataset(args.dataset)
    max_jets = args.max_jets or None
    bar = progress(ds.n_events, "observables", "ev", enabled=not args.no_progress)
    jet_parts, ev_parts = [], []
    for chunk in ds.iter_chunks():
        jt = jet_observables(chunk, max_jets, not args.no_weights, args.zcut, args.sd_beta, args.r0, 1.0,
                             not args.ecf_ungroomed)
        ev = event_observables(chunk, use_weights=not args.no_weights)
        jet_parts.append(jt.merge(ev, on="event_id", how="left", validate="many_to_one"))
        ev_parts.append(ev)
        bar.update(len(chunk))
    bar.close()
    table = pd.concat(jet_parts, ignore_index=True) if jet_parts else pd.DataFrame()
    atomic_write_parquet(table, out)
    msg = f"wrote {len(table)} jets of {ds.n_events} events to {out}"
    if args.events_out:
        evs = pd.concat(ev_parts, ignore_index=True) if ev_parts else pd.DataFrame()
        atomic_write_parquet(evs, Path(args.events_out))
        msg += f" and {len(evs)} events to {args.events_out}"
    print(msg)
    return 0
