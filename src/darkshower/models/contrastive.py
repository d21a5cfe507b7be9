"""Contrastive self-supervision on constituent point clouds: ``clr``, ``aclr``, ``rs3l``.

- ``clr`` — SimCLR / NT-Xent with in-batch negatives and the JetCLR physical augmentations
  (arXiv:2108.04253): two augmented views of each jet are positives, every other view in the
  batch is a negative.
- ``aclr`` — DarkCLR (arXiv:2312.03067): as ``clr`` plus an *anomalous* augmentation of every jet
  (a large fraction of constituents dropped at fixed jet pT, or pT moved between prongs) used as
  an explicit extra negative for every anchor.
- ``rs3l`` — RS3L: positives are two re-simulated realizations of the same hard process (events
  generated with ``darkshower generate ... --resimulate K``; same ``resim_id``, same ``jet_idx``),
  optionally augmented; jets without a partner in the batch pair with an augmented copy of
  themselves.

Anomaly scores (``model.score``): ``norm`` = ‖z‖ of the representation (DarkCLR), ``knn`` = mean
cosine distance of the normalized z to its ``knn_k`` nearest neighbours in a bank of training-jet
embeddings, or ``maha`` (default) = Mahalanobis distance to a Gaussian fitted on the training jets' features
(``model.maha_space``: z or the pooled encoder output before the projection head) — a density on
the frozen representation. Bank and Gaussian are refitted with the current model at the end of
every epoch and stored in the model state, so every score is exportable to ONNX.

Losses: ``clr``/``rs3l`` NT-Xent; ``aclr`` DarkCLR's aCLR+ loss without the batch denominator
(``model.loss: aclr_plus``, default: (s(z, z_anom) − s(z, z'))/τ) or NT-Xent with the anomalous
views as extra negatives (``model.loss: ntxent``). Every method can add
``model.norm_weight`` · mean ‖z‖² of the physical views (pulls background jets to small ‖z‖). ``embed(batch)`` gives z for other methods (``nae``/``wnae`` with
``model.embedding_run``) and for :func:`darkshower.train.probe.linear_probe`.

The loss never forms a 2B×2B×D tensor: the normalized views go through one ``[2B, D] @ [D, 2B]``
matmul and a cross-entropy.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from darkshower.errors import ConfigError, DatasetError
from darkshower.models.base import Method
from darkshower.models.transformer import CloudInput, EncoderConfig, TransformerEncoder, cloud_spec, trim
from darkshower.represent import augment as A

log = logging.getLogger(__name__)

CLOUD_REPRESENTATION = {"kind": "constituents", "n_constituents": 50, "standardize": False, "max_jets": 2}


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float, negatives: torch.Tensor | None = None):
    """NT-Xent (SimCLR) loss of P positive pairs (za[i], zb[i]); all other views in the batch and the
    optional extra ``negatives [M, D]`` are negatives. Cosine similarity / temperature; mean over
    the 2P anchors."""
    P = za.shape[0]
    z = F.normalize(torch.cat([za, zb]).float(), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * P, dtype=torch.bool, device=z.device), float("-inf"))
    if negatives is not None:
        n = F.normalize(negatives.float(), dim=1)
        logits = torch.cat([logits, (z @ n.T) / temperature], 1)
    target = torch.cat([torch.arange(P, 2 * P, device=z.device), torch.arange(P, device=z.device)])
    return F.cross_entropy(logits, target)


def aclr_plus(za: torch.Tensor, zb: torch.Tensor, zn: torch.Tensor, temperature: float) -> torch.Tensor:
    """DarkCLR's aCLR+ loss (no batch denominator): mean over jets i of
    ``[(s(a_i, n_i) + s(b_i, n_i)) / 2 - s(a_i, b_i)] / temperature`` with s the cosine similarity,
    (a_i, b_i) the physical views and n_i the anomalous view of jet i."""
    a, b, n = (F.normalize(t.float(), dim=1) for t in (za, zb, zn))
    s_ab = (a * b).sum(1)
    s_n = 0.5 * ((a * n).sum(1) + (b * n).sum(1))
    return ((s_n - s_ab) / temperature).mean()


class ContrastiveConfig(EncoderConfig):
    temperature: float = Field(0.1, gt=0, description="NT-Xent temperature")
    augment: A.AugmentConfig = Field(default_factory=A.AugmentConfig)
    score: Literal["norm", "knn", "maha"] = Field(
        "maha", description="anomaly score: ‖z‖ (DarkCLR), kNN cosine distance to training jets, or Mahalanobis "
                            "distance to a Gaussian fitted on the training jets (density on the frozen representation)")
    maha_space: Literal["z", "pooled"] = Field(
        "pooled", description="space of the Gaussian of the maha score: z or the pooled encoder output before the head")
    maha_shrink: float = Field(1e-3, ge=0, description="maha: covariance + shrink * mean variance * identity")
    norm_weight: float = Field(0.0, ge=0, description="loss + norm_weight * mean ‖z‖² of the physical views")
    knn_k: int = Field(5, ge=1, description="neighbours of the kNN score")
    bank_size: int = Field(4096, ge=1, description="training jets in the kNN bank (and in the maha fit)")
    val_chunk: int = Field(256, ge=2, description="validation loss computed on chunks of this many jets")


class ACLRConfig(ContrastiveConfig):
    anomalous: A.AnomalousConfig = Field(default_factory=A.AnomalousConfig)
    loss: Literal["ntxent", "aclr_plus"] = Field(
        "aclr_plus", description="ntxent: anomalous views as extra NT-Xent negatives; aclr_plus: DarkCLR's aCLR+ "
                              "(s(z, z_anom) - s(z, z'))/τ without the batch denominator")


class RS3LConfig(ContrastiveConfig):
    augment_views: bool = Field(True, description="also apply the physical augmentations to both re-simulated views")


class _Contrastive(Method):
    has_embedding = True
    #: ``pooled``: the encoder output before the projection head (the space of ``maha_space: pooled``);
    #: ``z``: the head's output, the same as ``embed`` (the space of the loss)
    embed_spaces = ("z", "pooled")
    #: every trained run offers all three (``score --score-kind``; the bank and the Gaussian are fitted at validation)
    score_kinds = ("norm", "knn", "maha")
    Config = ContrastiveConfig
    default_representation: ClassVar[dict] = CLOUD_REPRESENTATION

    kinds = ("constituents",)

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return cloud_spec(store, rep)

    # buffers (register_buffer in __init__), typed for mypy
    bank: torch.Tensor
    bank_n: torch.Tensor
    gauss_mean: torch.Tensor
    gauss_prec: torch.Tensor

    def __init__(self, config: ContrastiveConfig, spec: dict):
        super().__init__(config, spec)
        self.inp = CloudInput(spec["names"], config, spec.get("input_mean"), spec.get("input_std"))
        self.f = A.Features(spec["names"])
        self.encoder = TransformerEncoder(self.inp.n_features, config)
        self.register_buffer("bank", torch.zeros(config.bank_size, config.output))
        self.register_buffer("bank_n", torch.zeros((), dtype=torch.long))
        gd = config.output if config.maha_space == "z" else config.d_model
        self.register_buffer("gauss_mean", torch.zeros(gd))
        self.register_buffer("gauss_prec", torch.zeros(gd, gd))
        self.score_kind = config.score
        self._stash: list = []
        self._stash_n = 0
        self._epoch_fresh = False
        self._val_gen: torch.Generator | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before the maha score existed have no Gaussian: load them with an unfitted one
        for k in ("gauss_mean", "gauss_prec"):
            state_dict.setdefault(prefix + k, torch.zeros_like(getattr(self, k)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- preprocessing / encoding ------------------------------------------------------------------
    def prepare(self, store) -> None:
        self.inp.fit(store["x"], store["mask"])

    def encode_raw(self, x, mask):
        """z [B, output] of unstandardized point clouds."""
        return self.encode_both(x, mask)[1]

    def encode_both(self, x, mask):
        """(pooled encoder output [B, d_model], z [B, output]) of unstandardized point clouds."""
        x, mask = trim(x, mask)
        h, w = self.inp(x, mask)
        return self.encoder(h, mask, w)

    @property
    def embed_dim(self) -> int:
        return int(self.config.output)

    def embed(self, batch) -> torch.Tensor:
        """Representation z [B, D] of a batch (the space of the loss and of both scores)."""
        return self._encode_batch(batch)[1]

    def embed_in(self, batch, space: str | None = None) -> torch.Tensor:
        """z (``space`` None or ``z``) or the pooled encoder output before the head (``pooled``)."""
        self.check_space(space)
        return self._encode_batch(batch)[0 if space == "pooled" else 1]

    def embed_dim_in(self, space: str | None = None) -> int:
        self.check_space(space)
        return int(self.config.d_model if space == "pooled" else self.config.output)

    # -- training ----------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._stash, self._stash_n, self._epoch_fresh = [], 0, True

    def _views(self, x, mask, batch, generator):
        """(x_a, m_a, x_b, m_b, extra negatives (x, m) or None, logs)."""
        cfg = self.config.augment
        xa, ma = A.physical(x, mask, self.f, cfg, generator)
        xb, mb = A.physical(x, mask, self.f, cfg, generator)
        return xa, ma, xb, mb, None, {}

    def _contrastive(self, batch, generator=None):
        mask = batch["mask"].bool()
        x = self.inp.raw(batch["x"], mask)
        xa, ma, xb, mb, neg, logs = self._views(x, mask, batch, generator)
        parts_x, parts_m = [xa, xb], [ma, mb]
        if neg is not None:
            parts_x.append(neg[0])
            parts_m.append(neg[1])
        z = self.encode_raw(torch.cat(parts_x), torch.cat(parts_m))
        P = xa.shape[0]
        if neg is not None and getattr(self.config, "loss", "ntxent") == "aclr_plus":
            loss = aclr_plus(z[:P], z[P:2 * P], z[2 * P:], self.config.temperature)
        else:
            loss = nt_xent(z[:P], z[P:2 * P], self.config.temperature, z[2 * P:] if neg is not None else None)
        if self.config.norm_weight > 0:
            loss = loss + self.config.norm_weight * z[:2 * P].float().pow(2).sum(1).mean()
        return loss, z[:P], logs

    def loss(self, batch, ctx):
        if self._stash_n < self.config.bank_size:
            take = min(self.config.bank_size - self._stash_n, len(batch["x"]))
            self._stash.append((batch["x"][:take].clone(), batch["mask"][:take].clone()))
            self._stash_n += take
        loss, z, logs = self._contrastive(batch)
        return loss, {**logs, "norm": z.detach().norm(dim=1).mean()}

    @torch.no_grad()
    def refresh_bank(self) -> None:
        """Embed the stashed training jets with the current model into the kNN bank and fit the
        Gaussian of the maha score on them."""
        if not self._stash:
            return
        dev = self.bank.device
        both = [self.encode_both(self.inp.raw(x.to(dev), m.to(dev).bool()), m.to(dev).bool()) for x, m in self._stash]
        z = torch.cat([F.normalize(b[1], dim=1) for b in both])[: self.config.bank_size]
        self.bank.zero_()
        self.bank[: len(z)] = z
        self.bank_n.fill_(len(z))
        feats = torch.cat([b[0] if self.config.maha_space == "pooled" else b[1] for b in both])
        self.fit_gaussian(feats[: self.config.bank_size])
        self._stash, self._stash_n = [], 0

    @torch.no_grad()
    def fit_gaussian(self, feats: torch.Tensor) -> None:
        """Mean and (shrunk) precision of ``feats [n, D]`` for the maha score."""
        f = feats.double()
        mu = f.mean(0)
        c = f - mu
        cov = c.T @ c / max(len(f) - 1, 1)
        cov = cov + self.config.maha_shrink * cov.diagonal().mean().clamp(min=1e-12) * torch.eye(len(mu), dtype=f.dtype, device=f.device)
        self.gauss_mean.copy_(mu.float())
        if int(torch.linalg.cholesky_ex(cov).info) == 0:
            prec = torch.linalg.inv(cov)
        else:  # singular (maha_shrink 0 with fewer jets than features, or constant features): inv is garbage
            log.warning("%s: the maha covariance of %d jets x %d features is singular (model.maha_shrink = %g); "
                        "using its pseudo-inverse (directions without variance do not count). Set "
                        "model.maha_shrink > 0 (e.g. 1e-3) to regularize", self.name, len(f), len(mu),
                        self.config.maha_shrink)
            prec = torch.linalg.pinv(cov, hermitian=True)
        self.gauss_prec.copy_(prec.float())

    def _check_fitted(self, kind: str) -> int:
        """Jets in the bank; a clear error when ``kind`` (knn / maha) has nothing fitted."""
        n = int(self.bank_n)
        if kind == "knn" and n == 0:
            raise ConfigError(f"{self.name}: the kNN bank is empty (the model was never validated after "
                              "training); use the norm score (model.score: norm, or score --score-kind norm) or retrain")
        if kind == "maha" and (n == 0 or not bool(self.gauss_prec.any())):
            raise ConfigError(f"{self.name}: the maha Gaussian is not fitted (the model was never validated after "
                              "training, or the run predates the maha score); use the norm score (model.score: norm, or score "
                              "--score-kind norm) or retrain")
        return n

    def maha_distance(self, pooled, z, check: bool = True):
        """Squared Mahalanobis distance of the jets' features (``model.maha_space``) to the training Gaussian."""
        if check:
            self._check_fitted("maha")
        d = (pooled if self.config.maha_space == "pooled" else z) - self.gauss_mean
        return ((d @ self.gauss_prec) * d).sum(1)

    def val_metrics(self, batch):
        if self._epoch_fresh:  # first validation batch after an epoch of training
            self.refresh_bank()
            self._val_gen = torch.Generator(device=batch["x"].device).manual_seed(12345)
            self._epoch_fresh = False
        if self._val_gen is None:  # validation outside training: fixed augmentations as well
            self._val_gen = torch.Generator(device=batch["x"].device).manual_seed(12345)
        gen = self._val_gen
        n = len(batch["x"])
        c = self.config.val_chunk
        tot, norm = 0.0, 0.0
        for a in range(0, n, c):
            sub = {k: v[a:a + c] for k, v in batch.items()}
            if len(sub["x"]) < 2:
                continue
            loss, z, _ = self._contrastive(sub, gen)
            tot += float(loss) * len(sub["x"])
            norm += float(z.norm(dim=1).sum())
        return {"loss": torch.tensor(tot / n), "norm": torch.tensor(norm / n)}

    # -- scores ------------------------------------------------------------------------------------
    def knn_distance(self, z, n: int | None = None):
        """Mean cosine distance of z to its ``knn_k`` nearest neighbours among the first ``n`` bank entries
        (default: the whole filled bank)."""
        if n is None:
            n = self._check_fitted("knn")
        sim = F.normalize(z, dim=1) @ self.bank[:n].T
        return (1 - sim.topk(min(self.config.knn_k, n), dim=1).values).mean(1)

    def _encode_batch(self, batch):
        mask = batch["mask"].bool()
        return self.encode_both(self.inp.raw(batch["x"], mask), mask)

    def scores(self, batch) -> dict[str, torch.Tensor]:
        """Every anomaly score: {'norm': ‖z‖, 'knn', 'maha' (when the bank / Gaussian are fitted)}."""
        pooled, z = self._encode_batch(batch)
        out = {"norm": z.norm(dim=1)}
        if int(self.bank_n):
            out["knn"] = self.knn_distance(z)
        if int(self.bank_n) and bool(self.gauss_prec.any()):
            out["maha"] = self.maha_distance(pooled, z)
        return out

    def use_score(self, kind: str) -> None:
        super().use_score(kind)
        self._check_fitted(kind)

    def score(self, batch):
        return self._score(batch, self._check_fitted(self.score_kind))

    def _score(self, batch, n_bank: int):
        """The configured score without the fitted-state checks (``n_bank``: filled bank entries), so the
        exported graph has no data-dependent control flow."""
        pooled, z = self._encode_batch(batch)
        if self.score_kind == "knn":
            return self.knn_distance(z, n_bank)
        if self.score_kind == "maha":
            return self.maha_distance(pooled, z, check=False)
        return z.norm(dim=1)

    def export(self):
        n = self.spec.get("n_constituents", 50)
        x = torch.zeros(4, n, len(self.spec["names"]))
        mask = torch.zeros(4, n, dtype=torch.bool)
        mask[:, :3] = True
        x[:, :3, self.f.idx["log_pt"]] = torch.tensor([4.0, 3.0, 2.0])
        if "pt_rel" in self.f.idx:
            x[:, :3, self.f.idx["pt_rel"]] = torch.tensor([0.6, 0.3, 0.1])
        return _ScoreCloud(self, self._check_fitted(self.score_kind)), (x, mask)


