"""DistillNet networks (issue 15; docs/pileup.md "DistillNet"): an event-level graph network that tags every
particle-flow candidate of a bunch crossing as from the primary vertex or from pileup (the teacher,
``darkshower train pu-gnn``), and the per-particle MLP student distilled from it
(``darkshower distill PU_GNN_RUN --student per-particle``).

Teacher (:class:`PileupGNN`): per-candidate inputs (:func:`teacher_features`: log pT, eta, log E, charge,
one-hot type, has-track flag, PV association, log(1 + |dz| / sigma_dz); no absolute phi) embedded by a small MLP,
then ``layers`` EdgeConv-style message-passing layers over the k nearest neighbours in (eta, phi) (phi
periodic; the candidate itself is one of its k + 1 neighbours): message m_ij = ReLU(A h_i + B h_j + G g_ij)
(``message`` wide) with the edge geometry g_ij = (d eta, d phi, dR), aggregated by mean and max over j, then
h_i <- h_i + ReLU(W [h_i, mean, max]); a head gives one logit per candidate. The graph is a fixed [N, k + 1]
neighbour-index tensor (:func:`knn_graph`, scipy k-d tree per batch of events, O(N log N) time and O(N k)
memory), so the model exports to ONNX with plain gathers.

Student (:class:`ParticleStudent`): standardization (stored buffers) then in -> 128 -> 64 -> 1 on the
features of :func:`darkshower.simulate.pileup.particle_features`; the weights go to ``student.npz``
(:func:`student_arrays`) so that ``generate --pu-mitigation distillnet:RUN`` evaluates it with numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import RunError
from darkshower.simulate.config import PileupConfig
from darkshower.simulate.pileup import FEATURE_RADII, FEATURE_VERSION, feature_names, particle_features

__all__ = ["PuGnnConfig", "StudentConfig", "PileupGNN", "ParticleStudent", "teacher_features", "knn_graph",
           "student_arrays", "load_pu_run", "TEACHER_METHOD", "STUDENT_METHOD", "loss_weights"]

TEACHER_METHOD = "pu-gnn"
STUDENT_METHOD = "pu-student"
#: names of the teacher's per-candidate inputs (the first columns of particle_features)
TEACHER_FEATURES = feature_names(())

_EVENT_GAP = 40.0
_ETA_CAP = 15.0


class LossConfig(StrictModel):
    """Per-particle weights of the BCE loss: w = c_class * min(pT / 1 GeV, pt_cap) ** pt_power, with the class
    weights c1 = N / (2 N_PV), c0 = N / (2 N_PU) of the training set (with soft labels s: N_PV = sum s,
    w = s c1 + (1 - s) c0 times the pT factor); the loss of a batch is sum w BCE / sum w."""

    pt_power: float = Field(0.5, ge=0.0, le=2.0, description="exponent of the pT factor (0: class balance only)")
    pt_cap: float = Field(50.0, gt=0.0, description="pT [GeV] above which the pT factor stays constant")
    balance: bool = Field(True, description="balance the classes (c0, c1); false: c0 = c1 = 1")


class GnnModelConfig(StrictModel):
    k: int = Field(16, ge=1, le=64, description="neighbours in (eta, phi) besides the candidate itself")
    hidden: int = Field(64, ge=4, le=512, description="width of the node features")
    message: int = Field(32, ge=2, le=512, description="width of the edge messages m_ij")
    layers: int = Field(2, ge=1, le=8, description="message-passing layers")


class PuGnnConfig(StrictModel):
    """Resolved config of a ``train pu-gnn`` run (config.yaml)."""

    method: Literal["pu-gnn"] = "pu-gnn"
    model: GnnModelConfig = GnnModelConfig()
    loss: LossConfig = LossConfig()
    epochs: int = Field(5, ge=1, le=10_000)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    batch_events: int = Field(2, ge=1, le=1024, description="events per optimizer step")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="events held out for validation when no --val")
    max_events: int | None = Field(None, ge=1, description="use at most this many events of --data")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's)")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class StudentConfig(StrictModel):
    """Resolved config of a ``distill --student per-particle`` run (config.yaml)."""

    method: Literal["pu-student"] = "pu-student"
    teacher_run: str
    teacher_sha256: str = Field("", description="SHA-256 of the teacher's model_best.pt (filled in by distill)")
    hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1, max_length=6)
    radii: list[float] = Field(default_factory=lambda: list(FEATURE_RADII), min_length=1, max_length=4)
    loss: LossConfig = LossConfig()
    epochs: int = Field(10, ge=1, le=10_000)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(4096, ge=16, le=1_000_000, description="particles per optimizer step")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    max_events: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


def loss_weights(target: np.ndarray, pt: np.ndarray, cfg: LossConfig, c0: float, c1: float) -> np.ndarray:
    """Per-particle loss weights (see :class:`LossConfig`); ``target`` is 0/1 truth or a soft label."""
    t = np.asarray(target, np.float64)
    f = np.minimum(np.asarray(pt, np.float64), cfg.pt_cap) ** cfg.pt_power
    return ((t * c1 + (1.0 - t) * c0) * f).astype(np.float32)


def class_weights(target: np.ndarray, cfg: LossConfig) -> tuple[float, float]:
    """(c0, c1) of :class:`LossConfig` for the training targets."""
    if not cfg.balance:
        return 1.0, 1.0
    n = float(len(target))
    n1 = float(np.sum(target, dtype=np.float64))
    n0 = n - n1
    return (n / (2 * n0) if n0 > 0 else 1.0), (n / (2 * n1) if n1 > 0 else 1.0)


# ---- inputs and graph ---------------------------------------------------------------------------
def teacher_features(c: dict[str, np.ndarray], cfg: PileupConfig, particle_level: bool = False) -> np.ndarray:
    """The teacher's per-candidate inputs [n, len(TEACHER_FEATURES)] (no neighbourhood sums, no phi)."""
    return particle_features(c, cfg, None, None, particle_level, radii=())


