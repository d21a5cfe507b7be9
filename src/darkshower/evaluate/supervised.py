"""Supervised upper bound: a gradient-boosted classifier trained with labels.

For each signal dataset, signal and background events are split in two halves at random
(seeded, per class); a ``HistGradientBoostingClassifier`` is trained on one half with
class-balanced event weights and scores the other half. Its metrics (same definitions and
bootstrap as the unsupervised methods, on the held-out half) are the reference the
unsupervised AUC is divided by. Features: event observables and the jet observables of the
two leading jets (:data:`darkshower.evaluate.tables.EVENT_FEATURES`, ``JET_FEATURES``); missing
values (e.g. no second jet) are handled natively by the classifier.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NAME = "supervised BDT"


def split_halves(n: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the training half (floor(n/2) events chosen at random)."""
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[: n // 2]] = True
    return mask


def train_and_score(bkg: pd.DataFrame, sig: pd.DataFrame, w_bkg, w_sig, seed: int = 0,
                    max_iter: int = 200) -> dict:
    """Train on half, score the other half.

    ``bkg``/``sig``: feature tables (rows aligned with the weights; an ``event_id`` column is
    ignored for training). Returns ``{"score_bkg", "score_sig", "test_bkg", "test_sig",
    "features", "n_train"}`` where ``test_*`` are boolean masks of the held-out events and
    ``score_*`` are NaN for training events.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = [c for c in bkg.columns if c != "event_id" and c in sig.columns]
    rng = np.random.default_rng(seed)
    tr_b = split_halves(len(bkg), rng)
    tr_s = split_halves(len(sig), rng)
    xb = bkg[feats].to_numpy(np.float64)
    xs = sig[feats].to_numpy(np.float64)
    wb = np.asarray(w_bkg, np.float64)
    ws = np.asarray(w_sig, np.float64)
    x = np.concatenate([xb[tr_b], xs[tr_s]])
    y = np.r_[np.zeros(tr_b.sum()), np.ones(tr_s.sum())]
    sw_b = wb[tr_b] / max(wb[tr_b].sum(), 1e-300)
    sw_s = ws[tr_s] / max(ws[tr_s].sum(), 1e-300)
    sw = np.r_[sw_b, sw_s] * len(y) / 2.0
    clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=15,
                                         min_samples_leaf=min(20, max(2, len(y) // 20)),
                                         l2_regularization=1.0, random_state=seed)
    clf.fit(x, y, sample_weight=sw)
    score_b = np.full(len(bkg), np.nan)
    score_s = np.full(len(sig), np.nan)
    if (~tr_b).any():
        score_b[~tr_b] = clf.predict_proba(xb[~tr_b])[:, 1]
    if (~tr_s).any():
        score_s[~tr_s] = clf.predict_proba(xs[~tr_s])[:, 1]
    return {"score_bkg": score_b, "score_sig": score_s, "test_bkg": ~tr_b, "test_sig": ~tr_s,
            "features": feats, "n_train": int(len(y))}
