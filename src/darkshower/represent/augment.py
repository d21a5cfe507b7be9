"""Batched torch augmentations of constituent point clouds (JetCLR / DarkCLR).

Every function takes a whole batch ``x [B, N, F]`` of *unstandardized* point-cloud features
(names from :func:`darkshower.represent.constituents.feature_names`: ``deta, dphi, log_pt, log_e,
pt_rel, e_rel, dr, charge, is_*[, d0, r_prod]``) and its padding ``mask [B, N]`` and returns a new
``(x, mask)``; no per-jet Python loop, every random number from the global torch RNG (or the
``generator`` passed), so a checkpointed RNG state reproduces them exactly. All transforms are per
jet — nothing is centred or scaled across the batch.

Kinematics are evaluated in the jet frame (jet axis at η = 0, φ = 0; constituents massless:
p = pT (cos Δφ, sin Δφ, sinh Δη), E = pT cosh Δη). In that frame

- **physical** (positives): ``rotate`` (a rotation of the 3-momenta about the jet momentum: jet
  pT and mass exactly conserved), ``translate`` (Δη shift = longitudinal boost, Δφ shift =
  azimuthal rotation: mass and pT exactly conserved), ``permute`` (order only), ``smear`` (soft
  smearing, Δη, Δφ += N(0, Λ/pT), Λ = 0.1 GeV as in JetCLR: only soft constituents move),
  ``collinear_split`` (a constituent becomes two at the same (Δη, Δφ) with pT fractions z, 1−z:
  pT and mass exactly conserved), ``drop_soft`` (drops constituents below ``pt_max`` GeV);
- **anomalous** (aCLR negatives): ``drop_fraction`` (drop a large random fraction of the
  constituents, rescale the rest so the scalar pT sum is unchanged), ``shift_prongs`` (split
  the jet along its principal axis into two prongs and move pT from one to the other at fixed
  scalar pT sum) and ``reweight_pt`` (pT -> pT^beta at fixed scalar pT sum; AnomalyCLR's pT
  reweighting).

Derived features follow the kinematics: ``log_pt, pt_rel`` with the new pT, ``log_e, e_rel`` with
the jet-frame energy ratio (exact for pT rescalings and splittings, the η_jet = 0 approximation
for angular moves), ``dr = hypot(deta, dphi)``; charge, particle type and displacement are carried
along (split constituents copy them). Padding stays exactly zero.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from darkshower.config import StrictModel
from darkshower.errors import ConfigError

#: features the augmentations need in every point cloud
REQUIRED = ("deta", "dphi", "log_pt")


class AugmentConfig(StrictModel):
    """Physical augmentations applied (independently) to each view."""

    rotate: bool = Field(True, description="random rotation about the jet axis")
    translate: float = Field(0.0, ge=0, description="std of a per-jet (Δη, Δφ) shift; 0: off")
    permute: bool = Field(True, description="random constituent order")
    smear: float = Field(0.1, ge=0, description="soft smearing scale Λ (GeV): Δη, Δφ += N(0, Λ/pT); 0: off")
    collinear: float = Field(0.1, ge=0, le=1, description="probability to split each constituent (needs free slots)")
    drop_soft: float = Field(0.5, ge=0, le=1, description="probability to drop each soft constituent")
    soft_pt: float = Field(1.0, ge=0, description="soft threshold (GeV) for drop_soft")


#: anomalous augmentation kinds
KINDS = ("drop", "prongs", "reweight")


class AnomalousConfig(StrictModel):
    """aCLR anomalous augmentations (negatives): one of ``kinds`` per jet, then the physical ones."""

    kinds: list[str] = Field(default_factory=lambda: ["drop", "prongs"], description="drop, prongs and/or reweight")
    drop_min: float = Field(0.5, gt=0, lt=1, description="smallest fraction of constituents dropped")
    drop_max: float = Field(0.8, gt=0, lt=1)
    shift_min: float = Field(0.3, gt=0, lt=1, description="smallest fraction of a prong's pT moved")
    shift_max: float = Field(0.7, gt=0, lt=1)
    beta_min: float = Field(0.5, gt=0, description="reweight: smallest power beta of pT -> pT^beta")
    beta_max: float = Field(0.8, gt=0)

    def model_post_init(self, _ctx) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"anomalous.kinds {self.kinds!r}: choose from {', '.join(map(repr, KINDS))} (at least one)")
        if self.drop_min > self.drop_max or self.shift_min > self.shift_max or self.beta_min > self.beta_max:
            raise ConfigError("anomalous: drop_min must be <= drop_max, shift_min <= shift_max and beta_min <= beta_max")


class Features:
    """Column positions of the known features in a point cloud."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.idx = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in REQUIRED if n not in self.idx]
        if missing:
            raise ConfigError(f"point clouds miss the features {missing} needed by the augmentations")

    def col(self, x, name):
        return x[..., self.idx[name]]

    def has(self, name) -> bool:
        return name in self.idx


