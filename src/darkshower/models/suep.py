"""``suep-ae``: convolutional autoencoder on full-detector event images trained with the inverse
Dice loss (the CMS SUEP trigger autoencoder, arXiv:2306.13595).

Input: event images (representation ``event_image``; channels tracks, ECAL, HCAL; eta on axis 2,
phi on axis 3), scaled by one number fitted on the training data. Phi is periodic: every
convolution pads it circularly. Loss and anomaly score (one per event) are the per-event inverse
Dice loss 1/D - 1 with D = (2 sum x x' + s) / (sum x^2 + sum x'^2 + s) over all pixels and
channels (x the image, x' the reconstruction), see :func:`inverse_dice_loss`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from darkshower.config import StrictModel
from darkshower.models.base import Method, _ScoreX
from darkshower.models.image_blocks import (
    ImageDecoder,
    ImageEncoder,
    ImageScale,
    image_spec,
    pad_image,
    padded_size,
    reconstruction_loss,
)

Activation = Literal["relu", "elu", "gelu", "silu", "tanh", "leaky_relu"]


class SUEPConfig(StrictModel):
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                description="conv widths; each stage halves eta and phi")
    depth: int = Field(0, ge=0, description="extra stride-1 convolutions per stage")
    latent: int = Field(32, ge=1, description="bottleneck size (dense) or channels (spatial_latent)")
    spatial_latent: bool = Field(False, description="fully convolutional 1x1-conv bottleneck (as the paper) "
                                                    "instead of a dense latent vector")
    activation: Activation = "leaky_relu"
    output: Literal["softplus", "relu"] = Field("softplus", description="non-negative reconstruction (the Dice "
                                                                        "loss needs x' >= 0); relu as the paper")
    loss: Literal["inverse_dice", "dice", "mse"] = Field("inverse_dice", description="training loss = score")
    smooth: float = Field(1e-6, gt=0, description="s in the Dice formulas")
    periodic_phi: bool = Field(True, description="circular padding in phi")
    transform: Literal["linear", "sqrt", "log1p"] = Field("linear", description="pixel transform after scaling "
                                                          "(the paper: linear)")


class SUEPAutoencoder(Method):
    name = "suep-ae"
    score_batch_size = 128
    Config = SUEPConfig
    level = "event"
    default_representation: ClassVar[dict] = {"kind": "event_image", "n_eta": 32, "n_phi": 32}
    paper = "arXiv:2306.13595 (autoencoders for real-time SUEP detection, inverse Dice loss)"

    kinds = ("event_image",)

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return image_spec(store, rep)

    def __init__(self, config: SUEPConfig, spec: dict):
        super().__init__(config, spec)
        c, h, w = spec["shape"]
        self.size = (h, w)
        self.hp, self.wp, self.top, self.left = padded_size((h, w), 2 ** len(config.channels), config.periodic_phi)
        self.pre = ImageScale("nonzero", config.transform)
        self.encoder = ImageEncoder(c, (self.hp, self.wp), config.channels, config.latent, config.activation,
                                    config.periodic_phi, config.depth, config.spatial_latent)
        self.decoder = ImageDecoder(c, self.encoder, config.channels, config.latent, config.activation,
                                    config.periodic_phi, config.depth, config.output)

    def prepare(self, store) -> None:
        self.pre.fit(store)

    def reconstruct(self, x):
        """Reconstruction of preprocessed images ``x`` [B, C, H, W]."""
        h, w = self.size
        y = self.decoder(self.encoder(pad_image(x, self.size, self.hp, self.wp, self.top, self.left)))
        return y[..., self.top:self.top + h, self.left:self.left + w]

    def per_sample_loss(self, x):
        return reconstruction_loss(x, self.reconstruct(x), self.config.loss, self.config.smooth)

    def loss(self, batch, ctx):
        x = self.pre(batch["x"])
        per = self.per_sample_loss(x)
        filled = (x.flatten(1) != 0).any(1)  # empty images carry no reconstruction target
        n = filled.sum()
        loss = (per * filled).sum() / n.clamp(min=1)
        return loss, {"empty_fraction": 1.0 - n.item() / max(len(per), 1)}

    def val_metrics(self, batch):
        x = self.pre(batch["x"])
        per = self.per_sample_loss(x)
        filled = (x.flatten(1) != 0).any(1)
        return {"loss": (per * filled).sum() / filled.sum().clamp(min=1)}

    def score(self, batch):
        return self.per_sample_loss(self.pre(batch["x"]))

    def export(self):
        return _ScoreX(self), (torch.rand(2, *self.spec["shape"]),)
