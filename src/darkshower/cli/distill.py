"""``darkshower distill TEACHER_RUN --data DATASET --out RUN [--student mlp|deepsets] [--config FILE] [--epochs N]
[--seed S] [--resume]``.

Example::

    darkshower train lund-gae --data data/qcd --out runs/lund-gae --epochs 20
    darkshower distill runs/lund-gae --data data/qcd --out runs/lund-gae-student --student mlp --epochs 30
    darkshower score runs/lund-gae-student data/qcd_test data/svj --out runs/lund-gae-student/scores.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

from darkshower.cli.options import executor_asked, run_result
from darkshower.cli.train import add_training_options, config_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a small, fast student to reproduce a trained run's anomaly score",
        description=("Distill TEACHER_RUN (any jet-level run of `darkshower train`) into a small student: an MLP on "
                     "jet observables (--student mlp) or a DeepSets on constituents (--student deepsets) that "
                     "regresses a monotone transform of the teacher's score on the background DATASET(s). The "
                     "student is an ordinary run (method 'distill'): score it with `darkshower score`. "
                     "See docs/methods/distill.md."),
    )
    p.add_argument("teacher", metavar="TEACHER_RUN", help="run directory of the teacher")
    p.add_argument("--student", choices=["mlp", "deepsets", "per-particle"], default=None,
                   help="student architecture (default: the config's model.student, else mlp); per-particle: "
                        "the DistillNet pileup student of a pu-gnn teacher (docs/pileup.md)")
    add_training_options(p, data_help="background dataset director(y/ies) to distill on",
                         set_example="--set model.hidden=[64,64] --set model.target=quantile")
    p.set_defaults(func=run)


def build_config(teacher, student: str | None = None, config: dict | None = None) -> dict:
    """Training config of a distillation: method ``distill``, ``model.teacher_run`` (absolute path),
    ``model.student`` and, unless the config gives one, the student's default representation."""
    from darkshower.errors import ConfigError
    from darkshower.models.distill import DEEPSETS_REPRESENTATION, load_teacher

    cfg = dict(config or {})
    if cfg.get("method") not in (None, "distill"):
        raise ConfigError(f"config says method {cfg['method']!r}; a distillation config has method 'distill'")
    cfg["method"] = "distill"
    model = dict(cfg.get("model") or {})
    given = model.get("teacher_run")
    if given is not None and Path(given).expanduser().resolve() != Path(teacher).expanduser().resolve():
        raise ConfigError(f"model.teacher_run {given!r} in the config differs from TEACHER_RUN {str(teacher)!r}")
    load_teacher(teacher, model.get("teacher_model", "best"))  # a missing/incompatible teacher fails here
    model["teacher_run"] = str(Path(teacher).expanduser().resolve())
    if student is not None:
        model["student"] = student
    cfg["model"] = model
    rep = dict(cfg.get("representation") or {})
    if model.get("student", "mlp") == "deepsets" and rep.get("kind") in (None, "constituents"):
        cfg["representation"] = {**DEEPSETS_REPRESENTATION, **rep}
    return cfg


def _teacher_method(teacher) -> str | None:
    import json

    try:
        return json.loads((Path(teacher) / "run.json").read_text()).get("method")
    except (OSError, ValueError):
        return None  # the library call names the problem


def run_per_particle(args) -> int:
    """``distill PU_GNN_RUN --student per-particle``: the DistillNet student (train/pileup.py)."""

    from darkshower.errors import ConfigError
    from darkshower.train.pileup import distill_particles

    if args.nproc not in (None, 1):
        raise ConfigError("--nproc: the per-particle student trains in one process")
    out = distill_particles(args.teacher, args.data, args.out, val=args.val, config=config_from_args(args),
                            epochs=args.epochs, seed=args.seed, resume=args.resume, progress_=not args.no_progress,
                            command=["darkshower", *sys.argv[1:]])
    info, _, best = run_result(out)
    print(f"distilled {args.teacher} into a per-particle student: {info.get('epochs_done')} epochs, best epoch "
          f"{info.get('best_epoch')}, correlation with the teacher {best.get('val_corr', float('nan')):.3f}, AUC "
          f"{best.get('val_auc', float('nan')):.4f} (teacher {best.get('teacher_val_auc', float('nan')):.4f}) -> "
          f"{out / 'student.npz'}")
    return 0


def run(args) -> int:
    from darkshower.errors import ConfigError
    from darkshower.train import train

    is_pu = _teacher_method(args.teacher) == "pu-gnn"
    if args.student == "per-particle":
        return run_per_particle(args)
    if is_pu:
        raise ConfigError(f"{args.teacher} is a pu-gnn (pileup) teacher: distill it with --student per-particle "
                          "(mlp and deepsets students distill jet-level anomaly scores)")
    if args.resume:
        from darkshower.errors import ConfigError
        from darkshower.models.runs import read_run_config

        out = Path(args.out)
        saved = read_run_config(out).model.get("teacher_run") if (out / "config.yaml").exists() else None
        if saved is not None and Path(saved).resolve() != Path(args.teacher).expanduser().resolve():
            raise ConfigError(f"{args.out}: the run distills {saved!r}, not {args.teacher!r}")
        cfg = None
    else:
        cfg = build_config(args.teacher, args.student, config_from_args(args))
    from darkshower.cli.options import executor_of

    with executor_of(args) as ex:
        out = train("distill", args.data, args.out, val=args.val, config=cfg, epochs=args.epochs, seed=args.seed,
                    resume=args.resume, progress=not args.no_progress, command=["darkshower", *sys.argv[1:]],
                    nproc=args.nproc, executor=ex if executor_asked(args) else None)
    info, hist, best = run_result(out)
    print(f"distilled {args.teacher} into a {info['spec']['kind']} student: {info.get('epochs_done', len(hist))} "
          f"epochs, best epoch {info.get('best_epoch')}, validation MSE {best.get('val_loss', float('nan')):.4g}, "
          f"correlation with the teacher {best.get('val_corr', float('nan')):.3f} -> {out}")
    return 0
