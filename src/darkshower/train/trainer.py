"""The trainer shared by every method: ``train(method, data, out, ...)``.

Background only (labels are never used for selection); a validation split from separate
events; atomic checkpoints every epoch with optimizer/scheduler/RNG state (``resume=True``
continues exactly); early stopping on the label-free selection metric; progress with loss
and jets/s; run directory described in :mod:`darkshower.models.runs`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from darkshower.config import load_yaml, validate
from darkshower.data.dataset import atomic_write_json, atomic_write_text, open_dataset
from darkshower.errors import ConfigError
from darkshower.train.config import TrainConfig
from darkshower.train.data import (batches, check_nonempty, load_store, resolve_representation, split_store,
                                   store_len)
from darkshower.models.runs import (RUN_FORMAT, RUN_FORMAT_VERSION, RunError, TrainingError, atomic_torch_save,
                                  read_run_config, read_run_json, torch_load, versions)

log = logging.getLogger(__name__)


def resolve_config(method: str, config=None, overrides: dict | None = None) -> TrainConfig:
    """Method name + YAML file / dict / TrainConfig + overrides -> validated TrainConfig."""
    if isinstance(config, TrainConfig):
        data = config.model_dump(mode="json")
    elif isinstance(config, (str, os.PathLike)):
        data = load_yaml(config)
    else:
        data = dict(config or {})
    if data.get("method") not in (None, method):
        raise ConfigError(f"config says method {data['method']!r} but {method!r} was asked for")
    data["method"] = method
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    from darkshower.models import get_method

    cls = get_method(method)  # unknown method -> ConfigError
    return validate(TrainConfig, _merge(cls.default_train, data), "train config")


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, recursively for nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _make_optimizer(params, cfg: TrainConfig):
    import torch

    o = cfg.optimizer
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _make_scheduler(opt, cfg: TrainConfig):
    import torch

    s = cfg.schedule
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=s.min_lr)
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def _rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    import torch

    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def _dataset_ref(path) -> dict:
    ds = open_dataset(path)
    return {"path": str(ds.path.resolve()), "process": ds.manifest.get("process"), "n_events": ds.manifest.get("n_events"),
            "chunks_sha256": [c.get("sha256") for c in ds.chunks]}


def _write_metrics(run: Path, history: list[dict]) -> None:
    atomic_write_json(run / "metrics.json", history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "metrics.csv", buf.getvalue())


def train(method: str, data, out, val=None, config=None, epochs: int | None = None, seed: int | None = None,
          resume: bool = False, progress: bool = True, command: list[str] | None = None) -> Path:
    """Train ``method`` on background ``data`` (path or list of dataset paths) into run dir ``out``."""
    import torch

    from darkshower.models import get_method

    run = Path(out)
    data_paths = _paths(data)
    val_paths = None if val is None else _paths(val)
    ckpt_file = run / "checkpoint.pt"

    if resume:
        if not ckpt_file.exists():
            raise RunError(f"{run}: nothing to resume (no checkpoint.pt); start without --resume")
        info = read_run_json(run)
        if info["method"] != method:
            raise RunError(f"{run}: the run trained {info['method']!r}, not {method!r}")
        cfg = read_run_config(run)
        if epochs is not None:
            cfg = cfg.model_copy(update={"epochs": int(epochs)})
        saved = [d["path"] for d in info["data"]]
        if [str(Path(p).resolve()) for p in data_paths] != saved:
            raise RunError(f"{run}: --data {data_paths} differs from the run's data {saved}")
        ckpt = torch_load(ckpt_file, "checkpoint")
    else:
        if ckpt_file.exists() or (run / "run.json").exists():
            raise RunError(f"{run}: a run already exists here; use --resume to continue it or choose a new --out")
        cfg = resolve_config(method, config, {"epochs": epochs, "seed": seed})
        ckpt = None
    cls = get_method(method)
    if cls.supervised and not cfg.data.signal:
        raise ConfigError(f"method {method!r} is a supervised reference: give signal datasets in data.signal")
    if cfg.data.signal and not cls.supervised:
        raise ConfigError(f"data.signal given, but {method!r} trains on background only (labels are never used)")
    selection = cfg.selection or cls.default_selection
    if selection == "val_emd" and not cls.energy_based:
        raise ConfigError(f"selection 'val_emd' needs an energy-based method; {method!r} is not (use val_loss or last)")
    model_cfg = validate(cls.Config, cfg.model, "train config: model")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)

    run.mkdir(parents=True, exist_ok=True)
    cache = run / "cache" if cfg.data.cache else None
    if ckpt is None:
        rep = resolve_representation(cls, cfg.representation, data_paths, cfg.data, cfg.seed, model_cfg)
    else:
        from darkshower.represent.config import parse_representation

        rep = parse_representation(info["representation"])

    # -- data ---------------------------------------------------------------------------------
    t_build = 0.0
    parts = []
    for p in data_paths:
        s, t = load_store(p, rep, cfg.data, 0.0, cache, (cls, model_cfg), progress)
        parts.append(s)
        t_build += t
    for p in cfg.data.signal:
        s, t = load_store(p, rep, cfg.data, 1.0, cache, (cls, model_cfg), progress)
        parts.append(s)
        t_build += t
    from darkshower.represent.store import concat, take

    full = concat(parts)
    if val_paths:
        train_store = full
        vparts = []
        for p in val_paths:
            s, t = load_store(p, rep, cfg.data, 0.0, cache, (cls, model_cfg), progress)
            vparts.append(s)
            t_build += t
        val_store = concat(vparts)
    else:
        train_store, val_store = split_store(full, cfg.data.val_fraction, cfg.seed)
    if cfg.data.max_train and store_len(train_store) > cfg.data.max_train:
        train_store = take(train_store, np.arange(cfg.data.max_train))
    if cfg.data.max_val and store_len(val_store) > cfg.data.max_val:
        val_store = take(val_store, np.arange(cfg.data.max_val))
    check_nonempty(train_store, "training", data_paths[0])
    check_nonempty(val_store, "validation", (val_paths or data_paths)[0])

    spec = info["spec"] if ckpt is not None else cls.input_spec(train_store, rep)
    model = cls(model_cfg, spec)
    # a model without trainable parameters (e.g. sup-bdt, fitted by fit_offline) gets a dummy one
    opt = _make_optimizer([p for p in model.parameters() if p.requires_grad] or [torch.zeros((), requires_grad=True)],
                          cfg)
    sched = _make_scheduler(opt, cfg)
    history: list[dict] = []
    start_epoch = 0
    best = math.inf
    bad_epochs = 0
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            _set_rng_state(ckpt["rng"])
            history, start_epoch, best, bad_epochs = ckpt["history"], ckpt["epoch"] + 1, ckpt["best"], ckpt["bad_epochs"]
        except (KeyError, RuntimeError, ValueError) as exc:
            raise RunError(f"{ckpt_file}: checkpoint does not fit this run ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); start a new run") from None
        if ckpt.get("stopped_early"):
            log.info("run had stopped early at epoch %d; nothing to do", ckpt["epoch"])
            return run
    else:
        model.prepare(train_store)
        info = {
            "format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "method": method, "status": "running",
            "level": "event" if rep.kind == "event_image" else cls.level, "supervised": cls.supervised, "selection": selection,
            "representation": rep.model_dump(mode="json"), "spec": spec,
            "data": [_dataset_ref(p) for p in data_paths], "val": [_dataset_ref(p) for p in val_paths or []],
            "signal": [_dataset_ref(p) for p in cfg.data.signal],
            "n_train": store_len(train_store), "n_val": store_len(val_store),
            "seed": cfg.seed, "versions": versions(), "command": command or sys.argv,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        resolved = cfg.model_dump(mode="json")
        resolved["representation"] = rep.model_dump(mode="json")
        resolved["model"] = model_cfg.model_dump(mode="json")
        resolved["selection"] = selection
        atomic_write_text(run / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        atomic_write_json(run / "run.json", info)

    # -- epochs -------------------------------------------------------------------------------
    from darkshower.models.base import StepContext

    n_train = store_len(train_store)
    val_batches = list(batches(val_store, cfg.eval_batch_size))
    step = start_epoch * math.ceil(n_train / cfg.batch_size)
    offline = callable(getattr(model, "fit_offline", None))  # non-gradient model: one fit instead of epochs
    for epoch in range(start_epoch, 1 if offline else cfg.epochs):
        model.on_epoch_start(epoch)
        model.train()
        t_epoch = time.perf_counter()
        t_data = 0.0
        loss_sum, logs_sum, n_seen = 0.0, {}, 0
        order = model.batch_order(train_store, cfg.batch_size, cfg.seed, epoch) if hasattr(model, "batch_order") else None
        if order is None:
            it = batches(train_store, cfg.batch_size, cfg.seed, epoch, drop_last=True)
        else:  # the method groups samples (e.g. rs3l: re-simulated partners in the same batch)
            it = _ordered_batches(train_store, cfg.batch_size, order)
        if offline:
            logs = dict(model.fit_offline(train_store, val_store) or {})
            n_seen = n_train
            loss_sum = float(logs.pop("loss", math.nan)) * n_seen
            logs_sum = {k: float(v) * n_seen for k, v in logs.items()}
            it = iter(())
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_train, desc=f"{method} epoch {epoch + 1}/{cfg.epochs}", unit="jet", leave=False,
                       unit_scale=True, file=sys.stderr)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            t_data += time.perf_counter() - t0
            if batch is None:
                break
            loss, logs = model.loss(batch, StepContext(epoch, step, cfg.epochs))
            if not torch.isfinite(loss):
                info["status"] = f"failed: non-finite loss at epoch {epoch + 1}, step {step}"
                atomic_write_json(run / "run.json", info)
                raise TrainingError(
                    f"{run}: loss became {loss.item()} at epoch {epoch + 1}, step {step}; training stopped. "
                    f"The last good checkpoint (epoch {epoch}) is kept. Lower optimizer.lr, keep grad_clip on, "
                    "or for energy-based methods lower the MCMC step size / raise the energy regularization.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            bs = len(batch["label"])
            loss_sum += loss.item() * bs
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v) * bs
            n_seen += bs
            step += 1
            if bar is not None:
                bar.update(bs)
                el = time.perf_counter() - t_epoch
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4g}", jets_s=f"{n_seen / max(el, 1e-9):.0f}")
        if bar is not None:
            bar.close()
        if not offline:  # no optimizer steps were taken
            sched.step()
        t_train = time.perf_counter() - t_epoch

        model.eval()
        t0 = time.perf_counter()
        vsum, nv = {}, 0
        with torch.no_grad():
            for b in val_batches:
                bs = len(b["label"])
                for k, v in model.val_metrics(b).items():
                    vsum[k] = vsum.get(k, 0.0) + float(v) * bs
                nv += bs
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1)}
        row.update({f"train_{k}": v / max(n_seen, 1) for k, v in logs_sum.items()})
        row.update({f"val_{k}": v / max(nv, 1) for k, v in vsum.items()})
        if cls.energy_based:
            row["val_emd"] = float(model.validation_emd(_emd_batches(val_store, cfg)))
        row.update({"lr": opt.param_groups[0]["lr"], "train_seconds": t_train, "data_seconds": t_data,
                    "data_fraction": t_data / max(t_train, 1e-12), "jets_per_s": n_seen / max(t_train, 1e-12),
                    "val_seconds": time.perf_counter() - t0, "build_seconds": t_build if epoch == start_epoch else 0.0})
        sel = {"val_loss": row.get("val_loss", math.nan), "val_emd": row.get("val_emd", math.nan),
               "last": -float(epoch)}[selection]
        row["selection_value"] = sel
        improved = math.isfinite(sel) and sel < best - cfg.early_stopping.min_delta
        state = {"model": model.state_dict(), "epoch": epoch + 1}
        atomic_torch_save(state, run / "model_last.pt")
        if improved or not (run / "model_best.pt").exists():
            atomic_torch_save(state, run / "model_best.pt")
        if improved:
            best, bad_epochs = sel, 0
            row["best"] = True
        elif math.isfinite(sel):
            bad_epochs += 1
        history.append(row)
        stop = cfg.early_stopping.patience is not None and bad_epochs >= cfg.early_stopping.patience
        atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "rng": _rng_state(), "epoch": epoch, "history": history, "best": best,
                           "bad_epochs": bad_epochs, "stopped_early": stop}, ckpt_file)
        _write_metrics(run, history)
        log.info("%s epoch %d/%d: train %.5g, %s %.5g, %.0f jets/s", method, epoch + 1, cfg.epochs, row["train_loss"],
                 selection, sel, row["jets_per_s"])
        if stop:
            log.info("early stopping: no improvement of %s for %d epochs", selection, bad_epochs)
            break
    info["status"] = "complete"
    info["epochs_done"] = len(history)
    info["best_epoch"] = next((r["epoch"] for r in reversed(history) if r.get("best")), None)
    info["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(run / "run.json", info)
    return run


def _paths(x) -> list[str]:
    """Dataset path(s): str / PathLike / Dataset objects, or a list of them."""
    items = [x] if isinstance(x, (str, os.PathLike)) or hasattr(x, "read_chunk") else list(x)
    return [str(Path(getattr(p, "path", p))) for p in items]


def _ordered_batches(store, batch_size: int, order):
    """Batches in a method-given sample order (last incomplete batch dropped, as in training)."""
    from darkshower.represent.store import take, to_torch

    order = np.asarray(order)
    stop = (len(order) // batch_size) * batch_size if len(order) >= batch_size else len(order)
    for a in range(0, stop, batch_size):
        yield to_torch(take(store, order[a:a + batch_size]))


def _emd_batches(val_store, cfg):
    from darkshower.represent.store import take

    n = min(store_len(val_store), cfg.emd_samples)
    return list(batches(take(val_store, np.arange(n)), n))
