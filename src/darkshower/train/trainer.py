"""The trainer shared by every method: ``train(method, data, out, ...)``.

Background only (labels are never used for selection); a validation split from separate
events; atomic checkpoints every epoch with optimizer/scheduler/RNG state (``resume=True``
continues exactly); early stopping on the label-free selection metric; progress with loss
and jets/s; run directory described in :mod:`darkshower.models.runs`.

``train`` is four steps, each its own piece:

1. :func:`darkshower.train.session.open_session` — fresh run, resume or restart; config checks; seeds;
2. :func:`load_data` — the representation of every dataset (cached per chunk), split, capped;
3. :func:`start_run` — the model, its fitted preprocessing, ``run.json`` and ``config.yaml``;
4. :class:`darkshower.train.loop.TrainingLoop` with :mod:`darkshower.train.callbacks`
   (selection, early stopping, checkpoints, metrics) — pass extra ``callbacks`` to add behaviour.
"""

from __future__ import annotations

import logging
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from darkshower.data.dataset import atomic_write_json, atomic_write_text, open_dataset
from darkshower.errors import ConfigError
from darkshower.models.runs import RUN_FORMAT, RUN_FORMAT_VERSION, versions
from darkshower.represent.store import concat, store_len, take
from darkshower.train.callbacks import Callback, default_callbacks
from darkshower.train.data import check_nonempty, load_store, resolve_representation, split_store
from darkshower.train.loop import TrainingData, TrainingLoop
from darkshower.train.session import Session, open_session, resolve_config

__all__ = ["train", "resolve_config", "load_data", "start_run"]

log = logging.getLogger(__name__)


def _dataset_ref(path) -> dict:
    ds = open_dataset(path)
    return {"path": str(ds.path.resolve()), "process": ds.manifest.get("process"), "n_events": ds.manifest.get("n_events"),
            "chunks_sha256": [c.get("sha256") for c in ds.chunks]}


def _streams(session: Session, cache: Path | None, executor=None) -> bool:
    """Whether this run reads its training data chunk by chunk (data.streaming; auto: by size)."""
    cfg, cls = session.cfg, session.cls
    mode = cfg.data.streaming
    if mode == "off":
        return False
    why = ("data.cache is false" if cache is None else
           f"{session.method} is fitted offline on the whole training set" if cls.fits_offline else None)
    if why is not None:
        if mode == "on":
            raise ConfigError(f"data.streaming: on is impossible here: {why}; use data.streaming: off")
        return False
    if mode == "on":
        return True
    from darkshower.train.stream import cache_files, count_samples

    assert cache is not None
    files = [f for p in [*session.data_paths, *cfg.data.signal]
             for f in cache_files(p, session.rep, cfg.data, cache, executor, progress=False)]
    n = count_samples(files)
    if n > cfg.data.stream_above:
        log.info("%d training samples > data.stream_above %d: streaming from %s", n, cfg.data.stream_above, cache)
        return True
    return False


def load_data(session: Session, progress: bool = True, executor=None):
    """Build (or read from the run's cache) the representation of the training, signal (supervised
    references) and validation datasets; split by event when no validation data are given. Returns
    in-memory :class:`TrainingData`, or :class:`~darkshower.train.stream.StreamingData` when the run
    streams (``data.streaming``). ``executor`` (darkshower.execute) builds the per-chunk representation
    cache (one task per chunk; needs ``data.cache``)."""
    cfg, cls = session.cfg, session.cls
    session.run.mkdir(parents=True, exist_ok=True)
    cache = session.run / "cache" if cfg.data.cache else None
    if session.rep is None:
        session.rep = resolve_representation(cls, cfg.representation, session.data_paths, cfg.data, cfg.seed,
                                             session.model_cfg)
    if _streams(session, cache, executor):
        from darkshower.train.stream import StreamingData

        assert cache is not None
        sdata = StreamingData(session, cache, executor=executor, progress=progress)
        check_nonempty(sdata.train, "training", session.data_paths[0])
        check_nonempty(sdata.val, "validation", (session.val_paths or session.data_paths)[0])
        return sdata
    t_build = 0.0

    def load(paths, label):
        nonlocal t_build
        parts = []
        for p in paths:
            s, t = load_store(p, session.rep, cfg.data, label, cache, (cls, session.model_cfg), progress,
                              executor=executor)
            parts.append(s)
            t_build += t
        return parts

    full = concat(load(session.data_paths, 0.0) + load(cfg.data.signal, 1.0))
    if session.val_paths:
        train_store, val_store = full, concat(load(session.val_paths, 0.0))
    else:
        train_store, val_store = split_store(full, cfg.data.val_fraction, cfg.seed)
    if cfg.data.max_train and store_len(train_store) > cfg.data.max_train:
        train_store = take(train_store, np.arange(cfg.data.max_train))
    if cfg.data.max_val and store_len(val_store) > cfg.data.max_val:
        val_store = take(val_store, np.arange(cfg.data.max_val))
    check_nonempty(train_store, "training", session.data_paths[0])
    check_nonempty(val_store, "validation", (session.val_paths or session.data_paths)[0])
    return TrainingData(train_store, val_store, t_build)


def _jets_without_constituents(path) -> bool | None:
    """Whether the jets of training dataset ``path`` (its first chunk) come without constituents, so that the
    observables are the format's stored values (represent/stored.py); None when it cannot be told."""
    from darkshower.represent.build import jets_without_constituents

    ds = open_dataset(path)  # the run has read it already: no new failure here
    return jets_without_constituents(ds.read_chunk(0)) if ds.chunks else None


