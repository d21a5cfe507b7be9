"""Density estimators on jet observables: the score is the negative log-density of background.

- ``gmm`` — the density baseline of issue #12: a Gaussian mixture (scikit-learn) on the
  standardized logarithms of (mass, n_constituents, pt) of the jet, fitted once through the
  trainer's ``fit_offline`` hook. The number of components is chosen without labels among
  ``model.components`` (default 1..8) by the mean log-likelihood of the *validation background*
  (or by the training BIC). Score = −log density of the standardized log features. The mixture is
  held as torch buffers, so the state dict is the whole model and the score exports to ONNX.
- ``flow`` — a normalizing flow (zuko: neural spline flow or masked autoregressive flow) on jet
  observables, trained by gradient steps with the shared trainer (loss = negative log-likelihood).
  Unconditional, or conditioned on ``model.condition`` columns (e.g. ``[pt]`` or ``[pt, mass]``):
  the conditional model maps the observables of a jet with pT = c to a standard normal for every
  c, so the base-space score ``0.5·|u|²`` (``model.score: base``, the conditional default) has the
  same background distribution at every pT — decorrelated by construction, as far as the flow fits.
  zuko is optional: ``pip install -e ".[flow]"``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.ae import HLF_COLUMNS, HLF_LOG, HLFPreprocess, feature_base, observables_spec
from darkshower.models.base import Method, _ScoreX

log = logging.getLogger(__name__)

#: the density baseline's features: the jet's mass, constituent multiplicity and transverse momentum
DENSITY_COLUMNS = ["mass", "n_constituents", "pt"]
#: integer-valued observables (dequantized by the flow: uniform noise in [0, 1) while training)
INTEGER_COLUMNS = ["n_constituents", "n_charged", "n_softdrop", "lund_n_primary", "lund_n_primary_lnkt_gt0",
                   "n_jets", "n_event_constituents", "n_event_particles", "present"]
#: log N(0; 0, 1) = -ln(2 pi) / 2: the density of a missing jet's column at its mode (flow, missing_jets: noise)
_LOG_NORMAL_MODE = -0.5 * math.log(2 * math.pi)
#: log-weight of unused (padding) mixture components: exp(-1e4) is exactly 0 in float64
_UNUSED = -1.0e4


def _present_columns(names: list[str], pairs: bool = False) -> np.ndarray:
    """Per column, the index of the ``j{i}_present`` flag of its jet slot (event level: the slot's ``j{i}_*``
    columns and ``dphi_j{i}``, 0 for a missing jet, and with ``pairs`` ``mjj`` for slot 1;
    represent.config.jet_slot), else -1 (the flag itself, event columns, slots without a flag column such as
    slot 0)."""
    from darkshower.represent.config import jet_slot

    idx = {n: i for i, n in enumerate(names)}
    out = np.full(len(names), -1, np.int64)
    for j, n in enumerate(names):
        slot = jet_slot(n, pairs)
        if slot is not None and (p := idx.get(f"j{slot}_present")) is not None:
            out[j] = p
    return out


def _finite_rows(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x).all(axis=1)


# -- gmm ----------------------------------------------------------------------------------------
class GMMConfig(StrictModel):
    components: list[int] = Field(default_factory=lambda: list(range(1, 9)),
                                  description="candidate numbers of mixture components; one is chosen by `select`")
    select: Literal["val_loglik", "bic"] = Field(
        "val_loglik", description="label-free choice of the number of components: highest mean log-likelihood of "
                                  "the validation background, or lowest BIC on the training data")
    covariance: Literal["full", "diag"] = Field("full", description="covariance type of each component")
    log_features: list[str] = Field(default_factory=lambda: list(HLF_LOG),
                                    description="columns taken as log(max(x, log_floor)) before standardization")
    log_floor: float = Field(1.0, gt=0, description="values below it are raised to it before the log (GeV, counts)")
    reg_covar: float = Field(1e-6, gt=0, description="added to the covariance diagonals (standardized units)")
    max_iter: int = Field(300, ge=1, description="EM iterations per fit")
    n_init: int = Field(2, ge=1, description="EM restarts per candidate (best kept)")
    tol: float = Field(1e-4, gt=0)
    random_state: int = 0

    @field_validator("components")
    @classmethod
    def _components(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one candidate number of components, e.g. [1, 2, 3, 4]")
        if any(k < 1 or k > 64 for k in v):
            raise ValueError(f"numbers of components must be in 1..64, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate numbers of components in {v}")
        return sorted(v)


class LogStandardize(torch.nn.Module):
    """log(max(x, floor)) on the listed columns, then (x - mean) / std fitted on training data (float64)."""

    is_log: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, names: list[str], log_features: list[str], floor: float):
        super().__init__()
        self.register_buffer("is_log", torch.tensor([feature_base(n) in log_features for n in names]))
        self.register_buffer("mean", torch.zeros(len(names), dtype=torch.float64))
        self.register_buffer("std", torch.ones(len(names), dtype=torch.float64))
        self.floor = float(floor)

    def logs_np(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, np.float64)
        lg = self.is_log.numpy()
        x[:, lg] = np.log(np.maximum(x[:, lg], self.floor))
        return x

    def fit(self, x: np.ndarray) -> None:
        t = self.logs_np(x)
        t = t[_finite_rows(t)]
        if len(t) == 0:
            raise ConfigError("the training data have no jet with finite observables")
        sd = t.std(0)
        self.mean.copy_(torch.from_numpy(t.mean(0)))
        self.std.copy_(torch.from_numpy(np.where(sd > 1e-12, sd, 1.0)))

    def transform_np(self, x: np.ndarray) -> np.ndarray:
        return (self.logs_np(x) - self.mean.numpy()) / self.std.numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        x = torch.where(self.is_log, torch.log(x.clamp(min=self.floor)), x)
        return (x - self.mean) / self.std


class GaussianMixtureDensity(Method):
    fits_offline = True
    name = "gmm"
    Config = GMMConfig
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": DENSITY_COLUMNS,
                                              "include_event": False}
    paper = "Gaussian-mixture density of (log m, log n_constituents, log pT): the density baseline (issue #12)"

    kinds = ("observables",)

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        """Components (the default candidate list 1..8, chosen by `select`, or a fixed number), covariance
        type and covariance regularization (fitted offline: no optimizer keys)."""
        return {"model.components": {"type": "categorical", "choices": [list(range(1, 9)), [1], [2], [4], [8], [12], [16]]},
                "model.covariance": {"type": "categorical", "choices": ["full", "diag"]},
                "model.reg_covar": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}}

    # buffers (register_buffer in __init__), typed for mypy
    log_w: torch.Tensor
    means: torch.Tensor
    prec_chol: torch.Tensor
    log_det: torch.Tensor
    candidates: torch.Tensor
    cand_val_loglik: torch.Tensor
    cand_bic: torch.Tensor
    n_components: torch.Tensor

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return observables_spec(store, rep)

    def __init__(self, config: GMMConfig, spec: dict):
        super().__init__(config, spec)
        d = int(spec["n_features"])
        names = spec.get("names") or [f"f{i}" for i in range(d)]
        k = max(config.components)
        self.pre = LogStandardize(names, config.log_features, config.log_floor)
        f64 = torch.float64
        # the mixture, padded to the largest candidate: unused components have log-weight _UNUSED
        self.register_buffer("log_w", torch.full((k,), _UNUSED, dtype=f64))
        self.register_buffer("means", torch.zeros(k, d, dtype=f64))
        self.register_buffer("prec_chol", torch.eye(d, dtype=f64).repeat(k, 1, 1))
        self.register_buffer("log_det", torch.zeros(k, dtype=f64))  # log det of prec_chol
        # the label-free choice, kept with the model: candidate k -> validation log-likelihood, BIC
        c = len(config.components)
        self.register_buffer("candidates", torch.tensor(config.components, dtype=torch.long))
        self.register_buffer("cand_val_loglik", torch.full((c,), math.nan, dtype=f64))
        self.register_buffer("cand_bic", torch.full((c,), math.nan, dtype=f64))
        self.register_buffer("n_components", torch.zeros((), dtype=torch.long))

    def prepare(self, store) -> None:
        self.pre.fit(store["x"])

    def _features(self, store: dict, what: str) -> np.ndarray:
        z = self.pre.transform_np(store["x"])
        ok = _finite_rows(z)
        if not ok.all():
            log.warning("%s: %d of %d %s jets have non-finite observables; left out of the fit", self.name,
                        int((~ok).sum()), len(z), what)
        return z[ok]

    def fit_offline(self, train_store: dict, val_store: dict) -> dict:
        from sklearn.mixture import GaussianMixture

        c = self.config
        xt = self._features(train_store, "training")
        xv = self._features(val_store, "validation")
        if len(xv) == 0 and c.select == "val_loglik":
            raise ConfigError(f"{self.name}: model.select val_loglik needs validation jets with finite observables")
        fits: list[tuple[int, Any, float, float]] = []
        for i, k in enumerate(c.components):
            if k > len(xt):
                log.warning("%s: %d components skipped: only %d training jets", self.name, k, len(xt))
                continue
            gm = GaussianMixture(k, covariance_type=c.covariance, reg_covar=c.reg_covar, max_iter=c.max_iter,
                                 n_init=c.n_init, tol=c.tol, random_state=c.random_state)
            gm.fit(xt)
            vll = float(gm.score(xv)) if len(xv) else math.nan
            bic = float(gm.bic(xt))
            self.cand_val_loglik[i] = vll
            self.cand_bic[i] = bic
            fits.append((k, gm, vll, bic))
        if not fits:
            raise ConfigError(f"{self.name}: {len(xt)} training jets are fewer than the smallest number of components "
                              f"{min(c.components)}; give more data or smaller model.components")
        if c.select == "val_loglik":
            k, gm, _, _ = max(fits, key=lambda f: f[2])
        else:
            k, gm, _, _ = min(fits, key=lambda f: f[3])
        self._set_mixture(gm)
        log.info("%s: %s chose %d components (%s)", self.name, c.select, k,
                 ", ".join(f"k={f[0]}: val log-lik {f[2]:.4f}, BIC {f[3]:.1f}" for f in fits))
        return {"loss": -float(gm.score(xt)), "n_components": float(k)}

    def _set_mixture(self, gm) -> None:
        k, d = gm.means_.shape
        pc = np.asarray(gm.precisions_cholesky_, np.float64)
        if gm.covariance_type == "diag":  # [k, d] -> diagonal matrices
            pc = np.stack([np.diag(r) for r in pc])
        self.log_w.fill_(_UNUSED)
        self.means.zero_()
        self.prec_chol.copy_(torch.eye(d, dtype=torch.float64).repeat(self.log_w.shape[0], 1, 1))
        self.log_det.zero_()
        self.log_w[:k] = torch.from_numpy(np.log(gm.weights_))
        self.means[:k] = torch.from_numpy(gm.means_)
        self.prec_chol[:k] = torch.from_numpy(pc)
        self.log_det[:k] = torch.from_numpy(np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(1))
        self.n_components.fill_(k)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of standardized features z [B, d] (float64)."""
        d = z.shape[1]
        y = torch.einsum("bd,kde->bke", z, self.prec_chol) - torch.einsum("kd,kde->ke", self.means, self.prec_chol)
        comp = -0.5 * (y * y).sum(-1) + self.log_det - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(comp + self.log_w, dim=1)

    def _check(self) -> None:
        if int(self.n_components) == 0:
            raise ConfigError(f"{self.name}: the mixture is not fitted (train it with `darkshower train gmm`)")

    def score(self, batch):
        return (-self.log_density(self.pre(batch["x"]))).float()

    def val_metrics(self, batch):
        self._check()
        return {"loss": self.score(batch).mean()}

    def export(self):
        self._check()
        return _ScoreX(self), (torch.ones(4, int(self.spec["n_features"])),)


