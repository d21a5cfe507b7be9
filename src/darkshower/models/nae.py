"""Energy-based autoencoders: ``nae`` (normalized autoencoder, arXiv:2105.05735; for jets
arXiv:2206.14225) and ``wnae`` (Wasserstein NAE, the CMS WNAE of F. Eble et al.).

The energy is the autoencoder's reconstruction error, ``E(x) = mean((x - D(Enc(x)))^2)`` of the
preprocessed input (the same number ``ae-hlf`` uses as its score). A plain AE can reconstruct
inputs far from the data well (complexity bias); an NAE also *raises* the energy wherever the
model would put probability mass ``p(x) ~ exp(-E(x)/T)`` that the data do not fill. Those places
are found by Langevin MCMC from the model itself:

1. on-manifold initialization: a latent ``z`` from the replay buffer (probability
   ``replay_ratio``) or from noise (uniform on the unit sphere when ``spherical``), then
   ``z_steps`` Langevin steps on ``E(D(z))``; the end points go back into the buffer;
2. decode, clamp to the data bounding box, then ``x_steps`` Langevin steps on ``E(x)``
   (drift ``-x_step_size * grad E / T`` with the per-sample gradient norm clipped to
   ``x_grad_clip``, Gaussian noise ``x_noise``, samples clamped to the box after every step).

``nae`` minimizes ``E(data) - E(samples) + gamma (E(data)^2 + E(samples)^2)`` with the samples
detached (contrastive divergence). ``wnae`` minimizes the earth mover's distance between the
batch and the samples, ``sum(plan * cost(x_data, x_samples))`` (plan from POT's exact ``ot.emd``);
the samples depend on the parameters through the Langevin drift, and the gradient is taken
through the last ``grad_steps`` x-space steps (truncated back-propagation; ``grad_steps: null``
= through the whole x chain, as the public WNAE code does; the latent chain is always detached).

Both pre-train as a plain AE for ``pretrain_epochs`` epochs. Stability guards (users of the
original code report divergence without them): MCMC gradient clipping, the sample clamp to the
data bounding box (+ ``box_margin``), the energy regularization ``gamma``, a temperature, the
trainer's gradient-norm clip and its non-finite-loss stop. The replay buffer is a registered
buffer, so ``state_dict()`` (and ``--resume``) carries it.

Checkpoints are selected without labels by the validation EMD (``validation_emd``): samples are
drawn with a fixed seed and compared with validation data in the energy's input space.

Inputs: the standardized jet observables of ``ae-hlf`` (default), jet images
(``representation.kind: image``, convolutional AE) or, with ``model.embedding_run: RUN``, the
frozen embedding ``method.embed(batch)`` of another run, or the named one of ``model.embedding_space``
(``method.embed_in(batch, space)``, e.g. a contrastive run's ``pooled`` encoder output; standardized; its
representation is used, and its weights are stored inside this model so the run is self-contained).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.ae import HLF_COLUMNS, HLF_LOG, HLFPreprocess, ImagePreprocess
from darkshower.models.base import Method, _ScoreX
from darkshower.models.layers import ACTIVATIONS, ConvDecoder, ConvEncoder, mlp

log = logging.getLogger(__name__)

#: representation kinds the NAE reads directly (anything else goes through ``embedding_run``)
DIRECT_KINDS = ("observables", "image")


class NAEConfig(StrictModel):
    # -- network (as ae-hlf / ae-image) ------------------------------------------------------------
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="dense encoder widths (decoder mirrors)")
    channels: list[int] = Field(default_factory=lambda: [16, 32], description="image: conv widths, each halves the image")
    latent: int | None = Field(None, ge=1, description="latent size; null: 6 (vectors) or 32 (images)")
    activation: str = "elu"
    spherical: bool = Field(True, description="project the latent onto the unit sphere (NAE on-manifold init)")
    log_features: list[str] = Field(default_factory=lambda: list(HLF_LOG), description="observables: log1p columns")
    clip: float = Field(8.0, gt=0, description="observables: standardized inputs clipped to +-clip")
    embedding_run: str | None = Field(None, description="train on the frozen embedding of this run's method")
    embedding_space: str | None = Field(
        None, description="which embedding of embedding_run: null = the method's default (contrastive: z, the "
                          "head's output); contrastive runs also offer 'pooled' (the encoder output before the head)")
    # -- schedule ----------------------------------------------------------------------------------
    pretrain_epochs: int = Field(3, ge=0, description="plain-AE epochs before the energy-based phase")
    # -- sampler -----------------------------------------------------------------------------------
    z_steps: int = Field(5, ge=0, description="latent Langevin steps (chains persist through the replay buffer)")
    z_step_size: float = Field(0.1, gt=0)
    z_noise: float = Field(0.1, ge=0)
    z_grad_clip: float | None = Field(1.0, gt=0, description="per-sample latent gradient norm clip")
    x_steps: int = Field(5, ge=0, description="input-space Langevin steps")
    x_step_size: float = Field(1.0, gt=0)
    x_noise: float = Field(0.02, ge=0)
    x_grad_clip: float | None = Field(1.0, gt=0, description="per-sample input gradient norm clip")
    temperature: float = Field(1.0, gt=0, description="Langevin drift = -step * grad E / temperature")
    clamp_samples: bool = Field(True, description="clamp samples to the training data bounding box")
    box_margin: float = Field(0.05, ge=0, description="box widened by this fraction of each feature's range")
    buffer_size: int = Field(10000, ge=0, description="replay buffer of latent chain end points (0: off)")
    replay_ratio: float = Field(0.95, ge=0, le=1, description="probability a chain restarts from the buffer")
    n_negative: int | None = Field(128, ge=2, description="MCMC samples per training step (null: the batch size)")
    # -- loss --------------------------------------------------------------------------------------
    gamma: float = Field(1.0, ge=0, description="energy regularization gamma * (E_pos^2 + E_neg^2)")
    l2_reg: float = Field(0.0, ge=0, description="L2 norm of the network weights")
    # -- label-free selection ----------------------------------------------------------------------
    val_seed: int = Field(0, ge=0, description="seed of the validation sampler (same every epoch)")
    emd_cost: Literal["sqeuclidean", "euclidean"] = "sqeuclidean"
    select_pretrain: bool = Field(False, description="pre-training epochs may be selected (else val_emd is nan there)")

    @field_validator("activation")
    @classmethod
    def _act(cls, v):
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation {v!r}; choose one of {', '.join(ACTIVATIONS)}")
        return v

    @field_validator("embedding_run")
    @classmethod
    def _run_dir(cls, v):
        if v is None:
            return v
        p = Path(v).expanduser().resolve()
        if not (p / "run.json").exists():
            raise ValueError(f"{v} is not a training run (no run.json); give the --out directory of a finished "
                             "`darkshower train` whose method has embed()")
        return str(p)

    @model_validator(mode="after")
    def _space_needs_run(self):
        if self.embedding_space is not None and self.embedding_run is None:
            raise ValueError("model.embedding_space names an embedding of model.embedding_run: set "
                             "model.embedding_run=RUN_DIR as well, or remove model.embedding_space")
        return self


class WNAEConfig(NAEConfig):
    gamma: float = Field(0.0, ge=0, description="optional energy regularization gamma * (E_pos^2 + E_neg^2)")
    grad_steps: int | None = Field(1, ge=1, description="back-propagate the EMD through the last N x-space "
                                                         "Langevin steps (null: all, as the public WNAE code)")
    emd_block: int | None = Field(128, ge=8, description="loss: exact OT within blocks of this many samples "
                                                        "(minibatch OT; null: one exact OT over the whole batch)")

    @model_validator(mode="after")
    def _needs_x_chain(self):
        if self.x_steps < 1:
            raise ValueError("wnae needs model.x_steps >= 1: the EMD gradient reaches the network through the "
                             "input-space Langevin steps")
        return self


# -- Langevin dynamics ----------------------------------------------------------------------------
def _clip_norm(g: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Rescale each sample's gradient to norm <= max_norm (direction kept)."""
    if max_norm is None:
        return g
    norm = torch.linalg.vector_norm(g.flatten(1), dim=1).clamp(min=max_norm)
    return g * (max_norm / norm).view(-1, *([1] * (g.dim() - 1)))


