"""The run-directory format: what a training run writes, and loading a trained model back.

It lives with the models (below the trainer) because a model can be built on another run: an NAE on a
frozen embedding, a distilled student on its teacher. The trainer (:mod:`darkshower.train`) writes runs
in this format; scoring, export and evaluation read them through :func:`load_run`.

RUN/
  run.json           format, method, status, data paths (+ manifest checksums), versions, seeds,
                     input spec, command, timings
  config.yaml        the resolved TrainConfig (representation incl. fitted statistics)
  metrics.csv/.json  one row per epoch (train loss, validation metrics, selection value, timings)
  checkpoint.pt      last epoch's full state (model, optimizer, scheduler, RNG, history) for --resume
  model_best.pt      model state chosen by the label-free selection metric
  model_last.pt      model state after the last completed epoch
  cache/             per-chunk representation cache (npz), safe to delete
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import yaml

from darkshower import __version__
from darkshower.errors import ConfigError, RunError, TrainingError

__all__ = ["RUN_FORMAT", "RUN_FORMAT_VERSION", "RunError", "TrainingError", "atomic_torch_save", "torch_load",
           "read_run_json", "read_run_config", "load_run", "require_model", "versions"]

RUN_FORMAT = "darkshower-run"
RUN_FORMAT_VERSION = "1.0"


def versions() -> dict:
    from darkshower.versions import package_versions

    return package_versions("torch", "numpy", "awkward", "pot", "scikit-learn")


def atomic_torch_save(obj, path: Path) -> None:
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def torch_load(path: Path, what: str):
    import torch

    try:
        with open(path, "rb") as f:
            data = f.read()
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise RunError(f"{path}: {what} not found") from None
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise RunError(f"{path}: {what} is corrupt or unreadable ({type(exc).__name__}: {exc}); "
                       "delete it to start again, or use model_last.pt / a fresh --out") from None


def read_run_json(run: Path) -> dict:
    p = Path(run) / "run.json"
    try:
        info = json.loads(p.read_text())
    except FileNotFoundError:
        raise RunError(f"{run}: not a training run (no run.json); pass the --out directory of `darkshower train`") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{p}: corrupt run.json ({exc})") from None
    if info.get("format") != RUN_FORMAT:
        raise RunError(f"{p}: 'format' is {info.get('format')!r}, expected {RUN_FORMAT!r}")
    major = str(info.get("format_version", "0")).split(".")[0]
    if major != RUN_FORMAT_VERSION.split(".")[0]:
        raise RunError(f"{p}: run format version {info.get('format_version')} was written by darkshower "
                       f"{info.get('versions', {}).get('darkshower')}; this darkshower {__version__} reads "
                       f"{RUN_FORMAT_VERSION.split('.')[0]}.x — retrain, or score with the matching darkshower version")
    return info


def require_model(run, info: dict, what: str = "loaded") -> None:
    """A ConfigError for a run without a model of its own (``darkshower train auto``: a combination of member
    runs): it is scored with ``darkshower score``; exporting, serving or loading take one of its members."""
    if info.get("members"):
        names = ", ".join(str(Path(run) / m["dir"]) for m in info["members"])
        raise ConfigError(f"{run}: a `train auto` run combines the runs {names} (by {info.get('combine')}); it has no "
                          f"model of its own to be {what}: score it with darkshower score RUN ..., or use one of "
                          "those runs")


def read_run_config(run: Path):
    from darkshower.config import validate
    from darkshower.models.runconfig import TrainConfig

    p = Path(run) / "config.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise RunError(f"{run}: config.yaml missing") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and isinstance(data.get("method"), str):
        from darkshower.models import METHODS, get_method  # model keys added since the run was saved

        if data["method"] in METHODS:
            data = {**data, "model": {**get_method(data["method"]).saved_defaults, **data["model"]}}
    return validate(TrainConfig, data, str(p))


def load_run(run, which: str = "best"):
    """(method module in eval mode, representation config, TrainConfig, run info) of a run."""
    from darkshower.config import validate
    from darkshower.models import get_method
    from darkshower.represent.config import parse_representation

    run = Path(run)
    info = read_run_json(run)
    require_model(run, info, "loaded")
    cfg = read_run_config(run)
    cls = get_method(info["method"])
    rep = parse_representation(info["representation"])
    if which not in ("best", "last"):
        raise ConfigError(f"model {which!r}: choose best or last")
    f = run / f"model_{which}.pt"
    if not f.exists() and which == "best":
        f = run / "model_last.pt"
    state = torch_load(f, "model file")
    model_cfg = validate(cls.Config, cfg.model, f"{run}/config.yaml: model")
    method = cls(model_cfg, info["spec"])
    try:
        method.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise RunError(f"{f}: model state does not match method {info['method']} as configured "
                       f"({str(exc).splitlines()[0]}); the run is from an incompatible version") from None
    method.eval()
    return method, rep, cfg, info
