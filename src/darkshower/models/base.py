"""The one interface every learning method implements.

A method is a ``torch.nn.Module`` holding its networks *and* its fitted preprocessing (as
buffers), so that ``state_dict()`` is the whole model. The trainer never looks inside:

- ``input_spec(store, rep)`` (classmethod): shapes/names read off the training data;
- ``prepare(store)``: fit preprocessing on the (numpy) training store, before the first step;
- ``loss(batch, ctx) -> (loss, logs)``: one training objective (``ctx.epoch``, ``ctx.step``);
- ``val_metrics(batch) -> dict``: label-free validation numbers (``loss`` at least);
- ``score(batch) -> Tensor[B]``: the anomaly score, higher = more anomalous;
- energy-based methods also implement ``validation_emd(batches)`` (label-free selection);
- ``export()``: an ``nn.Module`` taking plain tensors and returning scores + example inputs
  (ONNX-exportable).

Optional trainer hooks (looked up with ``getattr``; absent = default behaviour):

- ``batch_order(store, batch_size, seed, epoch) -> index array | None``: the sample order of one
  training epoch (e.g. ``rs3l`` keeps re-simulated partners in the same batch); None: shuffled;
- ``fit_offline(train_store, val_store) -> logs``: non-gradient models (e.g. ``sup-bdt``) are
  fitted once by this call instead of the epoch loop; ``logs["loss"]`` is the training loss.

Batches are dicts of tensors from :func:`darkshower.represent.loader.to_torch`: ``x`` (and
``mask`` for point clouds; ``edge_index``/``batch``/``node_counts`` for graphs), ``label``,
``event_id``, ``jet_idx`` and any extra columns the method asked for (``extra_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError


class NoConfig(StrictModel):
    pass


@dataclass
class StepContext:
    epoch: int
    step: int
    epochs: int


class Method(nn.Module):
    name: ClassVar[str] = ""
    Config: ClassVar[type[StrictModel]] = NoConfig
    #: representation used when the run config gives none (merged under the user's keys)
    default_representation: ClassVar[dict] = {}
    #: representation kinds this method accepts (empty: any; see check_representation)
    kinds: ClassVar[tuple[str, ...]] = ()
    #: "jet" (one score per jet) or "event" (one per event)
    level: ClassVar[str] = "jet"
    #: offers label-free checkpoint selection by validation EMD
    energy_based: ClassVar[bool] = False
    default_selection: ClassVar[str] = "val_loss"
    #: trained with labels: a reference (upper bound), never a search method
    supervised: ClassVar[bool] = False
    #: paper reference shown in docs and reports
    paper: ClassVar[str] = ""
    #: samples per scoring batch (conv nets run faster on CPU with small batches: cache)
    score_batch_size: ClassVar[int] = 4096
    #: training-config defaults of this method (e.g. batch size, learning rate), under the user's keys
    default_train: ClassVar[dict] = {}

    def __init__(self, config: StrictModel, spec: dict):
        super().__init__()
        self.config = config
        self.spec = dict(spec)

    # -- data ---------------------------------------------------------------------------------
    @classmethod
    def input_spec(cls, store: dict, rep: Any) -> dict:
        x = store.get("x")
        spec = {"kind": rep.kind}
        if isinstance(x, np.ndarray):
            spec["shape"] = list(x.shape[1:])
        return spec

    @classmethod
    def check_representation(cls, rep: Any) -> None:
        """Raise ConfigError when ``rep`` cannot feed this method (default: kind not in ``kinds``)."""
        if cls.kinds and rep.kind not in cls.kinds:
            want = " or ".join(repr(k) for k in cls.kinds)
            raise ConfigError(f"{cls.name} needs representation.kind {want}, got {rep.kind!r}")

    @classmethod
    def representation_request(cls, config: StrictModel, user: dict) -> dict:
        """The representation dict to resolve for model ``config``: the method default merged under
        the user's keys (the default is dropped when the user picks another kind). Methods whose
        input depends on the model config (e.g. a frozen embedding of another run) override it."""
        merged = dict(cls.default_representation)
        if user.get("kind") not in (None, merged.get("kind")):
            merged = {}
        merged.update(user)
        return merged

    @classmethod
    def extra_columns(cls, config: StrictModel, events, ids: dict) -> dict[str, np.ndarray]:
        """Per-sample columns to add to the store, computed from a chunk's raw ``events``;
        ``ids`` holds the samples' ``event_id`` (and ``jet_idx``) to align with. Default: none."""
        return {}

    def prepare(self, store: dict) -> None:
        """Fit preprocessing on the training store (numpy), e.g. standardization."""

    # -- training -----------------------------------------------------------------------------
    def loss(self, batch: dict, ctx: StepContext) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook (e.g. switch from pre-training to the energy-based phase)."""

    def val_metrics(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": self.score(batch).mean()}

    def validation_emd(self, batches: list[dict]) -> float:
        raise NotImplementedError(f"{self.name} is not energy-based")

    # -- inference ----------------------------------------------------------------------------
    def score(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def export(self) -> tuple[nn.Module, tuple]:
        """(module, example inputs) for ONNX export: module(*inputs) -> scores [B]."""
        raise NotImplementedError


class _ScoreX(nn.Module):
    """Export wrapper: scores from the ``x`` tensor alone."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, x):
        return self.method.score({"x": x})