def knn_graph(eta: np.ndarray, phi: np.ndarray, ev: np.ndarray, k: int) -> np.ndarray:
    """Neighbour indices [n, k + 1] (int64, global) of every candidate among the candidates of its own event,
    nearest first in dR with periodic phi (the candidate itself included). Events with fewer than k + 1
    candidates repeat the candidate itself. ``ev`` must be sorted. One k-d tree over the batch: events sit
    _EVENT_GAP apart in eta, so no neighbour crosses events."""
    from scipy.spatial import cKDTree

    n = len(eta)
    if n == 0:
        return np.zeros((0, k + 1), np.int64)
    ev = np.asarray(ev, np.int64)
    ev = ev - ev.min()
    x = np.clip(np.asarray(eta, np.float64), -_ETA_CAP, _ETA_CAP) + _ETA_CAP + 2.0 + _EVENT_GAP * ev
    y = np.mod(np.asarray(phi, np.float64) + np.pi, 2 * np.pi)
    y = np.where(y >= 2 * np.pi, 0.0, y)
    tree = cKDTree(np.column_stack([x, y]), boxsize=[_EVENT_GAP * (int(ev.max()) + 1), 2 * np.pi])
    d, idx = tree.query(np.column_stack([x, y]), k=min(k + 1, n), distance_upper_bound=_EVENT_GAP / 2)
    idx = np.asarray(idx, np.int64).reshape(n, -1)
    d = np.asarray(d).reshape(n, -1)
    self_idx = np.arange(n)[:, None]
    idx = np.where(np.isfinite(d) & (idx < n), idx, self_idx)
    if idx.shape[1] < k + 1:
        idx = np.concatenate([idx, np.repeat(self_idx, k + 1 - idx.shape[1], axis=1)], axis=1)
    return idx


# ---- networks -----------------------------------------------------------------------------------
class EdgeLayer(nn.Module):
    """h_i <- h_i + ReLU(W [h_i, mean_j m_ij, max_j m_ij]), m_ij = ReLU(A h_i + B h_j + G g_ij) (width m)."""

    def __init__(self, h: int, m: int):
        super().__init__()
        self.a = nn.Linear(h, m)
        self.b = nn.Linear(h, m, bias=False)
        self.g = nn.Linear(3, m, bias=False)
        self.out = nn.Linear(h + 2 * m, h)

    def forward(self, h, nbr, geom):
        m = torch.relu(self.a(h).unsqueeze(1) + self.b(h)[nbr] + self.g(geom))  # [N, K, H]
        agg = torch.cat([h, m.mean(dim=1), m.amax(dim=1)], dim=1)
        return h + torch.relu(self.out(agg))


class PileupGNN(nn.Module):
    """The teacher: logit(from PV) per candidate from (x [N, F], coords [N, 2] = (eta, phi), nbr [N, K])."""

    def __init__(self, n_in: int = len(TEACHER_FEATURES), cfg: GnnModelConfig | None = None):
        super().__init__()
        cfg = cfg or GnnModelConfig()
        h = cfg.hidden
        self.embed = nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.layers = nn.ModuleList([EdgeLayer(h, cfg.message) for _ in range(cfg.layers)])
        self.head = nn.Sequential(nn.Linear(h, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x, coords, nbr):
        eta, phi = coords[:, 0], coords[:, 1]
        deta = eta[nbr] - eta.unsqueeze(1)
        dp = phi[nbr] - phi.unsqueeze(1)
        dphi = torch.atan2(torch.sin(dp), torch.cos(dp))
        geom = torch.stack([deta, dphi, torch.sqrt(deta * deta + dphi * dphi + 1e-12)], dim=2)
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h, nbr, geom)
        return self.head(h).squeeze(1)


