"""``darkshower cluster --config cluster.yaml``: start a Dask cluster (SLURM, HTCondor or local) for
``--executor dask --scheduler ADDRESS`` of the other commands.

Example::

    darkshower cluster --config cluster.yaml            # prints the scheduler address, runs until Ctrl-C
    darkshower generate qcd --events 1000000 --out /shared/data/qcd --executor dask --scheduler tcp://HOST:8786
    darkshower cluster --config cluster.yaml --dry-run  # the cluster's arguments and batch job script only
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from darkshower.cli.options import nonnegative_float


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cluster",
        help="start a Dask cluster (SLURM / HTCondor via dask-jobqueue, or local) and print its scheduler address",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, metavar="cluster.yaml",
                   help="cluster recipe: type (slurm, htcondor, local), jobs, cores, processes, memory, walltime, "
                        "job_extra, venv or container (see docs/scale-out.md)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cluster class, its arguments and (batch) the job script; submit nothing")
    p.add_argument("--wait-workers", type=nonnegative_float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the first worker before printing 'ready' (default 0: do not wait)")
    p.add_argument("--for", dest="duration", type=nonnegative_float, default=None, metavar="SECONDS",
                   help="stop the cluster after SECONDS (default: run until Ctrl-C or SIGTERM)")
    p.set_defaults(func=run)


def _quiet() -> None:
    """distributed's INFO lines (scheduler/nanny start-up) drown ours; keep its warnings and errors."""
    import logging

    from darkshower.execute.dask import require_dask

    require_dask("darkshower cluster")
    import distributed  # noqa: F401  (configures its loggers on import: set the level after it)

    logging.getLogger("distributed").setLevel(logging.WARNING)


def run(args) -> int:
    from darkshower.execute.cluster import cluster_kwargs, load_cluster_config, make_cluster

    cfg = load_cluster_config(args.config)
    _quiet()
    name, kw = cluster_kwargs(cfg)
    if args.dry_run:
        print(f"{name}(**{json.dumps(kw, indent=2)})")
        if name != "LocalCluster":
            print(f"scale(jobs={cfg.jobs})")
            # the job script, from a cluster object whose scheduler listens on this machine only; nothing submitted
            opts = {k: v for k, v in kw["scheduler_options"].items() if k != "dashboard_address"}
            kw = {**kw, "scheduler_options": {**opts, "host": "127.0.0.1", "port": 0, "dashboard_address": "127.0.0.1:0"}}
            import dask_jobqueue

            with getattr(dask_jobqueue, name)(**kw) as cluster:
                print(cluster.job_script())
        return 0
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    old = signal.signal(signal.SIGTERM, _stop)
    cluster = make_cluster(cfg)
    try:
        if name != "LocalCluster":
            cluster.scale(jobs=cfg.jobs)
        print(f"scheduler: {cluster.scheduler_address}", flush=True)
        link = getattr(cluster, "dashboard_link", None) if cfg.dashboard_port is not None else None
        print(f"dashboard: {link or '(none)'}", flush=True)
        print(f"use: --executor dask --scheduler {cluster.scheduler_address}", flush=True)
        if args.wait_workers:
            from distributed import Client

            with Client(cluster.scheduler_address) as client:
                try:
                    client.wait_for_workers(1, timeout=args.wait_workers)
                except TimeoutError:
                    print(f"no worker after {args.wait_workers:g} s (jobs still queued?)", file=sys.stderr, flush=True)
        print("ready (Ctrl-C stops the cluster)", flush=True)
        t0 = time.monotonic()
        while not stop["now"] and (args.duration is None or time.monotonic() - t0 < args.duration):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        cluster.close()
    print("cluster stopped", flush=True)
    return 0
