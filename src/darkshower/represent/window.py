"""The jet pT / mass window of a training config (``data.jet_pt_min/max``, ``jet_mass_min/max``), applied to
events: training builds its representation from the jets inside the window, ranked there, and everything that
feeds a trained run (``score``, ``score --server``, the int8 export's calibration, the linear probe, a
distillation teacher) applies the same window. ``data_cfg`` is any object with those four attributes (the
run's ``TrainConfig.data``)."""

from __future__ import annotations

import awkward as ak
import numpy as np


def jet_window(events, data_cfg):
    """The jets inside the jet pT / mass window of the data config (a jagged bool mask), or None when the
    config sets no window."""
    sel = None
    jets = events["jets"]
    for field, lo, hi in (("pt", data_cfg.jet_pt_min, data_cfg.jet_pt_max),
                          ("mass", data_cfg.jet_mass_min, data_cfg.jet_mass_max)):
        if lo is not None:
            m = jets[field] > lo
            sel = m if sel is None else sel & m
        if hi is not None:
            m = jets[field] < hi
            sel = m if sel is None else sel & m
    return sel


def select_jets(events, data_cfg) -> ak.Array:
    """Apply the jet pT / mass window of the data config (jets outside are removed)."""
    sel = jet_window(events, data_cfg)
    return events if sel is None else ak.with_field(events, events["jets"][sel], "jets")


def select_jets_indexed(events, data_cfg) -> tuple[ak.Array, ak.Array | None]:
    """:func:`select_jets` and each kept jet's index among all jets of its event (None without a window).
    Training ranks jets after the window (``jet_idx`` 0 is the leading jet *inside* it); score files number
    jets as the dataset does, so :func:`dataset_jet_idx` maps the one to the other."""
    sel = jet_window(events, data_cfg)
    if sel is None:
        return events, None
    index = ak.local_index(events["jets"]["pt"], axis=1)[sel]
    return ak.with_field(events, events["jets"][sel], "jets"), index


def dataset_jet_idx(df, events, index):
    """``df`` (rows ``event_id``, ``jet_idx`` of ``events`` after the window, as built from them) with
    ``jet_idx`` renumbered as the jets' index in the dataset (``index`` from :func:`select_jets_indexed`);
    event-level rows (``jet_idx`` −1) are left as they are."""
    import pandas as pd

    if index is None or not len(df):
        return df
    counts = ak.to_numpy(ak.num(index, axis=1))
    key = pd.MultiIndex.from_arrays([np.repeat(ak.to_numpy(events["event_id"]).astype(np.int64), counts),
                                     ak.to_numpy(ak.flatten(ak.local_index(index, axis=1))).astype(np.int64)])
    flat = ak.to_numpy(ak.flatten(index)).astype(np.int64)
    jet = df["jet_idx"].to_numpy(np.int64) >= 0
    pos = key.get_indexer(pd.MultiIndex.from_arrays([df["event_id"].to_numpy(np.int64)[jet],
                                                     df["jet_idx"].to_numpy(np.int64)[jet]]))
    if (pos < 0).any():  # a row the representation made for a jet the window did not keep is a bug
        raise RuntimeError(f"{int((pos < 0).sum())} scored jets are not jets inside the run's window")
    out = df.copy()
    idx = out["jet_idx"].to_numpy(np.int64).copy()
    idx[jet] = flat[pos]
    out["jet_idx"] = idx
    return out
