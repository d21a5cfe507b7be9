"""``lund-gae``: an energy-based graph autoencoder on Lund-plane graphs (normalized-AE objective).

Graph = the C/A declustering tree of a jet (:mod:`darkshower.represent.lund`): one node per
declustering with (ln kT, ln ΔR, ln z, ln m, ψ), edges parent -> child. Message passing is plain
torch (``index_add_`` / ``scatter_reduce`` over the flattened batch; no per-graph Python loop).

Energy of a graph G with standardized node features x_i (docs/methods/lund-gae.md):

    z      = Enc(x, G)                         pooled latent (on the unit sphere by default)
    x̂_i    = DecNode(z, p_i)                   p_i: structural position of node i (depth, number of
                                               branch changes, children, DFS rank, graph size)
    ŝ      = DecSum(z)                         s = (standardized ln(1 + n_nodes), mean_i x_i)
    E(G)   = (1/N) Σ_i Σ_f w_f (x̂_if - x_if)²  +  w_s |ŝ - s|² / 6   (Σ w_f = 1; ψ weight 0 by default)

N is the mean training graph size (``node_reduction: sum``, default: the node term is extensive,
like the negative log-likelihood of the whole tree) or the graph's own size (``mean``).

The positions carry only the tree's shape, never a feature value, so the node features must
pass through the latent. A graph without nodes (a one-constituent jet) has only the summary
term: its energy is that of an empty tree, ``w_s |DecSum(Enc(∅)) - s_∅|² / 6``.

Training (NAE, arXiv:2105.05735): ``pretrain_epochs`` of plain reconstruction, then
``L = (E(data) - E(neg)) / T + γ (E(data)² + E(neg)²)`` with negatives drawn by Langevin
dynamics on the latent (on-manifold initialization: z uniform on the sphere, steps on
E(DecNode(z, p))), followed by Langevin steps on the decoded node features. Negative graphs
borrow the tree shapes of the batch. Score = E(G).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.base import Method
from darkshower.models.layers import mlp

N_FEATURES = 5
N_POS = 5
N_SUMMARY = 1 + N_FEATURES
#: pointer-jumping rounds for depths: exact for trees up to 2**12 levels deep
_JUMPS = 12


class LundGAEConfig(StrictModel):
    hidden: int = Field(32, ge=4, description="node embedding / MLP width")
    layers: int = Field(3, ge=1, description="message-passing layers")
    latent: int = Field(8, ge=2, description="graph latent dimension")
    activation: Literal["relu", "elu", "gelu", "silu", "tanh", "leaky_relu"] = "silu"
    spherical: bool = Field(True, description="latent on the unit sphere (NAE on-manifold sampling)")
    summary_weight: float = Field(1.0, ge=0, description="weight w_s of the graph-summary term of the energy")
    node_reduction: Literal["sum", "mean"] = Field(
        "sum", description="node term: sum over nodes / mean training graph size (extensive, like a graph "
                           "log-likelihood) or mean over nodes (intensive)")
    feature_weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 0.0],
        description="weights of (ln kT, ln dR, ln z, ln m, psi) in the node term (psi is ~uniform: noise)")
    clip: float = Field(5.0, gt=0, description="standardized node features are clipped to +-clip")
    pretrain_epochs: int = Field(5, ge=0, description="epochs of plain reconstruction before the NAE phase")
    temperature: float = Field(1.0, gt=0, description="T of p(x) ~ exp(-E/T) (loss and Langevin)")
    gamma: float = Field(0.1, ge=0, description="energy regularization gamma (E_data^2 + E_neg^2)")
    latent_steps: int = Field(10, ge=0, description="Langevin steps on the latent")
    latent_step_size: float = Field(0.1, ge=0)
    latent_noise: float = Field(0.1, ge=0)
    x_steps: int = Field(10, ge=0, description="Langevin steps on the decoded node features")
    x_step_size: float = Field(0.1, ge=0, description="per-node step (gradient scaled by the graph size)")
    x_noise: float = Field(0.1, ge=0)
    langevin_grad_clip: float | None = Field(1.0, gt=0, description="clamp each Langevin gradient entry; null: off")
    val_seed: int = Field(0, ge=0, description="seed of the sampler used for the validation EMD")


class LundPreprocess(nn.Module):
    """Node features: clamp to the training [0.1 %, 99.9 %] quantiles (removes the ln(0) = -69
    sentinels), standardize, clip to +-clip. Graph size: standardized ln(1 + n_nodes)."""

    # buffers (register_buffer in __init__), typed for mypy
    lo: torch.Tensor
    hi: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    n_mean: torch.Tensor
    n_std: torch.Tensor
    n_ref: torch.Tensor
    pos_mean: torch.Tensor
    pos_std: torch.Tensor

    def __init__(self, clip: float):
        super().__init__()
        self.clip = clip
        for k in ("lo", "hi", "mean"):
            self.register_buffer(k, torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))
        self.register_buffer("n_mean", torch.zeros(()))
        self.register_buffer("n_std", torch.ones(()))
        self.register_buffer("n_ref", torch.ones(()))
        self.register_buffer("pos_mean", torch.zeros(N_POS))
        self.register_buffer("pos_std", torch.ones(N_POS))
        self.lo.fill_(-1e30)
        self.hi.fill_(1e30)

    def fit(self, x: np.ndarray, node_counts: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        if len(x) == 0:
            raise ConfigError("lund-gae: the training graphs have no nodes (all jets have one constituent?)")
        lo, hi = np.quantile(x, 0.001, axis=0), np.quantile(x, 0.999, axis=0)
        xc = np.clip(x, lo, hi)
        std = xc.std(0)
        self.lo.copy_(torch.from_numpy(lo).float())
        self.hi.copy_(torch.from_numpy(hi).float())
        self.mean.copy_(torch.from_numpy(xc.mean(0)).float())
        self.std.copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)).float())
        self.n_ref.fill_(max(float(np.mean(node_counts)), 1.0))
        ln = np.log1p(np.asarray(node_counts, np.float64))
        self.n_mean.fill_(float(ln.mean()))
        self.n_std.fill_(float(ln.std()) if ln.std() > 1e-8 else 1.0)

    def fit_positions(self, pos: torch.Tensor) -> None:
        if len(pos):
            std = pos.std(0)
            self.pos_mean.copy_(pos.mean(0))
            self.pos_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def positions(self, pos):
        return (pos - self.pos_mean) / self.pos_std

    def forward(self, x):
        x = torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0)
        x = torch.minimum(torch.maximum(x, self.lo), self.hi)
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)

    def size(self, node_counts):
        return (torch.log1p(node_counts.float()) - self.n_mean) / self.n_std


def graph_structure(edge_index, batch, node_counts) -> dict:
    """Tree structure of a flattened batch, vectorized over all graphs: parent of each node,
    child lists as edges, and the structural position features (depth, number of soft-branch
    changes, children, DFS rank in the graph, graph size). Edges with src >= dst are dropped
    (nodes are in DFS pre-order, so parents precede children; this also accepts undirected
    graphs). The harder child of a node is the first one in DFS order (see lund.py)."""
    n = batch.shape[0]
    g = node_counts.shape[0]
    ar = torch.arange(n, device=batch.device)
    src, dst = edge_index[0], edge_index[1]
    keep = src < dst
    src, dst = src[keep], dst[keep]
    parent = ar.clone().index_put_((dst,), src)
    has_parent = parent != ar
    n_children = torch.zeros(n, device=batch.device).index_add_(0, src, torch.ones_like(src, dtype=torch.float32))
    first_child = torch.full((n,), n, dtype=torch.long, device=batch.device).scatter_reduce(0, src, dst, "amin")
    soft = (dst > first_child[src]).float()
    # pointer jumping: sums along the path to the root in log2(depth) vectorized rounds
    depth = has_parent.float()
    level = torch.zeros(n, device=batch.device).index_put_((dst,), soft)
    anc = parent
    for _ in range(_JUMPS):
        depth = depth + depth[anc] * (anc != ar)
        level = level + level[anc] * (anc != ar)
        anc = anc[anc]
    offsets = torch.cumsum(node_counts, 0) - node_counts
    rank = (ar - offsets[batch]).float()
    counts = node_counts.float()
    size = counts[batch]
    pos = torch.stack([depth / 8.0, level / 2.0, n_children / 2.0, rank / size.clamp(min=1.0),
                       torch.log1p(size) / 4.0], dim=1)
    return {"src": src, "dst": dst, "parent": parent, "has_parent": has_parent.float()[:, None],
            "n_children": n_children.clamp(min=1.0)[:, None], "batch": batch, "counts": counts, "n_graphs": g,
            "pos": pos}


class MessagePassing(nn.Module):
    """h_i <- LayerNorm(h_i + MLP[h_i, mean_children h, h_parent])."""

    def __init__(self, hidden: int, activation: str):
        super().__init__()
        self.mlp = mlp([3 * hidden, hidden, hidden], activation)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h, st):
        child = torch.zeros_like(h).index_add_(0, st["src"], h[st["dst"]]) / st["n_children"]
        par = h[st["parent"]] * st["has_parent"]
        return self.norm(h + self.mlp(torch.cat([h, child, par], dim=1)))


class GraphEncoder(nn.Module):
    def __init__(self, hidden: int, layers: int, latent: int, activation: str, spherical: bool):
        super().__init__()
        self.embed = mlp([N_FEATURES + N_POS, hidden, hidden], activation)
        self.layers = nn.ModuleList(MessagePassing(hidden, activation) for _ in range(layers))
        self.head = mlp([2 * hidden + 1, hidden, latent], activation)
        self.spherical = spherical

    def forward(self, x, st, size):
        h = self.embed(torch.cat([x, st["pos"]], dim=1))
        for layer in self.layers:
            h = layer(h, st)
        hid = h.shape[1]
        b = st["batch"]
        mean = h.new_zeros(st["n_graphs"], hid).index_add_(0, b, h) / st["counts"].clamp(min=1.0)[:, None]
        mx = h.new_zeros(st["n_graphs"], hid).scatter_reduce(0, b[:, None].expand(-1, hid), h, "amax",
                                                             include_self=False)
        z = self.head(torch.cat([mean, mx, size[:, None]], dim=1))
        return _project(z) if self.spherical else z


def _project(z):
    return z / z.norm(dim=1, keepdim=True).clamp(min=1e-6)


class LundGraphEBAE(Method):
    name = "lund-gae"
    Config = LundGAEConfig
    default_representation: ClassVar[dict] = {"kind": "lund", "max_level": -1}
    energy_based = True
    default_selection = "val_emd"
    #: a few thousand jets need small batches and a higher learning rate (configs/methods/lund-gae-demo.yaml)
    default_train: ClassVar[dict] = {"batch_size": 64, "optimizer": {"lr": 3.0e-3}}
    paper = ("Normalized autoencoder (arXiv:2105.05735) on Lund-plane graphs (arXiv:1807.04758, "
             "LundNet arXiv:2012.08526); no public unsupervised reference")

    kinds = ("lund",)

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        from darkshower.represent.lund import LUND_FEATURES

        return {"kind": rep.kind, "names": list(LUND_FEATURES), "n_features": N_FEATURES}

    # buffers (register_buffer in __init__), typed for mypy
    feature_weights: torch.Tensor

    def __init__(self, config: LundGAEConfig, spec: dict):
        super().__init__(config, spec)
        if spec.get("n_features", N_FEATURES) != N_FEATURES:
            raise ConfigError(f"{self.name}: expected {N_FEATURES} Lund node features, got {spec['n_features']}")
        c = config
        self.pre = LundPreprocess(c.clip)
        self.encoder = GraphEncoder(c.hidden, c.layers, c.latent, c.activation, c.spherical)
        self.node_decoder = mlp([c.latent + N_POS, c.hidden, c.hidden, N_FEATURES], c.activation)
        self.summary_decoder = mlp([c.latent, c.hidden, N_SUMMARY], c.activation)
        if len(c.feature_weights) != N_FEATURES or min(c.feature_weights) < 0 or sum(c.feature_weights) <= 0:
            raise ConfigError(f"{self.name}: model.feature_weights needs {N_FEATURES} non-negative weights "
                              f"(ln kT, ln dR, ln z, ln m, psi) with a positive sum, got {c.feature_weights}")
        w = torch.tensor(c.feature_weights, dtype=torch.float32)
        self.register_buffer("feature_weights", w / w.sum(), persistent=False)

    def prepare(self, store) -> None:
        g = store["graphs"]
        self.pre.fit(g.x, g.node_counts)
        t = lambda a: torch.from_numpy(np.asarray(a, np.int64))
        self.pre.fit_positions(graph_structure(t(g.edge_index), t(g.batch), t(g.node_counts))["pos"])

    # -- energy -------------------------------------------------------------------------------
    def structure(self, batch: dict) -> dict:
        st = graph_structure(batch["edge_index"].long(), batch["batch"].long(), batch["node_counts"].long())
        st["size"] = self.pre.size(batch["node_counts"])
        st["pos"] = self.pre.positions(st["pos"])
        # node term normalization per graph: its size (mean) or the mean training size (sum)
        st["node_norm"] = st["counts"].clamp(min=1.0) if self.config.node_reduction == "mean" else \
            self.pre.n_ref.expand(st["n_graphs"])
        return st

    def summary(self, x, st):
        cnt = st["counts"].clamp(min=1.0)[:, None]
        mean = x.new_zeros(st["n_graphs"], N_FEATURES).index_add_(0, st["batch"], x) / cnt
        return torch.cat([st["size"][:, None], mean], dim=1)

    def decode_nodes(self, z, st):
        return self.node_decoder(torch.cat([z[st["batch"]], st["pos"]], dim=1))

    def energy(self, x, st):
        """Per-graph energy [n_graphs] of standardized node features ``x`` on structure ``st``."""
        z = self.encoder(x, st, st["size"])
        node_err = ((self.decode_nodes(z, st) - x) ** 2) @ self.feature_weights
        e_nodes = x.new_zeros(st["n_graphs"]).index_add_(0, st["batch"], node_err) / st["node_norm"]
        e_sum = ((self.summary_decoder(z) - self.summary(x, st)) ** 2).mean(dim=1)
        return e_nodes + self.config.summary_weight * e_sum

    # -- negative samples ---------------------------------------------------------------------
    def _grad(self, e, v):
        (g,) = torch.autograd.grad(e.sum(), v)
        g = torch.nan_to_num(g)
        clip = self.config.langevin_grad_clip
        return g.clamp(-clip, clip) if clip else g

    def sample(self, st, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative node features on the tree shapes of ``st``: Langevin on the latent from
        z ~ uniform on the sphere (or N(0, 1)), decode, then Langevin on the node features."""
        c = self.config
        T = c.temperature
        clip = c.clip
        g = st["n_graphs"]
        dev = st["pos"].device
        z = torch.randn(g, c.latent, generator=generator, device=dev)
        if c.spherical:
            z = _project(z)
        with torch.enable_grad():
            for _ in range(c.latent_steps):
                z = z.detach().requires_grad_(True)
                e = self.energy(self.decode_nodes(z, st).clamp(-clip, clip), st)
                z = z - c.latent_step_size / T * self._grad(e, z)
                z = z + c.latent_noise * torch.randn(z.shape, generator=generator, device=dev)
                if c.spherical:
                    z = _project(z)
            x = self.decode_nodes(z.detach(), st).clamp(-clip, clip).detach()
            scale = st["node_norm"][st["batch"]][:, None]  # per-node step independent of the normalization
            for _ in range(c.x_steps):
                x = x.requires_grad_(True)
                e = self.energy(x, st)
                x = x - c.x_step_size / T * self._grad(e, x) * scale
                x = x + c.x_noise * torch.randn(x.shape, generator=generator, device=dev)
                x = x.clamp(-clip, clip).detach()
        return x

    # -- training -----------------------------------------------------------------------------
    def loss(self, batch, ctx):
        st = self.structure(batch)
        x = self.pre(batch["x"])
        e_pos = self.energy(x, st)
        if ctx.epoch < self.config.pretrain_epochs:
            return e_pos.mean(), {"e_data": e_pos.mean().detach()}
        x_neg = self.sample(st)
        e_neg = self.energy(x_neg, st)
        c = self.config
        loss = (e_pos.mean() - e_neg.mean()) / c.temperature + c.gamma * ((e_pos ** 2).mean() + (e_neg ** 2).mean())
        return loss, {"e_data": e_pos.mean().detach(), "e_neg": e_neg.mean().detach()}

    def val_metrics(self, batch):
        return {"loss": self.score(batch).mean()}

    def _emd_space(self, x, st):
        """Per-graph summary for the EMD: mean and std of the standardized node features."""
        b, cnt = st["batch"], st["counts"].clamp(min=1.0)[:, None]
        mean = x.new_zeros(st["n_graphs"], N_FEATURES).index_add_(0, b, x) / cnt
        var = x.new_zeros(st["n_graphs"], N_FEATURES).index_add_(0, b, (x - mean[b]) ** 2) / cnt
        return torch.cat([mean, var.clamp(min=0).sqrt()], dim=1)

    def validation_emd(self, batches) -> float:
        """EMD between validation graphs and model samples on the same tree shapes, in the space
        of per-graph (mean, std) of the standardized node features."""
        data, samples = [], []
        gen = torch.Generator().manual_seed(int(self.config.val_seed))
        for b in batches:
            st = self.structure(b)
            with torch.no_grad():
                data.append(self._emd_space(self.pre(b["x"]), st))
            x_neg = self.sample(st, gen)
            with torch.no_grad():
                samples.append(self._emd_space(x_neg, st))
        return _emd(torch.cat(data), torch.cat(samples))

    # -- inference ----------------------------------------------------------------------------
    def score_graphs(self, x, edge_index, batch, node_counts):
        st = self.structure({"edge_index": edge_index, "batch": batch, "node_counts": node_counts})
        return self.energy(self.pre(x), st)

    def score(self, batch):
        return self.score_graphs(batch["x"], batch["edge_index"], batch["batch"], batch["node_counts"])

    def export(self):
        # three graphs: 3 nodes (root with two children), empty, 2 nodes (chain)
        x = torch.randn(5, N_FEATURES)
        edge_index = torch.tensor([[0, 0, 3], [1, 2, 4]])
        batch = torch.tensor([0, 0, 0, 2, 2])
        node_counts = torch.tensor([3, 0, 2])
        return _ScoreGraphs(self), (x, edge_index, batch, node_counts)


class _ScoreGraphs(nn.Module):
    def __init__(self, method: LundGraphEBAE):
        super().__init__()
        self.method = method

    def forward(self, x, edge_index, batch, node_counts):
        return self.method.score_graphs(x, edge_index, batch, node_counts)


def _emd(a: torch.Tensor, b: torch.Tensor) -> float:
    """EMD (W2², squared-Euclidean ground cost, uniform weights) between two point sets. Uses the
    shared helper of darkshower.models.emd."""
    try:
        from darkshower.models.emd import emd
    except ImportError:  # pragma: no cover - selection.py is part of the same release
        import ot

        a64, b64 = a.double().numpy(), b.double().numpy()
        return float(ot.emd2(np.full(len(a64), 1 / len(a64)), np.full(len(b64), 1 / len(b64)),
                             ot.dist(a64, b64)))
    v = float(emd(a, b, "sqeuclidean"))
    return v if math.isfinite(v) else math.inf
