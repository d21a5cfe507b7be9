"""Training of the DistillNet networks (docs/pileup.md "DistillNet"):

- :func:`train_pu_gnn` — ``darkshower train pu-gnn --data DS [--val DS] --out RUN [--epochs N] [--seed S]
  [--resume]``: the event-level graph network (:class:`darkshower.models.pileup_gnn.PileupGNN`) on all
  particle-flow candidates of each crossing (the datasets' ``particles``), target the truth ``from_pv``;
- :func:`distill_particles` — ``darkshower distill PU_GNN_RUN --student per-particle --data DS --out RUN``: the
  per-particle MLP trained on the teacher's sigmoid outputs; writes ``RUN/student.npz`` for
  ``generate --pu-mitigation distillnet:RUN``.

Both write run directories in the format of :mod:`darkshower.models.runs` (run.json with format, method,
data checksums, versions, seeds; config.yaml with the resolved config; metrics.csv/.json one row per epoch;
checkpoint.pt, model_best.pt, model_last.pt written atomically); ``resume=True`` continues from the last
checkpoint (only ``epochs`` and ``threads`` may change). The best model is the one with the lowest
validation loss. Data: the events of the datasets are read once into flat arrays; the validation set is
``val`` or a random ``val_fraction`` of the events (seeded).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkshower.config import validate
from darkshower.data.dataset import atomic_write_text
from darkshower.errors import ConfigError, DatasetError, RunError, TrainingError
from darkshower.models.pileup_gnn import (
    STUDENT_METHOD,
    TEACHER_FEATURES,
    TEACHER_METHOD,
    ParticleStudent,
    PileupGNN,
    PuGnnConfig,
    StudentConfig,
    class_weights,
    knn_graph,
    load_pu_run,
    loss_weights,
    student_arrays,
    teacher_features,
)
from darkshower.models.runs import (
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    atomic_torch_save,
    read_run_json,
    torch_load,
    versions,
)
from darkshower.progress import progress
from darkshower.simulate.config import PileupConfig
from darkshower.simulate.pileup import STUDENT_FILE, feature_names, library_checksum, particle_features

log = logging.getLogger(__name__)

__all__ = ["train_pu_gnn", "distill_particles", "load_particles", "ParticleData", "teacher_scores"]

RESUMABLE = ("epochs", "threads")
_HINT = ("generate it with pileup and stored particles: `darkshower generate PROCESS ... --pileup MU "
         "--pileup-library LIB --set store_particles=true` (mitigation none, puppi or distillnet)")


# ---- data -----------------------------------------------------------------------------------------
@dataclass
class ParticleData:
    """All candidates of a set of events, flat (sorted by event), with per-event offsets."""

    x: np.ndarray  # [n, F] float32 inputs (teacher features, or student features)
    eta: np.ndarray  # float32
    phi: np.ndarray  # float32
    pt: np.ndarray  # float32
    charge: np.ndarray  # int8
    y: np.ndarray  # float32 truth from_pv
    counts: np.ndarray  # int64 candidates per event
    event_keys: list[tuple[int, int]]  # (dataset index, event number)
    extra: dict  # optional per-candidate arrays (e.g. the teacher features of a student's data)

    @property
    def offsets(self) -> np.ndarray:
        o = np.zeros(len(self.counts) + 1, np.int64)
        np.cumsum(self.counts, out=o[1:])
        return o

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The candidate rows of the events ``idx`` (in that order), without a loop over events."""
        idx = np.asarray(idx, np.int64)
        cnt = self.counts[idx]
        first = np.zeros(len(idx), np.int64)
        np.cumsum(cnt[:-1], out=first[1:])
        return np.repeat(self.offsets[idx] - first, cnt) + np.arange(int(cnt.sum()), dtype=np.int64)

    def events(self, idx: np.ndarray) -> ParticleData:
        """The subset of events ``idx`` (in that order)."""
        sel = self.rows(idx)
        return ParticleData(self.x[sel], self.eta[sel], self.phi[sel], self.pt[sel], self.charge[sel], self.y[sel],
                            self.counts[idx], [self.event_keys[i] for i in idx],
                            {k: v[sel] for k, v in self.extra.items()})


