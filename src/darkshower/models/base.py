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

Optional hooks, all declared here with their default (a method overrides what it needs; the
registry checks a method's declarations when it is loaded, see :func:`check_method`):

- ``batch_order(store, batch_size, seed, epoch) -> index array | None``: the sample order of one
  training epoch (e.g. ``rs3l`` keeps re-simulated partners in the same batch); None: shuffled;
- ``fits_offline = True`` + ``fit_offline(train_store, val_store) -> logs``: non-gradient models
  (e.g. ``sup-bdt``) are fitted once by this call instead of the epoch loop; ``logs["loss"]`` is
  the training loss;
- ``has_embedding = True`` + ``embed(batch) -> [B, embed_dim]`` and the ``embed_dim`` property:
  frozen features for other methods (``nae`` with ``model.embedding_run``) and linear probes;
  ``embed_spaces`` names further embeddings, read with ``embed_in(batch, space)`` / ``embed_dim_in(space)``
  (e.g. the contrastive methods' ``pooled`` encoder output before the projection head);
- ``extra_column_names(config)`` + ``extra_columns(config, events, ids)``: per-sample columns the
  method needs besides the representation (e.g. ``resim_id``, a teacher's score);
- ``on_epoch_start(epoch)``; ``energy_based = True`` + ``validation_emd(batches)``;
- ``tune_space()`` (classmethod): the default search space of ``darkshower tune`` (dotted training-config
  key -> ``{type, low, high, log, choices}``); the default tunes the optimizer and batch size.

Batches are dicts of tensors from :func:`darkshower.represent.loader.to_torch`: ``x`` (and
``mask`` for point clouds; ``edge_index``/``batch``/``node_counts`` for graphs), ``label``,
``event_id``, ``jet_idx`` and any extra columns the method asked for (``extra_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError


class NoConfig(StrictModel):
    pass


#: default ``tune_space`` of gradient-trained methods (``darkshower tune``; see darkshower.train.tune)
TRAINING_TUNE_SPACE: dict[str, dict] = {
    "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "optimizer.weight_decay": {"type": "categorical", "choices": [0.0, 1e-5, 1e-4, 1e-3]},
}


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
    #: model-config values for runs saved before a key existed, where the new default differs from what those
    #: runs did (models.runs.read_run_config fills them in for a saved config.yaml that lacks the key)
    saved_defaults: ClassVar[dict] = {}
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
    #: fitted once by ``fit_offline`` instead of the gradient epoch loop (e.g. a BDT)
    fits_offline: ClassVar[bool] = False
    #: the anomaly scores one trained model offers (``score --score-kind``; e.g. ‖z‖, kNN, maha of a contrastive
    #: representation); empty: only ``score``'s. Such a method defines ``scores(batch)`` (every offered kind that
    #: is fitted) and ``use_score(kind)``; training stores a validation reference per kind
    score_kinds: ClassVar[tuple[str, ...]] = ()
    #: the kind ``score`` computes now, set from the method's config (``model.score``) by methods that have one
    score_kind: str | None = None
    #: exposes ``embed(batch)`` and ``embed_dim`` (frozen features for other methods and probes)
    has_embedding: ClassVar[bool] = False
    #: names of the embeddings ``embed_in`` offers besides ``embed``'s (None); empty: only ``embed``
    embed_spaces: ClassVar[tuple[str, ...]] = ()
    #: size of ``embed``'s output: methods with an embedding define it (usually as a property)
    if TYPE_CHECKING:  # typed as a read-only property so that subclasses may define it as one

        @property
        def embed_dim(self) -> int | None: ...
    else:
        embed_dim = None

    def __init__(self, config: StrictModel, spec: dict):
        super().__init__()
        self.config: Any = config  # the method's own Config model (validated)
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
    def extra_column_names(cls, config: StrictModel) -> tuple[str, ...]:
        """Names of the columns ``extra_columns`` adds for model ``config`` (default: none)."""
        return ()

    @classmethod
    def extra_columns(cls, config: Any, events, ids: dict) -> dict[str, np.ndarray]:
        """Per-sample columns to add to the store, computed from a chunk's raw ``events``;
        ``ids`` holds the samples' ``event_id`` (and ``jet_idx``) to align with. Called only when
        ``extra_column_names(config)`` is not empty."""
        return {}

    @classmethod
    def tune_space(cls) -> dict[str, dict]:
        """Default search space of ``darkshower tune``: dotted training-config key -> ``{type: float|int|
        categorical, low, high, log, choices}``. Default: learning rate, batch size and weight decay for
        gradient-trained methods, nothing for methods fitted offline; methods add their own keys."""
        return {} if cls.fits_offline else {k: dict(v) for k, v in TRAINING_TUNE_SPACE.items()}

    def prepare(self, store: dict) -> None:
        """Fit preprocessing on the training store (numpy), e.g. standardization."""

    # -- training -----------------------------------------------------------------------------
    def loss(self, batch: dict, ctx: StepContext) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook (e.g. switch from pre-training to the energy-based phase)."""

    def batch_order(self, store: dict, batch_size: int, seed: int, epoch: int) -> np.ndarray | None:
        """Sample order of one training epoch; None (default): a seeded shuffle by the trainer."""
        return None

    def fit_offline(self, train_store: dict, val_store: dict) -> dict:
        """Fit a non-gradient model once (only when ``fits_offline``); ``logs["loss"]``: training loss."""
        raise NotImplementedError(f"{self.name} is trained by gradient steps (fits_offline is False)")

    def val_metrics(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": self.score(batch).mean()}

    def validation_emd(self, batches: list[dict]) -> float:
        raise NotImplementedError(f"{self.name} is not energy-based")

    # -- inference ----------------------------------------------------------------------------
    def score(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, batch: dict) -> dict[str, torch.Tensor]:
        """Every offered score kind that is fitted, from one pass (only when ``score_kinds``)."""
        raise NotImplementedError(f"{self.name} offers one score (score_kinds is empty)")

    @classmethod
    def configured_score_kind(cls, model_config) -> str | None:
        """The kind ``score`` computes for a run of this method configured with ``model_config`` (one of
        ``score_kinds``; None for a method with one score). Methods whose ``model.score`` has a value that
        resolves from other keys (the flow's ``auto``) override this."""
        return getattr(model_config, "score", None) if cls.score_kinds else None

    def use_score(self, kind: str) -> None:
        """Make ``score`` compute ``kind`` (one of ``score_kinds``), with a clear error otherwise."""
        if kind not in self.score_kinds:
            offered = ", ".join(self.score_kinds) or "none besides its configured score"
            raise ConfigError(f"method {self.name!r} has no score kind {kind!r} (offered: {offered})")
        self.score_kind = kind

    def embed(self, batch: dict) -> torch.Tensor:
        """Frozen features [B, embed_dim] (only when ``has_embedding``)."""
        raise NotImplementedError(f"{self.name} has no embedding (has_embedding is False)")

    @classmethod
    def check_space(cls, space: str | None) -> None:
        """A clear error when ``space`` is not an embedding this method offers (None: ``embed``'s own)."""
        if not cls.has_embedding:
            raise ConfigError(f"method {cls.name!r} has no embedding (has_embedding is False)")
        if space is not None and space not in cls.embed_spaces:
            offered = ", ".join(cls.embed_spaces) or "none besides the default"
            raise ConfigError(f"method {cls.name!r} has no embedding space {space!r} (offered: {offered}); "
                              "leave it unset for the method's default embedding")

    def embed_in(self, batch: dict, space: str | None = None) -> torch.Tensor:
        """Frozen features in the named embedding ``space`` (None: ``embed(batch)``)."""
        self.check_space(space)
        return self.embed(batch)

    def embed_dim_in(self, space: str | None = None) -> int:
        """Size of ``embed_in(batch, space)``."""
        self.check_space(space)
        return int(self.embed_dim or 0)


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


def _overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(Method, name)


def check_method(cls: Any, name: str | None = None) -> None:
    """Check a method class's declarations (raised as ConfigError naming the class and the fix).
    Run by the registry when a method is loaded, built-in or registered by another package."""
    where = f"method class {getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"{where}: not a subclass of darkshower.models.base.Method")
    problems = []
    if name is not None and cls.name != name:
        problems.append(f"registered as {name!r} but its name attribute is {cls.name!r}")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, StrictModel)):
        problems.append("Config must be a darkshower.config.StrictModel subclass")
    if cls.level not in ("jet", "event"):
        problems.append(f"level must be 'jet' or 'event', not {cls.level!r}")
    if cls.default_selection not in ("val_loss", "val_emd", "last"):
        problems.append(f"default_selection {cls.default_selection!r} is not val_loss, val_emd or last")
    if cls.default_selection == "val_emd" and not cls.energy_based:
        problems.append("default_selection 'val_emd' needs energy_based = True")
    if not _overrides(cls, "score"):
        problems.append("does not implement score(batch)")
    if cls.fits_offline and not _overrides(cls, "fit_offline"):
        problems.append("fits_offline = True but fit_offline(train_store, val_store) is not implemented")
    if not cls.fits_offline and not _overrides(cls, "loss"):
        problems.append("does not implement loss(batch, ctx) (or set fits_offline = True and implement fit_offline)")
    if _overrides(cls, "fit_offline") and not cls.fits_offline:
        problems.append("implements fit_offline but does not declare fits_offline = True")
    if cls.energy_based and not _overrides(cls, "validation_emd"):
        problems.append("energy_based = True but validation_emd(batches) is not implemented")
    if cls.has_embedding and not (_overrides(cls, "embed") and _overrides(cls, "embed_dim")):
        problems.append("has_embedding = True needs both embed(batch) and the embed_dim property")
    if cls.embed_spaces and not (cls.has_embedding and _overrides(cls, "embed_in") and _overrides(cls, "embed_dim_in")):
        problems.append("embed_spaces needs has_embedding = True and both embed_in(batch, space) and "
                        "embed_dim_in(space)")
    if _overrides(cls, "extra_columns") and not _overrides(cls, "extra_column_names"):
        problems.append("implements extra_columns but not extra_column_names(config)")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
