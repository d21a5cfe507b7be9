"""``codae``: conditional dual-encoder autoencoder (CoDAE, arXiv:2306.12955).

Two encoders read the same image: a high-capacity one, f_R, gives the bottleneck Z; a small
one, f_m (convolution + max-pooling stages, then a dense layer), gives a 2-dimensional latent
Z_m. The decoder reconstructs the image from Z and is *conditioned on Z_m at every resolution*
(:class:`~darkshower.models.image_blocks.SpatialConditioning`: Z_m broadcast over the grid with
coordinate maps, a convolution, and the features multiplied by the result; or Z_m appended as
constant channels). Default input: jet images (representation ``image``); full-detector event
images (``event_image``) work too, with circular padding in phi. Anomaly score: the per-sample
reconstruction error (MSE of the scaled image, or the inverse Dice loss with ``loss``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.models.base import Method, _ScoreX
from darkshower.models.image_blocks import (
    ImageDecoder,
    ImageEncoder,
    ImageScale,
    PadConv2d,
    image_spec,
    pad_image,
    padded_size,
    reconstruction_loss,
)
from darkshower.models.layers import ACTIVATIONS

Activation = Literal["relu", "elu", "gelu", "silu", "tanh", "leaky_relu"]


class CoDAEConfig(StrictModel):
    channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1,
                                description="f_R conv widths (decoder mirrors); each stage halves the image")
    depth: int = Field(0, ge=0, description="extra stride-1 convolutions per f_R / decoder stage")
    latent: int = Field(32, ge=1, description="size of Z (dense) or its channels (spatial_latent)")
    spatial_latent: bool = Field(False, description="1x1-conv bottleneck Z (as the paper) instead of a dense vector")
    cond_channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=1,
                                     description="f_m conv widths (each followed by 2x2 max-pooling)")
    cond_latent: int = Field(2, ge=1, description="size of Z_m (2 in the paper)")
    conditioning: Literal["scale", "concat"] = Field("scale", description="scale: multiply the decoder features by "
                                                     "a conv of [Z_m, coordinates] (paper); concat: Z_m as channels")
    activation: Activation = "leaky_relu"
    output: Literal["none", "softplus", "relu", "sigmoid"] = "none"
    loss: Literal["mse", "inverse_dice", "dice"] = Field("mse", description="training loss = score")
    smooth: float = Field(1e-6, gt=0, description="s of the Dice losses")
    periodic_phi: bool | None = Field(None, description="circular padding in phi; null: on for event images")
    transform: Literal["linear", "sqrt", "log1p"] = Field("linear", description="pixel transform after scaling")


class MaskEncoder(nn.Module):
    """f_m: [conv 3x3 -> activation -> 2x2 max-pool] per width, flatten, dense -> Z_m."""

    def __init__(self, in_ch: int, size: tuple[int, int], channels: list[int], out: int, activation: str,
                 periodic: bool):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c, h, w = in_ch, size[0], size[1]
        for ch in channels:
            layers += [PadConv2d(c, ch, 3, 1, periodic), act(), nn.MaxPool2d(2, ceil_mode=True)]
            c, h, w = ch, -(-h // 2), -(-w // 2)
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * h * w, out)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class DualEncoderAutoencoder(Method):
    name = "codae"
    score_batch_size = 128
    Config = CoDAEConfig
    default_representation: ClassVar[dict] = {"kind": "image", "n_pixels": 32, "half_width": 0.8}
    paper = "arXiv:2306.12955 (triggering dark showers with conditional dual auto-encoders)"

    kinds = ("image", "event_image")

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return image_spec(store, rep)

    def __init__(self, config: CoDAEConfig, spec: dict):
        super().__init__(config, spec)
        c, h, w = spec["shape"]
        self.size = (h, w)
        event = spec.get("kind") == "event_image"
        periodic = event if config.periodic_phi is None else config.periodic_phi
        self.hp, self.wp, self.top, self.left = padded_size((h, w), 2 ** len(config.channels), periodic)
        self.pre = ImageScale("nonzero" if event else "all", config.transform)
        self.encoder = ImageEncoder(c, (self.hp, self.wp), config.channels, config.latent, config.activation,
                                    periodic, config.depth, config.spatial_latent)
        self.mask_encoder = MaskEncoder(c, (self.hp, self.wp), config.cond_channels, config.cond_latent,
                                        config.activation, periodic)
        self.decoder = ImageDecoder(c, self.encoder, config.channels, config.latent, config.activation, periodic,
                                    config.depth, config.output, cond_dim=config.cond_latent,
                                    conditioning=config.conditioning)

    def prepare(self, store) -> None:
        self.pre.fit(store)

    def encode(self, x):
        """(Z, Z_m) of preprocessed images ``x``."""
        xp = pad_image(x, self.size, self.hp, self.wp, self.top, self.left)
        return self.encoder(xp), self.mask_encoder(xp)

    def reconstruct(self, x):
        h, w = self.size
        z, zm = self.encode(x)
        y = self.decoder(z, zm)
        return y[..., self.top:self.top + h, self.left:self.left + w]

    def per_sample_loss(self, x):
        return reconstruction_loss(x, self.reconstruct(x), self.config.loss, self.config.smooth)

    def loss(self, batch, ctx):
        return self.per_sample_loss(self.pre(batch["x"])).mean(), {}

    def score(self, batch):
        return self.per_sample_loss(self.pre(batch["x"]))

    def export(self):
        return _ScoreX(self), (torch.rand(2, *self.spec["shape"]),)