class _ScoreCloud(nn.Module):
    """Export wrapper of point-cloud methods: score(x, mask); contrastive methods pass the filled bank size
    (``n_bank``) so that the graph has no data-dependent checks."""

    def __init__(self, method, n_bank: int | None = None):
        super().__init__()
        self.method = method
        self.n_bank = n_bank

    def forward(self, x, mask):
        if self.n_bank is None:
            return self.method.score({"x": x, "mask": mask})
        return self.method._score({"x": x, "mask": mask}, self.n_bank)


class CLR(_Contrastive):
    name = "clr"
    paper = "JetCLR, arXiv:2108.04253 (SimCLR / NT-Xent on jet constituents)"


class ACLR(_Contrastive):
    name = "aclr"
    Config = ACLRConfig
    paper = "DarkCLR, arXiv:2312.03067 (anomalous augmentations as negatives; ‖z‖ score)"

    def _views(self, x, mask, batch, generator):
        cfg = self.config.augment
        xa, ma = A.physical(x, mask, self.f, cfg, generator)
        xb, mb = A.physical(x, mask, self.f, cfg, generator)
        xn, mn = A.anomalous(x, mask, self.f, self.config.anomalous, generator)
        xn, mn = A.physical(xn, mn, self.f, cfg, generator)
        return xa, ma, xb, mb, (xn, mn), {}


