"""``darkshower evaluate --scores S.parquet... --background DS... --signal DS... --out DIR``.

Example::

    darkshower score runs/ae data/qcd_test data/svj_r03 data/svj_r07 --out runs/ae/scores.parquet
    darkshower evaluate --scores runs/ae/scores.parquet --background data/qcd_test \\
        --signal data/svj_r03 data/svj_r07 --out runs/ae/eval
    darkshower report runs/ae/eval
"""

from __future__ import annotations

from darkshower.cli.options import add_executor, executor_of, number_list


def _floats(flag: str, text: str) -> tuple[float, ...]:
    """Comma-separated numbers; their range is checked by the library (evaluate)."""
    return number_list(text, flag, "0.1,0.3,0.5")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics of anomaly scores on background and signal datasets (metrics.json)",
        description=(
            "Join score files (darkshower score) with the datasets, compute ROC/AUC/rejection/SIC with bootstrap "
            "uncertainties per method and signal, the supervised reference (BDT), mass sculpting and the "
            "generalization grid, and write OUT/metrics.json and OUT/data/ (see docs/evaluation.md). Render "
            "the page with `darkshower report OUT`."
        ),
    )
    p.add_argument("--scores", nargs="+", default=[], metavar="S.parquet", help="score files of the methods")
    p.add_argument("--supervised-scores", nargs="+", default=[], metavar="S.parquet",
                   help="score files of supervised classifiers (shown as references)")
    p.add_argument("--background", nargs="+", required=True, metavar="DS", help="background dataset directories")
    p.add_argument("--signal", nargs="+", required=True, metavar="DS", help="signal dataset directories")
    p.add_argument("--out", required=True, metavar="DIR", help="evaluation directory to write")
    p.add_argument("--event-score", choices=["max2", "lead", "pair"], default="max2",
                   help="event score of jet-level methods: max of the two leading jets (default), the leading jet, or "
                        "pair: Fisher's method over the two leading jets' calibrated scores (eff_b)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicas (default 200; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap, BDT split and sculpting baselines")
    p.add_argument("--min-bkg", type=float, default=10.0,
                   help="minimum effective background events at a working point / for the SIC (default 10)")
    p.add_argument("--eff-s", default="0.1,0.3,0.5", metavar="E,E,..",
                   help="signal efficiencies for 1/eps_B (default 0.1,0.3,0.5)")
    p.add_argument("--eff-b", default="0.01,0.001", metavar="E,E,..",
                   help="background efficiencies for eps_S (default 0.01,0.001)")
    p.add_argument("--sculpt-eff", default="0.5,0.1,0.01", metavar="E,E,..",
                   help="background efficiencies of the sculpting cuts (default 0.5,0.1,0.01)")
    p.add_argument("--no-supervised", action="store_true", help="skip the built-in supervised BDT reference")
    p.add_argument("--report", action="store_true", help="also render OUT/report.html")
    add_executor(p, 1, "reading dataset chunks in parallel")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.evaluate import evaluate, report

    with executor_of(args) as ex:
        m = evaluate(args.scores, args.background, args.signal, args.out, supervised_scores=args.supervised_scores,
                     event_score=args.event_score, n_bootstrap=args.bootstrap, seed=args.seed, min_bkg=args.min_bkg,
                     supervised=not args.no_supervised, sculpt_effs=_floats("--sculpt-eff", args.sculpt_eff),
                     eff_s_points=_floats("--eff-s", args.eff_s), eff_b_points=_floats("--eff-b", args.eff_b),
                     executor=ex)
    for r in m["results"]:
        if r["level"] != "event":
            continue
        auc = r["auc"]
        a = "—" if auc["value"] is None else f"{auc['value']:.3f} ± {auc['err'] or 0:.3f}"
        ratio = r.get("ratio_to_supervised", {}).get("value")
        extra = "" if ratio is None or r["supervised"] else f"  AUC/supervised {ratio:.3f}"
        flags = f"  [{', '.join(f for f in r['flags'] if not f.startswith(('low_', 'too_few')))}]" \
            if any(not f.startswith(("low_", "too_few")) for f in r["flags"]) else ""
        print(f"{r['method']:>24s} | {r['signal']:<20s} AUC {a}{extra}{flags}")
    for w in m["warnings"]:
        print(f"warning: {w}")
    print(f"wrote {args.out}/metrics.json")
    if args.report:
        print(f"wrote {report(args.out)}")
    return 0