# -- helpers ----------------------------------------------------------------------------------------
def _rand(shape, like, generator):
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


def _randn(shape, like, generator):
    return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)


def pt_of(x, f: Features):
    return torch.exp(f.col(x, "log_pt"))


def _write(x, mask, f: Features, deta=None, dphi=None, pt_scale=None, e_scale=None):
    """New cloud with moved angles and/or rescaled pT / E; padding zeroed."""
    x = x.clone()
    i = f.idx
    if deta is not None:
        x[..., i["deta"]] = deta
    if dphi is not None:
        x[..., i["dphi"]] = dphi
    if pt_scale is not None:
        ls = torch.log(pt_scale.clamp(min=1e-30))
        x[..., i["log_pt"]] += ls
        if "pt_rel" in i:
            x[..., i["pt_rel"]] *= pt_scale
    if e_scale is not None:
        if "log_e" in i:
            x[..., i["log_e"]] += torch.log(e_scale.clamp(min=1e-30))
        if "e_rel" in i:
            x[..., i["e_rel"]] *= e_scale
    if "dr" in i and (deta is not None or dphi is not None):
        x[..., i["dr"]] = torch.hypot(x[..., i["deta"]], x[..., i["dphi"]])
    return x * mask[..., None].to(x.dtype), mask


def jet_momenta(x, mask, f: Features):
    """Constituent 3-momenta ``[B, N, 3]`` and energies ``[B, N]`` in the jet frame (massless)."""
    pt = pt_of(x, f) * mask
    deta, dphi = f.col(x, "deta"), f.col(x, "dphi")
    p = torch.stack([pt * torch.cos(dphi), pt * torch.sin(dphi), pt * torch.sinh(deta)], dim=-1)
    return p, pt * torch.cosh(deta)


def jet_pt_mass(x, mask, f: Features):
    """Jet (pT, mass) from the constituents, jet frame, massless constituents."""
    p, e = jet_momenta(x, mask, f)
    P = p.sum(1)
    E = e.sum(1)
    m2 = E**2 - (P**2).sum(-1)
    return torch.hypot(P[:, 0], P[:, 1]), torch.sqrt(m2.clamp(min=0))


def scalar_pt(x, mask, f: Features):
    return (pt_of(x, f) * mask).sum(1)


# -- physical augmentations -------------------------------------------------------------------------
def rotate(x, mask, f: Features, angle=None, generator=None):
    """Rotate every jet's constituents about the jet momentum by ``angle`` (default uniform)."""
    B = x.shape[0]
    if angle is None:
        angle = _rand((B,), x, generator) * (2 * math.pi)
    p, e0 = jet_momenta(x, mask, f)
    P = p.sum(1)
    n = P / P.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    n = torch.where(P.norm(dim=-1, keepdim=True) > 1e-12, n, torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype, device=x.device))
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    nb = n[:, None, :]
    pr = p * c + torch.cross(nb.expand_as(p), p, dim=-1) * s + nb * (p * nb).sum(-1, keepdim=True) * (1 - c)
    pt_new = torch.hypot(pr[..., 0], pr[..., 1])
    pt_old = pt_of(x, f)
    ok = mask & (pt_new > 0)
    safe = torch.where(ok, pt_new, torch.ones_like(pt_new))
    deta = torch.asinh(pr[..., 2] / safe)
    dphi = torch.atan2(pr[..., 1], pr[..., 0])
    scale = torch.where(ok, safe / pt_old.clamp(min=1e-30), torch.ones_like(pt_new))
    # jet-frame energy |p| is conserved: E ratio 1
    return _write(x, mask, f, deta, dphi, pt_scale=scale)


def translate(x, mask, f: Features, width: float, shift=None, generator=None):
    """Shift each jet by (δη, δφ) ~ N(0, width) (or the given ``shift [B, 2]``)."""
    B = x.shape[0]
    if shift is None:
        shift = _randn((B, 2), x, generator) * width
    deta = f.col(x, "deta") + shift[:, None, 0]
    dphi = f.col(x, "dphi") + shift[:, None, 1]
    e_scale = torch.cosh(deta) / torch.cosh(f.col(x, "deta"))
    return _write(x, mask, f, deta, dphi, e_scale=e_scale)


def permute(x, mask, generator=None):
    """Random order of the constituents (and padding) of every jet."""
    order = torch.argsort(_rand(mask.shape, x, generator), dim=1)
    return x.gather(1, order[..., None].expand_as(x)), mask.gather(1, order)


