"""``darkshower score RUN DATASET... --out SCORES.parquet``."""

from __future__ import annotations

from darkshower.cli.options import add_executor, add_jobs, add_progress, executor_of, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score datasets with a trained run (per jet and per event)",
        description=("Write per-jet anomaly scores (dataset, event_id, jet_idx, score) to OUT and per-event scores "
                     "(score_lead = leading jet, score_max2 = max of the two leading jets, score_pair = Fisher's "
                     "method over the two leading jets' eff_b) to "
                     "OUT with suffix .events.parquet. Works on generated and imported datasets."),
    )
    p.add_argument("run", metavar="RUN", help="run directory written by darkshower train")
    p.add_argument("datasets", nargs="+", metavar="DS", help="dataset directories")
    p.add_argument("--out", required=True, metavar="S.parquet",
                   help="output Parquet file (a file name, not a directory); while one score writes it, a second "
                        "score with the same --out fails at once")
    p.add_argument("--model", default=None, metavar="best|last|NAME",
                   help="which model of the run: best (default) or last; with --server: the served model's name "
                        "(default: the run's directory name)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="samples per batch (default: the method's, e.g. 4096 for dense models, 128 for conv nets)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="T",
                   help="torch threads (per worker with --jobs; default: all cores, 1 per worker with --jobs)")
    p.add_argument("--decorrelate", action="store_true",
                   help="add score_decor / eff_b_decor: the score mapped to its background efficiency in bins of jet "
                        "pT and mass (MT and leading-jet mass for event-level runs), from the run's val_decor.npz "
                        "(runs trained before darkshower stored it score as before, with a note)")
    p.add_argument("--decorrelate-vars", default=None, metavar="V,V",
                   help="variables of the decorrelation map among pt,mass,mt,mjj (default pt,mass; mt,mass for "
                        "event-level runs; implies --decorrelate)")
    p.add_argument("--decorrelate-min-rows", type=positive_int, default=None, metavar="N",
                   help="validation rows per decorrelation bin at least (default 200; implies --decorrelate)")
    p.add_argument("--score-kind", default=None, metavar="KIND",
                   help="another score of the same trained model, for methods that offer several (clr / aclr / "
                        "rs3l: norm = ||z||, knn, maha; flow: nll, base), instead of the run's model.score; eff_b is "
                        "calibrated on "
                        "that kind's own validation reference (computed once from the run's training data for runs "
                        "trained before it was stored)")
    add_jobs(p, 1, "scoring chunks in parallel")
    add_executor(p)
    g = p.add_argument_group("scoring through an inference server (KServe v2 / Triton; needs the [serve] extra)")
    g.add_argument("--server", default=None, metavar="URL",
                   help="score with the model on this server (http://HOST:PORT, e.g. darkshower serve); "
                        "representations are built here, batches sent as binary tensors")
    g.add_argument("--model-version", default="", metavar="V", help="served model version (default: the latest)")
    g.add_argument("--concurrency", type=positive_int, default=4, metavar="N",
                   help="requests in flight with --server (default 4)")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from darkshower.errors import ConfigError

    if args.server:
        from darkshower.serve.client import score_remote

        if args.score_kind:
            raise ConfigError("--score-kind applies to local scoring (a served model computes the score it was "
                              "exported with, the run's model.score); score without --server")
        if args.decorrelate or args.decorrelate_vars or args.decorrelate_min_rows:
            raise ConfigError("--decorrelate/--decorrelate-vars/--decorrelate-min-rows apply to local scoring (the "
                              "map needs the jets of the dataset); score without --server to decorrelate")
        if args.threads is not None or args.jobs != 1 or args.executor or args.scheduler:
            raise ConfigError("--threads/--jobs/--executor/--scheduler apply to local scoring; with --server use "
                              "--concurrency")

        jets, events = score_remote(args.run, args.datasets, args.out, args.server, args.model, args.model_version,
                                    batch_size=args.batch_size or 1024, concurrency=args.concurrency,
                                    progress=not args.no_progress)
        n = len(pd.read_parquet(jets, columns=["score"]))
        print(f"wrote {n} scores to {jets} (per event: {events}) via {args.server}")
        return 0
    if args.model_version or args.concurrency != 4:
        raise ConfigError("--model-version/--concurrency apply to scoring through --server URL")
    if args.model is None:
        args.model = "best"
    if args.model not in ("best", "last"):
        raise ConfigError(f"--model {args.model!r}: choose best or last (a served model's name needs --server URL)")
    from darkshower.train import score

    with executor_of(args) as ex:
        jets, events = score(args.run, args.datasets, args.out, which=args.model, batch_size=args.batch_size,
                             progress=not args.no_progress, threads=args.threads, executor=ex,
                             decorrelate=bool(args.decorrelate or args.decorrelate_vars or args.decorrelate_min_rows),
                             decor_variables=args.decorrelate_vars,
                             decor_min_rows=args.decorrelate_min_rows, score_kind=args.score_kind)
    import pyarrow.parquet as pq

    n, has_decor = pq.read_metadata(jets).num_rows, "score_decor" in pq.read_schema(jets).names
    print(f"wrote {n} scores to {jets} (per event: {events})" + (" with score_decor" if has_decor else ""))
    if args.decorrelate and not has_decor:
        ref = "val_decor.npz" if args.score_kind is None else f"val_decor.{args.score_kind}.npz (or val_decor.npz)"
        print(f"note: {args.run} has no {ref} (trained before darkshower stored it): no decorrelated "
              "scores; retrain the run to get them")
    return 0
