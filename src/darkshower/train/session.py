"""Opening a run directory for training: a fresh run, a resumed one, or a restart of a run that was
stopped before its first checkpoint.

:func:`open_session` decides which, validates the config against the method, seeds every RNG and
returns a :class:`Session` that the data, model and loop steps share. What may change on
``resume``: the number of epochs and the torch thread count; anything else differing from the
run's saved config (seed, model, optimizer, representation, ...) is refused with the key names.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darkshower.errors import ConfigError, RunError
from darkshower.models.runconfig import TrainConfig
from darkshower.models.runs import read_run_config, read_run_json, torch_load

log = logging.getLogger(__name__)

#: TrainConfig keys a resumed run may change
RESUMABLE_KEYS = ("epochs", "threads", "device")


def resolve_device(name: str, cuda_available: bool | None = None) -> str:
    """``TrainConfig.device`` -> the torch device type to train on: ``auto`` = ``cuda`` when torch sees
    a GPU, else ``cpu``; ``cuda`` without a GPU is a ConfigError."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if name == "cuda" and not cuda_available:
        raise ConfigError("device: cuda asked for, but torch sees no GPU; use --set device=auto (CUDA when "
                          "present, else CPU) or device=cpu")
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device {name!r}: choose auto, cpu or cuda")
    return "cuda" if name == "cuda" or (name == "auto" and cuda_available) else "cpu"


@dataclass
class Session:
    """Everything the training steps share about one run."""

    run: Path
    method: str
    cls: Any  # the Method class
    cfg: TrainConfig
    model_cfg: Any
    selection: str
    data_paths: list[str]
    val_paths: list[str] | None
    command: list[str] | None = None
    rep: Any = None  # the resolved representation config (set by open_session or the data step)
    info: dict = field(default_factory=dict)  # run.json content (resumed runs: as saved)
    checkpoint: dict | None = None  # the checkpoint to continue from (None: fresh start)

    @property
    def label(self) -> str:
        """The method, with the run directory's name when that differs (``flow (event-flow)``): log lines and
        progress bars of runs trained side by side (``train auto``'s members, a benchmark) say which run they are."""
        return self.method if self.run.name == self.method else f"{self.method} ({self.run.name})"

    @property
    def checkpoint_file(self) -> Path:
        return self.run / "checkpoint.pt"

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None


def resolve_config(method: str, config=None, overrides: dict | None = None) -> TrainConfig:
    """Method name + YAML file / dict / TrainConfig + overrides -> validated TrainConfig (the method's
    training defaults under the user's keys)."""
    from darkshower.config import load_yaml, validate
    from darkshower.models import get_method

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
    cls = get_method(method)  # unknown method -> ConfigError
    return validate(TrainConfig, _merge(cls.default_train, data), "train config")


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, recursively for nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dataset_paths(x) -> list[str]:
    """Dataset path(s): str / PathLike / Dataset objects, or a list of them."""
    items = [x] if isinstance(x, (str, os.PathLike)) or hasattr(x, "read_chunk") else list(x)
    return [str(Path(getattr(p, "path", p))) for p in items]


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resume_overrides(run: Path, saved: TrainConfig, config, seed) -> None:
    """Refuse a resume that asks for a different config than the run was started with."""
    asked: dict = {}
    if isinstance(config, TrainConfig):
        asked = config.model_dump(mode="json")
    elif isinstance(config, (str, os.PathLike)):
        from darkshower.config import load_yaml

        asked = load_yaml(config)
    elif config:
        asked = dict(config)
    if seed is not None:
        asked["seed"] = seed
    asked.pop("method", None)
    have = _flatten(saved.model_dump(mode="json"))
    differ = []
    for key, value in _flatten(asked).items():
        if key.split(".")[0] in RESUMABLE_KEYS:
            continue
        if key not in have or have[key] != value:
            differ.append(f"{key}={value!r} (run has {have.get(key, '<unset>')!r})")
    if differ:
        raise RunError(f"{run}: --resume continues the run with its saved config ({run / 'config.yaml'}); it cannot "
                       f"change {', '.join(differ)}. Only {' and '.join(RESUMABLE_KEYS)} may change on resume: drop the "
                       "other --set/--seed/--config values, or start a new run with another --out")