def smear(x, mask, f: Features, scale: float = 0.1, generator=None):
    """Soft smearing: Δη, Δφ += N(0, scale/pT) (scale in GeV)."""
    sigma = scale / pt_of(x, f).clamp(min=1e-6)
    sigma = torch.where(mask, sigma.clamp(max=1.0), torch.zeros_like(sigma))
    deta = f.col(x, "deta") + _randn(mask.shape, x, generator) * sigma
    dphi = f.col(x, "dphi") + _randn(mask.shape, x, generator) * sigma
    e_scale = torch.cosh(deta) / torch.cosh(f.col(x, "deta"))
    return _write(x, mask, f, deta, dphi, e_scale=e_scale)


def collinear_split(x, mask, f: Features, prob: float, generator=None, z=None):
    """Split each constituent with probability ``prob`` into two collinear ones (fractions z, 1-z,
    z ~ U(0, 1)); the new constituents go into padding slots (jets without room split fewer)."""
    B, N, F = x.shape
    sel = mask & (_rand((B, N), x, generator) < prob)
    free = (~mask).sum(1, keepdim=True)
    rank = torch.cumsum(sel.long(), 1) - 1
    sel = sel & (rank < free)
    if z is None:
        z = _rand((B, N), x, generator)
    z = torch.where(sel, z.clamp(1e-3, 1 - 1e-3), torch.ones_like(z))
    # destination of the r-th split of a jet = its r-th padding slot
    pad = ~mask
    pad_rank = torch.cumsum(pad.long(), 1) - 1
    slot_of_rank = torch.full((B, N + 1), N, dtype=torch.long, device=x.device)  # column N: non-padding entries
    slot_of_rank.scatter_(1, torch.where(pad, pad_rank, torch.full_like(pad_rank, N)),
                          torch.arange(N, device=x.device).expand(B, N))
    dest = slot_of_rank[:, :N].gather(1, rank.clamp(0, N - 1))
    one = torch.ones_like(z)
    kept, _ = _write(x, mask, f, pt_scale=z, e_scale=z)
    child, _ = _write(x, mask, f, pt_scale=torch.where(sel, 1 - z, one), e_scale=torch.where(sel, 1 - z, one))
    d = torch.where(sel, dest, torch.full_like(dest, N)).reshape(-1)  # unselected -> trash slot N
    b_idx = torch.arange(B, device=x.device).repeat_interleave(N)
    out = torch.cat([kept, x.new_zeros(B, 1, F)], 1).index_put((b_idx, d), (child * sel[..., None]).reshape(B * N, F))
    new_mask = torch.cat([mask, mask.new_zeros(B, 1)], 1).index_put((b_idx, d), sel.reshape(-1))
    new_mask = new_mask[:, :N] | mask
    return out[:, :N] * new_mask[..., None].to(x.dtype), new_mask


def drop_soft(x, mask, f: Features, prob: float, pt_max: float, generator=None):
    """Drop constituents softer than ``pt_max`` GeV, each with probability ``prob`` (never the hardest)."""
    pt = pt_of(x, f)
    hardest = torch.zeros_like(mask).scatter_(1, torch.where(mask, pt, torch.full_like(pt, -1.0)).argmax(1, keepdim=True), True)
    drop = mask & (pt < pt_max) & (_rand(mask.shape, x, generator) < prob) & ~hardest
    m = mask & ~drop
    return x * m[..., None].to(x.dtype), m


def physical(x, mask, f: Features, cfg: AugmentConfig, generator=None):
    """All enabled physical augmentations, in the order split, drop, smear, rotate, translate, permute."""
    if cfg.collinear > 0:
        x, mask = collinear_split(x, mask, f, cfg.collinear, generator)
    if cfg.drop_soft > 0:
        x, mask = drop_soft(x, mask, f, cfg.drop_soft, cfg.soft_pt, generator)
    if cfg.smear > 0:
        x, mask = smear(x, mask, f, cfg.smear, generator)
    if cfg.rotate:
        x, mask = rotate(x, mask, f, generator=generator)
    if cfg.translate > 0:
        x, mask = translate(x, mask, f, cfg.translate, generator=generator)
    if cfg.permute:
        x, mask = permute(x, mask, generator)
    return x, mask


# -- anomalous augmentations ------------------------------------------------------------------------
def drop_fraction(x, mask, f: Features, lo: float, hi: float, generator=None):
    """Drop a fraction U(lo, hi) of each jet's constituents (never the hardest), then rescale the
    remaining pT (and E) so that the scalar pT sum of the jet is unchanged."""
    B, N = mask.shape
    frac = lo + (hi - lo) * _rand((B, 1), x, generator)
    pt = pt_of(x, f) * mask
    hardest = torch.zeros_like(mask).scatter_(1, torch.where(mask, pt, torch.full_like(pt, -1.0)).argmax(1, keepdim=True), True)
    drop = mask & (_rand((B, N), x, generator) < frac) & ~hardest
    keep = mask & ~drop
    total = pt.sum(1, keepdim=True)
    kept = (pt * keep).sum(1, keepdim=True).clamp(min=1e-12)
    s = (total / kept).expand(B, N)
    x, _ = _write(x * keep[..., None].to(x.dtype), keep, f, pt_scale=s, e_scale=s)
    return x, keep


