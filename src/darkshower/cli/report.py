"""``darkshower report DIR``: render DIR/report.html from an evaluation directory.

Example::

    darkshower report runs/ae/eval            # after darkshower evaluate (and search)
    darkshower report runs/scores_only_dir    # score files only: evaluates first (background = qcd)
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="self-contained HTML report of an evaluation directory",
        description=(
            "Write DIR/report.html (figures embedded) from DIR/metrics.json, DIR/data/ and DIR/search/. If DIR "
            "has no metrics.json but holds score files, evaluate them first: the datasets are read from the "
            "score files' dataset column; background = --background, else datasets whose process is qcd; "
            "signal = the rest."
        ),
    )
    p.add_argument("directory", metavar="DIR", help="evaluation directory")
    p.add_argument("--background", nargs="+", default=None, metavar="DS",
                   help="background datasets (only when DIR has no evaluation yet)")
    p.add_argument("--signal", nargs="+", default=None, metavar="DS",
                   help="signal datasets (only when DIR has no evaluation yet)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicas when evaluating (default 200)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.evaluate import report

    out = report(args.directory, background=args.background, signal=args.signal, n_bootstrap=args.bootstrap)
    print(f"wrote {out}")
    return 0
