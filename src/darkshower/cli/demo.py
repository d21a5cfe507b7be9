"""``darkshower demo --out DIR`` — the default end-to-end job (what ``make demo`` runs):
generate QCD + SVJ + ttbar, train two fast methods on QCD, score, evaluate, search, report."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the default end-to-end job", description=__doc__)
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--events", type=int, default=1500, help="events per test sample (QCD training: twice that)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--methods", default="ae-hlf,nae", help="comma-separated methods (default ae-hlf,nae)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.demo import run_demo

    summary = run_demo(args.out, events=args.events, seed=args.seed, jobs=args.jobs or None,
                       progress=not args.no_progress, methods=tuple(m.strip() for m in args.methods.split(",")),
                       epochs=args.epochs)
    return 1 if summary.get("failed") else 0
