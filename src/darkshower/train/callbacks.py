"""Callbacks of the training loop: what happens around the epochs without editing the loop.

A :class:`Callback` sees the :class:`~darkshower.train.loop.TrainingLoop` at fixed points
(``on_train_start``, ``on_epoch_start``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end``) and
may keep state that travels in the checkpoint (``state_dict``/``load_state_dict``; the keys are
merged into ``checkpoint.pt`` at top level, so they must not collide). The default set, in order:

- :class:`Selection` — the label-free selection value of each epoch (``val_loss``, ``val_emd`` or
  ``last``), the best value so far and early stopping (``patience``, ``min_delta``);
- :class:`Checkpointer` — ``model_last.pt`` and ``model_best.pt``, written atomically;
- :class:`MetricsWriter` — ``metrics.json`` / ``metrics.csv`` after every epoch;
- :class:`EpochLog` — one log line per epoch;
- :class:`ValidationScores` — at the end, the sorted validation-background scores of the best and
  last model (``val_scores.npy``, ``val_scores_last.npy``: the reference of ``score``'s ``eff_b``)
  and per validation-background row the score with jet pT/mass, MT, m_jj (``val_decor.npz``,
  ``val_decor_last.npz``: the reference of ``score``'s ``score_decor``).

After every callback has seen the epoch, the loop itself writes the full ``checkpoint.pt`` (model,
optimizer, scheduler, RNG, history, every callback's state, and whether a callback stopped the run),
so a resumed run continues from exactly that state.

In a distributed run (:mod:`darkshower.train.distributed`) every rank runs every callback with the
same (all-reduced) epoch row, so selection and early stopping agree; the callbacks that write files
do so on rank 0 only.

A new selection metric is a callback that adds its value to the epoch row before
:class:`Selection` runs (pass it first in ``callbacks``) and names it in ``selection``.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from darkshower.data.dataset import atomic_write_json, atomic_write_text
from darkshower.models.runs import atomic_torch_save

if TYPE_CHECKING:
    from darkshower.train.loop import TrainingLoop

log = logging.getLogger(__name__)


class Callback:
    """Base class: every hook does nothing."""

    def on_train_start(self, loop: TrainingLoop) -> None:
        pass

    def on_epoch_start(self, loop: TrainingLoop, epoch: int) -> None:
        pass

    def on_batch_end(self, loop: TrainingLoop, batch_size: int, loss: float) -> None:
        pass

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, row: dict) -> None:
        pass

    def on_train_end(self, loop: TrainingLoop) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Selection(Callback):
    """Label-free model selection and early stopping on the epoch row's ``metric``."""

    def __init__(self, metric: str, patience: int | None, min_delta: float = 0.0):
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_epochs = 0
        self.improved = False

    def value(self, epoch: int, row: dict) -> float:
        if self.metric == "last":
            return -float(epoch)  # every epoch is better than the one before
        return float(row.get(self.metric, math.nan))

    def on_epoch_end(self, loop, epoch, row):
        sel = self.value(epoch, row)
        row["selection_value"] = sel
        self.improved = math.isfinite(sel) and sel < self.best - self.min_delta
        if self.improved:
            self.best, self.bad_epochs = sel, 0
            row["best"] = True
        elif math.isfinite(sel):
            self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            loop.stop(f"early stopping: no improvement of {self.metric} for {self.bad_epochs} epochs")

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class Checkpointer(Callback):
    """``model_last.pt`` every epoch, ``model_best.pt`` when the selection improved (or is missing)."""

    def __init__(self, selection: Selection):
        self.selection = selection

    def on_epoch_end(self, loop, epoch, row):
        if not loop.world.is_main:  # one writer in a distributed run
            return
        run = loop.session.run
        state = {"model": loop.model.state_dict(), "epoch": epoch + 1}
        atomic_torch_save(state, run / "model_last.pt")
        if self.selection.improved or not (run / "model_best.pt").exists():
            atomic_torch_save(state, run / "model_best.pt")


class MetricsWriter(Callback):
    """``metrics.json`` and ``metrics.csv``: one row per epoch."""

    def on_epoch_end(self, loop, epoch, row):
        if loop.world.is_main:
            write_metrics(loop.session.run, loop.history + [row])


class EpochLog(Callback):
    def on_epoch_end(self, loop, epoch, row):
        if not loop.world.is_main:
            return
        log.info("%s epoch %d/%d: train %.5g, %s %.5g, %.0f jets/s", loop.session.label, epoch + 1,
                 loop.session.cfg.epochs, row["train_loss"], loop.session.selection, row.get("selection_value", math.nan),
                 row["jets_per_s"])


def write_metrics(run, history: list[dict]) -> None:
    atomic_write_json(run / "metrics.json", history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "metrics.csv", buf.getvalue())


