"""Plain autoencoders: ``ae-hlf`` (dense, on standardized jet observables; the baseline of
arXiv:2112.02864) and ``ae-image`` (convolutional, on jet images). Anomaly score = mean squared
reconstruction error of the (preprocessed) input."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.base import Method, _ScoreX
from darkshower.models.layers import ConvDecoder, ConvEncoder, mlp

#: jet observables of the ae-hlf default: substructure only (no pT/eta/phi, no event-level MET)
HLF_COLUMNS = ["mass", "msoftdrop", "tau21", "tau32", "c2", "d2", "n2", "girth", "ptd", "axis_major", "axis_minor",
               "n_constituents", "n_charged", "lund_n_primary", "lund_max_lnkt"]
#: heavy-tailed positive observables that are log-transformed before standardization
HLF_LOG = ["mass", "msoftdrop", "pt", "pt_softdrop", "d2", "n_constituents", "n_charged", "n_softdrop",
           "lund_n_primary", "met_pt", "mt", "mjj", "ht", "n_event_constituents", "n_event_particles"]


def feature_base(name: str) -> str:
    """The observable behind a representation column: ``j1_mass`` (event level, jet slot 1) -> ``mass``; other
    names unchanged. Preprocessing lists (log_features, dequantize) name observables, so they apply to every slot."""
    from darkshower.represent.config import slot_column

    sc = slot_column(name)
    return sc[1] if sc else name


class HLFConfig(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="encoder widths (decoder mirrors)")
    latent: int = Field(6, ge=1)
    activation: str = "elu"
    log_features: list[str] = Field(default_factory=lambda: list(HLF_LOG))
    clip: float = Field(8.0, gt=0, description="standardized inputs are clipped to +-clip")


class HLFPreprocess(torch.nn.Module):
    """log1p on the listed columns, then (x - mean) / std fitted on training data, clipped."""

    # buffers (register_buffer in __init__), typed for mypy
    is_log: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, names: list[str], log_features: list[str], clip: float):
        super().__init__()
        self.register_buffer("is_log", torch.tensor([feature_base(n) in log_features for n in names]))
        self.register_buffer("mean", torch.zeros(len(names)))
        self.register_buffer("std", torch.ones(len(names)))
        self.clip = clip

    def transform_np(self, x: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lg = self.is_log.numpy()
        x[:, lg] = np.log1p(np.clip(x[:, lg], 0, None))
        return x

    def fit(self, x: np.ndarray) -> None:
        t = self.transform_np(x)
        self.mean.copy_(torch.from_numpy(t.mean(0)).float())
        self.std.copy_(torch.from_numpy(np.where(t.std(0) > 1e-8, t.std(0), 1.0)).float())

    def forward(self, x):
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)
        x = torch.where(self.is_log, torch.log1p(x.clamp(min=0)), x)
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)


def observables_spec(store, rep) -> dict:
    """Input spec of observable-table methods: column names and count."""
    return {"kind": rep.kind, "names": list(rep.columns or []), "n_features": int(store["x"].shape[1])}


class HLFAutoencoder(Method):
    name = "ae-hlf"
    Config = HLFConfig
    has_embedding = True
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": HLF_COLUMNS, "include_event": False}
    paper = "arXiv:2112.02864 (autoencoders on jet observables for semivisible jets)"

    kinds = ("observables",)

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        return {**super().tune_space(),
                "model.hidden": {"type": "categorical", "choices": [[32, 16], [64, 32], [128, 64]]},
                "model.latent": {"type": "int", "low": 2, "high": 12}}

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return observables_spec(store, rep)

    def __init__(self, config: HLFConfig, spec: dict):
        super().__init__(config, spec)
        n = spec["n_features"]
        names = spec.get("names") or [f"f{i}" for i in range(n)]
        self.pre = HLFPreprocess(names, config.log_features, config.clip)
        sizes = [n, *config.hidden, config.latent]
        self.encoder = mlp(sizes, config.activation)
        self.decoder = mlp(sizes[::-1], config.activation)

    def prepare(self, store) -> None:
        self.pre.fit(store["x"])

    def encode(self, x):
        return self.encoder(x)

    @property
    def embed_dim(self) -> int:
        return int(self.config.latent)

    def embed(self, batch) -> torch.Tensor:
        """Frozen features for other methods (e.g. ``nae`` with ``model.embedding_run``): the encoder
        latent of the preprocessed input, [B, latent]."""
        return self.encoder(self.pre(batch["x"]))

    def reconstruction_error(self, x):
        """Per-sample MSE of preprocessed inputs ``x`` (already through ``pre``)."""
        return ((self.decoder(self.encoder(x)) - x) ** 2).mean(dim=1)

    def loss(self, batch, ctx):
        return self.reconstruction_error(self.pre(batch["x"])).mean(), {}

    def val_metrics(self, batch):
        return {"loss": self.score(batch).mean()}

    def score(self, batch):
        return self.reconstruction_error(self.pre(batch["x"]))

    def export(self):
        return _ScoreX(self), (torch.zeros(4, self.spec["n_features"]),)


class ImageConfig(StrictModel):
    channels: list[int] = Field(default_factory=lambda: [16, 32], description="conv widths; each stage halves the image")
    latent: int = Field(32, ge=1)
    activation: str = "relu"


class ImagePreprocess(torch.nn.Module):
    """Images are pT-normalized (sum 1); scale by one number fitted so the mean pixel RMS is 1."""

    # buffers (register_buffer in __init__), typed for mypy
    scale: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def fit(self, x: np.ndarray) -> None:
        rms = float(np.sqrt(np.mean(np.square(x[: 20000], dtype=np.float64))))
        self.scale.fill_(1.0 / rms if rms > 0 else 1.0)

    def forward(self, x):
        return x.float() * self.scale


class ImageAutoencoder(Method):
    name = "ae-image"
    Config = ImageConfig
    default_representation: ClassVar[dict] = {"kind": "image", "n_pixels": 32, "half_width": 0.8}
    score_batch_size = 128
    paper = "arXiv:2112.02864 / arXiv:1808.08992 (convolutional autoencoders on jet images)"

    kinds = ("image",)

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        return {**super().tune_space(),
                "model.channels": {"type": "categorical", "choices": [[8, 16], [16, 32], [32, 64]]},
                "model.latent": {"type": "int", "low": 8, "high": 64, "log": True}}

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return {"kind": rep.kind, "shape": list(store["x"].shape[1:])}

    def __init__(self, config: ImageConfig, spec: dict):
        super().__init__(config, spec)
        c, h, w = spec["shape"]
        f = 2 ** len(config.channels)
        if h % f or w % f:
            raise ConfigError(f"{self.name}: image size {h}x{w} must be divisible by {f} "
                              f"(2^len(model.channels)); set representation.n_pixels accordingly")
        self.pre = ImagePreprocess()
        self.encoder = ConvEncoder(c, (h, w), config.channels, config.latent, config.activation)
        self.decoder = ConvDecoder(c, self.encoder.out_shape, config.channels, config.latent, config.activation)

    def prepare(self, store) -> None:
        self.pre.fit(store["x"])

    def reconstruction_error(self, x):
        return ((self.decoder(self.encoder(x)) - x) ** 2).flatten(1).mean(dim=1)

    def loss(self, batch, ctx):
        return self.reconstruction_error(self.pre(batch["x"])).mean(), {}

    def score(self, batch):
        return self.reconstruction_error(self.pre(batch["x"]))

    def export(self):
        return _ScoreX(self), (torch.zeros(2, *self.spec["shape"]),)
