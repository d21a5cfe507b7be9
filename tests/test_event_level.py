"""Event-level observables (one row per event: the leading jets side by side + the MET topology) and
``darkshower train auto`` (issue #12 parts 8 and 9)."""

from __future__ import annotations

import json
import os

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import yaml

from darkshower.errors import ConfigError, DatasetError
from darkshower.represent.build import adapt_to_data, build
from darkshower.represent.config import OBS_EVENT_COLUMNS, OBS_JET_COLUMNS, parse_representation
from darkshower.represent.observables import EVENT_COLUMNS, JET_COLUMNS, event_level_table, jet_observables
from darkshower.represent.toys import toy_events
from test_represent_untyped import _write_4vec  # h5-4vec file writer (two jets, no MET)


def _events() -> ak.Array:
    """Three events: two jets, one jet, no jet; known MET."""
    ev = toy_events(3, seed=1)
    flat = ak.flatten(ev.jets)
    ev = ak.with_field(ev, ak.unflatten(flat[[0, 1, 2]], [2, 1, 0]), "jets")
    ev = ak.with_field(ev, np.array([100.0, 50.0, 20.0], np.float32), "met_pt")
    return ak.with_field(ev, np.array([0.3, -2.0, 1.0], np.float32), "met_phi")


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def test_config_lists_stay_in_step_with_the_tables():
    assert OBS_JET_COLUMNS == tuple(JET_COLUMNS) and OBS_EVENT_COLUMNS == tuple(EVENT_COLUMNS)


def test_event_columns_by_hand():
    ev = _events()
    df = event_level_table(ev, max_jets=2)
    assert list(df.event_id) == [0, 1] and df.attrs["n_without_jets"] == 1  # the event without jets is left out
    j = ev.jets
    pt, eta, phi, m = (ak.to_numpy(ak.flatten(getattr(j, f))).astype(np.float64) for f in ("pt", "eta", "phi", "mass"))
    # event 0 by hand: dijet 4-vector, MT of (jj + MET), R_T, dphi to each jet
    px, py, pz = pt[:2] * np.cos(phi[:2]), pt[:2] * np.sin(phi[:2]), pt[:2] * np.sinh(eta[:2])
    e = np.sqrt((pt[:2] * np.cosh(eta[:2])) ** 2 + m[:2] ** 2)
    mjj = np.sqrt(e.sum() ** 2 - px.sum() ** 2 - py.sum() ** 2 - pz.sum() ** 2)
    etjj = np.sqrt(mjj**2 + px.sum() ** 2 + py.sum() ** 2)
    mx, my = 100.0 * np.cos(np.float32(0.3)), 100.0 * np.sin(np.float32(0.3))
    mt = np.sqrt((etjj + 100.0) ** 2 - (px.sum() + mx) ** 2 - (py.sum() + my) ** 2)
    r0 = df.iloc[0]
    np.testing.assert_allclose([r0.mjj, r0.mt, r0.rt], [mjj, mt, 100.0 / mt], rtol=1e-5)
    dphi = np.abs(_wrap(phi[:2] - np.float32(0.3)))
    np.testing.assert_allclose([r0.dphi_j0, r0.dphi_j1, r0.dphi_min], [dphi[0], dphi[1], dphi.min()], rtol=1e-5)
    assert r0.j0_present == 1 and r0.j1_present == 1
    # the slots hold the jet-level observables of each jet
    jt = jet_observables(ev, max_jets=2)
    for c in ("mass", "n_constituents", "tau21", "pt"):
        np.testing.assert_allclose([r0[f"j0_{c}"], r0[f"j1_{c}"], df.iloc[1][f"j0_{c}"]], jt[c].to_numpy(), rtol=1e-6)
    # event 1 has one jet: slot 1 padded with 0 and flagged absent; dphi_min is its one jet's
    r1 = df.iloc[1]
    assert r1.j0_present == 1 and r1.j1_present == 0
    assert all(r1[f"j1_{c}"] == 0 for c in JET_COLUMNS) and r1.dphi_j1 == 0
    np.testing.assert_allclose(r1.dphi_min, abs(_wrap(phi[2] - np.float32(-2.0))), rtol=1e-5)
    # and its m_jj is that jet's mass: a copy of j0_mass (why the flow marginalizes it with the second jet,
    # model.missing_pair; represent.config.PAIR_COLUMNS)
    np.testing.assert_allclose(r1.mjj, r1.j0_mass, rtol=1e-5)


