"""Label-free model selection for energy-based methods: the earth mover's distance (EMD, the
1-Wasserstein / optimal-transport distance of uniform empirical measures) between validation data
and samples drawn from the model.

An energy-based method (``Method.energy_based = True``) implements ``validation_emd(batches)``;
the usual way is to map validation batches into the space its sampler works in and call
:func:`sample_emd` with a function that draws samples from the model::

    def validation_emd(self, batches):
        data = torch.cat([self.sample_space(b) for b in batches])
        return sample_emd(data, lambda n, gen: self.draw_samples(n, gen), seed=self.config.val_seed)

The trainer records the value as ``val_emd`` every epoch and, with ``selection: val_emd`` (the
default of ``nae`` and ``wnae``), keeps the epoch with the lowest value as ``model_best.pt``.
No signal labels are involved anywhere.

:func:`emd` is also the differentiable loss of the Wasserstein NAE: the transport plan is solved
exactly with POT (``ot.emd``, network simplex) on the detached cost matrix and the loss is
``sum(plan * cost)`` with the cost recomputed in torch, so gradients flow into both point sets
(envelope theorem: the optimal plan is locally constant).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

log = logging.getLogger(__name__)

Cost = Literal["sqeuclidean", "euclidean"]


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: Cost = "sqeuclidean") -> torch.Tensor:
    """Pairwise ground cost [n, m] of two point sets [n, ...] and [m, ...] (flattened per sample)."""
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    d2 = ((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T).clamp(min=0.0)
    if cost == "sqeuclidean":
        return d2
    if cost == "euclidean":
        return torch.sqrt(d2 + 1e-12)  # smooth at zero distance (finite gradient)
    raise ValueError(f"cost {cost!r}: choose sqeuclidean or euclidean")


def transport_plan(cost: np.ndarray, weights_x: np.ndarray | None = None, weights_y: np.ndarray | None = None,
                   max_iter: int = 10_000_000) -> np.ndarray:
    """Exact optimal transport plan [n, m] between uniform (or given) weights for a cost matrix."""
    import ot

    n, m = cost.shape
    a = np.full(n, 1.0 / n) if weights_x is None else np.asarray(weights_x, np.float64) / np.sum(weights_x)
    b = np.full(m, 1.0 / m) if weights_y is None else np.asarray(weights_y, np.float64) / np.sum(weights_y)
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    plan, info = ot.emd(a, b, cost, numItermax=int(max_iter), log=True)
    if info.get("warning"):
        log.warning("optimal transport: %s", info["warning"])
    return plan


def emd(x: torch.Tensor, y: torch.Tensor, cost: Cost = "sqeuclidean", weights_x=None, weights_y=None,
        block: int | None = None) -> torch.Tensor:
    """EMD ``sum(plan * cost(x, y))`` between two point sets, differentiable in ``x`` and ``y``.

    With ``cost="sqeuclidean"`` this is the squared 2-Wasserstein distance W2² (as in the public
    WNAE code, ``ot.dist`` default); with ``"euclidean"`` it is W1. Non-finite inputs give nan.
    ``block``: split both sets (in their order) into ``ceil(max(n, m) / block)`` consecutive blocks
    and transport block i onto block i only (minibatch OT, each block weighted by its share of
    ``x``): a feasible plan, so an upper bound of the exact EMD, at a fraction of the cost (the
    network simplex scales roughly as n^2.5). Unweighted sets only.
    """
    if len(x) == 0 or len(y) == 0:
        raise ValueError("emd of an empty point set")
    c = cost_matrix(x.double(), y.double(), cost)
    cd = c.detach().cpu().numpy()
    if not np.isfinite(cd).all():
        return torch.full((), math.nan, dtype=x.dtype, device=x.device)
    n, m = cd.shape
    k = 1 if not block else max(1, min(-(-max(n, m) // block), n, m))
    if k == 1:
        plan = transport_plan(cd, weights_x, weights_y)
    else:
        if weights_x is not None or weights_y is not None:
            raise ValueError("emd: block is only supported for unweighted point sets")
        plan = np.zeros_like(cd)
        for rows, cols in zip(np.array_split(np.arange(n), k), np.array_split(np.arange(m), k)):
            plan[np.ix_(rows, cols)] = transport_plan(cd[np.ix_(rows, cols)]) * (len(rows) / n)
    return (torch.from_numpy(plan).to(c.device) * c).sum().to(x.dtype)


def sample_emd(data: torch.Tensor, draw: Callable[[int, torch.Generator], torch.Tensor], seed: int = 0,
               cost: Cost = "sqeuclidean") -> float:
    """Label-free selection metric: EMD between ``data`` [n, ...] and ``n`` samples ``draw(n, gen)``
    from the model; ``gen`` is a CPU ``torch.Generator`` seeded with ``seed`` so that every epoch
    uses the same random numbers (common random numbers: differences between epochs come from the
    model, not from sampling noise) and the training random state is not touched."""
    gen = torch.Generator().manual_seed(int(seed))
    samples = draw(len(data), gen)
    with torch.no_grad():
        return float(emd(data.detach(), samples.detach(), cost))


def best_epoch(history: list[dict], key: str = "val_emd") -> int | None:
    """Epoch (1-based, as in metrics.json) with the lowest finite ``key``; None when there is none."""
    rows = [r for r in history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return min(rows, key=lambda r: r[key])["epoch"] if rows else None
