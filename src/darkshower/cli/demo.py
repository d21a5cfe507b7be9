"""``darkshower demo --out DIR`` — the default end-to-end job (what ``make demo`` runs)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the default end-to-end job", description=__doc__)
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--events", type=int, default=1000, help="events per sample")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.demo import run_demo

    run_demo(args.out, events=args.events, seed=args.seed, jobs=args.jobs)
    return 0