def test_event_level_config_expands_and_round_trips():
    c = parse_representation({"kind": "observables", "level": "event", "columns": ["mass", "pt", "j0_tau21"]})
    assert c.columns == ["j0_mass", "j1_mass", "j0_pt", "j1_pt", "j0_tau21", "j1_present",
                         "met_pt", "mt", "rt", "mjj", "dphi_min", "dphi_j0", "dphi_j1"]
    assert parse_representation(c.model_dump(mode="json")) == c  # config.yaml of a run parses to itself
    three = parse_representation({"kind": "observables", "level": "event", "max_jets": 3, "columns": ["mass"],
                                  "event_columns": ["rt", "ht"]})
    assert three.columns == ["j0_mass", "j1_mass", "j2_mass", "j1_present", "j2_present", "rt", "ht"]
    out = build(three, _events())
    assert out["x"].shape == (2, 7) and "jet_idx" not in out  # one row per event: scored at event level
    with pytest.raises(ConfigError, match=r"unknown columns \['j2_mass'\].*max_jets=2"):
        parse_representation({"kind": "observables", "level": "event", "columns": ["j2_mass"]})
    with pytest.raises(ConfigError, match="level event needs max_jets"):
        parse_representation({"kind": "observables", "level": "event", "max_jets": None})


def test_data_without_met_leave_the_met_columns_out():
    ev = _events()
    no_met = ak.with_field(ev, np.zeros(3, np.float32), "met_pt")
    c = parse_representation({"kind": "observables", "level": "event", "columns": ["mass"]})
    assert adapt_to_data(c, ev) == c  # MET present: unchanged
    assert adapt_to_data(c, no_met[:0]) == c  # an empty sample (a chunk the selection empties) says nothing
    a = adapt_to_data(c, no_met, "ds")
    assert a.left_out == ["met_pt", "mt", "rt", "dphi_min", "dphi_j0", "dphi_j1"]
    assert a.columns == ["j0_mass", "j1_mass", "j1_present", "mjj"]
    assert parse_representation(a.model_dump(mode="json")) == a  # the left-out columns are not added back
    assert build(a, no_met)["x"].shape == (2, 4)
    with pytest.raises(DatasetError, match=r"columns \['met_pt'.*need the missing transverse momentum"):
        build(c, no_met)  # a run trained with MET cannot score data without it


@pytest.fixture(scope="module")
def no_met_ds(tmp_path_factory):
    from darkshower.io import import_dataset

    d = tmp_path_factory.mktemp("nomet")
    return import_dataset("h5-4vec", [_write_4vec(d / "a.h5", n=60, p=10)], d / "ds").path  # a format without MET