class ParticleStudent(nn.Module):
    """The per-particle student: buffers ``mean``/``std`` (standardization), ``net`` (Linear/ReLU ... Linear(1));
    forward gives the logit per particle, :meth:`prob` the sigmoid."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_in: int, hidden: list[int] | tuple[int, ...] = (128, 64)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        layers: list[nn.Module] = []
        w = n_in
        for h in hidden:
            layers += [nn.Linear(w, h), nn.ReLU()]
            w = h
        layers.append(nn.Linear(w, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net((x - self.mean) / self.std).squeeze(1)

    def prob(self, x):
        return torch.sigmoid(self.forward(x))


class _StudentProb(nn.Module):
    """The student's probability (what the exported ONNX returns)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x):
        return torch.sigmoid(self.m(x))


class _TeacherProb(nn.Module):
    """The teacher's probability (what the exported ONNX returns)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x, coords, nbr):
        return torch.sigmoid(self.m(x, coords, nbr))


def student_arrays(student, radii) -> dict[str, np.ndarray]:
    """What ``student.npz`` holds: the linear layers (w{i} [out, in], b{i}), standardization, the feature spec."""
    linears = [m for m in student.net if isinstance(m, torch.nn.Linear)]
    out: dict[str, np.ndarray] = {
        "feature_version": np.array(FEATURE_VERSION), "feature_names": np.array(feature_names(tuple(radii))),
        "radii": np.array(list(radii), np.float64), "n_layers": np.array(len(linears)),
        "mean": student.mean.detach().cpu().numpy().astype(np.float32),
        "std": student.std.detach().cpu().numpy().astype(np.float32),
    }
    for i, m in enumerate(linears):
        out[f"w{i}"] = m.weight.detach().cpu().numpy().astype(np.float32)
        out[f"b{i}"] = m.bias.detach().cpu().numpy().astype(np.float32)
    return out


# ---- runs ---------------------------------------------------------------------------------------
def load_pu_run(run, which: str = "best"):
    """(kind "pu-gnn" | "pu-student", torch module in eval mode, resolved config, run.json) of a DistillNet run."""
    import yaml

    from darkshower.config import validate
    from darkshower.models.runs import read_run_json, torch_load

    run = Path(run)
    info = read_run_json(run)
    kind = info.get("method")
    if kind not in (TEACHER_METHOD, STUDENT_METHOD):
        raise RunError(f"{run}: a {kind!r} run, not a pu-gnn teacher or per-particle student; train one with "
                       "`darkshower train pu-gnn --data DS --out RUN`")
    try:
        data = yaml.safe_load((run / "config.yaml").read_text())
    except FileNotFoundError:
        raise RunError(f"{run}: config.yaml missing") from None
    cfg = validate(PuGnnConfig if kind == TEACHER_METHOD else StudentConfig, data, f"{run}/config.yaml")
    if which not in ("best", "last"):
        raise RunError(f"model {which!r}: choose best or last")
    f = run / f"model_{which}.pt"
    if not f.exists() and which == "best":
        f = run / "model_last.pt"
    state = torch_load(f, "model file")
    module: nn.Module
    if kind == TEACHER_METHOD:
        module = PileupGNN(len(TEACHER_FEATURES), cfg.model)
    else:
        module = ParticleStudent(len(feature_names(tuple(cfg.radii))), cfg.hidden)
    try:
        module.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise RunError(f"{f}: model state does not match the {kind} config ({str(exc).splitlines()[0]})") from None
    module.eval()
    return kind, module, cfg, info


def export_module(run, which: str = "best"):
    """(module giving the probability per candidate, example inputs) of a DistillNet run for ONNX export.
    Teacher inputs: x [N, F], coords [N, 2] (eta, phi), nbr [N, k + 1] (int64, from :func:`knn_graph`);
    student: x [N, F] (raw features, standardized inside)."""
    kind, module, cfg, _ = load_pu_run(run, which)
    g = torch.Generator().manual_seed(0)
    if kind == STUDENT_METHOD:
        return _StudentProb(module).eval(), (torch.randn(16, int(module.mean.shape[0]), generator=g),)
    n, k = 64, cfg.model.k
    eta = torch.rand(n, generator=g) * 4 - 2
    phi = torch.rand(n, generator=g) * 6.28 - 3.14
    nbr = torch.from_numpy(knn_graph(eta.numpy(), phi.numpy(), np.zeros(n, np.int64), k))
    return _TeacherProb(module).eval(), (torch.randn(n, len(TEACHER_FEATURES), generator=g), torch.stack([eta, phi], 1), nbr)
