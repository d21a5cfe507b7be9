"""Inference of a loaded method on events: the one place that turns events into scores.

Used by scoring (:mod:`darkshower.train.score`), by methods built on other runs (a distilled
student's teacher) and by export checks. Samples whose model input holds NaN or inf are not
scored: their score is NaN and ``nonfinite_input`` is True, so evaluation drops and counts them
instead of ranking a zero-filled input as an ordinary jet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["score_arrays"]


def score_arrays(method, rep, events, batch_size: int | None = None, source: str | None = None) -> pd.DataFrame:
    """Scores of one batch of events (awkward) with a loaded method:
    ``event_id``, ``jet_idx`` (-1 for event-level methods), ``score``, ``nonfinite_input``."""
    import torch

    from darkshower.represent.build import build
    from darkshower.represent.store import iter_batches, nonfinite_rows, store_from_rep, store_len

    store = store_from_rep(build(rep, events, source), 0.0)
    n = store_len(store)
    batch_size = batch_size or method.score_batch_size
    out = np.empty(n, np.float64)
    with torch.no_grad():
        a = 0
        for b in iter_batches(store, batch_size):
            s = method.score(b).detach().double().numpy()
            out[a:a + len(s)] = s
            a += len(s)
    if a != n:  # a method that returns fewer scores than samples is a bug, not a silent shift
        raise RuntimeError(f"{getattr(method, 'name', method)}: {a} scores for {n} samples")
    bad = nonfinite_rows(store)
    out[bad] = np.nan
    jet_idx = store.get("jet_idx", np.full(n, -1))
    return pd.DataFrame({"event_id": np.asarray(store["event_id"], np.int64),
                         "jet_idx": np.asarray(jet_idx, np.int64), "score": out, "nonfinite_input": bad})
