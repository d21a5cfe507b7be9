"""``darkshower demo --out DIR`` — the default end-to-end job (what ``make demo`` runs):
generate QCD + SVJ + ttbar, train the recommended default (auto), the gmm density baseline and two fast autoencoders on QCD,
score, evaluate, search, report."""

from __future__ import annotations

from darkshower.cli.options import add_jobs, add_progress, comma_list, nonnegative_int, positive_int


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the default end-to-end job", description=__doc__)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder (default runs/demo)")
    p.add_argument("--events", type=positive_int, default=1500, metavar="N",
                   help="events per test sample (QCD training: twice that; default 1500)")
    p.add_argument("--epochs", type=positive_int, default=20, metavar="N", help="training epochs per method (default 20)")
    p.add_argument("--methods", default="auto,gmm,ae-hlf,nae", metavar="M,M,..",  # = pipeline.demo.DEMO_METHODS
                   help="comma-separated methods (default: auto, the recommended default; gmm, the density baseline; "
                        "ae-hlf and nae)")
    p.add_argument("--seed", type=nonnegative_int, default=1, metavar="S", help="seed of generation and training (default 1)")
    add_jobs(p, 0)
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.pipeline.demo import run_demo

    summary = run_demo(args.out, events=args.events, seed=args.seed, jobs=args.jobs or None,
                       progress=not args.no_progress, methods=comma_list(args.methods),
                       epochs=args.epochs)
    return 1 if summary.get("failed") else 0
