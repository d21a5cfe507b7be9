"""Small building blocks shared by the models."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def mlp(sizes: list[int], activation: str = "relu", final_activation: bool = False, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """[B, C, H, W] -> [B, latent]: ``len(channels)`` conv+pool stages (each halves H and W)."""

    def __init__(self, in_ch: int, size: tuple[int, int], channels: list[int], latent: int, activation: str = "relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c = in_ch
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 3, padding=1), act(), nn.MaxPool2d(2)]
            c = ch
        self.conv = nn.Sequential(*layers)
        f = 2 ** len(channels)
        self.out_shape = (c, size[0] // f, size[1] // f)
        self.fc = nn.Linear(c * self.out_shape[1] * self.out_shape[2], latent)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """[B, latent] -> [B, C, H, W], mirror of :class:`ConvEncoder` (transposed convolutions)."""

    def __init__(self, out_ch: int, enc_shape: tuple[int, int, int], channels: list[int], latent: int,
                 activation: str = "relu", cond: int = 0):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.enc_shape = enc_shape
        self.fc = nn.Sequential(nn.Linear(latent, enc_shape[0] * enc_shape[1] * enc_shape[2]), act())
        chans = list(reversed(channels))  # e.g. [32, 16]
        self.ups = nn.ModuleList()
        c = enc_shape[0]
        for i, _ch in enumerate(chans):
            nxt = chans[i + 1] if i + 1 < len(chans) else out_ch
            self.ups.append(nn.ConvTranspose2d(c + cond, nxt, 2, stride=2))
            c = nxt
        self.act = act()
        self.cond = cond

    def forward(self, z, c=None):
        h = self.fc(z).view(-1, *self.enc_shape)
        for i, up in enumerate(self.ups):
            if self.cond:
                h = torch.cat([h, c[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], dim=1)
            h = up(h)
            if i < len(self.ups) - 1:
                h = self.act(h)
        return h