# -- flow ---------------------------------------------------------------------------------------
def require_zuko():
    """The zuko module, or a ConfigError naming the extra that installs it."""
    try:
        import zuko
    except ImportError:
        raise ConfigError("method 'flow' needs the optional package zuko: pip install -e \".[flow]\" "
                          "(or pip install zuko)") from None
    return zuko


class FlowConfig(StrictModel):
    transform: Literal["nsf", "maf"] = Field("nsf", description="neural spline flow or masked affine autoregressive")
    transforms: int = Field(4, ge=1, le=32, description="autoregressive transformations")
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="widths of each transformation's MLP")
    bins: int = Field(8, ge=2, le=64, description="spline bins (nsf)")
    condition: list[str] = Field(default_factory=list,
                                 description="representation columns the density is conditioned on, e.g. [pt] or "
                                             "[pt, mass] (added to the representation when missing); [] = unconditional")
    score: Literal["auto", "nll", "base"] = Field(
        "auto", description="nll: -log p(x | c); base: 0.5 |u|^2 of the flow's base-space point u (the same "
                            "distribution at every c for background); auto: base when conditioned, else nll")
    log_features: list[str] = Field(default_factory=lambda: list(HLF_LOG), description="log1p before standardization")
    dequantize: list[str] = Field(default_factory=lambda: list(INTEGER_COLUMNS),
                                  description="integer columns: + uniform [0, 1) noise while training, + 0.5 when scoring")
    clip: float = Field(8.0, gt=0, description="standardized inputs are clipped to +-clip")
    missing_jets: Literal["noise", "pad"] = Field(
        "noise", description="event level: the columns of a missing jet (j{i}_present = 0). noise: standard-normal "
                             "noise in the standardized space while training, 0 when scoring, and the score is the "
                             "density of the columns that exist (a missing jet adds no information and cannot make "
                             "the likelihood unbounded); pad: the padded zeros as they are (a point mass: the "
                             "likelihood of one-jet events grows without bound while training)")
    missing_pair: bool = Field(
        True, description="event level, missing_jets noise: m_jj is a missing second jet's column too (without a "
                          "second jet it is the first jet's mass, an exact copy of j0_mass: a zero-width direction "
                          "whose likelihood grows without bound like a padded zero)")

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 for h in v):
            raise ValueError(f"hidden must list positive widths, got {v}")
        return v

    @model_validator(mode="after")
    def _available(self) -> FlowConfig:
        if len(set(self.condition)) != len(self.condition):
            raise ValueError(f"duplicate columns in condition {self.condition}")
        require_zuko()  # a missing optional package fails when the config is read, before any work
        return self


