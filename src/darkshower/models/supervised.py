"""Supervised references (upper bounds for evaluation, never search methods): trained on signal
(``data.signal`` datasets, label 1) against background (label 0) with the same representations.

- ``sup-transformer`` — a particle-transformer-style classifier on constituent point clouds
  (arXiv:2202.03772): the transformer encoder of :mod:`darkshower.models.transformer` with the
  ParT pairwise interaction bias (ln Δ, ln kT, ln z, ln m² per pair, added to every attention
  layer), trained with class-balanced binary cross-entropy; score = logit.
- ``sup-bdt`` — ``sklearn`` ``HistGradientBoostingClassifier`` on jet observables, fitted once
  through the trainer's ``fit_offline`` hook (``epochs`` is ignored); score = decision function
  (logit). The fitted classifier is part of the model state (``_extra_state``); ``export()``
  gives a pure-torch evaluation of the same trees (traceable / ONNX-exportable).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from darkshower.config import StrictModel
from darkshower.errors import ConfigError
from darkshower.models.ae import HLF_COLUMNS, observables_spec
from darkshower.models.base import Method, _ScoreX
from darkshower.models.contrastive import CLOUD_REPRESENTATION, _ScoreCloud
from darkshower.models.transformer import CloudInput, EncoderConfig, TransformerEncoder, cloud_spec, pair_features, trim


class SupTransformerConfig(EncoderConfig):
    pair_bias: bool = Field(True, description="ParT pairwise interaction bias")
    head: list[int] = Field(default_factory=lambda: [64])
    output: int = Field(1, ge=1, le=1, description="one logit")
    balance: bool = Field(True, description="weight the classes to equal total weight")


class SupervisedTransformer(Method):
    has_embedding = True
    name = "sup-transformer"
    Config = SupTransformerConfig
    supervised = True
    default_representation: ClassVar[dict] = CLOUD_REPRESENTATION
    paper = "Particle Transformer, arXiv:2202.03772 (supervised reference)"

    kinds = ("constituents",)

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return cloud_spec(store, rep)

    # buffers (register_buffer in __init__), typed for mypy
    pos_weight: torch.Tensor

    def __init__(self, config: SupTransformerConfig, spec: dict):
        super().__init__(config, spec)
        self.inp = CloudInput(spec["names"], config, spec.get("input_mean"), spec.get("input_std"))
        self.encoder = TransformerEncoder(self.inp.n_features, config)
        self.register_buffer("pos_weight", torch.ones(()))

    def prepare(self, store) -> None:
        self.inp.fit(store["x"], store["mask"])
        y = np.asarray(store["label"])
        n1, n0 = float((y > 0.5).sum()), float((y <= 0.5).sum())
        if n1 == 0 or n0 == 0:
            raise ConfigError(f"{self.name}: the training data need both classes (background: {int(n0)}, "
                              f"signal: {int(n1)} jets); check --data and data.signal")
        if self.config.balance:
            self.pos_weight.fill_(n0 / n1)

    def _forward(self, batch):
        mask = batch["mask"].bool()
        x = self.inp.raw(batch["x"], mask)
        x, mask = trim(x, mask)
        h, w = self.inp(x, mask)
        pairs = pair_features(x, mask, self.inp.idx) if self.config.pair_bias else None
        return self.encoder(h, mask, w, pairs)

    @property
    def embed_dim(self) -> int:
        return int(self.config.d_model)

    def embed(self, batch):
        return self._forward(batch)[0]

    def loss(self, batch, ctx):
        logit = self._forward(batch)[1][:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, batch["label"].float(), pos_weight=self.pos_weight)
        return loss, {}

    def val_metrics(self, batch):
        logit = self._forward(batch)[1][:, 0]
        y = batch["label"].float()
        return {"loss": F.binary_cross_entropy_with_logits(logit, y, pos_weight=self.pos_weight),
                "accuracy": ((logit > 0).float() == y).float().mean()}

    def score(self, batch):
        return self._forward(batch)[1][:, 0]

    def export(self):
        n = self.spec.get("n_constituents", 50)
        x = torch.zeros(4, n, len(self.spec["names"]))
        mask = torch.zeros(4, n, dtype=torch.bool)
        mask[:, :3] = True
        x[:, :3, self.inp.idx["log_pt"]] = torch.tensor([4.0, 3.0, 2.0])
        return _ScoreCloud(self), (x, mask)


class BDTConfig(StrictModel):
    max_iter: int = Field(200, ge=1, description="boosting iterations (trees)")
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    balance: bool = Field(True, description="weight the classes to equal total weight")
    random_state: int = 0


def _logloss(raw: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    raw = np.asarray(raw, np.float64)
    loss = np.logaddexp(0, raw) - y * raw
    return float(np.average(loss, weights=w))


class SupervisedBDT(Method):
    fits_offline = True
    name = "sup-bdt"
    Config = BDTConfig
    supervised = True
    default_representation: ClassVar[dict] = {"kind": "observables", "columns": HLF_COLUMNS, "include_event": False}
    paper = "gradient-boosted decision trees on jet observables (supervised reference)"

    kinds = ("observables",)

    @classmethod
    def input_spec(cls, store, rep) -> dict:
        return observables_spec(store, rep)

    def __init__(self, config: BDTConfig, spec: dict):
        super().__init__(config, spec)
        self.clf: Any = None  # a fitted sklearn HistGradientBoostingClassifier (sklearn is imported lazily)

    # the fitted classifier travels in the state_dict
    def get_extra_state(self):
        if self.clf is None:
            return b""
        buf = io.BytesIO()
        pickle.dump(self.clf, buf)
        return buf.getvalue()

    def set_extra_state(self, state) -> None:
        self.clf = pickle.loads(state) if state else None

    def _weights(self, y: np.ndarray) -> np.ndarray | None:
        if not self.config.balance:
            return None
        n1, n0 = max((y > 0.5).sum(), 1), max((y <= 0.5).sum(), 1)
        return np.where(y > 0.5, len(y) / (2.0 * n1), len(y) / (2.0 * n0))

    def fit_offline(self, train_store: dict, val_store: dict) -> dict:
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = np.asarray(train_store["x"], np.float64)
        y = np.asarray(train_store["label"], np.float64)
        if (y > 0.5).all() or (y <= 0.5).all():
            raise ConfigError(f"{self.name}: the training data need both classes; check --data and data.signal")
        c = self.config
        self.clf = HistGradientBoostingClassifier(
            max_iter=c.max_iter, learning_rate=c.learning_rate, max_leaf_nodes=c.max_leaf_nodes, max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf, l2_regularization=c.l2_regularization, early_stopping=False,
            random_state=c.random_state)
        w = self._weights(y)
        self.clf.fit(x, y, sample_weight=w)
        return {"loss": _logloss(self.clf.decision_function(x), y, w)}

    def _check(self):
        if self.clf is None:
            raise ConfigError(f"{self.name}: the classifier is not fitted (train it with `darkshower train sup-bdt`)")

    def score(self, batch):
        self._check()
        x = batch["x"].detach().double().numpy()
        return torch.from_numpy(self.clf.decision_function(x).astype(np.float32))

    def val_metrics(self, batch):
        self._check()
        x = batch["x"].double().numpy()
        y = batch["label"].double().numpy()
        raw = self.clf.decision_function(x)
        return {"loss": torch.tensor(_logloss(raw, y, self._weights(y))),
                "accuracy": torch.tensor(float(((raw > 0) == (y > 0.5)).mean()))}

    def export(self):
        self._check()
        return _ScoreX(TreeEnsemble(self.clf)), (torch.zeros(4, self.spec["n_features"]),)


class TreeEnsemble(nn.Module):
    """Pure-torch evaluation of a fitted binary HistGradientBoostingClassifier (numeric splits):
    ``forward({"x": x})`` / ``score`` -> the decision function. Trees are walked level by level
    with gathers over a flat node table (traceable, no data-dependent control flow)."""

    def __init__(self, clf):
        super().__init__()
        preds = [p[0] for p in clf._predictors]
        sizes = [len(p.nodes) for p in preds]
        M = max(sizes)
        T = len(preds)
        feat = np.zeros((T, M), np.int64)
        thr = np.zeros((T, M), np.float64)
        left = np.zeros((T, M), np.int64)
        right = np.zeros((T, M), np.int64)
        leaf = np.ones((T, M), bool)
        miss = np.zeros((T, M), bool)
        value = np.zeros((T, M), np.float64)
        depth = 0
        for t, p in enumerate(preds):
            nd = p.nodes
            if nd["is_categorical"].any():
                raise ConfigError("TreeEnsemble: categorical splits are not supported")
            n = len(nd)
            feat[t, :n] = nd["feature_idx"]
            thr[t, :n] = nd["num_threshold"]
            left[t, :n] = nd["left"]
            right[t, :n] = nd["right"]
            leaf[t, :n] = nd["is_leaf"].astype(bool)
            miss[t, :n] = nd["missing_go_to_left"].astype(bool)
            value[t, :n] = nd["value"]
            depth = max(depth, int(nd["depth"].max()))
        self.depth = depth
        self.M = M
        base = torch.arange(T)[None, :] * M
        self.register_buffer("base", base)
        for name, arr in (("feat", feat), ("thr", thr), ("left", left), ("right", right), ("leaf", leaf), ("miss", miss),
                          ("value", value)):
            self.register_buffer(name, torch.from_numpy(arr.reshape(-1)))
        self.register_buffer("baseline", torch.tensor(float(np.ravel(clf._baseline_prediction)[0]), dtype=torch.float64))

    def score(self, batch):
        x = batch["x"].double()
        B = x.shape[0]
        node = torch.zeros(B, self.base.shape[1], dtype=torch.long)
        for _ in range(self.depth):
            g = node + self.base
            xv = x.gather(1, self.feat[g])
            go_left = torch.where(torch.isnan(xv), self.miss[g], xv <= self.thr[g])
            nxt = torch.where(go_left, self.left[g], self.right[g])
            node = torch.where(self.leaf[g], node, nxt)
        return (self.value[node + self.base].sum(1) + self.baseline).float()

    def forward(self, batch):
        return self.score(batch)
