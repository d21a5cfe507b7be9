"""Label-free hyper-parameter tuning: :func:`tune` (``darkshower tune METHOD --data DS --trials N --out DIR``).

Optuna (the ``[tune]`` extra) proposes training configs; each trial is one ordinary training run
(:func:`darkshower.train.train`) in ``DIR/trials/NNNN``, and its objective is **only the method's label-free
selection metric** — the value the trainer picked its best epoch by (``val_loss``, or ``val_emd`` for the
energy-based methods), read back from the trial's ``metrics.json``. No label and no signal dataset is ever
read: methods trained with labels (supervised references) and a ``data.signal`` list are refused, and so are
generated datasets of a signal process (:data:`SIGNAL_PROCESSES`). Every trial trains with the same seed on the
same validation samples, so the values are comparable.

DIR/
  study.db      Optuna storage (SQLite via SQLAlchemy): every trial's parameters, state and value, and the
                study's identity (method, search space, data checksums, epochs, seed, base config)
  trials/NNNN/  the run directory of trial NNNN (its ``cache`` links to DIR/cache, shared by the trials)
  trials.csv    one row per trial: state, value, parameters, run directory, seconds, error
  best.yaml     the best trial's training config: ``darkshower train METHOD --config DIR/best.yaml ...``

Rerunning the same command continues until N trials are finished (complete, or pruned with ``prune``);
a trial interrupted mid-way (Ctrl-C, a killed process) is marked failed and its parameters are tried again
first: the retry continues the interrupted run from its last checkpoint (the trainer's resume: the same
batches, so the same result as an uninterrupted trial), or starts it again when no epoch had finished. A trial whose training diverges (non-finite loss) is a failed trial
and does not count. Changing the method, search space, data, epochs, seed or base config on a rerun is an
error. The first trial of a new study is the method's default config when every default lies in the space,
so the best trial is never worse than the default on the objective.

The search space (``space``: a YAML file or a dict; default: the method's ``tune_space()``) maps a dotted
training-config key to ``{type: float|int|categorical, low, high, log, step, choices}``; keys that would
change the validation samples or the meaning of the objective (``data.*``, ``representation.*``, ``seed``,
``selection``, ``epochs``, ...) are refused.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, model_validator

from darkshower.config import StrictModel, set_nested, validate
from darkshower.data.dataset import acquire_lock, atomic_write_text, open_dataset
from darkshower.errors import ConfigError, DarkshowerError, RunError, TrainingError
from darkshower.train.callbacks import Callback
from darkshower.train.session import dataset_paths, resolve_config

__all__ = ["tune", "default_space", "parse_space", "TuneResult", "ParamSpec", "SIGNAL_PROCESSES"]

log = logging.getLogger(__name__)

#: generated processes that are signal (the dark-shower models and ttbar, the benchmark grids' SM anomaly):
#: tune refuses datasets of these processes
SIGNAL_PROCESSES = ("svj", "emj", "suep", "ttbar")

#: training-config keys a search space may not contain, and why
FORBIDDEN_KEYS = {
    "method": "the method is the command's METHOD",
    "seed": "every trial trains with the same seed (--seed), so the validation samples are the same",
    "selection": "the objective is the method's label-free selection metric",
    "epochs": "the epochs of every trial are --epochs",
    "threads": "threads do not change the result",
    "eval_batch_size": "it does not change the result",
    "emd_samples": "it changes the validation EMD, the objective of the energy-based methods",
    "data": "data.* keys change the training or validation samples, so the objective would not be comparable",
    "representation": "the representation changes what the objective is measured on; fix it with --config",
}

STUDY_NAME = "darkshower-tune"
IDENTITY_ATTR = "darkshower_tune"
_PRIMITIVE = (type(None), bool, int, float, str)


class ParamSpec(StrictModel):
    """One search-space entry: ``float``/``int`` in [low, high] (``log``: log-uniform; ``step``: a grid), or
    ``categorical`` over ``choices`` (any YAML values, lists included)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list, e.g. choices: [64, 128, 256]")
            other = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
            if other:
                raise ValueError(f"categorical takes only 'choices', not {', '.join(other)}")
            enc = [_encode(c) for c in self.choices]
            if len(set(map(repr, enc))) != len(enc):
                raise ValueError(f"duplicate choices in {self.choices}")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes 'low' and 'high', not 'choices' (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or not self.low < self.high:
            raise ValueError(f"needs finite low < high, got low {self.low:g}, high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None and not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step:g}")
        if self.type == "int":
            bad = [k for k in ("low", "high", "step") if getattr(self, k) is not None and not float(getattr(self, k)).is_integer()]
            if bad:
                raise ValueError(f"int needs integer {', '.join(bad)}")
        return self

    def candidates(self) -> list[Any]:
        """Values checked against the config before tuning: the bounds, or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        return [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return any(_same(value, c) for c in self.choices or [])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def suggest(self, trial, name: str) -> Any:
        """The trial's value (decoded: lists come back as lists)."""
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            assert self.low is not None and self.high is not None
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step) if self.step is not None else 1)
        choices = self.choices or []
        picked = trial.suggest_categorical(name, [_encode(c) for c in choices])
        return self.decode(picked)

    def decode(self, external: Any) -> Any:
        """Optuna's stored value -> the config value."""
        if self.type != "categorical":
            return external
        for c in self.choices or []:
            if _encode(c) == external and type(_encode(c)) is type(external):
                return copy.deepcopy(c)
        return external

    def external(self, value: Any) -> Any:
        """The config value -> Optuna's stored value (to enqueue a trial)."""
        if self.type == "categorical":
            for c in self.choices or []:
                if _same(value, c):
                    return _encode(c)
        if self.type == "int":
            return int(value)
        return float(value)


