"""``darkshower tune METHOD --data DS [--val DS] --trials N --out DIR [--timeout S] [--seed S] [--space FILE]
[--epochs N] [--config FILE] [--set k=v] [--prune] [--show-space]``."""

from __future__ import annotations

import sys

from darkshower.cli.options import nonnegative_int, positive_float, positive_int
from darkshower.config import parse_assignment, set_nested
from darkshower.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="tune a method's training config by its label-free selection metric (Optuna; never sees signal)",
        description=("Search METHOD's hyper-parameters with Optuna on background DATASET(s) only. Each trial is one "
                     "training run (DIR/trials/NNNN); its objective is the method's label-free selection metric "
                     "(validation loss, or validation EMD for energy-based methods) — never a label, never a "
                     "signal dataset (generated svj/emj/suep/ttbar datasets are refused). Rerunning the same "
                     "command continues the study (DIR/study.db) until N trials are finished. Writes DIR/best.yaml "
                     "(use it with `darkshower train METHOD --config DIR/best.yaml`) and DIR/trials.csv. Needs the "
                     "[tune] extra. See docs/training.md (Tuning)."),
    )
    p.add_argument("method", metavar="METHOD", help="method name, e.g. ae-hlf, nae, gmm, flow")
    p.add_argument("--data", nargs="+", metavar="DS", help="background dataset director(y/ies)")
    p.add_argument("--val", nargs="+", default=None, metavar="DS",
                   help="validation dataset(s) (default: a split of separate events, the same in every trial)")
    p.add_argument("--trials", type=positive_int, metavar="N", help="finished trials to reach (a rerun continues)")
    p.add_argument("--out", metavar="DIR", help="study directory (study.db, trials/, trials.csv, best.yaml)")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="start no new trial after S seconds (rerun to continue)")
    p.add_argument("--seed", type=nonnegative_int, default=None, metavar="S",
                   help="training seed of every trial and the sampler's seed (default: the config's, 0)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="epochs of every trial")
    p.add_argument("--space", default=None, metavar="FILE.yaml",
                   help="search space (key: {type: float|int|categorical, low, high, log, choices}); replaces the "
                        "method's default space (print it with --show-space)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="base training config of every trial")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key, e.g. --set model.activation=relu")
    p.add_argument("--prune", action="store_true",
                   help="stop unpromising trials early (median rule on the per-epoch selection value)")
    p.add_argument("--show-space", action="store_true", help="print METHOD's default search space as YAML and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    import yaml

    if args.show_space:
        from darkshower.train.tune import default_space

        print(yaml.safe_dump(default_space(args.method), sort_keys=False), end="")
        return 0
    missing = [o for o, v in (("--data", args.data), ("--trials", args.trials), ("--out", args.out)) if v is None]
    if missing:
        raise ConfigError(f"darkshower tune {args.method}: {', '.join(missing)} required, e.g. "
                          f"darkshower tune {args.method} --data data/qcd --trials 10 --out tune/{args.method}")
    from darkshower.config import load_yaml
    from darkshower.train.tune import tune

    cfg = load_yaml(args.config) if args.config else {}
    for item in args.set:
        k, v = parse_assignment(item)
        set_nested(cfg, k, v)
    res = tune(args.method, args.data, args.out, args.trials, val=args.val, config=cfg, epochs=args.epochs,
               seed=args.seed, space=args.space, timeout=args.timeout, prune=args.prune,
               progress=not args.no_progress, command=["darkshower", *sys.argv[1:]])
    counts = f"{res.n_complete} complete, {res.n_pruned} pruned, {res.n_failed} failed"
    if res.best_config is None:
        print(f"tune {args.method}: no complete trial yet ({counts}) -> {res.out}")
    else:
        dflt = "" if res.default_value is None else f"; default config {res.selection} {res.default_value:.6g}"
        print(f"tuned {args.method}: {counts}; best trial {res.best_trial} {res.selection} {res.best_value:.6g}{dflt} "
              f"-> {res.best_config}")
    if res.stopped:
        print(f"stopped before {args.trials} trials: {res.stopped}")
    return 0
