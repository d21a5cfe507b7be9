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


def test_train_auto_on_jets_without_constituents(tm_qcd, tm_svj, qcd_ds, tmp_path, caplog):
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
    # the default's five members less the image (jet images need constituents): it says so
    assert info["status"] == "complete" and info["auto"]["members"] == ["density", "flow", "event-flow", "jet-density"]
    assert any(w.startswith("the image member") for w in info["auto"]["left_out"])
    assert info["auto"]["inspected"]["constituents"] is False
    assert "msoftdrop" in info["auto"]["inspected"]["observables_without_constituents"]
    assert any("jets without constituents" in w for w in info["auto"]["why"])
    assert "c2" in info["auto"]["flow_columns_left_out"] and "sphericity" in info["auto"]["event-flow_columns_left_out"]
    assert not info["auto"]["columns_left_out"]  # the density's mass, n_constituents, pt are all there
    assert any("event shape (n_jets, H_T)" in line for line in lines)
    for m in ("density", "flow", "event-flow", "jet-density"):  # recorded, so that scoring can compare the observables' source
        assert json.loads((run / "members" / m / "run.json").read_text())["jets_without_constituents"] is True
    out = tmp_path / "s.parquet"
    with caplog.at_level("WARNING"):
        score(run, [tm_qcd, tm_svj], out, progress=False)
    assert "compare like with like" not in caplog.text  # trained and scored on stored values
    with caplog.at_level("WARNING"):
        score(run / "members" / "density", [qcd_ds], tmp_path / "c.parquet", progress=False)
    assert "the run was trained on jets without constituents" in caplog.text
    ev = pd.read_parquet(out.with_suffix(".events.parquet"))
    s_sig = ev.loc[ev.dataset == str(tm_svj.path), "score_max2"].to_numpy()
    s_bkg = ev.loc[ev.dataset == str(tm_qcd.path), "score_max2"].to_numpy()
    assert len(s_sig) == 120 and len(s_bkg) == 120 and np.isfinite(s_sig).all() and np.isfinite(s_bkg).all()
    assert auc(s_sig, s_bkg) > 0.6


def _events(n_empty=2, n_full=0, n2=0.3, seed=0):
    """Events of two jets each: ``n_empty`` events whose jets have no constituents but TreeMaker fields, then
    ``n_full`` events whose jets have constituents (and the same fields)."""
    import awkward as ak

    rng = np.random.default_rng(seed)
    cons = [{"pt": float(p), "eta": float(e), "phi": float(f), "e": float(p * np.cosh(e)), "charge": 1, "type": 0}
            for p, e, f in zip(rng.uniform(5, 50, 12), rng.normal(0.2, 0.1, 12), rng.normal(1.0, 0.1, 12))]
    stored = {"cms_softDropMass": 40.0, "cms_NsubjettinessTau1": 0.2, "cms_NsubjettinessTau2": 0.1,
              "cms_NsubjettinessTau3": 0.05, "cms_ecfN2b1": n2, "cms_multiplicity": 30}
    jet = {"pt": 300.0, "eta": 0.2, "phi": 1.0, "mass": 50.0, **stored, "constituents": cons}
    ev = ak.Array([{"event_id": i, "met_pt": 20.0, "met_phi": 0.0, "jets": [jet, jet]}
                   for i in range(n_empty + n_full)])
    keep = ak.Array([[0 if i < n_empty else len(cons)] * 2 for i in range(len(ev))])
    local = ak.local_index(ev.jets.constituents, axis=2)
    return ak.with_field(ev, ak.with_field(ev.jets, ev.jets.constituents[local < keep], "constituents"), "jets")


def test_producer_placeholders_become_zero_with_one_warning(caplog):
    """CMS writes N2 = -99999 (and msoftdrop -1) where soft drop leaves < 3 candidates: such values become 0,
    darkshower's value of an undefined observable, instead of reaching a model."""
    import darkshower.represent.observables as O

    O._WARNED.clear()
    with caplog.at_level("WARNING"):
        df = jet_observables(_events(n2=-99999.0))
        jet_observables(_events(n2=-99999.0))
    assert (df.n2 == 0).all() and (df.msoftdrop == 40.0).all() and (df.n_constituents == 30).all()
    np.testing.assert_allclose(df.tau21, 0.5)
    assert caplog.text.count("producer placeholders") == 1 and "n2 x4" in caplog.text


def test_real_treemaker_ntuple_gives_finite_nonnegative_observables(tmp_path):
    from conftest import shared_file
    from darkshower.io import import_dataset

    ds = import_dataset("treemaker", [shared_file("cms_pfnano", "treemaker_svj_search.root")], tmp_path / "tm")
    events = ds.read_chunk(0)
    df = jet_observables(events, max_jets=2)
    have = available_without_constituents(events.jets.fields)
    assert np.isfinite(df[have].to_numpy()).all() and (df[[c for c in have if c not in ("eta", "phi")]] >= 0).all().all()
    assert (df.n_constituents > 0).all() and (df.mass > 0).all()
    rep = adapt_to_data({"kind": "observables", "level": "event", "max_jets": 2, "include_event": False,
                         "columns": ["mass", "n2", "c2"]}, events)
    x = build(rep, events)["x"]
    assert np.isfinite(x).all() and x.min() >= 0 and "j0_c2" in rep.left_out


def test_mixed_and_edge_cases(caplog):
    import awkward as ak

    import darkshower.represent.observables as O

    # mixed: the jets without constituents take the record and stored values, the others are computed; one warning
    O._WARNED.clear()
    with caplog.at_level("WARNING"):
        df = jet_observables(_events(n_empty=1, n_full=1))
    assert (df.mass[:2] == 50.0).all() and (df.msoftdrop[:2] == 40.0).all() and (df.c2[:2] == 0).all()
    assert (df.n_constituents[2:] == 12).all() and (df.c2[2:] > 0).all()
    assert "2 of 4 jets have no constituents" in caplog.text
    # a sample whose jets the selection removed says nothing about constituents: nothing is left out
    full = _events(n_empty=0, n_full=2)
    no_jets = ak.with_field(full, full.jets[:, :0], "jets")
    cfg = adapt_to_data({"kind": "observables", "columns": ["mass", "c2"]}, no_jets)
    assert cfg.columns == ["mass", "c2"] and not cfg.left_out
    # columns left to the default at jet level with include_event keep the per-event columns
    cfg = adapt_to_data({"kind": "observables", "include_event": True}, _events())
    assert {"met_pt", "mt", "mjj", "ht", "n_jets"} <= set(cfg.columns) and "c2" in cfg.left_out
    assert "sphericity" in cfg.left_out and "sphericity" not in cfg.columns
    assert build(cfg, _events())["x"].shape == (4, len(cfg.columns))


def test_train_auto_refuses_the_image_member_without_constituents(tm_qcd, tmp_path):
    from darkshower.errors import ConfigError
    from darkshower.train.auto import train_auto

    with pytest.raises(ConfigError, match=r"the image member .* have none; leave image out"):
        train_auto(tm_qcd.path, tmp_path / "a", members=("density", "flow", "image"), progress=False,
                   echo=lambda s: None)
    assert not (tmp_path / "a").exists()
