"""Positive pairs from re-simulated datasets (``darkshower generate ... --resimulate K``)."""

from __future__ import annotations

import numpy as np


def positive_pairs(resim_id: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Index pairs (i, j), i != j, of events that share a hard process.

    With ``rng`` one random partner is drawn for every event that has at least one; without it,
    all ordered pairs are returned. Vectorized (sorting by group), no per-event Python loop.
    """
    resim_id = np.asarray(resim_id)
    order = np.argsort(resim_id, kind="stable")
    ids = resim_id[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(ids)])
    size_of = np.repeat(sizes, sizes)
    start_of = np.repeat(starts, sizes)
    pos = np.arange(len(ids)) - start_of
    if rng is not None:
        ok = size_of > 1
        shift = rng.integers(1, np.maximum(size_of, 2))
        partner = start_of + (pos + shift) % size_of
        return np.column_stack([order[ok], order[partner[ok]]])
    # all ordered pairs inside each group
    rep = np.repeat(np.arange(len(ids)), size_of)
    offs = np.arange(len(rep)) - np.repeat(np.cumsum(size_of) - size_of, size_of)
    other = start_of[rep] + offs
    keep = other != rep
    return np.column_stack([order[rep[keep]], order[other[keep]]])