@pytest.mark.parametrize("method, epochs", [("gmm", None), ("ae-hlf", 2)])
def test_train_score_evaluate_at_event_level(method, epochs, qcd_ds, svj_ds, tmp_path):
    from darkshower import evaluate
    from darkshower.train import score, train

    cfg = {"representation": {"level": "event"}, "threads": 1}
    if method == "gmm":
        cfg["model"] = {"components": [1, 2]}
    run = train(method, qcd_ds.path, tmp_path / "run", config=cfg, epochs=epochs, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["level"] == "event" and info["representation"]["level"] == "event"
    assert len(info["spec"]["names"]) == info["spec"]["n_features"] > 2 * 3  # both jets + the MET topology
    assert "rt" in info["spec"]["names"] and "j1_mass" in info["spec"]["names"]
    jets, events = score(run, [qcd_ds.path, svj_ds.path], tmp_path / "s.parquet", progress=False)
    t = pd.read_parquet(jets)
    assert (t.jet_idx == -1).all() and not t.duplicated(["dataset", "event_id"]).any()
    assert np.isfinite(t.score).all() and len(t) == 240  # every event (all have a jet) once
    m = evaluate([jets], background=qcd_ds.path, signal=svj_ds.path, n_bootstrap=0, supervised=False)
    (r,) = [r for r in m["results"] if r["method"] == method]
    assert r["level"] == "event" and r["n_bkg"] == 120 and 0 <= r["auc"]["value"] <= 1


def test_event_level_training_on_data_without_met_records_what_it_left_out(no_met_ds, tmp_path):
    from darkshower.train import train

    run = train("gmm", no_met_ds, tmp_path / "run", config={"representation": {"level": "event"},
                                                             "model": {"components": [1]}}, progress=False)
    rep = yaml.safe_load((run / "config.yaml").read_text())["representation"]
    assert rep["left_out"] == ["met_pt", "mt", "rt", "dphi_min", "dphi_j0", "dphi_j1"]
    assert not set(rep["left_out"]) & set(rep["columns"]) and "mjj" in rep["columns"]


def test_train_auto_picks_event_level_with_met_and_jet_level_without(qcd_ds, svj_ds, no_met_ds, tmp_path, capsys,
                                                                     monkeypatch):
    from darkshower.cli.main import main
    from darkshower.train.auto import DEFAULT_COMBINE, DEFAULT_MEMBERS, DEFAULT_METHOD, train_auto

    assert DEFAULT_METHOD == "gmm" and DEFAULT_MEMBERS == ("density", "flow", "event-flow", "jet-density", "image")
    assert DEFAULT_COMBINE == "fisher"
    assert main(["train", "auto", "--data", str(qcd_ds.path), "--out", str(tmp_path / "a"), "--no-progress",
                 "--set", "model.components=[1,2]", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert ("density (gmm) + flow (flow) + event-flow (flow) + jet-density (gmm) + image (ae-image)" in printed
            and "combined by fisher" in printed)
    assert "left out" not in printed
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["method"] == "auto" and info["status"] == "complete" and info["level"] == "event"
    assert [m["name"] for m in info["members"]] == list(DEFAULT_MEMBERS) and info["combine"] == "fisher"
    dens = json.loads((tmp_path / "a" / "members" / "density" / "run.json").read_text())
    flow = json.loads((tmp_path / "a" / "members" / "flow" / "run.json").read_text())
    assert dens["method"] == "gmm" and dens["level"] == "event" and flow["method"] == "flow" and flow["level"] == "jet"
    evf = json.loads((tmp_path / "a" / "members" / "event-flow" / "run.json").read_text())
    assert evf["method"] == "flow" and evf["level"] == "event"
    cols = evf["representation"]["columns"]
    assert {"j0_tau32", "j1_tau32", "j1_present", "met_pt", "rt", "dphi_j1", "n_jets", "sphericity"} <= set(cols)
    assert "pt" not in cols and "j0_pt" not in cols  # substructure, the MET topology and the event shape
    assert info["auto"]["inspected"]["met"] is True and "rt" in info["auto"]["columns"]
    assert yaml.safe_load((tmp_path / "a" / "members" / "density" / "config.yaml").read_text())["model"][
        "components"] == [1, 2]  # --set configures the density member
    # resuming a complete run trains nothing more and keeps the choice
    assert main(["train", "auto", "--data", str(qcd_ds.path), "--out", str(tmp_path / "a"), "--no-progress",
                 "--resume"]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["members"] == info["members"]
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr().out
    assert "combined by fisher" in shown and "member    flow: flow (jet level)" in shown and "calibrated on" in shown

    run, choice = train_auto(no_met_ds, tmp_path / "b", config={"model": {"components": [1]}}, progress=False,
                             echo=lambda s: None, epochs=1)
    info = json.loads((run / "run.json").read_text())
    dens = json.loads((run / "members" / "density" / "run.json").read_text())
    # no MET but a second jet: the density at jet level, and the event-level flow on the two jets side by side,
    # m_jj and the event shape (its MET topology left out): the combination is an event-level score
    assert choice["level"] == "jet" and info["auto"]["level"] == "jet" and info["level"] == "event"
    assert dens["representation"]["columns"] == ["mass", "n_constituents", "pt"] and info["combine"] == "fisher"
    assert info["auto"]["members"] == ["density", "flow", "event-flow", "image"]  # no jet-density without MET
    evf = json.loads((run / "members" / "event-flow" / "run.json").read_text())["representation"]
    assert {"j0_tau32", "j1_tau32", "j1_present", "mjj", "n_jets", "sphericity"} <= set(evf["columns"])
    assert not {"met_pt", "mt", "rt", "dphi_min", "dphi_j1"} & set(evf["columns"])
    assert {"met_pt", "mt", "rt", "dphi_min", "dphi_j0", "dphi_j1"} <= set(evf["left_out"])
    assert any("without MET its MET topology is left out" in w for w in info["auto"]["why"])
    from darkshower.train import score

    _, evp = score(run, [no_met_ds], tmp_path / "b.parquet", progress=False)
    ev_scores = pd.read_parquet(evp)
    assert len(ev_scores) == 60 and np.isfinite(ev_scores["score_max2"]).all()  # one event-level score per event
    assert choice["flow_columns_left_out"] == ["n_charged"]  # untyped constituents: no charge-based observables
    assert any(w.startswith("MET topology") for w in info["auto"]["left_out"])
    assert any(w.startswith("particle types") for w in info["auto"]["left_out"])  # h5-4vec: types unknown
    with pytest.raises(ConfigError, match="train auto chooses the representation itself"):
        train_auto(no_met_ds, tmp_path / "c", config={"representation": {"kind": "image"}}, progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="no_such_key"):  # the density's config fails: no half run is left
        train_auto(no_met_ds, tmp_path / "c", config={"model": {"no_such_key": 1}}, progress=False, echo=lambda s: None)
    assert not (tmp_path / "c").exists()
    # neither MET nor a second jet (as the inspection of single-jet data reports): no event-level flow, it says so
    import darkshower.train.auto as auto_mod

    inspect = auto_mod.inspect_dataset
    monkeypatch.setattr(auto_mod, "inspect_dataset", lambda *a, **k: {**inspect(*a, **k), "two_jet_fraction": 0.0})
    run, choice = train_auto(no_met_ds, tmp_path / "e", config={"model": {"components": [1]}}, progress=False,
                             echo=lambda s: None, epochs=1)
    info = json.loads((run / "run.json").read_text())
    assert info["auto"]["members"] == ["density", "flow", "image"] and info["level"] == "jet"
    assert any(w.startswith("the event-level flow member") for w in info["auto"]["left_out"])
    with pytest.raises(ConfigError, match="the event-flow member needs MET or a second jet"):
        train_auto(no_met_ds, tmp_path / "c", members=("density", "event-flow"), progress=False, echo=lambda s: None)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="choose distinct members"):
        train_auto(no_met_ds, tmp_path / "c", members=("flow",), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train_auto(no_met_ds, run, members=("density",), progress=False)
    assert main(["train", "gmm", "--data", str(qcd_ds.path), "--out", str(tmp_path / "d"), "--members", "flow"]) == 2


def pair_floor(f: float) -> float:
    """The lowest value Fisher's method over two jets reaches (both jets at the floor f): the member's floor."""
    return f * f * (1 - 2 * np.log(f))


def test_auto_run_scores_by_fishers_method_of_its_members(qcd_ds, svj_ds, tmp_path):
    """score on a train auto run = -sum ln eff_b of its members, the jet-level flow entering with Fisher's method
    over its two leading jets (run.json jets: fisher), the event-level flow with its event's; the density alone
    (--members density) scores as its own run."""
    from darkshower.models.runs import load_run
    from darkshower.train import score
    from darkshower.train.auto import train_auto

    run, _ = train_auto(qcd_ds.path, tmp_path / "auto", config={"model": {"components": [1, 2]}}, epochs=2,
                        progress=False, echo=lambda s: None, members=("density", "flow", "event-flow"))
    data = [qcd_ds.path, svj_ds.path]
    out, evp = score(run, data, tmp_path / "s" / "auto.parquet", progress=False)
    d, _ = score(run / "members" / "density", data, tmp_path / "s" / "d.parquet", progress=False)
    f, _ = score(run / "members" / "flow", data, tmp_path / "s" / "f.parquet", progress=False)
    e, _ = score(run / "members" / "event-flow", data, tmp_path / "s" / "e.parquet", progress=False)
    t, td, tf, te = pd.read_parquet(out), pd.read_parquet(d), pd.read_parquet(f), pd.read_parquet(e)
    assert (te.jet_idx == -1).all()
    assert (t.jet_idx == -1).all() and len(t) == len(td)
    assert json.loads((run / "run.json").read_text())["jets"] == "fisher"
    n_val = {k: len(np.load(run / "members" / k / "val_scores.npy")) for k in ("density", "flow", "event-flow")}
    tf = tf[tf.jet_idx.isin([0, 1])]
    x = (-np.log(np.maximum(tf["eff_b"], 0.5 / n_val["flow"]))).groupby([tf["dataset"], tf["event_id"]]).sum()
    k = tf.groupby(["dataset", "event_id"])["eff_b"].size()
    flow_ev = (np.exp(-x) * np.where(k == 2, 1 + x, 1)).rename("f")
    m = td.set_index(["dataset", "event_id"])[["eff_b"]].join(flow_ev, how="left")
    m = m.join(te.set_index(["dataset", "event_id"])["eff_b"].rename("e"), how="left")
    by_hand = -(np.log(np.maximum(m["eff_b"], 0.5 / n_val["density"])) + np.log(np.maximum(m["f"], pair_floor(0.5 / n_val["flow"])))
                + np.log(np.maximum(m["e"], 0.5 / n_val["event-flow"])))
    got = t.set_index(["dataset", "event_id"])["score"].reindex(m.index)
    np.testing.assert_allclose(got.to_numpy(), by_hand.to_numpy(), rtol=1e-12)
    # calibrated on the members' validation events (the same event split): eff_b of its own
    from darkshower.train.data import event_fraction
    from darkshower.train.score import eff_b

    val = np.load(run / "val_scores.npy")
    q = t[t.dataset.str.endswith(str(qcd_ds.path.name))]
    q_val = q[event_fraction(q.event_id.to_numpy(), 0) < 0.2]
    np.testing.assert_array_equal(val, np.sort(q_val.score[np.isfinite(q_val.score)]))
    np.testing.assert_array_equal(t.eff_b, eff_b(val, t.score))
    meta = json.loads(__import__("pyarrow.parquet", fromlist=["x"]).read_schema(out).metadata[b"darkshower"])
    assert meta["n_val_scores"] == len(val)
    assert meta["method"] == "auto" and meta["combine"] == "fisher" and meta["level"] == "event"
    ev = pd.read_parquet(evp)
    sig = ev[ev.dataset.str.endswith(str(svj_ds.path.name))].score_max2.mean()
    bkg = ev[ev.dataset.str.endswith(str(qcd_ds.path.name))].score_max2.mean()
    assert sig > bkg  # SVJ events are rarer than QCD in the default's eyes
    # decorrelated: each member's conditional efficiency (its own pT/mass map), combined by the same rule
    x, _ = score(run, data, tmp_path / "s" / "x.parquet", progress=False, decorrelate=True, decor_min_rows=20)
    dd, _ = score(run / "members" / "density", data, tmp_path / "s" / "dd.parquet", progress=False, decorrelate=True,
                  decor_min_rows=20)
    tx, tdd = pd.read_parquet(x), pd.read_parquet(dd)
    np.testing.assert_allclose(tx.score, t.score)  # the raw combination is unchanged
    assert np.isfinite(tx.score_decor).mean() > 0.9 and not np.allclose(tx.score_decor, tx.score, equal_nan=True)
    fd, _ = score(run / "members" / "flow", data, tmp_path / "s" / "fd.parquet", progress=False, decorrelate=True,
                  decor_min_rows=20)
    ed, _ = score(run / "members" / "event-flow", data, tmp_path / "s" / "ed.parquet", progress=False,
                  decorrelate=True, decor_min_rows=20)
    tfd, ted = pd.read_parquet(fd), pd.read_parquet(ed)
    tfd = tfd[tfd.jet_idx.isin([0, 1])]
    x = (-np.log(np.maximum(tfd["eff_b_decor"], 0.5 / n_val["flow"]))).groupby([tfd["dataset"], tfd["event_id"]]).sum()
    k = tfd.groupby(["dataset", "event_id"])["eff_b_decor"].size()
    m = tdd.set_index(["dataset", "event_id"])[["eff_b_decor"]].join((np.exp(-x) * np.where(k == 2, 1 + x, 1)).rename("f"))
    m = m.join(ted.set_index(["dataset", "event_id"])["eff_b_decor"].rename("e"))
    by_hand = -(np.log(np.maximum(m.eff_b_decor, 0.5 / n_val["density"])) + np.log(np.maximum(m.f, pair_floor(0.5 / n_val["flow"])))
                + np.log(np.maximum(m.e, 0.5 / n_val["event-flow"])))
    got = tx.set_index(["dataset", "event_id"])["score_decor"].reindex(m.index)
    np.testing.assert_allclose(got.to_numpy(), by_hand.to_numpy(), rtol=1e-12)
    with pytest.raises(ConfigError, match="has no model of its own"):
        load_run(run)
    # --model last: combined, but not calibrated (the calibration is for the best models)
    last, _ = score(run, data, tmp_path / "s" / "last.parquet", which="last", progress=False)
    assert "eff_b" not in pd.read_parquet(last).columns and "eff_b.flow" in pd.read_parquet(last).columns
    # one writer per output, as for any run: a live process holding OUT's lock keeps a second score out
    held = tmp_path / "s" / ".held.parquet.lock"
    held.write_text(str(os.getppid()))
    with pytest.raises(ConfigError, match="another darkshower process"):
        score(run, data, tmp_path / "s" / "held.parquet", progress=False)
    assert held.read_text() == str(os.getppid()) and not (tmp_path / "s" / "held.parquet").exists()
    assert not list((tmp_path / "s").glob(".*.auto.*"))  # no member scores left behind
    # no model of its own: int8 export and server scoring say so (ConfigError, exit code 2)
    from darkshower.export.quantize import export_int8
    from darkshower.serve.client import score_remote

    with pytest.raises(ConfigError, match="has no model of its own to be quantized"):
        export_int8(run, tmp_path / "q.onnx")
    with pytest.raises(ConfigError, match="to be scored on a server"):
        score_remote(run, data, tmp_path / "s" / "r.parquet", "http://127.0.0.1:9")
    one, _ = train_auto(qcd_ds.path, tmp_path / "one", config={"model": {"components": [1, 2]}}, progress=False,
                        echo=lambda s: None, members=("density",))
    o, _ = score(one, data, tmp_path / "s" / "one.parquet", progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(o), td)
    (one / "run.json").write_text(json.dumps({**json.loads((one / "run.json").read_text()), "status": "running"}))
    with pytest.raises(ConfigError, match="not complete"):
        score(one, data, tmp_path / "s" / "two.parquet", progress=False)


def test_auto_resume_keeps_the_recorded_config_and_recalibrates(qcd_ds, tmp_path):
    """A run interrupted before its flow member started resumes with the recorded --seed/--set (the members then
    share their validation split), and the combination is calibrated again when a member's scores changed."""
    import shutil

    from darkshower.train.auto import train_auto

    run, _ = train_auto(qcd_ds.path, tmp_path / "a", config={"model": {"components": [1, 2]}}, seed=3, epochs=1,
                        progress=False, echo=lambda s: None, members=("density", "flow", "event-flow"))
    info = json.loads((run / "run.json").read_text())
    cal = np.load(run / "val_scores.npy")
    shutil.rmtree(run / "members" / "flow")  # as if killed before the flow member started
    (run / "val_scores.npy").unlink()
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    train_auto(qcd_ds.path, run, resume=True, epochs=1, progress=False, echo=lambda s: None)  # no seed, no config
    flow_cfg = yaml.safe_load((run / "members" / "flow" / "config.yaml").read_text())
    assert flow_cfg["seed"] == 3  # the recorded seed, not the default 0
    np.testing.assert_array_equal(np.load(run / "val_scores.npy"), cal)  # the same members' combination
    # calibrated on members' scores that have changed since (a member trained on): calibrated again
    info = json.loads((run / "run.json").read_text())
    assert set(info["calibrated_on"]) == {"density", "flow", "event-flow"}
    (run / "run.json").write_text(json.dumps({**info, "calibrated_on": {"density": "stale", "flow": "stale"}}))
    np.save(run / "val_scores.npy", np.zeros(3))
    train_auto(qcd_ds.path, run, resume=True, progress=False, echo=lambda s: None)
    np.testing.assert_array_equal(np.load(run / "val_scores.npy"), cal)
    assert json.loads((run / "run.json").read_text())["calibrated_on"] == info["calibrated_on"]


def test_untyped_constituents_leave_out_charge_observables(no_met_ds, qcd_ds, tmp_path, caplog):
    """h5-4vec jets have no particle types: n_charged would be 0 everywhere, so an observables representation
    leaves it out (jet and event level) and says so; a run trained with it warns when scoring such jets."""
    from darkshower.data.dataset import open_dataset
    from darkshower.models.ae import HLF_COLUMNS
    from darkshower.represent.build import has_untyped_constituents
    from darkshower.train import score, train

    ev = open_dataset(no_met_ds).read_chunk(0)
    assert has_untyped_constituents(ev) and not has_untyped_constituents(open_dataset(qcd_ds.path).read_chunk(0))
    jet = adapt_to_data({"kind": "observables", "columns": list(HLF_COLUMNS)}, ev, "ds")
    assert jet.left_out == ["n_charged"] and jet.columns == [c for c in HLF_COLUMNS if c != "n_charged"]
    evl = adapt_to_data({"kind": "observables", "level": "event", "max_jets": 2, "columns": ["mass", "n_charged"]},
                        ev, "ds")
    assert {"j0_n_charged", "j1_n_charged", "met_pt", "rt"} <= set(evl.left_out)
    assert not any("n_charged" in c or c == "met_pt" for c in evl.columns) and "j0_mass" in evl.columns
    typed = adapt_to_data({"kind": "observables", "columns": list(HLF_COLUMNS)},
                          open_dataset(qcd_ds.path).read_chunk(0), "qcd")
    assert "n_charged" in typed.columns and typed.left_out == []
    with pytest.raises(DatasetError, match="no column of the observables representation is left"):
        adapt_to_data({"kind": "observables", "columns": ["n_charged"]}, ev, "ds")
    run = train("gmm", qcd_ds, tmp_path / "g", config={"representation": {"columns": ["mass", "n_charged"]},
                                                       "model": {"components": [1]}}, progress=False)
    with caplog.at_level("WARNING"):
        score(run, [no_met_ds], tmp_path / "s.parquet", progress=False)
    assert "no particle types, so n_charged is 0 for every jet" in caplog.text


def test_auto_choice_rules():
    from darkshower.train.auto import choose

    info = {"dataset": "ds", "met": True, "met_note": None, "two_jet_fraction": 0.3, "constituents": True,
            "particle_types": True}
    c = choose(info)  # MET but mostly one jet: event level all the same (the MET carries the invisible part)
    assert c["level"] == "event" and c["representation"]["level"] == "event" and not c["left_out"]
    assert any("30% of the events inspected have a second jet" in w for w in c["why"])
    assert choose({**info, "met": False})["level"] == "jet"
    tm = choose({**info, "constituents": False, "observables_without_constituents": ["pt", "mass", "msoftdrop"]})
    assert tm["level"] == "event" and any("stores per jet (msoftdrop)" in w for w in tm["why"])
    assert any(w.startswith("observables that need jet constituents") for w in tm["left_out"])
    with pytest.raises(DatasetError, match="no jets in the 50 events inspected"):  # not "no constituents"
        choose({**info, "constituents": False, "jets_per_event": 0.0, "events_inspected": 50})


def test_event_level_training_on_an_empty_dataset_is_one_clear_error(qcd_ds, tmp_path):
    from darkshower.train import train
    from evaluate_util import empty_dataset

    empty = empty_dataset(qcd_ds, tmp_path / "empty")
    with pytest.raises(DatasetError, match="has no chunks"):  # was an IndexError from the MET check
        train("gmm", empty, tmp_path / "run", config={"representation": {"level": "event"}}, progress=False)
    assert not (tmp_path / "run").exists()


def test_auto_members_jet_density_and_image(qcd_ds, svj_ds, no_met_ds, tmp_path):
    """The default's five members on data with MET: the density at jet level and ae-image on jet images join the
    three others; the score is Fisher's combination of all five (jet-level members by Fisher's method over their two
    leading jets);
    jet-density on data without MET (where the density is already at jet level) is refused."""
    from darkshower.train import score
    from darkshower.train.auto import train_auto

    members = ("density", "flow", "event-flow", "jet-density", "image")
    run, choice = train_auto(qcd_ds.path, tmp_path / "auto", config={"model": {"components": [1]}}, epochs=1,
                             progress=False, echo=lambda s: None, members=members)
    info = json.loads((run / "run.json").read_text())
    assert [m["name"] for m in info["members"]] == list(members) and info["level"] == "event"
    methods = {m["name"]: (m["method"], m["level"]) for m in info["members"]}
    assert methods["jet-density"] == ("gmm", "jet") and methods["image"] == ("ae-image", "jet")
    jd = json.loads((run / "members" / "jet-density" / "run.json").read_text())["representation"]
    assert jd["columns"] == ["mass", "n_constituents", "pt"]
    assert any(w.startswith("image: ") for w in choice["why"]) and any(w.startswith("jet-density") for w in choice["why"])
    data = [qcd_ds.path, svj_ds.path]
    out, _ = score(run, data, tmp_path / "s" / "auto.parquet", progress=False)
    t = pd.read_parquet(out).set_index(["dataset", "event_id"])
    total = 0.0
    for name, (_, level) in methods.items():
        f, _ = score(run / "members" / name, data, tmp_path / "s" / f"{name}.parquet", progress=False)
        tm = pd.read_parquet(f)
        floor = 0.5 / len(np.load(run / "members" / name / "val_scores.npy"))
        if level == "jet":
            j = tm[tm.jet_idx.isin([0, 1])]
            x = (-np.log(np.maximum(j["eff_b"], floor))).groupby([j["dataset"], j["event_id"]]).sum()
            k = j.groupby(["dataset", "event_id"])["eff_b"].size()
            e = pd.Series(np.exp(-x) * np.where(k == 2, 1 + x, 1), index=x.index)
            floor = pair_floor(floor)
        else:
            e = tm.set_index(["dataset", "event_id"])["eff_b"]
        total = total - np.log(np.maximum(e.reindex(t.index), floor))
    np.testing.assert_allclose(t["score"].to_numpy(), total.to_numpy(), rtol=1e-12)
    with pytest.raises(ConfigError, match="jet-density is the density at jet level"):
        train_auto(no_met_ds, tmp_path / "c", members=("density", "jet-density"), progress=False, echo=lambda s: None)
    assert not (tmp_path / "c").exists()
