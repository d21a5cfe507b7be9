"""A run trained with a jet window (data.jet_pt_min/max) scores the jets inside it, as in training, and its
score files number the jets as the dataset does (jet_idx = the jet's index among all jets of the event)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from darkshower.models.inference import score_arrays
from darkshower.models.runs import load_run
from darkshower.train import score as score_fn
from darkshower.train import train
from darkshower.train.data import select_jets

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


def _events(ds):
    return ak.concatenate([ds.read_chunk(i) for i in range(len(ds.chunks))])


@pytest.fixture(scope="module")
def window(qcd_ds):
    """An upper pT edge below the leading jet of about half the QCD events."""
    ev = _events(qcd_ds)
    return float(np.median(ak.to_numpy(ev.jets.pt[ak.num(ev.jets.pt) > 0][:, 0])))


@pytest.fixture(scope="module")
def jet_run(qcd_ds, window, tmp_path_factory):
    cfg = {**FAST, "data": {"jet_pt_max": window, "jet_pt_min": 20.0}}
    return train("gmm", qcd_ds, tmp_path_factory.mktemp("win") / "gmm", config=cfg, progress=False)


def test_jet_level_run_scores_the_jets_inside_its_window(jet_run, qcd_ds, window, tmp_path):
    jets_file, events_file = score_fn(jet_run, qcd_ds, tmp_path / "s.parquet", progress=False)
    got = pd.read_parquet(jets_file)
    ev = _events(qcd_ds)
    pt = ev.jets.pt
    inside = (pt > 20.0) & (pt < window)
    # expected rows: the two leading jets inside the window, numbered as in the dataset
    idx = ak.local_index(pt, axis=1)[inside][:, :2]
    want = pd.DataFrame({"event_id": np.repeat(ak.to_numpy(ev.event_id), ak.to_numpy(ak.num(idx))),
                         "jet_idx": ak.to_numpy(ak.flatten(idx))})
    assert len(got) == len(want) > 0
    key = ["event_id", "jet_idx"]
    assert got[key].sort_values(key).to_numpy().tolist() == want.sort_values(key).to_numpy().tolist()
    # the test exercises the renumbering: some event's leading scored jet is not its first jet
    first = got.groupby("event_id")["jet_idx"].min()
    assert (first > 0).any() and (first == 0).any()
    # every scored jet is inside the window (checked against the dataset's own jet pT)
    flat = pd.DataFrame({"event_id": np.repeat(ak.to_numpy(ev.event_id), ak.to_numpy(ak.num(pt))),
                         "jet_idx": ak.to_numpy(ak.flatten(ak.local_index(pt, axis=1))),
                         "pt": ak.to_numpy(ak.flatten(pt))})
    m = got.merge(flat, on=key, how="left")
    assert m["pt"].between(20.0, window).all()
    # the scores are the model's on the window-selected events (rank r inside the window <-> dataset index)
    method, rep, cfg, _ = load_run(jet_run)
    ref = score_arrays(method, rep, select_jets(ev, cfg.data))
    rank = got.sort_values(key).groupby("event_id").cumcount().to_numpy()
    g = got.sort_values(key).assign(rank=rank)
    r = ref.rename(columns={"jet_idx": "rank", "score": "ref"})
    j = g.merge(r[["event_id", "rank", "ref"]], on=["event_id", "rank"], how="left")
    np.testing.assert_allclose(j["score"], j["ref"], rtol=1e-6, atol=1e-9)
    # per event: the leading scored jet and the max of the two leading scored jets
    evs = pd.read_parquet(events_file).set_index("event_id")
    lead = j.loc[j["rank"] == 0].set_index("event_id")["score"]
    np.testing.assert_allclose(evs.loc[lead.index, "score_lead"], lead, rtol=1e-9)
    np.testing.assert_allclose(evs.loc[lead.index, "score_max2"], j.groupby("event_id")["score"].max()[lead.index],
                               rtol=1e-9)


def test_event_level_run_scores_the_window_selected_event(qcd_ds, window, tmp_path):
    cfg = {**FAST, "data": {"jet_pt_max": window},
           "representation": {"kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
                              "columns": ["mass", "n_constituents", "pt"]}}
    run = train("gmm", qcd_ds, tmp_path / "gmm-event", config=cfg, progress=False)
    jets_file, _ = score_fn(run, qcd_ds, tmp_path / "e.parquet", progress=False)
    got = pd.read_parquet(jets_file)
    assert (got["jet_idx"] == -1).all()
    method, rep, tcfg, _ = load_run(run)
    ref = score_arrays(method, rep, select_jets(_events(qcd_ds), tcfg.data))
    m = got.merge(ref, on="event_id", suffixes=("", "_ref"))
    assert len(m) == len(got) == len(ref) > 0
    np.testing.assert_allclose(m["score"], m["score_ref"], rtol=1e-6, atol=1e-9)
    # without the window the leading jets differ, and so do the scores: the window is what was applied
    raw = score_arrays(method, rep, _events(qcd_ds)).merge(ref, on="event_id", suffixes=("", "_ref"))
    assert len(raw) == len(ref) and not np.allclose(raw["score"], raw["score_ref"])


def test_int8_calibration_inputs_are_inside_the_window(jet_run, qcd_ds, window):
    """The int8 export's calibration samples come from the jets inside the run's window, as in training (the two
    leading jets inside it per event)."""
    from darkshower.export.quantize import _samples

    method, rep, cfg, _ = load_run(jet_run)
    ev = _events(qcd_ds)
    inside = (ev.jets.pt > 20.0) & (ev.jets.pt < window)
    n_inside = int(ak.sum(ak.num(ev.jets.pt[inside][:, :2])))
    n_all = int(ak.sum(ak.num(ev.jets.pt[:, :2])))
    assert n_inside < n_all
    s = _samples(rep, [qcd_ds], 10**9, cfg.data)
    assert len(s["x"]) == n_inside  # (no sample of this run has a non-finite input)



def test_distillation_teacher_scores_inside_its_own_window(jet_run, qcd_ds, window):
    """A teacher trained with a jet window scores the student's jets inside that window as it was trained (their
    rank inside the teacher's window) and gives no score (NaN) to the student's jets outside it."""
    from darkshower.models.distill import DistillConfig, teacher_scores

    ev = _events(qcd_ds)  # a student without a window: its jets are the dataset's
    ids = {"event_id": np.repeat(ak.to_numpy(ev.event_id), ak.to_numpy(ak.num(ev.jets.pt))),
           "jet_idx": ak.to_numpy(ak.flatten(ak.local_index(ev.jets.pt, axis=1)))}
    got = teacher_scores(DistillConfig(teacher_run=str(jet_run)), ev, ids)
    method, rep, cfg, _ = load_run(jet_run)
    ref = score_arrays(method, rep, select_jets(ev, cfg.data))
    pt = ak.to_numpy(ak.flatten(ev.jets.pt))
    outside = ~((pt > 20.0) & (pt < window))
    assert outside.any() and np.isnan(got[outside]).all()
    # inside: the teacher's rank-r jet inside its window is the student's r-th jet inside it
    inside_idx = ak.local_index(ev.jets.pt, axis=1)[(ev.jets.pt > 20.0) & (ev.jets.pt < window)][:, :2]
    keys = pd.DataFrame({"event_id": np.repeat(ak.to_numpy(ev.event_id), ak.to_numpy(ak.num(inside_idx))),
                         "jet_idx": ak.to_numpy(ak.flatten(inside_idx))})
    want = keys.assign(rank=keys.groupby("event_id").cumcount()).merge(
        ref.rename(columns={"jet_idx": "rank"}), on=["event_id", "rank"])
    table = pd.DataFrame({**ids, "got": got}).merge(want, on=["event_id", "jet_idx"])
    assert len(table) == len(want) > 0
    np.testing.assert_allclose(table["got"], table["score"], rtol=1e-9)


def test_scoring_a_validation_split_scores_exactly_its_events(jet_run, qcd_ds, tmp_path):
    """score(val_split=(fraction, seed)) (train auto's calibration) gives the rows of a full scoring whose events
    fall in that split, and no others."""
    from darkshower.train.data import event_fraction

    full, _ = score_fn(jet_run, qcd_ds, tmp_path / "full.parquet", progress=False)
    part, _ = score_fn(jet_run, qcd_ds, tmp_path / "part.parquet", progress=False, val_split=(0.3, 7))
    a, b = pd.read_parquet(full), pd.read_parquet(part)
    a = a[event_fraction(a.event_id.to_numpy(), 7) < 0.3].reset_index(drop=True)
    assert 0 < len(b) < len(pd.read_parquet(full))
    pd.testing.assert_frame_equal(a, b.reset_index(drop=True))
    from darkshower.errors import ConfigError

    with pytest.raises(ConfigError, match="val_split"):
        score_fn(jet_run, qcd_ds, tmp_path / "bad.parquet", progress=False, val_split=(1.5, 7))
