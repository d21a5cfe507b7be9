"""``darkshower benchmark CONFIG.yaml [--out DIR]``: the whole grid, resumable at every stage."""

from __future__ import annotations

from darkshower.cli.options import add_executor, add_jobs, add_progress, comma_list


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="generate a signal grid, train methods on QCD, score, evaluate and report",
        description=("Run the benchmark described by CONFIG.yaml (see configs/benchmark/default.yaml and "
                     "docs/benchmark.md): generate (or reuse) every dataset, train each method on the QCD "
                     "training sample, score the test background and all signals, evaluate, search and write "
                     "report.html. Rerunning the command resumes: finished stages are skipped, interrupted "
                     "generation and training continue."),
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="benchmark YAML (e.g. configs/benchmark/default.yaml)")
    p.add_argument("--out", default=None, metavar="DIR", help="benchmark directory (default runs/<name>)")
    add_jobs(p, None, "for generation")
    add_executor(p)
    p.add_argument("--stages", default=None, metavar="S,S,..",
                   help="comma-separated subset of generate,train,score,evaluate,report (default all)")
    p.add_argument("--methods", default=None, metavar="M,M,..",
                   help="train and score only these methods of the config (names as listed there; default all); "
                        "evaluation and the report include every method scored so far")
    add_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.pipeline import load_benchmark_config, run_benchmark

    cfg = load_benchmark_config(args.config)
    out = args.out or f"runs/{cfg.name}"
    stages = comma_list(args.stages) if args.stages else None
    jobs = args.jobs
    if jobs == 0:  # 0: all cores, as everywhere (run_benchmark reads 0/None as "the config's")
        from darkshower.execute import available_cores

        jobs = available_cores()
    executor = None
    if args.executor or args.scheduler:  # the grid's jobs as tasks (without: the stages one after the other)
        from darkshower.execute import resolve_executor

        executor = resolve_executor(args.executor, args.scheduler, jobs)
    try:
        summary = run_benchmark(cfg, out, jobs=jobs, progress=not args.no_progress, stages=stages, executor=executor,
                                methods=tuple(comma_list(args.methods)) if args.methods else None)
    finally:
        if executor is not None:
            executor.close()
    for k, v in summary.get("failed", {}).items():
        print(f"[benchmark] failed: {k}: {v}")
    if summary.get("report"):
        print(f"[benchmark] report: {summary['report']}")
    print(f"[benchmark] done in {summary['seconds']} s -> {out}")
    return 1 if summary.get("failed") else 0
