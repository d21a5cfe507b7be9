"""Convolutional building blocks and losses of the image autoencoders ``suep-ae`` and ``codae``.

- :class:`PadConv2d`: 'same' convolutions with zero padding in eta (image axis 2) and, for
  full-detector images, *circular* padding in phi (axis 3), so the network sees phi = -pi and
  phi = +pi as neighbours;
- :class:`ImageEncoder` / :class:`ImageDecoder`: strided-convolution encoder and
  upsample+convolution decoder (either a dense latent vector or a 1x1-convolution "spatial"
  bottleneck), the decoder optionally conditioned at every resolution on a small vector
  (:class:`SpatialConditioning`, the CoDAE of arXiv:2306.12955);
- :func:`dice_coefficient`, :func:`inverse_dice_loss`, :func:`reconstruction_loss`: per-sample
  (vectorized) reconstruction losses;
- :class:`ImageScale`: one fitted number that brings the pixels to O(1).

Images whose size is not a multiple of ``2**len(channels)`` are zero-padded (eta, and phi when
it is not periodic) before the encoder and the reconstruction is cropped back.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darkshower.errors import ConfigError
from darkshower.models.layers import ACTIVATIONS

OUTPUTS = ("none", "softplus", "relu", "sigmoid")


def output_activation(name: str) -> nn.Module:
    return {"none": nn.Identity, "softplus": nn.Softplus, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[name]()


# -- losses ---------------------------------------------------------------------------------------
def dice_coefficient(x: torch.Tensor, y: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """Per-sample (soft, squared) Dice coefficient D = (2 sum x y + s) / (sum x^2 + sum y^2 + s)
    over all pixels and channels; ``x``, ``y``: [B, ...] -> [B]. D = 1 iff y = x."""
    x, y = x.flatten(1), y.flatten(1)
    return (2 * (x * y).sum(1) + smooth) / ((x * x).sum(1) + (y * y).sum(1) + smooth)


def inverse_dice_loss(x: torch.Tensor, y: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """Per-sample inverse Dice loss 1/D - 1 = (sum x^2 + sum y^2 + s) / (2 sum x y + s) - 1
    (arXiv:2306.13595). For s -> 0 it equals |x - y|^2 / (2 x.y): the squared error measured
    relative to the overlap of input and reconstruction, >= 0, 0 iff y = x."""
    x, y = x.flatten(1), y.flatten(1)
    return ((x * x).sum(1) + (y * y).sum(1) + smooth) / (2 * (x * y).sum(1) + smooth) - 1


LOSSES = ("inverse_dice", "dice", "mse")


def reconstruction_loss(x: torch.Tensor, y: torch.Tensor, kind: str, smooth: float = 1e-6) -> torch.Tensor:
    """Per-sample reconstruction loss of input ``x`` by ``y``: inverse_dice (1/D - 1), dice (1 - D)
    or mse (mean over pixels)."""
    if kind == "inverse_dice":
        return inverse_dice_loss(x, y, smooth)
    if kind == "dice":
        return 1 - dice_coefficient(x, y, smooth)
    if kind == "mse":
        return ((y - x) ** 2).flatten(1).mean(1)
    raise ConfigError(f"unknown reconstruction loss {kind!r}; choose one of {', '.join(LOSSES)}")


# -- preprocessing ------------------------------------------------------------------------------
def store_image_stats(store: dict, max_samples: int = 20000) -> tuple[np.ndarray, int]:
    """(non-zero pixel values, number of pixels looked at) of a training store holding dense
    images (``x``) or sparse event images (``sparse``)."""
    sp = store.get("sparse")
    if sp is not None:
        n = min(len(sp), max_samples)
        vals = np.asarray(sp.value[: sp.offsets[n]], np.float64)
        return vals[vals != 0], n * int(np.prod(sp.shape))
    x = np.asarray(store["x"][:max_samples], np.float64)
    return x[x != 0], x.size


TRANSFORMS = ("linear", "sqrt", "log1p")


class ImageScale(nn.Module):
    """x -> t(x * scale) with one number fitted on the training images: ``mode="nonzero"``: RMS of
    the non-zero pixels becomes 1 (sparse event images); ``"all"``: RMS over all pixels. ``t``:
    ``"linear"`` (identity), ``"sqrt"`` or ``"log1p"`` (compress the pT range so that the many
    soft pixels weigh more against the few hard ones)."""

    # buffers (register_buffer in __init__), typed for mypy
    scale: torch.Tensor

    def __init__(self, mode: str = "nonzero", transform: str = "linear"):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ConfigError(f"image transform {transform!r}: choose one of {', '.join(TRANSFORMS)}")
        self.mode = mode
        self.transform = transform
        self.register_buffer("scale", torch.ones(()))

    def fit(self, store: dict) -> None:
        vals, n_pix = store_image_stats(store)
        if vals.size == 0:
            self.scale.fill_(1.0)
            return
        ms = np.sum(vals ** 2) / (vals.size if self.mode == "nonzero" else max(n_pix, 1))
        self.scale.fill_(1.0 / math.sqrt(ms) if ms > 0 else 1.0)

    def forward(self, x):
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0) * self.scale
        if self.transform == "sqrt":
            return x.sqrt()
        if self.transform == "log1p":
            return torch.log1p(x)
        return x


# -- geometry -----------------------------------------------------------------------------------
def padded_size(size: tuple[int, int], factor: int, periodic: bool) -> tuple[int, int, int, int]:
    """(H', W', pad_top, pad_left) with H', W' multiples of ``factor``. With ``periodic`` (phi of a
    full-detector image) W must already be a multiple: it cannot be zero-padded."""
    h, w = size
    if periodic and w % factor:
        raise ConfigError(f"image phi size {w} must be a multiple of {factor} (2^len(model.channels)) when phi is "
                          f"periodic: set representation.n_phi to a multiple of {factor} (e.g. "
                          f"{max(factor, round(w / factor) * factor)}), or use fewer model.channels")
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    return hp, wp, (hp - h) // 2, (wp - w) // 2


def pad_image(x: torch.Tensor, size: tuple[int, int], hp: int, wp: int, top: int, left: int) -> torch.Tensor:
    """Zero-pad images of ``size`` (H, W) to (hp, wp) (sizes from the model, not the tensor, so
    that a traced/exported model has no shape-dependent branch)."""
    h, w = size
    if hp == h and wp == w:
        return x
    return F.pad(x, (left, wp - w - left, top, hp - h - top))


class PadConv2d(nn.Module):
    """kxk convolution with 'same' padding: zeros in eta (H); in phi (W) circular when
    ``periodic``, else zeros. Stride 2 halves even sizes exactly."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, periodic: bool = False):
        super().__init__()
        self.p = kernel // 2
        self.periodic = periodic
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0)

    def forward(self, x):
        p = self.p
        if p:
            if self.periodic:
                x = torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)
                x = F.pad(x, (0, 0, p, p))
            else:
                x = F.pad(x, (p, p, p, p))
        return self.conv(x)