def _dataset_pileup(path: Path) -> tuple[PileupConfig, bool, dict]:
    from darkshower.data.dataset import open_dataset

    ds = open_dataset(path)
    m = ds.manifest
    pcfg = (m.get("config") or {}).get("pileup")
    if not m.get("pileup") or not pcfg:
        raise DatasetError(f"{path}: made without pileup (no `pileup` section in its manifest); {_HINT}")
    cfg = validate(PileupConfig, pcfg, f"{path}/manifest.json: config.pileup")
    if cfg.mitigation == "chs":
        raise DatasetError(f"{path}: generated with --pu-mitigation chs, which drops the charged pileup from the "
                           f"stored particles; {_HINT}")
    if not (m.get("config") or {}).get("store_particles"):
        raise DatasetError(f"{path}: has no stored particles (store_particles = false); {_HINT}")
    particle_level = (m.get("config") or {}).get("detector", {}).get("name") == "none"
    return cfg, particle_level, m


def load_particles(paths, max_events: int | None = None, student_radii: tuple[float, ...] | None = None,
                   show_progress: bool | None = None) -> ParticleData:
    """Read the stored particles of the datasets ``paths`` into flat arrays with the teacher's inputs
    (``student_radii`` given: the student's inputs in ``x``, the teacher's in ``extra['xt']``)."""
    import awkward as ak

    from darkshower.data.dataset import open_dataset

    need = ("pt", "eta", "phi", "e", "charge", "type", "dz", "from_pv")
    parts: dict[str, list] = {k: [] for k in ("x", "xt", "eta", "phi", "pt", "charge", "y")}
    counts, keys = [], []
    left = max_events
    paths = [Path(p) for p in paths]
    for di, path in enumerate(paths):
        cfg, particle_level, _ = _dataset_pileup(path)
        ds = open_dataset(path)
        with progress(total=len(ds.chunks), desc=f"read {path.name}", unit="chunk", enabled=show_progress) as bar:
            for arr in ds.iter_chunks(columns=["particles", "event"]):
                if left is not None and left <= 0:
                    break
                if left is not None:
                    arr = arr[:left]
                    left -= len(arr)
                p = arr.particles
                missing = [k for k in need if k not in ak.fields(p)]
                if missing:
                    raise DatasetError(f"{path}: particles miss the fields {missing}; {_HINT}")
                cnt = ak.to_numpy(ak.num(p, axis=1)).astype(np.int64)
                flat = ak.flatten(p)
                c = {k: ak.to_numpy(flat[k]) for k in need}
                c["ev"] = np.repeat(np.arange(len(cnt)), cnt)
                xt = teacher_features(c, cfg, particle_level)
                if student_radii is not None:
                    parts["x"].append(particle_features(c, cfg, None, None, particle_level, student_radii))
                    parts["xt"].append(xt)
                else:
                    parts["x"].append(xt)
                parts["eta"].append(c["eta"].astype(np.float32))
                parts["phi"].append(c["phi"].astype(np.float32))
                parts["pt"].append(c["pt"].astype(np.float32))
                parts["charge"].append(c["charge"].astype(np.int8))
                parts["y"].append(c["from_pv"].astype(np.float32))
                counts.append(cnt)
                keys += [(di, int(e)) for e in ak.to_numpy(arr.event)]
                bar.update(1)
    if not counts or sum(int(c.sum()) for c in counts) == 0:
        raise DatasetError(f"{', '.join(map(str, paths))}: no events with particles")
    cat = {k: np.concatenate(v) for k, v in parts.items() if v}
    return ParticleData(cat["x"], cat["eta"], cat["phi"], cat["pt"], cat["charge"], cat["y"], np.concatenate(counts),
                        keys, {"xt": cat["xt"]} if "xt" in cat else {})


def _split(data: ParticleData, val_paths, val_fraction: float, seed: int, load_val) -> tuple[ParticleData, ParticleData]:
    if val_paths:
        return data, load_val(val_paths)
    n = len(data.counts)
    if n < 2:
        raise DatasetError(f"--data holds {n} event(s); at least 2 are needed to split off validation, or pass --val")
    rng = np.random.default_rng([seed, 7])
    perm = rng.permutation(n)
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    tr, va = data.events(np.sort(perm[n_val:])), data.events(np.sort(perm[:n_val]))
    for name, d in (("training", tr), ("validation", va)):
        if not len(d.pt):  # (a NaN validation loss would never select a best model: no model_best.pt)
            raise DatasetError(f"--data: the {name} events of the split hold no particles; pass --val, change "
                               "val_fraction or use more events")
    return tr, va