def _encode(choice: Any) -> Any:
    """Optuna stores only None/bool/int/float/str choices: anything else (a list of widths) as JSON text."""
    return choice if isinstance(choice, _PRIMITIVE) else json.dumps(choice)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and float(a) == float(b))


@dataclass
class TuneResult:
    """What :func:`tune` did: the study directory, the best trial and the counts."""

    out: Path
    method: str
    selection: str
    best_config: Path | None
    best_value: float | None
    best_trial: int | None
    best_params: dict
    default_value: float | None
    n_complete: int
    n_pruned: int
    n_failed: int
    n_trials: int
    stopped: str = ""  # "" (N trials finished) or why it stopped before

    @property
    def n_finished(self) -> int:
        return self.n_complete + self.n_pruned


# -- the search space --------------------------------------------------------------------------
def default_space(method: str) -> dict[str, dict]:
    """The method's default search space (its ``tune_space()``), as plain dicts."""
    from darkshower.models import get_method

    return get_method(method).tune_space()


def _read_space_file(path) -> dict:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--space {p}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--space {p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--space {p}: expected a mapping of training-config keys to ranges, e.g. "
                          "'optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'")
    return data


def parse_space(space, where: str = "search space") -> dict[str, ParamSpec]:
    """Validate a search space (mapping key -> spec, or a YAML file); errors name the key and the fix."""
    if isinstance(space, (str, os.PathLike)):
        where = f"--space {space}"
        space = _read_space_file(space)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: expected a non-empty mapping of training-config keys to ranges")
    out: dict[str, ParamSpec] = {}
    for key, raw in space.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{where}: key {key!r}: give a dotted training-config key, e.g. optimizer.lr or model.latent")
        head = key.split(".")[0]
        if head in FORBIDDEN_KEYS:
            raise ConfigError(f"{where}: key {key!r} cannot be tuned: {FORBIDDEN_KEYS[head]}")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: key {key!r}: expected a mapping such as {{type: float, low: 1.0e-4, "
                              f"high: 1.0e-2, log: true}} or {{type: categorical, choices: [64, 128]}}, got {raw!r}")
        try:
            out[key] = ParamSpec.model_validate(raw)
        except ValidationError as exc:
            msgs = []
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown field (allowed: type, low, high, log, step, choices)"
                msgs.append(f"{loc}: {msg}" if loc else msg)
            raise ConfigError(f"{where}: key {key!r}: {'; '.join(msgs)}") from None
    return out


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _resolved(method: str, cfg: dict) -> dict:
    """The full training config (with the method's model defaults) as a JSON dict; ConfigError when invalid."""
    from darkshower.models import get_method

    tc = resolve_config(method, cfg)
    full = tc.model_dump(mode="json")
    full["model"] = validate(get_method(method).Config, tc.model, "train config: model").model_dump(mode="json")
    return full


def _check_space(method: str, base: dict, specs: dict[str, ParamSpec], where: str) -> dict[str, Any]:
    """Every key must be a training-config key, and every bound/choice a valid value of it. Returns the
    default config's value of each key (absent where the default is unset)."""
    for key, spec in specs.items():
        for v in spec.candidates():
            cfg = copy.deepcopy(base)
            try:
                set_nested(cfg, key, v)
                _resolved(method, cfg)
            except ConfigError as exc:
                raise ConfigError(f"{where}: key {key!r}: value {v!r} is not accepted by {method}'s training config "
                                  f"({exc}); fix the range or the key name (see docs/training.md)") from None
    full = _resolved(method, base)
    defaults = {}
    for key in specs:
        try:
            defaults[key] = _get(full, key)
        except KeyError:
            pass
    return defaults


# -- data --------------------------------------------------------------------------------------
def _data_refs(paths: list[str], option: str) -> list[dict]:
    """Resolved path + chunk checksums of each dataset (the study identity); refuses signal datasets."""
    refs = []
    for p in paths:
        ds = open_dataset(p)
        proc = ds.manifest.get("process")
        if ds.manifest.get("kind") == "generated" and proc in SIGNAL_PROCESSES:
            raise ConfigError(f"{option} {p}: a generated {proc!r} dataset is signal; tune selects hyper-parameters "
                              "on background only and never sees signal: give background (e.g. QCD) datasets to "
                              "--data and --val")
        refs.append({"path": str(ds.path.resolve()), "process": proc,
                     "chunks_sha256": [c.get("sha256") for c in ds.chunks]})
    return refs


# -- the study ---------------------------------------------------------------------------------
def _import_optuna():
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError("darkshower tune needs Optuna: pip install 'darkshower[tune]' (or pip install "
                          "'optuna>=3.6')") from None
    return optuna


class _Report(Callback):
    """Reports each epoch's best-so-far selection value to the trial and stops the run when the pruner says
    so (the median rule)."""

    def __init__(self, trial):
        self.trial = trial
        self.best = math.inf
        self.pruned = False
        self.reported: set[int] = set()

    def _record(self, epoch: int, value: float) -> None:
        """Fold one epoch's selection value into the best so far and report that to the trial, once per step
        (optuna keeps the first report of a step)."""
        if math.isfinite(value):
            self.best = min(self.best, value)
        if math.isfinite(self.best) and epoch not in self.reported:
            self.trial.report(self.best, epoch)
            self.reported.add(epoch)

    def replay(self, run: Path) -> None:
        """Report the epochs an interrupted run already trained (its metrics.json), before it continues."""
        try:
            rows = json.loads((run / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        for row in sorted((r for r in rows if isinstance(r.get("epoch"), int)), key=lambda r: r["epoch"]):
            # metrics.json counts epochs from 1, the callbacks from 0
            self._record(row["epoch"] - 1, float(row.get("selection_value", math.nan)))

    def reset(self) -> None:
        """A continued run that had to start again: the best-so-far restarts; the steps already reported stay
        (optuna keeps the first report of a step; the same seed gives the same values there)."""
        self.best = math.inf

    def on_epoch_end(self, loop, epoch, row):
        self._record(epoch, float(row.get("selection_value", math.nan)))
        if math.isfinite(self.best) and self.trial.should_prune():
            self.pruned = True
            loop.stop(f"trial {self.trial.number} pruned at epoch {epoch + 1} (median rule)")


def selection_value(run) -> tuple[float, dict]:
    """The label-free selection value of a finished run's best epoch (what the trainer chose it by), and the
    run's run.json."""
    from darkshower.models.runs import read_run_json

    run = Path(run)
    info = read_run_json(run)
    try:
        hist = json.loads((run / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise RunError(f"{run}/metrics.json: missing or corrupt ({exc})") from None
    best = info.get("best_epoch")
    row = next((r for r in hist if r.get("epoch") == best), None)
    value = math.nan if row is None else float(row.get("selection_value", math.nan))
    return value, info


def _trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:04d}"


def _retry(study, trial_number: int, params: dict, run: Path, reason: str, trial=None) -> None:
    """An interrupted trial: failed in the study and its parameters queued again. A run that finished an epoch
    (it has a checkpoint) is kept and continues in the retry (``resume_from``); a half run without one is removed."""
    from optuna.trial import TrialState

    resumable = (run / "checkpoint.pt").is_file() and (run / "run.json").is_file()
    if trial is not None:
        trial.set_user_attr("error", reason)
    study.tell(trial_number, state=TrialState.FAIL)
    if not resumable:
        shutil.rmtree(run, ignore_errors=True)
    if params:
        study.enqueue_trial(params, user_attrs={"retry_of": trial_number,
                                                **({"resume_from": run.name} if resumable else {})})
    log.warning("trial %d was interrupted (%s): its parameters are tried again, %s", trial_number, reason,
                "continuing its run from the last checkpoint" if resumable else "from scratch (no epoch had finished)")


def _identity(method, specs, data_refs, val_refs, cfg: dict) -> dict:
    return {"method": method, "space": {k: s.model_dump(mode="json", exclude_defaults=True) for k, s in specs.items()},
            "data": data_refs, "val": val_refs, "epochs": cfg["epochs"], "seed": cfg["seed"],
            "base_config": {k: v for k, v in cfg.items() if k not in ("epochs", "seed")}}


def _check_identity(out: Path, saved: dict, now: dict) -> None:
    differ = [k for k in now if json.dumps(saved.get(k), sort_keys=True) != json.dumps(now[k], sort_keys=True)]
    if differ:
        what = {"method": "METHOD", "space": "--space / the method's default space", "data": "--data (paths or contents)",
                "val": "--val (paths or contents)", "epochs": "--epochs", "seed": "--seed",
                "base_config": "--config / --set"}
        raise RunError(f"{out}: this tuning study was started with another {', '.join(what[k] for k in differ)}; "
                       "rerun with the original arguments to continue it, or choose a new --out")


def _write_outputs(out: Path, study, specs: dict[str, ParamSpec], base: dict, method: str, selection: str,
                   n_trials: int) -> tuple[Path | None, Any]:
    """trials.csv (every trial) and best.yaml (the best complete trial); returns (best.yaml or None, best trial)."""
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    keys = list(specs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "state", selection, "default", *keys, "best_epoch", "epochs_done", "seconds", "run", "error"])
    for t in trials:
        vals = [json.dumps(specs[k].decode(t.params[k])) if k in t.params and specs[k].type == "categorical"
                and not isinstance(specs[k].decode(t.params[k]), _PRIMITIVE) else
                (specs[k].decode(t.params[k]) if k in t.params else "") for k in keys]
        value = t.value if t.state == TrialState.COMPLETE else (
            t.intermediate_values[max(t.intermediate_values)] if t.state == TrialState.PRUNED and t.intermediate_values
            else "")
        secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
        w.writerow([t.number, t.state.name.lower(), value, bool(t.user_attrs.get("default")), *vals,
                    t.user_attrs.get("best_epoch", ""), t.user_attrs.get("epochs_done", ""),
                    f"{secs:.1f}" if secs != "" else "", t.user_attrs.get("run", ""),
                    t.user_attrs.get("error", "interrupted" if t.state == TrialState.FAIL else "")])
    atomic_write_text(out / "trials.csv", buf.getvalue())
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None, None
    best = min(complete, key=lambda t: (t.value, t.number))
    cfg = _trial_config(base, specs, best.params)
    cfg = {"method": method, **{k: v for k, v in cfg.items() if k != "method"}}
    resolve_config(method, cfg)  # it trained, so it validates; a bug here must not write a bad file
    head = (f"# darkshower tune {method}: the best of {len(complete)} complete trial(s) (of {n_trials} asked): trial "
            f"{best.number}, {selection} {best.value:.6g} (label-free; no signal was used)\n"
            f"# train it with: darkshower train {method} --config {out / 'best.yaml'} --data DS... --out RUN\n")
    atomic_write_text(out / "best.yaml", head + yaml.safe_dump(cfg, sort_keys=False))
    return out / "best.yaml", best


def _trial_config(base: dict, specs: dict[str, ParamSpec], params: dict) -> dict:
    cfg = copy.deepcopy(base)
    for k, spec in specs.items():
        if k in params:
            set_nested(cfg, k, spec.decode(params[k]))
    return cfg


def _link_cache(out: Path, run: Path) -> None:
    """The trials share one representation cache (its files are keyed by representation, chunk and data cuts)."""
    (out / "cache").mkdir(exist_ok=True)
    try:
        os.symlink(os.path.join("..", "..", "cache"), run / "cache", target_is_directory=True)
    except OSError as exc:  # e.g. a file system without symbolic links: each trial builds its own cache
        log.debug("no shared cache for %s (%s)", run, exc)


def _fresh_run(out: Path, run: Path, cfg: dict) -> None:
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    if cfg.get("data", {}).get("cache", True):
        _link_cache(out, run)


def _take_over(out: Path, resume_from: str | None, run: Path) -> bool:
    """Move an interrupted trial's run (``trials/<resume_from>``, with a checkpoint) to ``run``; False when
    there is none to continue."""
    if not resume_from:
        return False
    old = out / "trials" / str(resume_from)
    if old == run or not (old / "checkpoint.pt").is_file():
        return False
    os.replace(old, run)  # same parent: its relative cache link stays valid
    return True


def _train_trial(train, method, data_paths, val_paths, run: Path, cfg: dict, resumed: bool, report, out: Path,
                 progress: bool, command: list[str]) -> tuple[float, dict]:
    """Train one trial (continuing its run when ``resumed``; a run that cannot be continued starts again) and
    return its selection value and run.json."""
    if resumed:
        if report is not None:
            report.replay(run)
            if report.trial.should_prune():  # e.g. killed after the pruner stopped it, before it was told
                report.pruned = True
                try:
                    return selection_value(run)
                except RunError:
                    return math.nan, {}
        try:
            train(method, data_paths, run, val=val_paths, config=cfg, resume=True, progress=progress, command=command,
                  callbacks=[report] if report is not None else None)
            return selection_value(run)
        except RunError as exc:  # e.g. a corrupt checkpoint: the trial's parameters are trained from scratch
            log.warning("%s: cannot continue the interrupted run (%s); training the trial from scratch", run, exc)
            _fresh_run(out, run, cfg)
            if report is not None:
                report.reset()
    train(method, data_paths, run, val=val_paths, config=cfg, progress=progress, command=command,
          callbacks=[report] if report is not None else None)
    return selection_value(run)


def tune(method: str, data, out, n_trials: int, val=None, config=None, epochs: int | None = None,
         seed: int | None = None, space=None, timeout: float | None = None, prune: bool = False,
         progress: bool = True, command: list[str] | None = None) -> TuneResult:
    """Tune ``method``'s training config on background ``data`` by its label-free selection metric; see the
    module docstring. ``config``: base training config (YAML path or dict) the trials start from; ``space``:
    search space (YAML path or dict; default the method's ``tune_space()``); ``timeout``: seconds after which
    no new trial starts (rerun to continue); ``prune``: stop unpromising trials early (median rule on the
    per-epoch selection value; pruned trials count as finished)."""
    from darkshower.config import load_yaml
    from darkshower.models import get_method
    from darkshower.progress import progress as progress_bar

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials={n_trials!r}: give the number of trials, an integer >= 1 (--trials N)")
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"timeout={timeout!r}: give seconds > 0 (--timeout S)")
    optuna = _import_optuna()
    cls = get_method(method)  # unknown method: ConfigError listing the methods
    if cls.supervised:
        raise ConfigError(f"{method} is a supervised reference (trained with signal labels); tune optimizes label-free "
                          "methods only, on background")
    if isinstance(config, (str, os.PathLike)):
        base = load_yaml(config)
    else:
        base = copy.deepcopy(dict(config or {}))
    if base.get("method") not in (None, method):
        raise ConfigError(f"config says method {base['method']!r} but {method!r} was asked for")
    base.pop("method", None)
    if epochs is not None:
        base["epochs"] = epochs
    if seed is not None:
        base["seed"] = seed
    tc = resolve_config(method, base)
    if tc.data.signal:
        raise ConfigError("data.signal is set in the config: tune never sees signal; remove data.signal")
    selection = tc.selection or cls.default_selection
    if selection == "last":
        raise ConfigError(f"selection 'last' has no label-free value to optimize; tune {method} with selection "
                          "val_loss" + (" or val_emd" if cls.energy_based else ""))
    mc = validate(cls.Config, tc.model, "train config: model")
    pre = getattr(mc, "pretrain_epochs", None)
    if selection == "val_emd" and isinstance(pre, int) and tc.epochs <= pre and not getattr(mc, "select_pretrain", False):
        raise ConfigError(f"{method}: --epochs {tc.epochs} ends within model.pretrain_epochs {pre}, where {selection} is "
                          f"not defined; give --epochs > {pre} (or a smaller model.pretrain_epochs)")
    base["epochs"], base["seed"] = tc.epochs, tc.seed
    where = f"--space {space}" if isinstance(space, (str, os.PathLike)) else "search space"
    raw_space = space if space is not None else cls.tune_space()
    if not raw_space and space is None:
        raise ConfigError(f"{method} has no default search space; give one with --space FILE (see docs/training.md)")
    specs = parse_space(raw_space, where)
    defaults = _check_space(method, base, specs, where)
    data_paths = dataset_paths(data)
    val_paths = None if val is None else dataset_paths(val)
    ident = _identity(method, specs, _data_refs(data_paths, "--data"),
                      _data_refs(val_paths, "--val") if val_paths else [], base)

    out = Path(out)
    db = out / "study.db"
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not db.exists():
        raise RunError(f"{out}: not empty and not a tuning study (no study.db); choose a new --out")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out / ".tune.lock", out, "this tuning study", error=RunError)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="minimize", load_if_exists=True)
        saved = study.user_attrs.get(IDENTITY_ATTR)
        if saved is None:
            study.set_user_attr(IDENTITY_ATTR, ident)
            default_params = {k: specs[k].external(v) for k, v in defaults.items() if specs[k].contains(v)}
            if len(default_params) == len(specs):  # the method's default config is the first trial
                study.enqueue_trial(default_params, user_attrs={"default": True})
        else:
            _check_identity(out, saved, ident)
        return _optimize(optuna, study, out, method, data_paths, val_paths, specs, base, selection, n_trials,
                         timeout, prune, progress, progress_bar, command)
    except BaseException:
        if created and not (out / "trials").exists():
            shutil.rmtree(out, ignore_errors=True)  # no trial was started: leave nothing behind
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
        if storage is not None:
            storage.engine.dispose()
        lock.unlink(missing_ok=True)