def default_callbacks(session: Any) -> list[Callback]:
    """Selection (+ early stopping), checkpoints, metrics files, the epoch log line, validation scores."""
    es = session.cfg.early_stopping
    sel = Selection(session.selection, es.patience, es.min_delta)
    return [sel, Checkpointer(sel), MetricsWriter(), EpochLog(), ValidationScores()]


class ValidationScores(Callback):
    """At the end of training: the ascending scores of the validation background under the best and the
    last model, ``RUN/val_scores.npy`` and ``RUN/val_scores_last.npy`` (float64; samples with non-finite
    inputs or scores left out) — the reference of the ``eff_b`` column that ``score`` writes — and, per
    validation-background row, the score with the decorrelation variables (jet pT and mass; MT, m_jj)
    in ``RUN/val_decor.npz`` / ``RUN/val_decor_last.npz``, the reference of ``score_decor``
    (:mod:`darkshower.train.decorrelate`; left out with a warning when the variables cannot be read)."""

    def rows(self, loop: TrainingLoop) -> tuple[dict[str | None, np.ndarray], np.ndarray]:
        """({kind: score} per validation row, kept = background with finite inputs). Kind None is the
        configured score; a method with ``score_kinds`` adds every offered kind that is fitted, from one pass."""
        import torch

        from darkshower.represent.store import iter_batches, nonfinite_rows

        store = loop.data.val
        model = loop.model
        parts: dict[str | None, list] = {}
        model.eval()
        with torch.no_grad():
            for b in iter_batches(store, loop.cfg.eval_batch_size):
                got = dict(model.scores(b)) if model.score_kinds else {}
                got[None] = got[model.score_kind] if model.score_kind in got else model.score(b)
                for k, v in got.items():
                    parts.setdefault(k, []).append(v.detach().double().cpu().numpy())
        s: dict[str | None, np.ndarray] = {k: np.concatenate(v) for k, v in parts.items()} if parts else {None: np.empty(0)}
        keep = ~nonfinite_rows(store)
        if "label" in store:  # supervised references validate on signal too: keep the background
            keep &= np.asarray(store["label"]) <= 0.5
        return s, keep

    def variables(self, loop: TrainingLoop, keep: np.ndarray):
        """The decorrelation variables of the kept validation rows (a DataFrame), or None with a warning."""
        from darkshower.train.decorrelate import validation_variables

        session, store = loop.session, loop.data.val
        level = session.info.get("level", "jet")
        paths = list(session.val_paths or session.data_paths)
        try:
            out = validation_variables(paths, session.cfg.data, level, np.asarray(store["event_id"])[keep],
                                       np.asarray(store["jet_idx"])[keep] if "jet_idx" in store else None)
        except Exception as exc:  # the decorrelation reference is optional: never fail a finished training
            log.warning("%s: no %s-level decorrelation reference (val_decor.npz): %s: %s", session.run, level,
                        type(exc).__name__, exc)
            return None
        if out is None:
            log.warning("%s: the validation rows do not match the jets of %s by (event_id, jet_idx): no "
                        "decorrelation reference (val_decor.npz); score --decorrelate will not be available",
                        session.run, ", ".join(map(str, paths)))
        return out

    def on_train_end(self, loop):
        if not loop.world.is_main:  # rank 0 holds the whole validation store
            return
        from darkshower.models.runs import torch_load

        run = loop.session.run
        level = loop.session.info.get("level", "jet")
        last = copy.deepcopy(loop.model.state_dict())  # tensors and extra state (e.g. a fitted sklearn model)
        s, keep = self.rows(loop)
        variables = self.variables(loop, keep)
        self.write(run, "last", s, keep, variables, level)
        best = run / "model_best.pt"
        if best.exists():
            loop.model.load_state_dict(torch_load(best, "model")["model"])
            try:
                s, keep = self.rows(loop)
                self.write(run, "best", s, keep, variables, level)
            finally:
                loop.model.load_state_dict(last)

    @staticmethod
    def write(run, which: str, s: dict, keep: np.ndarray, variables, level: str) -> None:
        """The reference files of model ``which``: the configured score's, and one per offered kind."""
        from darkshower.train.decorrelate import VAL_DECOR, write_val_decor
        from darkshower.train.scorefiles import VAL_SCORES, val_file

        for kind, v in s.items():
            _atomic_save_npy(run / val_file(VAL_SCORES[which], kind), _sorted_finite(v[keep]))
            if variables is not None:
                write_val_decor(run / val_file(VAL_DECOR[which], kind), v[keep], variables, level)


def _sorted_finite(s: np.ndarray) -> np.ndarray:
    return np.sort(s[np.isfinite(s)])


def _atomic_save_npy(path, arr: np.ndarray) -> None:
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