# ---- run directory --------------------------------------------------------------------------------
def _write_metrics(run: Path, history: list[dict]) -> None:
    atomic_write_text(run / "metrics.json", json.dumps(history, indent=1) + "\n")
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    atomic_write_text(run / "metrics.csv", buf.getvalue())


def _data_entries(paths) -> list[dict]:
    return [{"path": str(Path(p).resolve()), "content_sha256": library_checksum(p)} for p in paths]


def _open_run(out: Path, method: str, cfg_cls, cfg_data: dict, resume: bool, epochs: int | None,
              threads: int | None, data, val):
    """(config, run.json dict, checkpoint or None) for a fresh or resumed run."""
    import yaml

    out = Path(out)
    if resume:
        if not (out / "run.json").exists():
            raise RunError(f"{out}: nothing to resume (no run.json); start the run without --resume")
        info = read_run_json(out)
        if info.get("method") != method:
            raise RunError(f"{out}: a {info.get('method')!r} run, cannot resume it as {method}")
        saved = yaml.safe_load((out / "config.yaml").read_text())
        given = {k: v for k, v in cfg_data.items() if k not in RESUMABLE and v is not None}
        changed = sorted(k for k, v in given.items() if k in saved and saved[k] != v and k != "method")
        if changed:
            raise ConfigError(f"{out}: --resume may change only {', '.join(RESUMABLE)}; differs: {changed}")
        if [e["path"] for e in info["data"]] != [str(Path(p).resolve()) for p in data]:
            raise ConfigError(f"{out}: --resume with other --data than the run's {[e['path'] for e in info['data']]}")
        for e in info["data"]:
            if "content_sha256" in e and Path(e["path"]).exists() and library_checksum(e["path"]) != e["content_sha256"]:
                raise DatasetError(f"{e['path']}: changed since the run started (content checksum); use a new --out")
        if epochs is not None:
            saved["epochs"] = epochs
        if threads is not None:
            saved["threads"] = threads
        cfg = validate(cfg_cls, saved, f"{out}/config.yaml")
        ck = torch_load(out / "checkpoint.pt", "checkpoint") if (out / "checkpoint.pt").exists() else None
        return cfg, info, ck
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: exists and is not empty; use --resume to continue it, or a new --out")
    data_ = dict(cfg_data)
    if epochs is not None:
        data_["epochs"] = epochs
    if threads is not None:
        data_["threads"] = threads
    cfg = validate(cfg_cls, {k: v for k, v in data_.items() if v is not None}, f"{method} config")
    return cfg, None, None


def _start_run(out: Path, method: str, cfg, data, val, command, spec: dict) -> dict:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    info = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "method": method, "status": "running",
            "data": _data_entries(data), "val": _data_entries(val) if val else None, "versions": versions(),
            "seeds": {"run": cfg.seed}, "command": command, "spec": spec,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "epochs_done": 0,
            "best_epoch": None, "selection": "val_loss"}
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    atomic_write_text(out / "run.json", json.dumps(info, indent=1) + "\n")
    return info


def _device(cfg):
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda asked for but torch sees no GPU; use device=auto or cpu")
    return torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = y > 0.5
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


