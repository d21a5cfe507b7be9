"""``darkshower report DIR``: render DIR/report.html from an evaluation directory.

Example::

    darkshower evaluate --scores runs/ae/scores.parquet --background data/qcd_test \\
        --signal data/svj_r03 --out runs/ae/eval
    darkshower report runs/ae/eval            # after darkshower evaluate (and search)
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="self-contained HTML report of an evaluation directory",
        description=(
            "Write DIR/report.html (figures embedded) from DIR/metrics.json, DIR/data/ and DIR/search/, as written "
            "by `darkshower evaluate --out DIR` (and `darkshower search --out DIR`). The report only renders: a "
            "directory without metrics.json is an error telling you to run `darkshower evaluate` first."
        ),
    )
    p.add_argument("directory", metavar="DIR", help="evaluation directory (written by darkshower evaluate --out DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.evaluate import report

    print(f"wrote {report(args.directory)}")
    return 0
