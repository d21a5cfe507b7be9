"""Jets without constituents (CMS TreeMaker ntuples): observables from the jet record and the format's stored
observables (represent/stored.py), what the representation leaves out, and `train auto` on such data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from darkshower.data.dataset import open_dataset
from darkshower.errors import DatasetError
from darkshower.represent.build import adapt_to_data, build
from darkshower.represent.observables import event_level_table, jet_observables
from darkshower.represent.stored import available_without_constituents
from evaluate_util import TREEMAKER_NAMES, stored_observables_dataset


@pytest.fixture(scope="module")
def tm_qcd(qcd_ds, tmp_path_factory):
    return open_dataset(stored_observables_dataset(qcd_ds, tmp_path_factory.mktemp("tm") / "qcd"))


@pytest.fixture(scope="module")
def tm_svj(svj_ds, tmp_path_factory):
    return open_dataset(stored_observables_dataset(svj_ds, tmp_path_factory.mktemp("tm") / "svj"))


def test_stored_observables_round_trip(qcd_ds, tm_qcd):
    """A jet without constituents reads back the observables it stores; tau21/tau32 are their ratios; the
    four-vector comes from the jet record (the constituent sum for generated jets)."""
    full = jet_observables(qcd_ds.read_chunk(0), max_jets=2)
    tm = jet_observables(tm_qcd.read_chunk(0), max_jets=2)
    assert len(tm) == len(full) and (tm.event_id.to_numpy() == full.event_id.to_numpy()).all()
    for col in TREEMAKER_NAMES:
        np.testing.assert_allclose(tm[col], full[col], rtol=1e-6, atol=1e-6, err_msg=col)
    for col in ("pt", "mass"):
        np.testing.assert_allclose(tm[col], full[col], rtol=1e-3, err_msg=col)
    ok = full.tau1 > 1e-6
    np.testing.assert_allclose(tm.tau21[ok], full.tau21[ok], rtol=1e-4)
    assert (tm.n_constituents > 0).all()  # the stored multiplicity, not the empty constituent list
    assert (tm.c2 == 0).all() and (tm.lund_n_primary == 0).all()  # nothing stored: the kernel's zeros
    ev = event_level_table(tm_qcd.read_chunk(0), max_jets=2)
    np.testing.assert_allclose(ev.j0_msoftdrop, event_level_table(qcd_ds.read_chunk(0)).j0_msoftdrop, rtol=1e-6)


def test_available_columns_and_what_is_left_out(tm_qcd):
    events = tm_qcd.read_chunk(0)
    have = available_without_constituents(events.jets.fields)
    assert {"pt", "mass", "msoftdrop", "tau21", "tau32", "n2", "n_constituents", "n_charged"} <= set(have)
    assert "c2" not in have and "lund_n_primary" not in have
    cfg = adapt_to_data({"kind": "observables", "columns": ["mass", "tau21", "c2", "d2", "n_constituents"]}, events)
    assert cfg.columns == ["mass", "tau21", "n_constituents"] and cfg.left_out == ["c2", "d2"]
    ev = adapt_to_data({"kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
                        "columns": ["mass", "lund_max_lnkt"],
                        "event_columns": ["met_pt", "mjj", "n_jets", "sphericity", "aplanarity"]}, events)
    assert "j0_lund_max_lnkt" in ev.left_out and "sphericity" in ev.left_out and "aplanarity" in ev.left_out
    assert {"j0_mass", "j1_mass", "met_pt", "mjj", "n_jets"} <= set(ev.columns)
    assert not {"sphericity", "j1_lund_max_lnkt"} & set(ev.columns) and len(ev.left_out) == len(set(ev.left_out))
    # asked for explicitly (e.g. a run trained on constituents scored here): one error naming the columns
    with pytest.raises(DatasetError, match=r"/data/tm: the jets have no constituents.*\['c2'\] cannot be computed.*"
                                           r"Fix: leave the others out"):
        build({"kind": "observables", "columns": ["mass", "c2"]}, events, source="/data/tm")


def test_train_auto_on_jets_without_constituents(tm_qcd, tm_svj, tmp_path):
    """`train auto` on TreeMaker-like data: each member uses the stored observables and says what it left
    out; the combined score still finds SVJ events (more MET, heavier jets) above QCD."""
    import pandas as pd

    from darkshower.evaluate.metrics import auc
    from darkshower.train import score
    from darkshower.train.auto import train_auto

    lines: list[str] = []
    run, choice = train_auto(tm_qcd.path, tmp_path / "auto", config={"model": {"components": [1, 2]}}, epochs=2,
                             progress=False, echo=lines.append)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["auto"]["members"] == ["density", "flow", "event-flow"]
    assert info["auto"]["inspected"]["constituents"] is False
    assert "msoftdrop" in info["auto"]["inspected"]["observables_without_constituents"]
    assert any("jets without constituents" in w for w in info["auto"]["why"])
    assert "c2" in info["auto"]["flow_columns_left_out"] and "sphericity" in info["auto"]["event-flow_columns_left_out"]
    assert not info["auto"]["columns_left_out"]  # the density's mass, n_constituents, pt are all there
    assert any("event shape (n_jets, H_T)" in line for line in lines)
    out = tmp_path / "s.parquet"
    score(run, [tm_qcd, tm_svj], out, progress=False)
    ev = pd.read_parquet(out.with_suffix(".events.parquet"))
    s_sig = ev.loc[ev.dataset == str(tm_svj.path), "score_max2"].to_numpy()
    s_bkg = ev.loc[ev.dataset == str(tm_qcd.path), "score_max2"].to_numpy()
    assert len(s_sig) == 120 and len(s_bkg) == 120 and np.isfinite(s_sig).all() and np.isfinite(s_bkg).all()
    assert auc(s_sig, s_bkg) > 0.6