class _Loop:
    """Epochs with metrics, best/last/checkpoint files and resume, shared by teacher and student."""

    def __init__(self, out: Path, info: dict, cfg, model, opt, checkpoint, show_progress):
        self.out, self.info, self.cfg, self.model, self.opt = out, info, cfg, model, opt
        self.history: list[dict] = []
        self.best = float("inf")
        self.start = 0
        self.show = show_progress
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            opt.load_state_dict(checkpoint["optimizer"])
            self.history = checkpoint["history"]
            self.best = checkpoint["best"]
            self.start = checkpoint["epoch"]

    def run(self, train_epoch, validate_fn, on_best=None) -> None:
        import torch

        cfg = self.cfg
        with progress(total=cfg.epochs, desc=f"train {self.info['method']}", unit="epoch", enabled=self.show) as bar:
            bar.update(self.start)
            for epoch in range(self.start, cfg.epochs):
                t0 = time.perf_counter()
                self.model.train()
                tr = train_epoch(epoch)
                if not np.isfinite(tr):
                    raise TrainingError(f"{self.out}: non-finite training loss at epoch {epoch + 1}; the last good "
                                        "checkpoint is kept (lower lr, or check the data)")
                self.model.eval()
                with torch.no_grad():
                    val = validate_fn()
                row = {"epoch": epoch + 1, "train_loss": tr, **val, "seconds": time.perf_counter() - t0}
                self.history.append(row)
                state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                if val["val_loss"] < self.best:
                    self.best = val["val_loss"]
                    atomic_torch_save({"model": state, "epoch": epoch + 1}, self.out / "model_best.pt")
                    self.info["best_epoch"] = epoch + 1
                    if on_best is not None:
                        on_best()
                atomic_torch_save({"model": state, "epoch": epoch + 1}, self.out / "model_last.pt")
                _write_metrics(self.out, self.history)
                self.info["epochs_done"] = epoch + 1
                atomic_write_text(self.out / "run.json", json.dumps(self.info, indent=1) + "\n")
                atomic_torch_save({"model": state, "optimizer": self.opt.state_dict(), "history": self.history,
                                   "best": self.best, "epoch": epoch + 1}, self.out / "checkpoint.pt")
                bar.update(1)
                bar.set_postfix(loss=f"{tr:.4g}", val=f"{val['val_loss']:.4g}")
        self.info["status"] = "finished"
        atomic_write_text(self.out / "run.json", json.dumps(self.info, indent=1) + "\n")


def _set_threads(cfg) -> None:
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)


# ---- teacher --------------------------------------------------------------------------------------
def _batch_tensors(d: ParticleData, idx: np.ndarray, k: int, device, x: np.ndarray | None = None):
    """(x, coords, nbr, y, pt, charge) tensors of the events ``idx`` of ``d`` (graph built here)."""
    import torch

    sel = d.rows(idx)
    ev = np.repeat(np.arange(len(idx)), d.counts[idx])
    nbr = knn_graph(d.eta[sel], d.phi[sel], ev, k)
    xs = (d.x if x is None else x)[sel]
    t = torch.from_numpy
    return (t(xs).to(device), t(np.column_stack([d.eta[sel], d.phi[sel]])).to(device), t(nbr).to(device), sel)


def teacher_scores(model, d: ParticleData, k: int, device, batch_events: int = 4, x: np.ndarray | None = None,
                   show_progress: bool | None = False) -> np.ndarray:
    """The teacher's sigmoid output for every candidate of ``d`` (x: the teacher inputs, default d.x)."""
    import torch

    out = np.zeros(len(d.pt), np.float32)
    n = len(d.counts)
    with torch.no_grad(), progress(total=n, desc="teacher", unit="event", enabled=show_progress) as bar:
        for b in range(0, n, batch_events):
            idx = np.arange(b, min(n, b + batch_events))
            xb, cb, nb, sel = _batch_tensors(d, idx, k, device, x)
            out[sel] = torch.sigmoid(model(xb, cb, nb)).cpu().numpy()
            bar.update(len(idx))
    return out


def _bce(logit, target, weight):
    import torch

    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp_min(1e-12)