def principal_side(x, mask, f: Features):
    """+1/-1 per constituent: which side of the pT-weighted principal axis (through the centroid)."""
    pt = pt_of(x, f) * mask
    w = pt / pt.sum(1, keepdim=True).clamp(min=1e-12)
    e, p = f.col(x, "deta"), f.col(x, "dphi")
    ce, cp = (w * e).sum(1, keepdim=True), (w * p).sum(1, keepdim=True)
    de, dp = e - ce, p - cp
    cee, cpp, cep = (w * de * de).sum(1), (w * dp * dp).sum(1), (w * de * dp).sum(1)
    theta = 0.5 * torch.atan2(2 * cep, cee - cpp)
    proj = de * torch.cos(theta)[:, None] + dp * torch.sin(theta)[:, None]
    return torch.where(proj >= 0, 1.0, -1.0).to(x.dtype)


def shift_prongs(x, mask, f: Features, lo: float, hi: float, generator=None):
    """Move a fraction U(lo, hi) of one prong's pT (random which) to the other prong, at fixed
    scalar pT sum; prongs = the two sides of the principal axis."""
    B, N = mask.shape
    pt = pt_of(x, f) * mask
    side = principal_side(x, mask, f) * torch.where(_rand((B, 1), x, generator) < 0.5, 1.0, -1.0)
    a = mask & (side > 0)  # donor prong
    pa, pb = (pt * a).sum(1, keepdim=True), (pt * (mask & ~a)).sum(1, keepdim=True)
    s = lo + (hi - lo) * _rand((B, 1), x, generator)
    moved = s * pa
    ok = (pb > 0) & (pa > 0)
    sa = torch.where(ok, 1 - s, torch.ones_like(s))
    sb = torch.where(ok, 1 + moved / pb.clamp(min=1e-12), torch.ones_like(s))
    scale = torch.where(a, sa, sb)
    return _write(x, mask, f, pt_scale=scale, e_scale=scale)


def reweight_pt(x, mask, f: Features, lo: float, hi: float, generator=None):
    """Constituent pT -> pT^beta, beta ~ U(lo, hi) per jet, rescaled so that the scalar pT sum of the jet
    is unchanged: beta < 1 shares the pT more democratically (softer, dark-shower-like), beta > 1
    concentrates it in the hardest constituents."""
    B = mask.shape[0]
    beta = lo + (hi - lo) * _rand((B, 1), x, generator)
    lpt = f.col(x, "log_pt")
    pt = torch.exp(lpt) * mask
    new = torch.exp(beta * lpt) * mask
    s = pt.sum(1, keepdim=True) / new.sum(1, keepdim=True).clamp(min=1e-30)
    scale = torch.where(mask, new * s / pt.clamp(min=1e-30), torch.ones_like(pt))
    return _write(x, mask, f, pt_scale=scale, e_scale=scale)


def anomalous(x, mask, f: Features, cfg: AnomalousConfig, generator=None):
    """One anomalous augmentation per jet (chosen uniformly at random among ``cfg.kinds``)."""
    outs = []
    if "drop" in cfg.kinds:
        outs.append(drop_fraction(x, mask, f, cfg.drop_min, cfg.drop_max, generator))
    if "prongs" in cfg.kinds:
        outs.append(shift_prongs(x, mask, f, cfg.shift_min, cfg.shift_max, generator))
    if "reweight" in cfg.kinds:
        outs.append(reweight_pt(x, mask, f, cfg.beta_min, cfg.beta_max, generator))
    if len(outs) == 1:
        return outs[0]
    if len(outs) == 2:  # the draw of the two-kind default, kept for reproducibility
        pick = _rand((x.shape[0],), x, generator) < 0.5
        return (torch.where(pick[:, None, None], outs[0][0], outs[1][0]),
                torch.where(pick[:, None], outs[0][1], outs[1][1]))
    which = (_rand((x.shape[0],), x, generator) * len(outs)).long().clamp(max=len(outs) - 1)
    xo, mo = outs[0]
    for k in range(1, len(outs)):
        sel = which == k
        xo = torch.where(sel[:, None, None], outs[k][0], xo)
        mo = torch.where(sel[:, None], outs[k][1], mo)
    return xo, mo