class NormalizingFlow(Method):
    name = "flow"
    Config = FlowConfig
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": HLF_COLUMNS, "include_event": False}
    paper = "normalizing-flow density of jet observables (zuko NSF/MAF), optionally conditioned on pT (issue #12)"
    #: flows saved before model.missing_jets existed trained on the padded zeros, and before model.missing_pair
    #: with m_jj as it was in one-jet events
    saved_defaults: ClassVar[dict] = {"missing_jets": "pad", "missing_pair": False}

    kinds = ("observables",)
    #: ``score --score-kind``: -log p(x | c), or 0.5 |u|^2 in the base space (decorrelated from c by construction)
    score_kinds = ("nll", "base")

    @classmethod
    def configured_score_kind(cls, model_config) -> str:
        return (model_config.score if model_config.score != "auto"
                else ("base" if model_config.condition else "nll"))

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        return {**super().tune_space(),
                "model.transforms": {"type": "int", "low": 2, "high": 8},
                "model.hidden": {"type": "categorical", "choices": [[32, 32], [64, 64], [128, 128]]},
                "model.bins": {"type": "int", "low": 4, "high": 16}}

    is_deq: torch.Tensor
    flag_idx: torch.Tensor
    has_flag: torch.Tensor

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return observables_spec(store, rep)

    @classmethod
    def representation_request(cls, config, user: dict) -> dict:
        merged = super().representation_request(config, user)
        cols = merged.get("columns")
        if cols is not None:  # the conditioning columns must be built too
            merged["columns"] = list(cols) + [c for c in config.condition if c not in cols]
        return merged

    def __init__(self, config: FlowConfig, spec: dict):
        super().__init__(config, spec)
        zuko = require_zuko()
        n = int(spec["n_features"])
        names = list(spec.get("names") or [f"f{i}" for i in range(n)])
        missing = [c for c in config.condition if c not in names]
        if missing:
            raise ConfigError(f"flow: model.condition {missing} are not columns of the representation ({names}); "
                              "add them to representation.columns")
        self.cond_idx = [names.index(c) for c in config.condition]
        self.feat_idx = [i for i, c in enumerate(names) if c not in config.condition]
        if not self.feat_idx:
            raise ConfigError(f"flow: every representation column is in model.condition ({config.condition}); "
                              "nothing is left to model")
        self.pre = HLFPreprocess(names, config.log_features, config.clip)
        self.register_buffer("is_deq", torch.tensor([feature_base(c) in config.dequantize for c in names]))
        # event level: column -> index of its jet slot's j{i}_present flag (-1: none); derived from the names, so
        # the buffers are not saved (runs saved before them load unchanged) but move with the model's device
        self.present_of = (_present_columns(names, config.missing_pair) if config.missing_jets == "noise"
                           else np.full(len(names), -1))
        self.register_buffer("flag_idx", torch.as_tensor(np.maximum(self.present_of, 0)), persistent=False)
        self.register_buffer("has_flag", torch.as_tensor(self.present_of >= 0), persistent=False)
        if config.missing_jets == "noise":
            from darkshower.represent.config import jet_slot

            unflagged = sorted({f"j{s}_present" for n in names
                                if (s := jet_slot(n, config.missing_pair)) and f"j{s}_present" not in names})
            if unflagged:
                log.warning("flow: event-level columns of jet slots without their flag (%s missing from the "
                            "representation): a missing jet's zeros there are modelled as they are; add the flag "
                            "columns to have them marginalized", ", ".join(unflagged))
        kw: dict[str, Any] = {"transforms": config.transforms, "hidden_features": list(config.hidden)}
        if config.transform == "nsf":
            self.flow = zuko.flows.NSF(len(self.feat_idx), context=len(self.cond_idx), bins=config.bins, **kw)
        else:
            self.flow = zuko.flows.MAF(len(self.feat_idx), context=len(self.cond_idx), **kw)
        self.score_kind = self.configured_score_kind(config)
        self._base_warned = False

    def _warn_base(self) -> None:
        """Once per model, when the base score is used on columns of jet slots that can be missing."""
        if self.score_kind == "base" and not self._base_warned and (self.present_of >= 0).any():
            self._base_warned = True
            log.warning("flow: the base score does not marginalize a missing jet (its columns sit at the base "
                        "space's centre: events without that jet score about 0.5 lower per missing column); "
                        "the nll score does (model.score: nll, or score --score-kind nll)")

    def prepare(self, store) -> None:
        self._warn_base()  # training with the base score configured
        x = np.array(store["x"], np.float64)
        missing = self._missing_np(x)
        x[:, self.is_deq.numpy()] += 0.5
        self.pre.fit(x)
        cols = missing.any(axis=0) & ~missing.all(axis=0)
        if cols.any():  # a slot's columns are standardized on the events that have that jet
            t = np.where(missing, np.nan, self.pre.transform_np(x))[:, cols]
            mean, sd = np.nanmean(t, axis=0), np.nanstd(t, axis=0)
            sel = torch.from_numpy(cols)
            self.pre.mean[sel] = torch.from_numpy(mean).float()
            self.pre.std[sel] = torch.from_numpy(np.where(sd > 1e-8, sd, 1.0)).float()

    def _missing_np(self, x: np.ndarray) -> np.ndarray:
        """(n, n_columns) bool: the entry belongs to a jet slot the event does not have."""
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # as _inputs_missing sees the flag
        return (x[:, np.maximum(self.present_of, 0)] < 0.5) & (self.present_of >= 0)

    def _missing(self, x: torch.Tensor) -> torch.Tensor | None:
        if not (self.present_of >= 0).any():
            return None
        return (x[:, self.flag_idx] < 0.5) & self.has_flag

    def _inputs(self, x: torch.Tensor, noise: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, c, _ = self._inputs_missing(x, noise)
        return feats, c

    def _inputs_missing(self, x: torch.Tensor, noise: bool):
        """(features, context, missing features per row or None) in the standardized space."""
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)
        miss = self._missing(x)
        shift = torch.rand_like(x) if noise else torch.full_like(x, 0.5)
        x = x + torch.where(self.is_deq, shift, torch.zeros_like(x))
        z = self.pre(x)
        if miss is not None:  # a missing jet's columns: N(0, 1) noise while training, its mode 0 when scoring
            z = torch.where(miss, torch.randn_like(z) if noise else torch.zeros_like(z), z)
        feats = z[:, self.feat_idx]
        n_miss = miss[:, self.feat_idx].sum(1) if miss is not None else None
        return feats, (z[:, self.cond_idx] if self.cond_idx else None), n_miss

    def _dist(self, c: torch.Tensor | None):
        return self.flow(c) if c is not None else self.flow()

    def _forward(self, x: torch.Tensor, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, -log p(x | c)) from one pass through the flow: u the base-space image of the sample, and the
        negative log-density as :meth:`nll` defines it."""
        f, c, n_miss = self._inputs_missing(x, noise)
        dist = self._dist(c)
        u, ladj = dist.transform.call_and_ladj(f)  # log p(x) = log p_base(u) + log |det du/dx| (zuko's log_prob)
        if dist.reinterpreted:
            ladj = ladj.flatten(-dist.reinterpreted).sum(-1)
        out = -(dist.base.log_prob(u) + ladj)
        if n_miss is not None and not noise:
            out = out + _LOG_NORMAL_MODE * n_miss.to(out.dtype)
        return u, out

    def nll(self, batch, noise: bool = False) -> torch.Tensor:
        """-log p(x | c) per sample, in the standardized feature space. With missing jets (event level,
        ``missing_jets: noise``) the density of the columns that exist: the flow learned the missing columns as
        N(0, 1) noise, so -log p(x, 0) + log N(0; 0, 1) per missing column marginalizes them (when scoring)."""
        return self._forward(batch["x"], noise)[1]

    def base_score(self, batch) -> torch.Tensor:
        """0.5 |u|^2 with u the base-space image of the sample (chi-square with d dof for background)."""
        u = self._forward(batch["x"], False)[0]
        return 0.5 * (u * u).sum(-1)

    def loss(self, batch, ctx):
        return self.nll(batch, noise=True).mean(), {}

    def val_metrics(self, batch):
        return {"loss": self.nll(batch).mean()}

    def scores(self, batch) -> dict[str, torch.Tensor]:
        """Both scores from one pass: {'nll': -log p(x | c), 'base': 0.5 |u|^2}."""
        u, nll = self._forward(batch["x"], False)
        return {"nll": nll, "base": 0.5 * (u * u).sum(-1)}

    def score(self, batch):
        if self.score_kind == "base":
            self._warn_base()
            return self.base_score(batch)
        return self.nll(batch)

    def export(self):
        return _ScoreX(self), (torch.ones(4, int(self.spec["n_features"])),)
