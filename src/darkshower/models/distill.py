"""``distill``: a small, fast student that regresses a trained teacher's anomaly score
(knowledge distillation for a trigger-sized model, as DistillNet arXiv:2311.12551).

The teacher is any trained jet-level run (``model.teacher_run``). Its scores are computed per
chunk from the raw events in :meth:`Student.extra_columns` (the trainer's hook) and aligned with
the student's samples by (event_id, jet_idx), so the student trains through the shared trainer
on background only. The regression target is a monotone transform of the teacher score
(``model.target``: log, quantile or standard), so the student's output ranks jets like the
teacher and can be used as an anomaly score directly (``darkshower score STUDENT_RUN ...``).

Students: ``mlp`` on jet observables (log1p + standardization of heavy-tailed columns, as
``ae-hlf``) or ``deepsets`` on constituent point clouds (per-particle MLP, masked mean pooling
plus ln(1 + multiplicity), MLP).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.ae import HLF_COLUMNS, HLF_LOG, HLFPreprocess
from darkshower.models.base import Method
from darkshower.models.layers import mlp

log = logging.getLogger(__name__)

#: observables of the MLP student: the ae-hlf set plus jet pT and the hard primary emissions
STUDENT_COLUMNS = [*HLF_COLUMNS, "pt", "lund_n_primary_lnkt_gt0"]
#: default point-cloud representation of the DeepSets student
DEEPSETS_REPRESENTATION = {"kind": "constituents", "n_constituents": 64, "standardize": True}


class DistillConfig(StrictModel):
    teacher_run: str = Field(..., description="run directory of the trained teacher (darkshower train ...)")
    teacher_model: Literal["best", "last"] = "best"
    student: Literal["mlp", "deepsets"] = Field("mlp", description="mlp on observables, deepsets on constituents")
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="mlp widths; deepsets: the rho MLP")
    phi: list[int] = Field(default_factory=lambda: [32, 32], description="deepsets: per-particle MLP widths")
    activation: Literal["relu", "elu", "gelu", "silu", "tanh", "leaky_relu"] = "relu"
    target: Literal["log", "quantile", "standard"] = Field(
        "log", description="monotone transform of the teacher score that is regressed: log (scores > 0), "
                           "quantile (Gaussianized rank on the training data) or standard")
    loss: Literal["mse", "huber"] = "mse"
    log_features: list[str] = Field(default_factory=lambda: list(HLF_LOG), description="mlp: log1p columns")
    clip: float = Field(8.0, gt=0, description="mlp: standardized inputs are clipped to +-clip")
    teacher_batch_size: int = Field(4096, ge=1)


# -- the teacher ------------------------------------------------------------------------------
_TEACHERS: dict = {}


def load_teacher(run, which: str = "best"):
    """(method, representation, run info, data config: its jet window) of a teacher run, with one clear error
    when the run is missing or unusable as a teacher. Cached per process."""
    from darkshower.models.runs import RunError, load_run

    path = Path(run).expanduser().resolve()
    key = (str(path), which)
    if key in _TEACHERS:
        return _TEACHERS[key]
    where = f"model.teacher_run {str(run)!r}"
    if not path.is_dir():
        raise ConfigError(f"{where}: no such run directory; pass the --out directory of a finished "
                          "`darkshower train` run")
    try:
        method, rep, cfg, info = load_run(path, which)
    except (RunError, ConfigError) as exc:
        raise ConfigError(f"{where} cannot be used as a teacher: {exc}") from None
    if info.get("level", "jet") != "jet":
        raise ConfigError(f"{where}: the teacher {info['method']!r} scores whole events; distill needs a "
                          "jet-level teacher (one score per jet)")
    if info.get("supervised"):
        raise ConfigError(f"{where}: the teacher {info['method']!r} is a supervised reference (trained with "
                          "signal labels); distill a background-only anomaly detector instead")
    _TEACHERS[key] = (method, rep, info, cfg.data)
    return _TEACHERS[key]


def teacher_scores(config: DistillConfig, events, ids: dict) -> np.ndarray:
    """Teacher score of each (event_id, jet_idx) in ``ids`` (NaN where the teacher has none). ``events`` and
    ``ids`` are the student's (its jet window applied, ``jet_idx`` ranked inside it); the teacher scores the jets
    inside its own window, as it was trained, so a jet outside it has no teacher score. (Applied to the student's
    jets: with a student window narrower than the teacher's, the teacher's leading jets are ranked among the
    student's jets, and its event-level inputs see those jets.)"""
    import pandas as pd

    from darkshower.models.inference import score_arrays
    from darkshower.represent.window import dataset_jet_idx, select_jets_indexed

    method, rep, _info, window = load_teacher(config.teacher_run, config.teacher_model)
    inside, index = select_jets_indexed(events, window)
    df = dataset_jet_idx(score_arrays(method, rep, inside, config.teacher_batch_size), inside, index)
    keys = pd.DataFrame({"event_id": np.asarray(ids["event_id"], np.int64),
                         "jet_idx": np.asarray(ids.get("jet_idx", np.zeros(len(ids["event_id"]))), np.int64)})
    merged = keys.merge(df, on=["event_id", "jet_idx"], how="left", validate="many_to_one")
    return merged["score"].to_numpy(np.float64)


# -- students ---------------------------------------------------------------------------------
class TargetTransform(nn.Module):
    """Teacher score -> regression target (monotone increasing), fitted on the training split."""

    # buffers (register_buffer in __init__), typed for mypy
    mean: torch.Tensor
    std: torch.Tensor
    quantiles: torch.Tensor

    def __init__(self, kind: str, n_quantiles: int = 1001):
        super().__init__()
        self.kind = kind
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("std", torch.ones((), dtype=torch.float64))
        self.register_buffer("quantiles", torch.zeros(n_quantiles if kind == "quantile" else 0, dtype=torch.float64))

    def _raw(self, s: torch.Tensor) -> torch.Tensor:
        s = s.double()
        if self.kind == "log":
            return torch.log(s.clamp(min=1e-30))
        if self.kind == "quantile":
            q = self.quantiles
            n = len(q)
            i = torch.searchsorted(q, s.contiguous()).clamp(1, n - 1)
            lo, hi = q[i - 1], q[i]
            frac = ((s - lo) / (hi - lo).clamp(min=1e-300)).clamp(0, 1)
            u = ((i - 1).double() + frac) / (n - 1)
            u = u.clamp(0.5 / (n - 1), 1 - 0.5 / (n - 1))
            return math.sqrt(2.0) * torch.erfinv(2 * u - 1)
        return s

    def fit(self, s: np.ndarray) -> None:
        s = np.asarray(s, np.float64)
        if self.kind == "log" and (s <= 0).any():
            raise ConfigError(f"distill: model.target 'log' needs positive teacher scores, but {int((s <= 0).sum())} "
                              f"of {len(s)} are <= 0 (min {s.min():.4g}); set model.target to 'quantile' or 'standard'")
        if self.kind == "quantile":
            self.quantiles.copy_(torch.from_numpy(np.quantile(s, np.linspace(0, 1, len(self.quantiles)))))
        t = self._raw(torch.from_numpy(s)).numpy()
        self.mean.fill_(float(t.mean()))
        self.std.fill_(float(t.std()) if t.std() > 1e-12 else 1.0)

    def forward(self, s):
        return ((self._raw(s) - self.mean) / self.std).float()


class DeepSets(nn.Module):
    """[B, N, F] + mask [B, N] -> [B]: rho(mean_i phi(x_i), ln(1 + n))."""

    def __init__(self, n_features: int, phi: list[int], rho: list[int], activation: str):
        super().__init__()
        self.phi = mlp([n_features, *phi], activation, final_activation=True)
        self.rho = mlp([phi[-1] + 1, *rho, 1], activation)

    def forward(self, x, mask):
        # phi on the real constituents only (padding is skipped, not masked): faster for batches
        b, n, f = x.shape
        idx = mask.reshape(-1).nonzero().squeeze(1)
        h = self.phi(x.reshape(b * n, f).index_select(0, idx))
        pooled = h.new_zeros(b, h.shape[1]).index_add_(0, torch.div(idx, n, rounding_mode="floor"), h)
        cnt = mask.sum(1, keepdim=True).to(h.dtype)
        return self.rho(torch.cat([pooled / cnt.clamp(min=1.0), torch.log1p(cnt)], dim=1)).squeeze(-1)


class Student(Method):
    name = "distill"
    Config = DistillConfig
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": STUDENT_COLUMNS, "include_event": False}
    paper = "DistillNet (arXiv:2311.12551): knowledge distillation of an anomaly score into a small model"

    @classmethod
    def check_representation(cls, rep) -> None:
        if rep.kind not in ("observables", "constituents"):
            raise ConfigError(f"{cls.name} needs representation.kind 'observables' (model.student mlp) or "
                              f"'constituents' (model.student deepsets), got {rep.kind!r}")

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        x = store["x"]
        spec = {"kind": rep.kind, "n_features": int(x.shape[-1])}
        if rep.kind == "observables":
            spec["names"] = list(rep.columns or [])
        else:
            spec["n_constituents"] = int(x.shape[1])
        return spec

    @classmethod
    def extra_column_names(cls, config) -> tuple[str, ...]:
        return ("teacher_score",)

    @classmethod
    def extra_columns(cls, config: DistillConfig, events, ids: dict) -> dict[str, np.ndarray]:
        return {"teacher_score": teacher_scores(config, events, ids)}

    def __init__(self, config: DistillConfig, spec: dict):
        super().__init__(config, spec)
        want = {"mlp": "observables", "deepsets": "constituents"}[config.student]
        if spec["kind"] != want:
            raise ConfigError(f"{self.name}: model.student {config.student!r} needs representation.kind {want!r}, "
                              f"got {spec['kind']!r} (darkshower distill --student sets both)")
        n = spec["n_features"]
        if config.student == "mlp":
            names = spec.get("names") or [f"f{i}" for i in range(n)]
            self.pre = HLFPreprocess(names, config.log_features, config.clip)
            self.net: nn.Module = mlp([n, *config.hidden, 1], config.activation)
        else:
            self.net = DeepSets(n, config.phi, config.hidden, config.activation)
        self.target = TargetTransform(config.target)

    def prepare(self, store) -> None:
        s = np.asarray(store["teacher_score"], np.float64)
        ok = np.isfinite(s)
        if not ok.any():
            raise ConfigError(f"{self.name}: the teacher {self.config.teacher_run!r} gave no score for any training "
                              "jet (are its jets the same as the student's? check its representation.max_jets)")
        if not ok.all():
            log.warning("distill: %d of %d training jets have no teacher score; they are ignored", (~ok).sum(), len(s))
        self.target.fit(s[ok])
        if self.config.student == "mlp":
            self.pre.fit(store["x"])

    def predict(self, batch):
        if self.config.student == "mlp":
            return self.net(self.pre(batch["x"])).squeeze(-1)
        return self.net(batch["x"].float(), batch["mask"])

    def _loss(self, batch):
        s = batch["teacher_score"]
        ok = torch.isfinite(s)
        pred = self.predict(batch)[ok]
        t = self.target(s[ok])
        if self.config.loss == "huber":
            return nn.functional.huber_loss(pred, t), pred, t
        return ((pred - t) ** 2).mean(), pred, t

    def loss(self, batch, ctx):
        return self._loss(batch)[0], {}

    def val_metrics(self, batch):
        loss, p, t = self._loss(batch)
        pc, tc = p - p.mean(), t - t.mean()
        corr = (pc * tc).sum() / (pc.norm() * tc.norm()).clamp(min=1e-12)
        return {"loss": loss, "corr": corr}

    def score(self, batch):
        return self.predict(batch)

    def export(self):
        if self.config.student == "mlp":
            return _ScoreMLP(self), (torch.zeros(4, self.spec["n_features"]),)
        n = self.spec.get("n_constituents", 16)
        mask = torch.zeros(2, n, dtype=torch.bool)
        mask[0, :3] = True
        mask[1, :5] = True
        return _ScoreDeepSets(self), (torch.zeros(2, n, self.spec["n_features"]), mask)


class _ScoreMLP(nn.Module):
    def __init__(self, method: Student):
        super().__init__()
        self.pre, self.net = method.pre, method.net

    def forward(self, x):
        return self.net(self.pre(x)).squeeze(-1)


class _ScoreDeepSets(nn.Module):
    def __init__(self, method: Student):
        super().__init__()
        self.net = method.net

    def forward(self, x, mask):
        return self.net(x.float(), mask)