class ImageEncoder(nn.Module):
    """[B, C, H, W] (H, W multiples of 2^len(channels)) -> [B, latent] (dense) or
    [B, latent, H/f, W/f] (``spatial``): per stage a stride-2 conv (+ ``depth`` stride-1 convs)."""

    def __init__(self, in_ch: int, size: tuple[int, int], channels: list[int], latent: int, activation: str,
                 periodic: bool, depth: int = 0, spatial: bool = False):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c = in_ch
        for ch in channels:
            layers += [PadConv2d(c, ch, 3, 2, periodic), act()]
            for _ in range(depth):
                layers += [PadConv2d(ch, ch, 3, 1, periodic), act()]
            c = ch
        self.conv = nn.Sequential(*layers)
        f = 2 ** len(channels)
        self.feature_shape = (c, size[0] // f, size[1] // f)
        self.spatial = spatial
        self.head: nn.Module
        self.out_shape: tuple[int, ...]
        if spatial:
            self.head = nn.Conv2d(c, latent, 1)
            self.out_shape = (latent, size[0] // f, size[1] // f)
        else:
            self.head = nn.Linear(int(np.prod(self.feature_shape)), latent)
            self.out_shape = (latent,)

    def forward(self, x):
        h = self.conv(x)
        return self.head(h) if self.spatial else self.head(h.flatten(1))


class SpatialConditioning(nn.Module):
    """Conditions a feature map [B, C, h, w] on a small vector z [B, d] (CoDAE, arXiv:2306.12955).

    ``"scale"`` (the paper's layer): z is broadcast over the h x w grid together with two
    coordinate maps (spatial broadcast), a 3x3 convolution makes C maps s(z, eta, phi), and the
    features are multiplied by them (the convolution bias starts at 1, so s = 1 at
    initialization). ``"concat"``: z is appended as d constant channels.
    """

    def __init__(self, cond_dim: int, channels: int, size: tuple[int, int], mode: str, periodic: bool):
        super().__init__()
        h, w = size
        self.mode = mode
        self.cond_dim = cond_dim
        self.size = (h, w)
        if mode == "scale":
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            self.register_buffer("grid", torch.stack([yy, xx])[None], persistent=False)
            self.expand = PadConv2d(cond_dim + 2, channels, 3, 1, periodic)
            assert self.expand.conv.bias is not None  # PadConv2d convolutions have a bias
            nn.init.ones_(self.expand.conv.bias)
            self.out_channels = channels
        elif mode == "concat":
            self.out_channels = channels + cond_dim
        else:
            raise ConfigError(f"conditioning {mode!r}: choose 'scale' or 'concat'")

    def forward(self, x, z):
        h, w = x.shape[-2], x.shape[-1]
        zb = z[:, :, None, None].expand(-1, -1, h, w)
        if self.mode == "concat":
            return torch.cat([x, zb], dim=1)
        g = self.grid.expand(x.shape[0], -1, -1, -1)
        return x * self.expand(torch.cat([zb, g], dim=1))


class ImageDecoder(nn.Module):
    """Mirror of :class:`ImageEncoder`: per stage (optional conditioning ->) nearest-neighbour
    2x upsampling -> 3x3 conv -> activation; a final 3x3 conv to ``out_ch`` and the output
    activation."""

    def __init__(self, out_ch: int, enc: ImageEncoder, channels: list[int], latent: int, activation: str,
                 periodic: bool, depth: int = 0, output: str = "none", cond_dim: int = 0,
                 conditioning: str = "scale"):
        super().__init__()
        act = ACTIVATIONS[activation]
        c, h, w = enc.feature_shape
        self.feature_shape = enc.feature_shape
        self.spatial = enc.spatial
        if enc.spatial:
            self.head = nn.Sequential(nn.Conv2d(latent, c, 1), act())
        else:
            self.head = nn.Sequential(nn.Linear(latent, c * h * w), act())
        chans = list(reversed(channels))
        self.conds = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i in range(len(chans)):
            nxt = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            c_in = c
            if cond_dim:
                cond = SpatialConditioning(cond_dim, c, (h, w), conditioning, periodic)
                self.conds.append(cond)
                c_in = cond.out_channels
            layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest"), PadConv2d(c_in, nxt, 3, 1, periodic),
                                       act()]
            for _ in range(depth):
                layers += [PadConv2d(nxt, nxt, 3, 1, periodic), act()]
            self.stages.append(nn.Sequential(*layers))
            c, h, w = nxt, h * 2, w * 2
        self.out = nn.Sequential(PadConv2d(c, out_ch, 3, 1, periodic), output_activation(output))

    def forward(self, z, cond=None):
        h = self.head(z) if self.spatial else self.head(z).view(-1, *self.feature_shape)
        for i, stage in enumerate(self.stages):
            if len(self.conds):
                h = self.conds[i](h, cond)
            h = stage(h)
        return self.out(h)


def image_spec(store: dict, rep) -> dict:
    """Input spec of image methods: [channels, height, width] of jet images or (sparse) event images."""
    shape = list(store["sparse"].shape) if "sparse" in store else list(store["x"].shape[1:])
    return {"kind": rep.kind, "shape": shape}