def langevin(x0: torch.Tensor, energy, steps: int, step_size: float, noise: float, temperature: float = 1.0,
             grad_clip: float | None = None, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None,
             project=None, generator: torch.Generator | None = None, graph_steps: int = 0,
             params: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``steps`` Langevin steps ``x <- x - step_size * clip(grad E(x)) / T + noise * N(0, 1)``, clamped
    to [lo, hi] and/or projected (``project(x)``) after every step. The last ``graph_steps`` steps keep
    the autograd graph (``create_graph``), so the result depends differentiably on the parameters of
    ``energy``; the others are detached. Vectorized over the batch; ``generator`` drives the noise.
    ``params`` (the trainable parameters of ``energy``) are frozen during the detached steps, which
    saves autograd bookkeeping."""
    x = x0.detach()
    if steps == 0:
        return x
    params = [p for p in (params or []) if p.requires_grad]
    eps = torch.randn((steps, *x.shape), generator=generator, dtype=x.dtype, device=x.device) if noise > 0 else None
    if eps is not None:
        eps.mul_(noise)
    drift = -step_size / temperature
    with torch.enable_grad():
        for i in range(steps):
            keep = i >= steps - graph_steps
            if not keep or not x.requires_grad:
                x = x.detach().requires_grad_(True)
            for p in params:
                p.requires_grad_(keep)
            try:
                (g,) = torch.autograd.grad(energy(x).sum(), x, create_graph=keep)
            finally:
                for p in params:
                    p.requires_grad_(True)
            x = torch.add(x, _clip_norm(g, grad_clip), alpha=drift)
            if eps is not None:
                x = x + eps[i]
            if lo is not None:
                x = torch.clamp(x, lo, hi)
            if project is not None:
                x = project(x)
    return x if graph_steps > 0 else x.detach()


def _sphere(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)


class NormalizedAutoencoder(Method):
    name = "nae"
    Config = NAEConfig
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": HLF_COLUMNS, "include_event": False}
    energy_based = True
    default_selection = "val_emd"
    paper = "arXiv:2105.05735 (normalized autoencoders); arXiv:2206.14225 (NAE for LHC jets)"
    #: back-propagate through the last N x-space steps (WNAE); 0: samples detached (NAE)
    _graph_steps: ClassVar[int] = 0

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        """The training keys and the Langevin sampler (steps and step sizes, latent and input space)."""
        return {**super().tune_space(),
                "model.z_steps": {"type": "int", "low": 1, "high": 20},
                "model.z_step_size": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                "model.x_steps": {"type": "int", "low": 1, "high": 20},
                "model.x_step_size": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}

    # -- representation -------------------------------------------------------------------------
    @classmethod
    def representation_request(cls, config, user: dict) -> dict:
        if config.embedding_run is None:
            merged = super().representation_request(config, user)
            if merged.get("kind") not in DIRECT_KINDS:
                raise ConfigError(
                    f"{cls.name}: representation.kind {merged.get('kind')!r} is not supported directly; use "
                    f"'observables' (default) or 'image', or train on a frozen embedding of another run with "
                    f"--set model.embedding_run=RUN_DIR (e.g. a contrastive run on point clouds)")
            return merged
        from darkshower.models import get_method
        from darkshower.models.runs import read_run_json

        info = read_run_json(Path(config.embedding_run))
        # refused here, before the training data are built
        cls._check_embedder(get_method(info["method"]), config.embedding_run, config.embedding_space)
        rep = dict(info["representation"])
        extra = {k: v for k, v in user.items() if rep.get(k) != v}
        if extra:
            raise ConfigError(f"{cls.name}: with model.embedding_run the representation is that run's "
                              f"({rep.get('kind')!r}); remove representation keys {sorted(extra)} from the config")
        return rep

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        spec = super().input_spec(store, rep)
        if rep.kind == "observables":
            spec["names"] = list(rep.columns or [])
            spec["n_features"] = int(store["x"].shape[1])
        return spec

    @staticmethod
    def _embedder_class(config):
        from darkshower.config import validate
        from darkshower.models import get_method
        from darkshower.models.runs import read_run_config, read_run_json

        run = Path(config.embedding_run)
        ecls = get_method(read_run_json(run)["method"])
        return ecls, validate(ecls.Config, read_run_config(run).model, f"{run}/config.yaml: model")

    @classmethod
    def extra_column_names(cls, config) -> tuple[str, ...]:
        if config.embedding_run is None:
            return ()
        ecls, ecfg = cls._embedder_class(config)
        return tuple(ecls.extra_column_names(ecfg))

    @classmethod
    def extra_columns(cls, config, events, ids) -> dict:
        if config.embedding_run is None:
            return {}
        ecls, ecfg = cls._embedder_class(config)
        return ecls.extra_columns(ecfg, events, ids)

    # -- construction ---------------------------------------------------------------------------
    # buffers (register_buffer in __init__), typed for mypy
    emb_mean: torch.Tensor
    emb_std: torch.Tensor
    box_lo: torch.Tensor
    box_hi: torch.Tensor
    replay: torch.Tensor
    replay_n: torch.Tensor
    replay_ptr: torch.Tensor

    def __init__(self, config: NAEConfig, spec: dict):
        super().__init__(config, spec)
        self.embedder: Method | None = None
        self.pre: HLFPreprocess | ImagePreprocess
        self.space_shape: tuple[int, ...]
        kind = spec["kind"]
        if config.embedding_run is not None:
            self.mode = "embedding"
            self.embedder = self._load_embedder(config.embedding_run, config.embedding_space)
            dim = self.embedder.embed_dim_in(config.embedding_space)
            if dim <= 0:
                raise ConfigError(f"model.embedding_run {config.embedding_run}: the embedding has size {dim}")
            self.register_buffer("emb_mean", torch.zeros(dim))
            self.register_buffer("emb_std", torch.ones(dim))
            self.space_shape = (dim,)
        elif kind == "observables":
            self.mode = "vector"
            n = spec["n_features"]
            names = spec.get("names") or [f"f{i}" for i in range(n)]
            self.pre = HLFPreprocess(names, config.log_features, config.clip)
            self.space_shape = (n,)
        elif kind == "image":
            self.mode = "image"
            self.pre = ImagePreprocess()
            self.space_shape = tuple(spec["shape"])
        else:
            raise ConfigError(f"{self.name}: representation.kind {kind!r} needs model.embedding_run")
        if self.mode == "image":
            c, h, w = self.space_shape
            f = 2 ** len(config.channels)
            if h % f or w % f:
                raise ConfigError(f"{self.name}: image size {h}x{w} must be divisible by {f} "
                                  f"(2^len(model.channels)); set representation.n_pixels accordingly")
            self.latent = config.latent or 32
            encoder = ConvEncoder(c, (h, w), config.channels, self.latent, config.activation)
            self.encoder: nn.Module = encoder
            self.decoder: nn.Module = ConvDecoder(c, encoder.out_shape, config.channels, self.latent, config.activation)
        else:
            self.latent = config.latent or 6
            sizes = [self.space_shape[0], *config.hidden, self.latent]
            self.encoder = mlp(sizes, config.activation)
            self.decoder = mlp(sizes[::-1], config.activation)
        # data bounding box of the energy's input space (fitted in prepare) and the replay buffer
        self.register_buffer("box_lo", torch.full(self.space_shape, -1e4))
        self.register_buffer("box_hi", torch.full(self.space_shape, 1e4))
        self.register_buffer("replay", torch.zeros(config.buffer_size, self.latent))
        self.register_buffer("replay_n", torch.zeros((), dtype=torch.long))
        self.register_buffer("replay_ptr", torch.zeros((), dtype=torch.long))
        self._epoch: int | None = None

    @staticmethod
    def _check_embedder(ecls, run_dir: str, space: str | None) -> None:
        """The embedding run's method must have an embedding, and ``space`` must be one of it."""
        if not ecls.has_embedding:
            raise ConfigError(f"model.embedding_run: method {ecls.name!r} of {run_dir} has no embed(batch); "
                              "choose a run of a method that exposes an embedding (e.g. ae-hlf, clr)")
        try:
            ecls.check_space(space)
        except ConfigError as e:
            raise ConfigError(f"model.embedding_space of {run_dir}: {e}") from None

    @classmethod
    def _load_embedder(cls, run_dir: str, space: str | None = None) -> Method:
        from darkshower.models.runs import load_run

        method, _rep, _cfg, _info = load_run(run_dir, "best")
        cls._check_embedder(type(method), run_dir, space)
        for p in method.parameters():
            p.requires_grad_(False)
        return method.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.embedder is not None:
            self.embedder.eval()  # frozen: no dropout / batch-norm updates
        return self

    # -- energy ---------------------------------------------------------------------------------
    def to_space(self, batch: dict) -> torch.Tensor:
        """Batch -> the (preprocessed) input space where the energy and the sampler live."""
        if self.mode == "embedding":
            assert self.embedder is not None  # mode "embedding" is set together with the embedder
            with torch.no_grad():
                h = self.embedder.embed_in(batch, self.config.embedding_space).float()
            return (h - self.emb_mean) / self.emb_std
        return self.pre(batch["x"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return _sphere(z) if self.config.spherical else z

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared reconstruction error of space points ``x``."""
        return ((self.decoder(self.encode(x)) - x) ** 2).flatten(1).mean(dim=1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    # -- data -----------------------------------------------------------------------------------
    def prepare(self, store) -> None:
        from darkshower.represent.store import store_len, take, to_torch

        if self.mode == "embedding":
            n = store_len(store)
            parts = []
            for a in range(0, n, 4096):
                parts.append(self.to_space(to_torch(take(store, np.arange(a, min(a + 4096, n))))))
            h = torch.cat(parts).double()
            self.emb_mean.copy_(h.mean(0).float())
            std = h.std(0)
            self.emb_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)).float())
            x = (h.float() - self.emb_mean) / self.emb_std
        else:
            self.pre.fit(store["x"])
            with torch.no_grad():
                x = self.pre(torch.from_numpy(np.asarray(store["x"])))
        lo, hi = x.min(0).values, x.max(0).values
        pad = self.config.box_margin * (hi - lo)
        self.box_lo.copy_(lo - pad)
        self.box_hi.copy_(hi + pad)

    # -- sampler --------------------------------------------------------------------------------
    def _push(self, z: torch.Tensor) -> None:
        size = self.replay.shape[0]
        if size == 0:
            return
        z = z.detach()[-size:]
        idx = (self.replay_ptr + torch.arange(len(z))) % size
        self.replay[idx] = z
        self.replay_ptr.copy_((self.replay_ptr + len(z)) % size)
        self.replay_n.copy_((self.replay_n + len(z)).clamp(max=size))

    def _initial_latent(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        z = torch.randn(n, self.latent, generator=gen)
        if self.config.spherical:
            z = _sphere(z)
        filled = int(self.replay_n)
        if filled > 0 and self.config.replay_ratio > 0:
            use = torch.rand(n, generator=gen) < self.config.replay_ratio
            idx = torch.randint(0, filled, (n,), generator=gen)
            z = torch.where(use[:, None], self.replay[idx], z)
        return z

    def draw_samples(self, n: int, gen: torch.Generator | None = None, push: bool = False,
                     graph_steps: int = 0) -> torch.Tensor:
        """``n`` MCMC samples in the energy's input space (on-manifold initialization, then
        latent and input-space Langevin). ``push``: store the latent end points in the replay
        buffer; ``graph_steps``: keep the graph through that many final x-space steps."""
        c = self.config
        lo, hi = (self.box_lo, self.box_hi) if c.clamp_samples else (None, None)
        z0 = self._initial_latent(n, gen)
        params: list[torch.Tensor] = [p for p in self.parameters() if p.requires_grad]
        z = langevin(z0, lambda z: self.energy(self._decode(z)), c.z_steps, c.z_step_size, c.z_noise, c.temperature,
                     c.z_grad_clip, project=_sphere if c.spherical else None, generator=gen, params=params)
        if push:
            self._push(z)
        with torch.no_grad():
            x0 = self._decode(z)
            if lo is not None:
                x0 = torch.clamp(x0, lo, hi)
        return langevin(x0, self.energy, c.x_steps, c.x_step_size, c.x_noise, c.temperature, c.x_grad_clip, lo, hi,
                        generator=gen, graph_steps=graph_steps, params=params)

    # -- training -------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        if epoch == self.config.pretrain_epochs and epoch > 0:
            log.info("%s: pre-training done after %d epochs; energy-based phase starts", self.name, epoch)

    def in_pretraining(self, epoch: int | None) -> bool:
        return epoch is not None and epoch < self.config.pretrain_epochs

    def _l2(self) -> torch.Tensor | float:
        if not self.config.l2_reg:
            return 0.0
        return self.config.l2_reg * sum((p ** 2).sum() for p in self.parameters() if p.requires_grad)

    def loss(self, batch, ctx):
        x = self.to_space(batch)
        if self.in_pretraining(ctx.epoch):
            pos = self.energy(x).mean()
            return pos + self._l2(), {"pos_energy": pos.detach()}
        n = self.config.n_negative or len(x)
        neg_x = self.draw_samples(n, push=True, graph_steps=self._graph_steps)
        if not torch.isfinite(neg_x).all():
            log.error("%s: MCMC samples became non-finite at epoch %d, step %d; lower model.x_step_size / "
                      "model.z_step_size, keep model.clamp_samples and the *_grad_clip guards on",
                      self.name, ctx.epoch + 1, ctx.step)
        return self._energy_loss(x, neg_x)

    def _energy_loss(self, x, neg_x):
        pos = self.energy(x)
        neg = self.energy(neg_x.detach())
        loss = pos.mean() - neg.mean() + self.config.gamma * ((pos ** 2).mean() + (neg ** 2).mean()) + self._l2()
        return loss, {"pos_energy": pos.mean().detach(), "neg_energy": neg.mean().detach()}

    def val_metrics(self, batch):
        return {"loss": self.score(batch).mean()}

    def validation_emd(self, batches: list[dict]) -> float:
        """EMD (``model.emd_cost``) between validation data and as many model samples (fixed seed
        ``model.val_seed``, replay buffer read but not written). nan during pre-training unless
        ``model.select_pretrain``, so that only energy-trained epochs compete for model_best."""
        from darkshower.models.emd import sample_emd

        if self.in_pretraining(self._epoch) and not self.config.select_pretrain:
            return math.nan
        with torch.no_grad():
            data = torch.cat([self.to_space(b) for b in batches])
        return sample_emd(data, lambda n, gen: self.draw_samples(n, gen), seed=self.config.val_seed,
                          cost=self.config.emd_cost)

    # -- inference ------------------------------------------------------------------------------
    def score(self, batch):
        return self.energy(self.to_space(batch))

    def export(self):
        if self.mode != "embedding":
            return _ScoreX(self), (torch.zeros(2, *self.space_shape),)
        kind = self.embedder.spec.get("kind")
        shape = self.embedder.spec.get("shape")
        if kind == "constituents" and shape:
            return _ScoreXMask(self), (torch.zeros(2, *shape), torch.ones(2, shape[0], dtype=torch.bool))
        if kind in DIRECT_KINDS:
            n = self.embedder.spec.get("n_features")
            return _ScoreX(self), (torch.zeros(2, *(shape or [n])),)
        raise ConfigError(f"{self.name}: export of an NAE on a {kind!r} embedding is not supported")


class _ScoreXMask(nn.Module):
    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, x, mask):
        return self.method.score({"x": x, "mask": mask})


class WassersteinNAE(NormalizedAutoencoder):
    name = "wnae"
    Config = WNAEConfig
    paper = "CMS Wasserstein normalized autoencoder (F. Eble et al.); NAE: arXiv:2105.05735"

    @property
    def _graph_steps(self) -> int:  # type: ignore[override]
        return self.config.x_steps if self.config.grad_steps is None else min(self.config.grad_steps, self.config.x_steps)

    def _energy_loss(self, x, neg_x):
        from darkshower.models.emd import emd

        w = emd(x.detach(), neg_x, self.config.emd_cost, block=self.config.emd_block)
        loss = w + self._l2()
        if self.config.gamma:
            pos = self.energy(x)
        else:
            with torch.no_grad():
                pos = self.energy(x)
        logs: dict[str, Any] = {"pos_energy": pos.mean().detach(), "emd": w.detach()}
        if self.config.gamma:
            neg = self.energy(neg_x.detach())
            loss = loss + self.config.gamma * ((pos ** 2).mean() + (neg ** 2).mean())
            logs["neg_energy"] = neg.mean().detach()
        return loss, logs
