"""``darkshower search --scores S.parquet --background DS... --signal DS... --out DIR``.

Bump hunt in MT (dijet-function fit) with and without anomaly-score cuts. Example::

    darkshower search --scores runs/ae/scores.parquet --background data/qcd_test --signal data/svj_r03 \\
        --xsec 0.5 --lumi 138 --cut-eff 0.1,0.01 --out runs/ae/eval
"""

from __future__ import annotations

from darkshower.cli.options import number_list


def _floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers; their range is checked by the library (search)."""
    return number_list(text, "--cut-eff", "0.1,0.01")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="bump hunt in MT with and without anomaly cuts (significance, CLs limits)",
        description=(
            "Inject signal into the luminosity-weighted background, cut on the anomaly score at fixed background "
            "efficiencies (chosen on background only), fit the MT spectrum with the dijet function and report "
            "the local significance and the expected/observed CLs limits on the signal strength. Writes "
            "OUT/search/search.json and a figure per method and signal (see docs/evaluation.md)."
        ),
    )
    p.add_argument("--scores", nargs="+", required=True, metavar="S.parquet", help="score files")
    p.add_argument("--background", nargs="+", required=True, metavar="DS", help="background dataset directories")
    p.add_argument("--signal", nargs="+", required=True, metavar="DS", help="signal dataset directories")
    p.add_argument("--out", required=True, metavar="DIR", help="evaluation directory (results go to DIR/search/)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--xsec", type=float, default=None, metavar="PB",
                   help="signal cross-section after the dataset selection [pb] (default: the signal manifest's)")
    g.add_argument("--n-signal", type=float, default=None, metavar="N",
                   help="number of signal events before the anomaly cut (instead of --xsec)")
    p.add_argument("--mu", type=float, default=1.0, help="injected signal strength (0 = background only; default 1)")
    p.add_argument("--lumi", type=float, default=138.0, help="integrated luminosity [fb^-1] (default 138)")
    p.add_argument("--cut-eff", default="0.1,0.01", metavar="E,E,..",
                   help="background efficiencies of the anomaly cuts (default 0.1,0.01)")
    p.add_argument("--event-score", choices=["max2", "lead", "pair"], default="max2",
                   help="event score of jet-level methods: max2 (default), lead or pair (Fisher over the two jets' eff_b)")
    p.add_argument("--bins", type=int, default=30, help="MT bins (default 30)")
    p.add_argument("--mt-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="MT fit range [GeV] (default: background peak to the 99.5%% quantile)")
    p.add_argument("--sqrt-s", type=float, default=13000.0, help="centre-of-mass energy [GeV] (x = MT/sqrt(s))")
    p.add_argument("--params", type=int, choices=[3, 4], default=4, help="dijet function parameters (default 4)")
    p.add_argument("--signal-shape", choices=["gauss", "template"], default="gauss",
                   help="signal model in the fit (default gauss: median and 68%% width of the signal MT)")
    p.add_argument("--pseudo-data", choices=["toy", "asimov"], default="toy",
                   help="Poisson toy (default) or Asimov pseudo-data")
    p.add_argument("--background-shape", choices=["smooth", "mc"], default="smooth",
                   help="pseudo-data background: dijet fit to the MC (default) or the MC histogram itself")
    p.add_argument("--cl", type=float, default=0.95, help="confidence level of the limits (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the toy pseudo-data")
    p.add_argument("--decorrelated", action="store_true",
                   help="cut on the decorrelated scores (score_decor_*, written by `darkshower score --decorrelate`; "
                        "independent of jet mass and pT by construction, see docs/evaluation.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.evaluate import search

    cut_effs = _floats(args.cut_eff)
    res = search(args.scores, args.background, args.signal, args.out, event_score=args.event_score,
                 xsec_pb=args.xsec, n_signal=args.n_signal, mu=args.mu, lumi_fb=args.lumi, cut_effs=cut_effs,
                 sqrt_s=args.sqrt_s, n_bins=args.bins, mt_range=args.mt_range, signal_shape=args.signal_shape,
                 pseudo_data=args.pseudo_data, background_shape=args.background_shape, n_params=args.params,
                 seed=args.seed, cl=args.cl, decorrelated=args.decorrelated)
    for s in res["searches"]:
        if s.get("flags"):
            print(f"{s['method']:>20s} | {s['signal']:<16s} [{', '.join(s['flags'])}]")
        for lv in s.get("levels", []):
            z = lv.get("z")
            el = (lv.get("expected_limit") or {}).get("median")
            print(f"{s['method']:>20s} | {s['signal']:<16s} cut {lv['cut']:>5s}: "
                  f"B={lv['bkg_expected']:.4g} S={lv['sig_injected']:.4g} "
                  f"Z={'—' if z is None else f'{z:.2f}'} exp. limit mu<{'—' if el is None else f'{el:.3g}'}"
                  + (f"  [{', '.join(lv['flags'])}]" if lv.get("flags") else ""))
    for w in res.get("warnings", []):
        print(f"warning: {w}")
    for n in res.get("notes", []):
        if "no (finite) score" in n:
            print(f"note: {n}")
    print(f"wrote {args.out}/search/search.json")
    return 0
