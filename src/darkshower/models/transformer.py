"""Transformer encoder for constituent point clouds (DarkCLR / JetCLR / ParT-style).

Two pieces, both ``nn.Module``s whose state is part of the method's ``state_dict``:

- :class:`CloudInput` turns *unstandardized* point clouds (after augmentation) into model inputs:
  per-jet canonicalization (optional: centre on the pT-weighted centroid, rotate the principal
  axis onto Δη — always per jet), derived features (``log_pt_rel``, ``log_e_rel``), selection of
  the configured features and standardization with statistics fitted on the training data
  (buffers). It also returns per-constituent pT weights (pT / scalar pT sum of the jet).
- :class:`TransformerEncoder`: linear embedding, pre-LayerNorm transformer blocks with a key
  padding mask, optional **pT-weighted attention** (attention weight ∝ pT_j · exp(q·k): with
  angular-only input features and ``pooling: pt`` the encoder is exactly IRC safe — a collinear
  split or a zero-pT emission leaves its output unchanged), optional ParT pairwise interaction
  bias (ln Δ, ln kT, ln z, ln m² through a small MLP per head), pooling (``mean``, ``sum`` or
  ``pt``-weighted) and a projection head.

Speed on CPU: attention is written as two batched matmuls (for N ≤ ~100 constituents this is much
faster than the fused kernel, whose backward is slow on CPU), the padded length is trimmed to
the longest jet of each batch, and training runs under bf16 autocast where the CPU has native
bf16 (``precision: auto``; inference and scores are always float32).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.represent.constituents import CATEGORICAL, feature_names

#: derived input features computed from the stored ones
DERIVED = ("log_pt_rel", "log_e_rel")
#: inputs that do not depend on the constituent's energy (usable with IRC-safe settings)
ANGULAR = ("deta", "dphi", "dr", "charge", "d0", "r_prod") + tuple(c for c in CATEGORICAL if c.startswith("is_"))


class EncoderConfig(StrictModel):
    """Transformer hyper-parameters (demo size by default; the DarkCLR paper size is d_model 128,
    heads 4, layers 4, ff 512, output 512 with 50 constituents: configs/methods/clr-paper.yaml)."""

    features: list[str] = Field(default_factory=lambda: ["deta", "dphi", "log_pt", "log_pt_rel", "dr"],
                                description="per-constituent inputs (stored features or log_pt_rel, log_e_rel)")
    canonicalize: Literal["none", "centre", "centre_rotate"] = Field(
        "centre_rotate", description="per-jet preprocessing after augmentation: centre on the pT-weighted centroid; "
                            "centre_rotate also turns the principal axis onto Δη and flips each axis so its "
                            "pT-weighted third moment is >= 0 (inputs then invariant to rotations, translations "
                            "and reflections of the jet)")
    d_model: int = Field(64, ge=4)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1)
    ff: int = Field(128, ge=1, description="feed-forward width")
    dropout: float = Field(0.0, ge=0, lt=1)
    pt_weighted_attention: bool = Field(False, description="attention weights ∝ pT_j exp(q·k) (IR safety)")
    pair_bias: bool = Field(False, description="ParT-style pairwise interaction bias (ln Δ, ln kT, ln z, ln m²)")
    pooling: Literal["mean", "sum", "pt"] = "mean"
    head: list[int] = Field(default_factory=lambda: [64], description="hidden widths of the projection head")
    output: int = Field(64, ge=1, description="dimension of the output / representation z")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training arithmetic: bf16 autocast when the CPU supports it (auto); scores are fp32")
    clip: float = Field(10.0, gt=0, description="standardized inputs clipped to ±clip")

    def model_post_init(self, _ctx) -> None:
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Native bf16 dot products (AVX512-BF16 or AMX) on this CPU."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and cpu_has_bf16())


class CloudInput(nn.Module):
    """Unstandardized point clouds -> (features [B, N, F_in], mask, pT weights [B, N])."""

    # buffers (register_buffer in __init__), typed for mypy
    mean: torch.Tensor
    std: torch.Tensor
    scaled: torch.Tensor
    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, names: list[str], cfg: EncoderConfig, input_mean=None, input_std=None):
        super().__init__()
        self.names = list(names)
        self.idx = {n: i for i, n in enumerate(self.names)}
        unknown = [f for f in cfg.features if f not in self.idx and f not in DERIVED]
        if unknown:
            raise ConfigError(f"model.features: {unknown} not in the point clouds ({', '.join(self.names)}) "
                              f"nor derived ({', '.join(DERIVED)})")
        for need in ("deta", "dphi", "log_pt"):
            if need not in self.idx:
                raise ConfigError(f"point clouds lack the feature {need!r}")
        self.features = list(cfg.features)
        self.canonicalize = cfg.canonicalize
        self.clip = cfg.clip
        nf = len(self.features)
        self.register_buffer("mean", torch.zeros(nf))
        self.register_buffer("std", torch.ones(nf))
        self.register_buffer("scaled", torch.tensor([f not in CATEGORICAL for f in self.features]))
        # statistics of an already standardized store (representation.standardize: true) to undo
        self.standardized_input = input_mean is not None
        n = len(self.names)
        self.register_buffer("in_mean", torch.as_tensor(np.zeros(n) if input_mean is None else input_mean,
                                                        dtype=torch.float32))
        self.register_buffer("in_std", torch.as_tensor(np.ones(n) if input_std is None else input_std,
                                                       dtype=torch.float32))

    @property
    def n_features(self) -> int:
        return len(self.features)

    def raw(self, x, mask):
        """Undo the representation's standardization, if any (identity otherwise)."""
        x = x.float()
        if self.standardized_input:
            x = (x * self.in_std + self.in_mean) * mask[..., None]
        return x

    def weights(self, x, mask):
        pt = torch.exp(x[..., self.idx["log_pt"]]) * mask
        return pt / pt.sum(1, keepdim=True).clamp(min=1e-12)

    def unscaled(self, x, mask):
        """Selected (and derived) features before standardization, after canonicalization."""
        i = self.idx
        w = self.weights(x, mask)
        deta, dphi = x[..., i["deta"]], x[..., i["dphi"]]
        if self.canonicalize != "none":
            deta = deta - (w * deta).sum(1, keepdim=True)
            dphi = dphi - (w * dphi).sum(1, keepdim=True)
            if self.canonicalize == "centre_rotate":
                cee, cpp, cep = (w * deta * deta).sum(1), (w * dphi * dphi).sum(1), (w * deta * dphi).sum(1)
                th = 0.5 * torch.atan2(2 * cep, cee - cpp)
                c, s = torch.cos(th)[:, None], torch.sin(th)[:, None]
                deta, dphi = deta * c + dphi * s, -deta * s + dphi * c
                # fix the remaining two-fold ambiguity (and mirror images): third moments >= 0
                deta = deta * torch.where((w * deta**3).sum(1, keepdim=True) < 0, -1.0, 1.0)
                dphi = dphi * torch.where((w * dphi**3).sum(1, keepdim=True) < 0, -1.0, 1.0)
        cols = []
        for name in self.features:
            if name == "deta":
                cols.append(deta)
            elif name == "dphi":
                cols.append(dphi)
            elif name == "dr":
                cols.append(torch.sqrt(deta * deta + dphi * dphi))  # not hypot: no ONNX op
            elif name == "log_pt_rel":
                cols.append(torch.log(x[..., i["pt_rel"]].clamp(min=1e-8)) if "pt_rel" in i else torch.log(w.clamp(min=1e-8)))
            elif name == "log_e_rel":
                cols.append(torch.log(x[..., i["e_rel"]].clamp(min=1e-8)))
            else:
                cols.append(x[..., i[name]])
        return torch.stack(cols, -1) * mask[..., None], w

    def fit(self, x: np.ndarray, mask: np.ndarray, max_jets: int = 50000) -> None:
        """Mean/std of the selected features over real constituents of (up to ``max_jets``) training jets."""
        n = min(len(x), max_jets)
        s1 = torch.zeros(self.n_features, dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        cnt = 0
        with torch.no_grad():
            for a in range(0, n, 5000):
                xb = torch.from_numpy(np.asarray(x[a:min(a + 5000, n)]))
                mb = torch.from_numpy(np.asarray(mask[a:min(a + 5000, n)]))
                u, _ = self.unscaled(self.raw(xb, mb), mb)
                v = u[mb].double()
                s1 += v.sum(0)
                s2 += (v * v).sum(0)
                cnt += len(v)
        if cnt == 0:
            raise ConfigError("cannot fit the input standardization: the training jets have no constituents")
        mean = s1 / cnt
        std = torch.sqrt((s2 / cnt - mean**2).clamp(min=0))
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        self.mean.copy_(torch.where(self.scaled, mean, torch.zeros_like(mean)).float())
        self.std.copy_(torch.where(self.scaled, std, torch.ones_like(std)).float())

    def forward(self, x, mask):
        """``x`` unstandardized (use :meth:`raw` first for standardized stores)."""
        u, w = self.unscaled(x, mask)
        h = ((u - self.mean) / self.std).clamp(-self.clip, self.clip) * mask[..., None]
        return h, w


def pair_features(x, mask, idx: dict):
    """ParT interaction features [B, N, N, 4]: ln Δ, ln kT, ln z, ln m² (massless constituents)."""
    deta, dphi = x[..., idx["deta"]], x[..., idx["dphi"]]
    pt = torch.exp(x[..., idx["log_pt"]]) * mask
    de = deta[:, :, None] - deta[:, None, :]
    dp = torch.remainder(dphi[:, :, None] - dphi[:, None, :] + math.pi, 2 * math.pi) - math.pi
    d2 = de * de + dp * dp
    delta = torch.sqrt(d2.clamp(min=1e-12))
    ptmin = torch.minimum(pt[:, :, None], pt[:, None, :])
    ptsum = pt[:, :, None] + pt[:, None, :]
    m2 = 2 * pt[:, :, None] * pt[:, None, :] * (torch.cosh(de) - torch.cos(dp))
    # clamp, not `+ eps`: the ONNX exporter's optimizer folds `x + 1e-8` into `x` (then padded pairs give
    # log(0) * 0 = NaN in onnxruntime)
    eps = 1e-8
    out = torch.stack([torch.log(delta.clamp(min=eps)), torch.log((ptmin * delta).clamp(min=eps)),
                       torch.log((ptmin / ptsum.clamp(min=eps)).clamp(min=eps)), torch.log(m2.clamp(min=eps))], -1)
    pm = (mask[:, :, None] & mask[:, None, :])[..., None]
    return out * pm


class Block(nn.Module):
    """Pre-LayerNorm transformer block; attention as two batched matmuls with an additive bias."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def _attend(self, qkv, bias, B, N):
        d = qkv.shape[-1] // 3
        q, k, v = qkv.view(B, N, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.matmul(q, k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5) + bias
        att = torch.softmax(att, -1).to(v.dtype)
        return torch.matmul(self.drop(att), v).transpose(1, 2).reshape(B * N, d)

    def forward(self, h, bias):
        """Padded tokens ``h [B, N, d]``."""
        B, N, d = h.shape
        a = self._attend(self.qkv(self.ln1(h)), bias, B, N).view(B, N, d)
        h = h + self.drop(self.proj(a))
        return h + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(h)))))

    def forward_packed(self, t, bias, idx, B: int, N: int):
        """Only the real tokens ``t [T, d]`` (``idx``: their flat positions in B×N): the token-wise
        layers skip the padding; attention runs on the scattered, padded [B, N] layout."""
        qkv = self.qkv(self.ln1(t))
        full = qkv.new_zeros(B * N, qkv.shape[1]).index_copy(0, idx, qkv)
        a = self._attend(full, bias, B, N).index_select(0, idx)
        t = t + self.drop(self.proj(a))
        return t + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(t)))))


class TransformerEncoder(nn.Module):
    """(features [B, N, F], mask [B, N], weights [B, N]) -> (pooled [B, d], z [B, output])."""

    def __init__(self, n_in: int, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(n_in, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg.d_model, cfg.heads, cfg.ff, cfg.dropout) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(cfg.d_model)
        sizes = [cfg.d_model, *cfg.head, cfg.output]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.head = nn.Sequential(*layers)
        if cfg.pair_bias:
            self.pair_mlp = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, cfg.heads))
        self.bf16 = use_bf16(cfg.precision)
        self.pack = True

    def attention_bias(self, mask, w, pairs=None):
        keep = mask.clone()
        keep[:, 0] |= ~mask.any(1)  # a jet without constituents attends to its (zero) first slot
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        if self.cfg.pt_weighted_attention:
            bias = torch.log(w.float().clamp(min=1e-30))
        bias = bias.masked_fill(~keep, float("-inf"))[:, None, None, :]  # [B, 1, 1, N]
        if pairs is not None:
            bias = bias + self.pair_mlp(pairs).permute(0, 3, 1, 2).float()  # [B, H, N, N]
        return bias

    def forward(self, h, mask, w, pairs=None):
        dev = h.device.type
        # bf16 autocast in training: on CPUs with native bf16 (precision auto) or asked for; on CUDA unless fp32
        autocast = self.training and (self.bf16 if dev == "cpu" else self.cfg.precision != "fp32")
        B, N, _ = h.shape
        # skip the padding in the token-wise layers when it is worth it (training: > 5 % padding)
        packed = self.training and self.pack and float(mask.float().mean()) < 0.95
        with torch.autocast(dev if dev in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16, enabled=autocast):
            bias = self.attention_bias(mask, w, pairs)
            if packed:
                idx = torch.nonzero(mask.reshape(-1)).squeeze(1)
                t = self.embed(h.reshape(B * N, -1).index_select(0, idx))
                for blk in self.blocks:
                    t = blk.forward_packed(t, bias, idx, B, N)
                t = self.norm(t).float()
                jet = torch.div(idx, N, rounding_mode="floor")
                if self.cfg.pooling == "pt":
                    t = t * w.reshape(-1).index_select(0, idx)[:, None]
                pooled = t.new_zeros(B, t.shape[1]).index_add(0, jet, t)
                if self.cfg.pooling == "mean":
                    pooled = pooled / mask.sum(1, keepdim=True).clamp(min=1).to(pooled.dtype)
            else:
                h = self.embed(h)
                for blk in self.blocks:
                    h = blk(h, bias)
                h = self.norm(h).float()
                m = mask[..., None].to(h.dtype)
                if self.cfg.pooling == "pt":
                    pooled = (h * w[..., None]).sum(1)
                elif self.cfg.pooling == "sum":
                    pooled = (h * m).sum(1)
                else:
                    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            z = self.head(pooled)
        return pooled, z.float()


def trim(x, mask):
    """Cut the padded length to the longest jet of the batch (constituents sorted or not)."""
    exporting = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    if exporting or mask.shape[1] == 0:  # exported graphs keep the full length
        return x, mask
    last = torch.nonzero(mask.any(0))
    n = int(last.max()) + 1 if len(last) else 1
    return x[:, :n], mask[:, :n]


def cloud_spec(store: dict, rep) -> dict:
    """Input spec of a point-cloud method: feature names and, when the representation is
    standardized, the statistics to undo it."""
    x = store["x"]
    nf = x.shape[-1]
    names = feature_names(nf == len(feature_names(True)))
    if len(names) != nf:
        raise ConfigError(f"point clouds have {nf} features; expected {len(feature_names(False))} or "
                          f"{len(feature_names(True))} (representation kind 'constituents')")
    spec = {"kind": rep.kind, "names": names, "n_constituents": int(x.shape[1]), "shape": [int(x.shape[1]), nf]}
    if getattr(rep, "standardize", False) and rep.standardizer:
        spec["input_mean"] = list(map(float, rep.standardizer["mean"]))
        spec["input_std"] = list(map(float, rep.standardizer["std"]))
    return spec