def _optimize(optuna, study, out: Path, method: str, data_paths, val_paths, specs: dict[str, ParamSpec], base: dict,
              selection: str, n_trials: int, timeout, prune: bool, progress: bool, progress_bar, command) -> TuneResult:
    from optuna.trial import TrialState

    from darkshower.train.trainer import train

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # a killed earlier invocation
        _retry(study, t.number, dict(t.params), _trial_dir(out, t.number), "the tuning process stopped during the trial")

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    t0 = time.monotonic()
    failed_now = 0
    stopped = ""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if prune else optuna.pruners.NopPruner()
    study.pruner = pruner
    best_file, best = _write_outputs(out, study, specs, base, method, selection, n_trials)
    with progress_bar(total=n_trials, desc=f"tune {method}", unit="trial", enabled=progress) as bar:
        bar.update(min(finished(), n_trials))
        while finished() < n_trials:
            if timeout is not None and time.monotonic() - t0 >= timeout:
                stopped = f"--timeout {timeout:g} s reached; rerun the same command to continue"
                break
            if failed_now > n_trials:
                raise TrainingError(f"{out}: {failed_now} trials failed in this run (see {out / 'trials.csv'}, column "
                                    "error); narrow the search space (e.g. a lower optimizer.lr range) and rerun")
            n_done = len(study.get_trials(deepcopy=False))
            # a fresh seeded sampler per trial: the suggestions depend only on the seed, the trials so far and
            # N, so a study continued after --timeout proposes what one run in one go would have
            study.sampler = optuna.samplers.TPESampler(seed=(int(base["seed"]) * 7919 + n_done) % 2**32,
                                                       n_startup_trials=max(1, min(10, n_trials // 3)))
            trial = study.ask()
            params = {k: spec.suggest(trial, k) for k, spec in specs.items()}
            run = _trial_dir(out, trial.number)
            shutil.rmtree(run, ignore_errors=True)
            trial.set_user_attr("run", str(run.relative_to(out)))
            cfg = _trial_config(base, specs, trial.params)
            report = _Report(trial) if prune else None
            # the retry of an interrupted trial continues its run (same parameters, config and seed)
            resumed = _take_over(out, trial.user_attrs.get("resume_from"), run)
            if not resumed:
                _fresh_run(out, run, cfg)
            log.info("tune %s trial %d: %s%s", method, trial.number, json.dumps(params),
                     f" (continuing trial {trial.user_attrs.get('retry_of')}'s run)" if resumed else "")
            try:
                value, info = _train_trial(train, method, data_paths, val_paths, run, cfg, resumed, report, out,
                                           progress, [*(command or ["darkshower.train.tune.tune"]),
                                                      f"(trial {trial.number})"])
            except TrainingError as exc:  # diverged: a result of these parameters, not a reason to stop
                trial.set_user_attr("error", str(exc))
                study.tell(trial, state=TrialState.FAIL)
                failed_now += 1
                log.warning("trial %d failed: %s", trial.number, exc)
                best_file, best = _write_outputs(out, study, specs, base, method, selection, n_trials)
                continue
            except (KeyboardInterrupt, SystemExit):
                _retry(study, trial.number, dict(trial.params), run, "interrupted", trial)
                _write_outputs(out, study, specs, base, method, selection, n_trials)
                raise
            except BaseException as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                study.tell(trial, state=TrialState.FAIL)
                shutil.rmtree(run, ignore_errors=True)
                _write_outputs(out, study, specs, base, method, selection, n_trials)
                if isinstance(exc, DarkshowerError):
                    raise type(exc)(f"tune {method} trial {trial.number} ({json.dumps(params)}): {exc}") from None
                raise
            trial.set_user_attr("best_epoch", info.get("best_epoch"))
            trial.set_user_attr("epochs_done", info.get("epochs_done"))
            if report is not None and report.pruned:
                study.tell(trial, state=TrialState.PRUNED)
            elif not math.isfinite(value):
                trial.set_user_attr("error", f"{selection} is not finite in any epoch ({value})")
                study.tell(trial, state=TrialState.FAIL)
                failed_now += 1
            else:
                study.tell(trial, value)
            best_file, best = _write_outputs(out, study, specs, base, method, selection, n_trials)
            bar.update(1)
            if best is not None:
                bar.set_postfix(best=f"{best.value:.4g}", trial=best.number)
    trials = study.get_trials(deepcopy=False)
    default = next((t for t in trials if t.user_attrs.get("default") and t.state == TrialState.COMPLETE), None)
    return TuneResult(
        out=out, method=method, selection=selection, best_config=best_file,
        best_value=None if best is None else float(best.value), best_trial=None if best is None else best.number,
        best_params={} if best is None else {k: specs[k].decode(v) for k, v in best.params.items()},
        default_value=None if default is None else float(default.value),
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), n_trials=n_trials, stopped=stopped)