def train_pu_gnn(data, out, val=None, config: dict | None = None, epochs: int | None = None,
                 seed: int | None = None, resume: bool = False, progress_: bool | None = None,
                 command: list[str] | None = None) -> Path:
    """Train the event-level pileup GNN (see the module docstring); returns the run directory."""
    import torch

    out = Path(out)
    data = [str(Path(p).resolve()) for p in ([data] if isinstance(data, (str, Path)) else data)]
    val = [str(Path(p).resolve()) for p in val] if val else None
    cfg_data = dict(config or {})
    if cfg_data.get("method") not in (None, TEACHER_METHOD):
        raise ConfigError(f"config says method {cfg_data['method']!r}; this is {TEACHER_METHOD}")
    cfg_data["method"] = TEACHER_METHOD
    if seed is not None:
        cfg_data["seed"] = seed
    cfg, info, ck = _open_run(out, TEACHER_METHOD, PuGnnConfig, cfg_data, resume, epochs,
                              cfg_data.get("threads"), data, val)
    _set_threads(cfg)
    full = load_particles(data, cfg.max_events, show_progress=progress_)
    tr, va = _split(full, val, cfg.val_fraction, cfg.seed, lambda p: load_particles(p, show_progress=progress_))
    if info is None:
        info = _start_run(out, TEACHER_METHOD, cfg, data, val, command,
                          {"kind": TEACHER_METHOD, "features": TEACHER_FEATURES, "k": cfg.model.k,
                           "train_events": len(tr.counts), "val_events": len(va.counts)})
    elif command:
        info.setdefault("resumed_commands", []).append(command)
    device = _device(cfg)
    torch.manual_seed(cfg.seed)
    model = PileupGNN(tr.x.shape[1], cfg.model).to(device)
    info["spec"]["parameters"] = int(sum(p.numel() for p in model.parameters()))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    c0, c1 = class_weights(tr.y, cfg.loss)
    w_tr = loss_weights(tr.y, tr.pt, cfg.loss, c0, c1)
    w_va = loss_weights(va.y, va.pt, cfg.loss, c0, c1)
    info["spec"]["class_weights"] = [c0, c1]
    loop = _Loop(out, info, cfg, model, opt, ck, progress_)
    k = cfg.model.k

    def train_epoch(epoch: int) -> float:
        order = np.random.default_rng([cfg.seed, epoch, 1]).permutation(len(tr.counts))
        tot, wsum = 0.0, 0.0
        with progress(total=len(order), desc=f"epoch {epoch + 1}", unit="event", enabled=progress_) as bar:
            for b in range(0, len(order), cfg.batch_events):
                idx = order[b:b + cfg.batch_events]
                xb, cb, nb, sel = _batch_tensors(tr, idx, k, device)
                yb = torch.from_numpy(tr.y[sel]).to(device)
                wb = torch.from_numpy(w_tr[sel]).to(device)
                loss = _bce(model(xb, cb, nb), yb, wb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ws = float(wb.sum())
                tot += float(loss.detach()) * ws
                wsum += ws
                bar.update(len(idx))
        return tot / max(wsum, 1e-12)

    def validate_fn() -> dict:
        s = teacher_scores(model, va, k, device, cfg.batch_events)
        eps = 1e-7
        sc = np.clip(s.astype(np.float64), eps, 1 - eps)
        bce = -(va.y * np.log(sc) + (1 - va.y) * np.log(1 - sc))
        neu = va.charge == 0
        return {"val_loss": float(np.sum(w_va * bce) / np.sum(w_va)), "val_auc": _auc(va.y, s),
                "val_auc_neutral": _auc(va.y[neu], s[neu])}

    loop.run(train_epoch, validate_fn)
    return out


# ---- student --------------------------------------------------------------------------------------
def _file_sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def check_teacher(run) -> Path:
    """The teacher run directory of a per-particle distillation (a finished or stopped pu-gnn run)."""
    run = Path(run).expanduser().resolve()
    info = read_run_json(run)
    if info.get("method") != TEACHER_METHOD:
        raise ConfigError(f"--student per-particle needs a pu-gnn teacher (`darkshower train pu-gnn`); {run} is a "
                          f"{info.get('method')!r} run (distill it with --student mlp or deepsets)")
    if not (run / "model_best.pt").exists() and not (run / "model_last.pt").exists():
        raise RunError(f"{run}: the pu-gnn run has no model yet (no model_best.pt); train it first")
    return run


def distill_particles(teacher, data, out, val=None, config: dict | None = None, epochs: int | None = None,
                      seed: int | None = None, resume: bool = False, progress_: bool | None = None,
                      command: list[str] | None = None) -> Path:
    """Distill the pu-gnn ``teacher`` run into the per-particle student; returns the run directory."""
    import torch

    out = Path(out)
    teacher = check_teacher(teacher)
    data = [str(Path(p).resolve()) for p in ([data] if isinstance(data, (str, Path)) else data)]
    val = [str(Path(p).resolve()) for p in val] if val else None
    tfile = teacher / "model_best.pt" if (teacher / "model_best.pt").exists() else teacher / "model_last.pt"
    cfg_data = dict(config or {})
    if cfg_data.get("method") not in (None, STUDENT_METHOD):
        raise ConfigError(f"config says method {cfg_data['method']!r}; a per-particle student has {STUDENT_METHOD}")
    cfg_data.update(method=STUDENT_METHOD, teacher_run=str(teacher))
    if seed is not None:
        cfg_data["seed"] = seed
    if not resume:
        cfg_data["teacher_sha256"] = _file_sha(tfile)
    cfg, info, ck = _open_run(out, STUDENT_METHOD, StudentConfig, cfg_data, resume, epochs,
                              cfg_data.get("threads"), data, val)
    if resume and cfg.teacher_sha256 and _file_sha(tfile) != cfg.teacher_sha256:
        raise RunError(f"{out}: its teacher {tfile} changed since distillation started; use a new --out")
    _set_threads(cfg)
    device = _device(cfg)
    _, tmodel, tcfg, _ = load_pu_run(teacher, "best")
    tmodel = tmodel.to(device)
    radii = tuple(cfg.radii)
    full = load_particles(data, cfg.max_events, student_radii=radii, show_progress=progress_)
    tr, va = _split(full, val, cfg.val_fraction, cfg.seed,
                    lambda p: load_particles(p, student_radii=radii, show_progress=progress_))
    for d in (tr, va):  # soft labels: the teacher's sigmoid output
        d.extra["soft"] = teacher_scores(tmodel, d, tcfg.model.k, device, 4, x=d.extra["xt"], show_progress=progress_)
    names = feature_names(radii)
    if info is None:
        info = _start_run(out, STUDENT_METHOD, cfg, data, val, command,
                          {"kind": STUDENT_METHOD, "features": names, "teacher_run": str(teacher),
                           "teacher_sha256": cfg.teacher_sha256, "train_particles": int(len(tr.pt)),
                           "val_particles": int(len(va.pt))})
    elif command:
        info.setdefault("resumed_commands", []).append(command)
    torch.manual_seed(cfg.seed)
    model = ParticleStudent(len(names), cfg.hidden).to(device)
    mean = tr.x.mean(axis=0, dtype=np.float64)
    std = tr.x.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-6, std, 1.0)
    model.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    model.std.copy_(torch.from_numpy(std.astype(np.float32)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    s_tr, s_va = tr.extra["soft"], va.extra["soft"]
    c0, c1 = class_weights(s_tr, cfg.loss)
    w_tr = loss_weights(s_tr, tr.pt, cfg.loss, c0, c1)
    w_va = loss_weights(s_va, va.pt, cfg.loss, c0, c1)
    info["spec"]["class_weights"] = [c0, c1]
    loop = _Loop(out, info, cfg, model, opt, ck, progress_)
    xt = torch.from_numpy(tr.x)
    st, wt = torch.from_numpy(s_tr), torch.from_numpy(w_tr)

    def train_epoch(epoch: int) -> float:
        g = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, epoch, 2]).integers(2**62)))
        order = torch.randperm(len(xt), generator=g)
        tot, wsum = 0.0, 0.0
        for b in range(0, len(order), cfg.batch_size):
            i = order[b:b + cfg.batch_size]
            xb, sb, wb = xt[i].to(device), st[i].to(device), wt[i].to(device)
            loss = _bce(model(xb), sb, wb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ws = float(wb.sum())
            tot += float(loss.detach()) * ws
            wsum += ws
        return tot / max(wsum, 1e-12)

    def predict(x: np.ndarray) -> np.ndarray:
        out_ = np.zeros(len(x), np.float32)
        for b in range(0, len(x), 65536):
            out_[b:b + 65536] = model.prob(torch.from_numpy(x[b:b + 65536]).to(device)).cpu().numpy()
        return out_

    def validate_fn() -> dict:
        p = predict(va.x)
        eps = 1e-7
        pc = np.clip(p.astype(np.float64), eps, 1 - eps)
        bce = -(s_va * np.log(pc) + (1 - s_va) * np.log(1 - pc))
        neu = va.charge == 0
        corr = float(np.corrcoef(p, s_va)[0, 1]) if np.std(p) > 0 and np.std(s_va) > 0 else float("nan")
        return {"val_loss": float(np.sum(w_va * bce) / np.sum(w_va)), "val_corr": corr,
                "val_auc": _auc(va.y, p), "val_auc_neutral": _auc(va.y[neu], p[neu]),
                "teacher_val_auc": _auc(va.y, s_va), "teacher_val_auc_neutral": _auc(va.y[neu], s_va[neu])}

    def write_student() -> None:
        arrays = student_arrays(model, radii)
        tmp = out / f".{STUDENT_FILE}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, out / STUDENT_FILE)

    loop.run(train_epoch, validate_fn, on_best=write_student)
    return out
