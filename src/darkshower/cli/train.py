"""``darkshower train METHOD --data DATASET [--val DATASET] --out RUN [--config FILE] [--epochs N] [--seed S] [--resume]``."""

from __future__ import annotations

import sys

from darkshower.cli.options import (
    add_executor,
    add_progress,
    executor_asked,
    executor_of,
    nonnegative_int,
    positive_int,
    run_result,
)
from darkshower.config import parse_assignment, set_nested


def register(subparsers) -> None:
    from darkshower.models import METHODS

    p = subparsers.add_parser(
        "train",
        help="train an anomaly detector on background (QCD) only",
        description=("Train METHOD on the background DATASET(s) and write a run directory (resolved config, "
                     "versions, per-epoch metrics, atomic checkpoints, best and last model). The best model is "
                     "chosen without signal labels (validation loss, or validation EMD for energy-based methods). "
                     f"Methods: {', '.join(METHODS)}; auto: the recommended default (a Gaussian-mixture density "
                     "on the event, its representation chosen from what the data have, a normalizing flow on the "
                     "jet observables and one on the event, the density per jet and a jet-image autoencoder, "
                     "combined by Fisher's method at scoring); pu-gnn: the DistillNet pileup teacher, per-particle weights from a "
                     "dataset with --pileup (docs/pileup.md). See docs/training.md."),
    )
    p.add_argument("method", metavar="METHOD", help="method name, e.g. ae-hlf, nae, wnae, clr, auto or pu-gnn")
    add_training_options(p, data_help="background dataset director(y/ies)",
                         set_example="--set model.latent=8 --set optimizer.lr=3e-4")
    p.add_argument("--members", default=None, metavar="M,M",
                   help="train auto only: the members, of density,flow,event-flow,jet-density,image (default: all five "
                        "on data with MET; without MET no jet-density; without MET or a second jet no event-flow; "
                        "without constituents no image; density alone is the fast density baseline). "
                        "--config/--set configure the density member (and jet-density)")
    p.set_defaults(func=run)


def add_training_options(p, data_help: str, set_example: str) -> None:
    """The options shared by `darkshower train` and `darkshower distill`."""
    p.add_argument("--data", required=True, nargs="+", metavar="DS", help=data_help)
    p.add_argument("--val", nargs="+", default=None, metavar="DS",
                   help="validation dataset(s) (default: a split of separate events)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML training config (see docs/training.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override a config key, e.g. {set_example}")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="number of epochs (overrides the config)")
    p.add_argument("--seed", type=nonnegative_int, default=None, metavar="S", help="run seed (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--threads", type=positive_int, default=None, metavar="T", help="torch threads (default: all cores)")
    p.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="data-parallel training processes on this machine (torch.distributed DDP: gloo on CPU, "
                        "nccl on GPUs; default 1; under torchrun its environment is used)")
    add_executor(p, jobs_default=1, what="for building the representation cache, one task per chunk")
    add_progress(p)


def config_from_args(args) -> dict:
    """--config YAML, then every --set, then --threads, as one config dict."""
    from darkshower.config import load_yaml

    cfg = load_yaml(args.config) if args.config else {}
    for item in args.set:
        k, v = parse_assignment(item)
        set_nested(cfg, k, v)
    if args.threads:
        cfg["threads"] = args.threads
    return cfg


def run(args) -> int:
    if args.members is not None and args.method != "auto":
        from darkshower.errors import ConfigError

        raise ConfigError(f"--members is an option of train auto, not of train {args.method}")
    if args.method == "auto":  # the recommended default, representation chosen from the data (train/auto.py)
        return run_auto(args)
    if args.method == "pu-gnn":  # DistillNet teacher: its own trainer (docs/pileup.md)
        return run_pu_gnn(args)
    from darkshower.train import train

    cfg = config_from_args(args)
    with executor_of(args) as ex:
        out = train(args.method, args.data, args.out, val=args.val, config=cfg, epochs=args.epochs, seed=args.seed,
                    resume=args.resume, progress=not args.no_progress, command=["darkshower", *sys.argv[1:]],
                    nproc=args.nproc, executor=ex if executor_asked(args) else None)
    info, hist, best = run_result(out)
    last = hist[-1] if hist else {}
    print(f"trained {args.method}: {info.get('epochs_done', len(hist))} epochs, best epoch {info.get('best_epoch')} "
          f"({info.get('selection')} {best.get('selection_value', float('nan')):.5g}), "
          f"{last.get('jets_per_s', 0):.0f} jets/s -> {out}")
    return 0


def run_pu_gnn(args) -> int:
    """``darkshower train pu-gnn``: the event-level pileup GNN (train/pileup.py)."""
    from darkshower.errors import ConfigError
    from darkshower.train.pileup import train_pu_gnn

    if args.nproc not in (None, 1):
        raise ConfigError("--nproc: train pu-gnn runs in one process")
    out = train_pu_gnn(args.data, args.out, val=args.val, config=config_from_args(args), epochs=args.epochs,
                       seed=args.seed, resume=args.resume, progress_=not args.no_progress,
                       command=["darkshower", *sys.argv[1:]])
    info, _, best = run_result(out)
    print(f"trained pu-gnn ({info['spec'].get('parameters')} parameters): {info.get('epochs_done')} epochs, best epoch "
          f"{info.get('best_epoch')} (val loss {best.get('val_loss', float('nan')):.4g}, per-particle AUC "
          f"{best.get('val_auc', float('nan')):.4f}, neutrals {best.get('val_auc_neutral', float('nan')):.4f}) -> {out}")
    return 0


def run_auto(args) -> int:
    """``darkshower train auto``: train.auto.DEFAULT_METHOD with what the data have (docs/training.md)."""
    from darkshower.errors import ConfigError
    from darkshower.models.runs import read_run_json
    from darkshower.train.auto import MEMBER_METHODS, train_auto

    if args.nproc not in (None, 1):
        raise ConfigError("--nproc: train auto trains the default's members one after the other in one process")
    members = None if args.members is None else tuple(m.strip() for m in args.members.split(",") if m.strip())
    if args.resume and args.members is not None:
        raise ConfigError("--members with --resume: a resumed train auto run continues its recorded members")
    with executor_of(args) as ex:
        out, choice = train_auto(args.data, args.out, val=args.val, config=config_from_args(args), epochs=args.epochs,
                                 seed=args.seed, resume=args.resume, progress=not args.no_progress,
                                 command=["darkshower", *sys.argv[1:]], executor=ex if executor_asked(args) else None,
                                 members=members)
    names = choice.get("members") or ["density"]
    level = read_run_json(out).get("level", choice["level"])  # the combination's level (the density's is in choice)
    print(f"trained {' + '.join(f'{m} ({MEMBER_METHODS[m]})' for m in names)} ({level} level"
          + (f", combined by {choice['combine']}" if choice.get("combine") else "")
          + f") -> {out}; the choice is in {out / 'run.json'} (auto); score it with darkshower score {out} DS... --out S.parquet")
    return 0