def start_run(session: Session, data: TrainingData, write: bool = True):
    """The method's model; for a fresh run also its fitted preprocessing and (with ``write``)
    ``run.json`` and ``config.yaml``."""
    cls, cfg, rep = session.cls, session.cfg, session.rep
    spec = session.info["spec"] if session.resumed else cls.input_spec(data.train, rep)
    model = cls(session.model_cfg, spec)
    if session.resumed:
        return model
    model.prepare(data.train)
    session.info = {
        "format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "method": session.method, "status": "running",
        "level": "event" if rep.kind == "event_image" or getattr(rep, "level", "jet") == "event" else cls.level, "supervised": cls.supervised,
        "selection": session.selection, "representation": rep.model_dump(mode="json"), "spec": spec,
        "data": [_dataset_ref(p) for p in session.data_paths], "val": [_dataset_ref(p) for p in session.val_paths or []],
        "signal": [_dataset_ref(p) for p in cfg.data.signal],
        "n_train": data.n_train, "n_val": data.n_val, "streaming": type(data).__name__ == "StreamingData",
        "seed": cfg.seed, "versions": versions(), "command": session.command or sys.argv,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if rep.kind == "observables":  # scoring compares: stored values (TreeMaker) vs computed from constituents
        session.info["jets_without_constituents"] = _jets_without_constituents(session.data_paths[0])
    if not write:
        return model
    resolved = cfg.model_dump(mode="json")
    resolved["representation"] = rep.model_dump(mode="json")
    resolved["model"] = session.model_cfg.model_dump(mode="json")
    resolved["selection"] = session.selection
    atomic_write_text(session.run / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_json(session.run / "run.json", session.info)
    return model


def train(method: str, data, out, val=None, config=None, epochs: int | None = None, seed: int | None = None,
          resume: bool = False, progress: bool = True, command: list[str] | None = None,
          callbacks: list[Callback] | None = None, nproc: int | None = None, executor=None) -> Path:
    """Train ``method`` on background ``data`` (path or list of dataset paths) into run dir ``out``.
    ``callbacks`` run after the default ones (selection, checkpoints, metrics, log). ``nproc`` > 1
    trains with that many data-parallel processes on this machine (:mod:`darkshower.train.distributed`);
    under ``torchrun`` the process group it describes is joined instead. ``executor``
    (:mod:`darkshower.execute`: ``Local()``, ``Processes(n)``, ``Dask(...)``) builds the representation
    cache, one task per chunk."""
    from darkshower.train import distributed as D

    args = (method, data, out, val, config, epochs, seed, resume, progress, command, callbacks, executor)
    world = D.current_world()
    if not world.distributed:
        env = D.env_world()
        if env is not None and env.distributed:  # started by torchrun: join its group
            D.init(env)
            try:
                return _train(*args)
            finally:
                D.shutdown()
    if nproc is not None and nproc > 1 and not world.distributed:
        if isinstance(nproc, bool) or not isinstance(nproc, int):
            raise ConfigError(f"nproc={nproc!r}: give an integer number of processes")
        if not resume:
            resolve_config(method, config, {"epochs": epochs, "seed": seed})  # config errors fail here, once
        if callbacks or executor is not None:
            raise ConfigError("callbacks and executors cannot be passed to the spawned processes of nproc > 1; run under torchrun")
        from darkshower.models import get_method

        if get_method(method).fits_offline:
            raise ConfigError(f"{method} is fitted offline (no gradient steps): train it without --nproc")
        D.launch(int(nproc), _train, *args)
        return Path(out)
    if nproc is not None and nproc < 1:
        raise ConfigError(f"nproc={nproc}: must be >= 1")
    return _train(*args)


def _train(method, data, out, val, config, epochs, seed, resume, progress, command, callbacks, executor=None) -> Path:
    from darkshower.train import distributed as D

    world = D.current_world()
    session = open_session(method, data, out, val, config, epochs, seed, resume, command)
    D.barrier()  # every rank has looked at the run directory before rank 0 writes into it
    created = not session.run.exists()
    try:
        if world.is_main:  # rank 0 builds the representation cache, the others then read it
            tdata = load_data(session, progress, executor)
            D.barrier()
        else:
            D.barrier()
            tdata = load_data(session, False)
        model = start_run(session, tdata, write=world.is_main)
    except BaseException:
        if world.is_main and created and not (session.run / "run.json").exists():
            shutil.rmtree(session.run, ignore_errors=True)  # failed before the run existed: leave nothing
        raise
    loop = TrainingLoop(session, tdata, model, default_callbacks(session) + list(callbacks or []), progress)
    if session.checkpoint is not None:
        loop.restore(session.checkpoint)
        session.checkpoint = None  # free the memory
    history = loop.run()
    if loop.stopped_early_before:
        return session.run
    info = session.info
    info["status"] = "complete"
    info["epochs_done"] = len(history)
    info["best_epoch"] = next((r["epoch"] for r in reversed(history) if r.get("best")), None)
    if info["best_epoch"] is None and history and world.is_main:
        log.warning("%s: no epoch had a finite %s, so none was selected (e.g. an energy-based method that ended "
                    "within its model.pretrain_epochs, where val_emd is nan): model_best.pt is the first epoch's "
                    "model; train on with darkshower train ... --out %s --resume --epochs N", session.run,
                    info.get("selection") or "selection value", session.run)
    info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if world.distributed:
        info["world_size"] = world.size
    if world.is_main:
        atomic_write_json(session.run / "run.json", info)
    D.barrier()
    return session.run