def in_batch_pairs(key_a: np.ndarray, key_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of batch rows with equal (key_a, key_b); members of a group are paired in
    consecutive twos, a leftover member pairs with itself (i == j). Every row appears once."""
    n = len(key_a)
    order = np.lexsort((key_b, key_a))
    ka, kb = key_a[order], key_b[order]
    new = np.r_[True, (ka[1:] != ka[:-1]) | (kb[1:] != kb[:-1])]
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    rank = np.arange(n) - start
    has_next = np.r_[~new[1:], False]
    first = (rank % 2 == 0)
    pair = first & has_next
    single = first & ~has_next
    pos = np.flatnonzero(pair)
    ia = np.concatenate([order[pos], order[single]])
    ib = np.concatenate([order[pos + 1], order[single]])
    return ia, ib


class RS3L(_Contrastive):
    name = "rs3l"
    Config = RS3LConfig
    paper = "RS3L (re-simulation-based self-supervised learning): positives from re-simulated showers"

    @classmethod
    def extra_column_names(cls, config) -> tuple[str, ...]:
        return ("resim_id",)

    @classmethod
    def extra_columns(cls, config, events, ids) -> dict[str, np.ndarray]:
        if "resim_id" not in events.fields:
            raise DatasetError("rs3l needs re-simulated data (events with 'resim_id'): generate them with "
                               "`darkshower generate qcd --resimulate K ...` (K >= 2)")
        ev_id = np.asarray(events["event_id"], np.int64)
        rid = np.asarray(events["resim_id"], np.int64)
        order = np.argsort(ev_id)
        pos = np.searchsorted(ev_id[order], np.asarray(ids["event_id"], np.int64))
        return {"resim_id": rid[order[np.clip(pos, 0, len(order) - 1)]]}

    def batch_order(self, store: dict, batch_size: int, seed: int, epoch: int) -> np.ndarray:
        """Sample order for one epoch (trainer hook): realizations of the same hard process (same
        ``resim_id`` and ``jet_idx``) are adjacent, groups in random order, so pairs share a batch."""
        rng = np.random.default_rng([seed, epoch, 7])
        rid = np.asarray(store["resim_id"], np.int64)
        jidx = np.asarray(store.get("jet_idx", np.zeros(len(rid))), np.int64)
        _, group = np.unique(np.stack([rid, jidx], 1), axis=0, return_inverse=True)
        group = group.reshape(-1)
        g_rank = rng.permutation(group.max() + 1)[group]
        return np.lexsort((rng.random(len(rid)), g_rank))

    def _views(self, x, mask, batch, generator):
        if "resim_id" not in batch:
            raise DatasetError("rs3l: the batch has no 'resim_id' column (train on a re-simulated dataset)")
        rid = batch["resim_id"].cpu().numpy()
        jidx = batch["jet_idx"].cpu().numpy() if "jet_idx" in batch else np.zeros(len(rid), np.int64)
        ia, ib = in_batch_pairs(rid, jidx)
        ia_t, ib_t = torch.from_numpy(ia).to(x.device), torch.from_numpy(ib).to(x.device)
        xa, ma, xb, mb = x[ia_t], mask[ia_t], x[ib_t], mask[ib_t]
        same = ia == ib
        cfg = self.config.augment
        if self.config.augment_views or same.any():
            ya, na = A.physical(xa, ma, self.f, cfg, generator)
            yb, nb = A.physical(xb, mb, self.f, cfg, generator)
            if self.config.augment_views:
                xa, ma, xb, mb = ya, na, yb, nb
            else:  # augment only the self-pairs
                s = torch.from_numpy(same).to(x.device)
                xa, ma = torch.where(s[:, None, None], ya, xa), torch.where(s[:, None], na, ma)
                xb, mb = torch.where(s[:, None, None], yb, xb), torch.where(s[:, None], nb, mb)
        return xa, ma, xb, mb, None, {"resim_pair_fraction": float((~same).sum() * 2) / max(len(x), 1)}
