"""Cluster recipes: a Dask cluster from a small YAML file (``darkshower cluster --config cluster.yaml``).

``type: slurm`` and ``type: htcondor`` build a ``dask_jobqueue`` ``SLURMCluster`` / ``HTCondorCluster``
(each batch job runs ``processes`` Dask workers sharing ``cores`` cores and ``memory``); ``type: local``
a ``distributed.LocalCluster`` on this machine (127.0.0.1). The cluster is scaled to ``jobs`` batch
jobs; the scheduler's address is what ``--scheduler`` of every stage takes. Example (SLURM)::

    type: slurm
    jobs: 10                 # batch jobs
    cores: 4                 # per job
    processes: 4             # Dask workers per job (cores are shared among them)
    memory: 16GB             # per job
    walltime: "04:00:00"
    queue: standard          # SLURM partition
    account: my_account
    job_extra: ["--constraint=cpu"]
    venv: /shared/darkshower/.venv   # the same virtual environment on a shared filesystem
    log_directory: /shared/dask-logs

``venv`` makes the workers run ``VENV/bin/python``; ``container`` (an Apptainer/Singularity image)
runs them inside the image instead (HTCondor: ``MY.SingularityImage``; SLURM: ``apptainer exec``).
See docs/scale-out.md for the walk-through.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from darkshower.config import StrictModel, load_yaml, validate
from darkshower.errors import ConfigError

_WALLTIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")


class ClusterConfig(StrictModel):
    type: Literal["slurm", "htcondor", "local"] = Field(description="batch system, or local (this machine)")
    jobs: int = Field(1, ge=1, description="batch jobs to start (local: the cluster is one 'job')")
    cores: int = Field(1, ge=1, description="cores per job")
    processes: int = Field(1, ge=1, description="Dask worker processes per job (cores are shared among them)")
    memory: str = Field("4GB", description="memory per job, e.g. 16GB")
    disk: str | None = Field(None, description="HTCondor: disk per job (default 4GB)")
    walltime: str | None = Field(None, description="HH:MM:SS (HTCondor: +MaxRuntime in seconds)")
    queue: str | None = Field(None, description="SLURM partition / queue")
    account: str | None = Field(None, description="SLURM account")
    job_extra: list[str] | dict[str, str] = Field(default_factory=list,
                                                  description="extra batch directives: SLURM a list of sbatch "
                                                              "options, HTCondor a mapping of submit-file keys")
    venv: str | None = Field(None, description="virtual environment on a shared filesystem; workers run VENV/bin/python")
    container: str | None = Field(None, description="Apptainer/Singularity image the workers run in")
    python: str | None = Field(None, description="python command of the workers (default: venv's or this one)")
    prologue: list[str] = Field(default_factory=list, description="shell lines run before the worker starts")
    local_directory: str | None = Field(None, description="worker scratch directory (node-local disk)")
    log_directory: str | None = Field(None, description="batch job logs")
    interface: str | None = Field(None, description="network interface of workers and scheduler (e.g. ib0)")
    scheduler_host: str | None = Field(None, description="address the scheduler listens on (local: 127.0.0.1)")
    scheduler_port: int = Field(8786, ge=0, le=65535, description="scheduler port (0: any free one)")
    dashboard_port: int | None = Field(8787, ge=0, le=65535,
                                       description="dashboard port (null: a random port on 127.0.0.1, not printed)")

    @model_validator(mode="after")
    def _check(self):
        if self.walltime is not None and not _WALLTIME.match(self.walltime):
            raise ValueError(f"walltime {self.walltime!r}: write it as HH:MM:SS, e.g. \"04:00:00\"")
        if self.processes > self.cores:
            raise ValueError(f"processes={self.processes} > cores={self.cores}: each worker needs at least one core")
        if self.type == "slurm" and isinstance(self.job_extra, dict):
            raise ValueError("job_extra: SLURM takes a list of sbatch options, e.g. [\"--constraint=cpu\"]")
        if self.type == "htcondor" and isinstance(self.job_extra, list) and self.job_extra:
            raise ValueError("job_extra: HTCondor takes a mapping of submit-file keys, e.g. {\"+JobFlavour\": "
                             "'\"workday\"'}")
        if self.type == "local":
            batch_only = [k for k in ("disk", "walltime", "queue", "account", "venv", "container", "python",
                                      "log_directory", "interface") if getattr(self, k) is not None]
            batch_only += [k for k in ("job_extra", "prologue") if getattr(self, k)]
            if batch_only:
                raise ValueError(f"{', '.join(batch_only)}: apply to batch clusters (type slurm or htcondor), "
                                 "not to type local")
        return self


def load_cluster_config(source) -> ClusterConfig:
    """A ClusterConfig from a YAML path or a dict (errors name the file and the key)."""
    if isinstance(source, ClusterConfig):
        return source
    data = load_yaml(source) if not isinstance(source, dict) else dict(source)
    if not isinstance(data, dict):
        raise ConfigError(f"cluster config {source}: expected a mapping of keys (type, jobs, cores, ...)")
    return validate(ClusterConfig, data, f"cluster config {source if not isinstance(source, dict) else ''}".strip())


def _seconds(walltime: str) -> int:
    h, m, s = (int(x) for x in _WALLTIME.match(walltime).groups())  # type: ignore[union-attr]
    return h * 3600 + m * 60 + s


def cluster_kwargs(cfg: ClusterConfig) -> tuple[str, dict[str, Any]]:
    """(class name, keyword arguments) of the cluster the config describes: ``LocalCluster``,
    ``SLURMCluster`` or ``HTCondorCluster``. Only translates; starts nothing."""
    # no dashboard port: a random one on 127.0.0.1 (distributed always starts one when bokeh is installed)
    dash = f"{cfg.scheduler_host or '127.0.0.1'}:{cfg.dashboard_port}" if cfg.dashboard_port is not None else "127.0.0.1:0"
    if cfg.type == "local":
        return "LocalCluster", {
            "n_workers": cfg.jobs * cfg.processes,
            "threads_per_worker": max(cfg.cores // cfg.processes, 1),
            "processes": True,
            "memory_limit": cfg.memory,
            "host": cfg.scheduler_host or "127.0.0.1",
            "scheduler_port": cfg.scheduler_port,
            "dashboard_address": dash,
            **({"local_directory": cfg.local_directory} if cfg.local_directory else {}),
        }
    scheduler_options: dict[str, Any] = {"port": cfg.scheduler_port}
    scheduler_options["dashboard_address"] = (f"{cfg.scheduler_host or ''}:{cfg.dashboard_port}"
                                              if cfg.dashboard_port is not None else "127.0.0.1:0")
    if cfg.scheduler_host:
        scheduler_options["host"] = cfg.scheduler_host
    kw: dict[str, Any] = {
        "cores": cfg.cores,
        "processes": cfg.processes,
        "memory": cfg.memory,
        "job_script_prologue": list(cfg.prologue),
        "scheduler_options": scheduler_options,
    }
    python = cfg.python
    if python is None and cfg.venv:
        python = f"{cfg.venv.rstrip('/')}/bin/python"
    for key, value in (("local_directory", cfg.local_directory), ("log_directory", cfg.log_directory),
                       ("interface", cfg.interface)):
        if value is not None:
            kw[key] = value
    if cfg.type == "slurm":
        if cfg.container:
            python = f"apptainer exec {cfg.container} {python or 'python'}"
        kw["job_extra_directives"] = list(cfg.job_extra)
        for key, value in (("walltime", cfg.walltime), ("queue", cfg.queue), ("account", cfg.account)):
            if value is not None:
                kw[key] = value
        name = "SLURMCluster"
    else:
        if cfg.queue or cfg.account:
            raise ConfigError("cluster config: queue/account apply to SLURM; HTCondor takes job_extra keys "
                              "(e.g. {\"+JobFlavour\": '\"workday\"'}, {\"accounting_group\": \"...\"})")
        extra = dict(cfg.job_extra) if isinstance(cfg.job_extra, dict) else {}
        if cfg.walltime is not None:
            extra.setdefault("+MaxRuntime", str(_seconds(cfg.walltime)))
        if cfg.container:
            extra.setdefault("MY.SingularityImage", f'"{cfg.container}"')
        kw["job_extra_directives"] = extra
        kw["disk"] = cfg.disk or "4GB"
        name = "HTCondorCluster"
    if python is not None:
        kw["python"] = python
    return name, kw


def make_cluster(cfg: ClusterConfig):
    """Start the cluster the config describes (not yet scaled). Needs the [dask] extra."""
    from darkshower.execute.dask import require_dask

    require_dask("darkshower cluster")
    name, kw = cluster_kwargs(cfg)
    if name == "LocalCluster":
        from distributed import LocalCluster

        return LocalCluster(**kw)
    try:
        import dask_jobqueue
    except ImportError:
        from darkshower.errors import ClusterError
        from darkshower.execute.dask import EXTRA_HINT

        raise ClusterError(f"type {cfg.type}: needs dask-jobqueue (the [dask] extra): {EXTRA_HINT}") from None
    return getattr(dask_jobqueue, name)(**kw)


__all__ = ["ClusterConfig", "load_cluster_config", "cluster_kwargs", "make_cluster"]