def open_session(method: str, data, out, val=None, config=None, epochs: int | None = None, seed: int | None = None,
                 resume: bool = False, command: list[str] | None = None) -> Session:
    """Validate the request, decide fresh / resume / restart, seed the RNGs; nothing is written yet."""
    import torch

    from darkshower.config import validate
    from darkshower.models import get_method

    run = Path(out)
    data_paths = dataset_paths(data)
    val_paths = None if val is None else dataset_paths(val)
    ckpt_file = run / "checkpoint.pt"
    has_run = (run / "run.json").exists()
    ckpt = None
    info: dict = {}
    if ckpt_file.exists() and not resume:
        raise RunError(f"{run}: a run already exists here; use --resume to continue it or choose a new --out")
    if resume and not ckpt_file.exists() and not has_run:
        raise RunError(f"{run}: nothing to resume (no run here); start without --resume")
    if has_run and not ckpt_file.exists():
        # stopped before its first epoch ended: nothing was trained, so the run starts again, with
        # the saved config on --resume and with the given one on a plain rerun
        saved = read_run_json(run)
        if saved["method"] != method:
            raise RunError(f"{run}: the run trained {saved['method']!r}, not {method!r}; choose a new --out")
        log.warning("%s: the run stopped before its first checkpoint; starting it again", run)
        if resume:
            cfg = read_run_config(run)
            _check_resume_overrides(run, cfg, config, seed)
            cfg = cfg.model_copy(update={"epochs": int(epochs)} if epochs is not None else {})
            resume = False
        else:
            cfg = resolve_config(method, config, {"epochs": epochs, "seed": seed})
    elif resume:
        info = read_run_json(run)
        if info["method"] != method:
            raise RunError(f"{run}: the run trained {info['method']!r}, not {method!r}")
        cfg = read_run_config(run)
        _check_resume_overrides(run, cfg, config, seed)
        update: dict = {}
        if epochs is not None:
            update["epochs"] = int(epochs)
        if isinstance(config, dict) and config.get("threads"):
            update["threads"] = int(config["threads"])
        if isinstance(config, dict) and config.get("device"):
            update["device"] = str(config["device"])
        cfg = cfg.model_copy(update=update)
        saved_paths = [d["path"] for d in info["data"]]
        if [str(Path(p).resolve()) for p in data_paths] != saved_paths:
            raise RunError(f"{run}: --data {data_paths} differs from the run's data {saved_paths}")
        ckpt = torch_load(ckpt_file, "checkpoint")
    else:
        cfg = resolve_config(method, config, {"epochs": epochs, "seed": seed})

    cls = get_method(method)
    if cls.supervised and not cfg.data.signal:
        raise ConfigError(f"method {method!r} is a supervised reference: give signal datasets in data.signal")
    if cfg.data.signal and not cls.supervised:
        raise ConfigError(f"data.signal given, but {method!r} trains on background only (labels are never used)")
    selection = cfg.selection or cls.default_selection
    if selection == "val_emd" and not cls.energy_based:
        raise ConfigError(f"selection 'val_emd' needs an energy-based method; {method!r} is not (use val_loss or last)")
    model_cfg = validate(cls.Config, cfg.model, "train config: model")
    resolve_device(cfg.device)  # cuda without a GPU: refused before anything is written

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)

    session = Session(run=run, method=method, cls=cls, cfg=cfg, model_cfg=model_cfg, selection=selection,
                      data_paths=data_paths, val_paths=val_paths, command=command, info=info, checkpoint=ckpt)
    if ckpt is not None:
        from darkshower.represent.config import parse_representation

        session.rep = parse_representation(info["representation"])
    return session
