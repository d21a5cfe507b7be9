"""Decorrelated scores (issue #12 part 4): the conditional quantile map in bins of jet pT and mass,
the run's validation reference (val_decor.npz), score --decorrelate, evaluate and search --decorrelated."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.errors import ConfigError, EvaluationError
from darkshower.evaluate.sculpting import sculpting
from darkshower.models.decorrelate import QuantileMap, decor_table
from darkshower.train import score, train
from darkshower.train.decorrelate import match_rows, read_val_decor

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


def _jets(g, n):
    pt = np.exp(g.uniform(np.log(300), np.log(1500), n))
    mass = pt * g.beta(2, 8, n)
    return pt, mass


def test_map_removes_the_mass_dependence_of_a_score():
    """A score that is a function of mass (plus noise) sculpts the mass distribution; its decorrelated
    version does not: the JSD at ε_B = 0.1 and 0.01 falls to the level of a random subset of the same size."""
    g = np.random.default_rng(1)
    pt, m = _jets(g, 40000)
    qmap = QuantileMap(("pt", "mass")).fit(m / 100 + g.normal(0, 1.0, len(m)), np.c_[pt, m])
    pt2, m2 = _jets(g, 20000)
    s2 = m2 / 100 + g.normal(0, 1.0, len(m2))
    eff, dec = qmap.transform(s2, np.c_[pt2, m2])
    raw = sculpting(s2, {"m": m2}, effs=(0.1, 0.01), seed=2)["m"]["cuts"]
    new = sculpting(dec, {"m": m2, "pt": pt2}, effs=(0.1, 0.01), seed=2)
    for e in ("0.1", "0.01"):
        c = new["m"]["cuts"][e]
        assert raw[e]["jsd"] > 5 * raw[e]["jsd_random"]  # the raw score sculpts
        assert c["jsd"] <= 1.5 * c["jsd_random"], (e, c["jsd"], c["jsd_random"])  # the decorrelated one does not
        assert new["pt"]["cuts"][e]["jsd"] <= 1.5 * new["pt"]["cuts"][e]["jsd_random"]
        assert c["eff_b"] == pytest.approx(float(e), rel=0.15)  # and eff_b_decor stays calibrated
    assert np.mean(eff <= 0.1) == pytest.approx(0.1, abs=0.01)
    assert np.all(np.isclose(dec, -np.log10(eff)))
    d = qmap.describe()
    assert d["n_bins"] == d["bins_per_variable"] ** 2 and d["rows_per_bin_min"] >= 200


def test_map_is_monotone_in_the_score_inside_a_bin_and_handles_nan_and_tails():
    g = np.random.default_rng(3)
    pt, m = _jets(g, 5000)
    qmap = QuantileMap(("pt", "mass"), min_rows=100).fit(g.gamma(2.0, 1.0, len(m)) * (1 + m / 200), np.c_[pt, m])
    s = np.linspace(-1.0, 60.0, 4001)  # far beyond the largest validation score too
    for x in ([500.0, 60.0], [1400.0, 400.0], [10.0, 1.0]):  # inside, high, below every edge
        eff, dec = qmap.transform(s, np.tile(x, (len(s), 1)))
        assert np.all(np.diff(dec) >= 0) and np.all(np.diff(eff) <= 0)
        above = s > 45.0  # the exponential tail: strictly increasing, finite
        assert np.all(np.diff(dec[above]) > 0) and np.isfinite(dec).all()
        assert eff[0] == 1.0 and dec[0] == 0.0
    eff, dec = qmap.transform([np.nan, 1.0, 1.0], [[500.0, 50.0], [np.nan, 50.0], [500.0, 50.0]])
    assert np.isnan(eff[:2]).all() and np.isnan(dec[:2]).all() and np.isfinite(dec[2])
    with pytest.raises(ValueError, match="too few"):
        QuantileMap(("pt",)).fit([1.0], [[2.0]])
    eff, dec = qmap.transform([], [])  # no rows to score (a dataset whose events have no jets)
    assert eff.shape == dec.shape == (0,)
    with pytest.raises(ValueError, match="0 usable validation rows"):
        QuantileMap(("pt", "mass")).fit([], [])


def test_match_rows_follows_datasets_with_repeated_event_ids():
    """Validation rows come dataset by dataset; event ids repeat between datasets."""
    a = pd.DataFrame({"event_id": [0, 0, 1, 2], "jet_idx": [0, 1, 0, 0], "pt": [1.0, 2, 3, 4], "mass": 0.0,
                      "mt": 0.0, "mjj": 0.0}).set_index(["event_id", "jet_idx"])
    b = pd.DataFrame({"event_id": [0, 1, 2], "jet_idx": [0, 0, 0], "pt": [10.0, 30, 40], "mass": 0.0, "mt": 0.0,
                      "mjj": 0.0}).set_index(["event_id", "jet_idx"])
    got = match_rows(np.array([0, 2, 0, 2]), np.array([1, 0, 0, 0]), [a, b])
    assert got["pt"].tolist() == [2.0, 4.0, 10.0, 40.0]
    assert match_rows(np.array([0, 5]), np.array([0, 0]), [a, b]) is None  # a row of no dataset


def test_decor_table_of_events():
    import awkward as ak

    ev = ak.Array({"event_id": [7, 8], "met_pt": [100.0, 0.0], "met_phi": [0.0, 0.0],
                   "jets": [[{"pt": 500.0, "eta": 0.0, "phi": np.pi, "mass": 50.0},
                             {"pt": 400.0, "eta": 0.0, "phi": 0.0, "mass": 30.0}], []]})
    j = decor_table(ev, "jet")
    assert j["event_id"].tolist() == [7, 7] and j["jet_idx"].tolist() == [0, 1] and j["mass"].tolist() == [50.0, 30.0]
    e = decor_table(ev, "event")
    assert e["jet_idx"].tolist() == [-1, -1] and e["pt"][0] == 500.0 and np.isnan(e["pt"][1])
    assert e["mt"][0] > 0 and e["mjj"][0] > 800 and j["mt"][0] == e["mt"][0]


def test_runs_store_val_decor_and_score_decorrelates(qcd_ds, svj_ds, tmp_path, caplog, capsys):
    run = train("ae-hlf", qcd_ds, tmp_path / "ae", config=FAST, epochs=2, progress=False)
    val = read_val_decor(run)
    vs = np.load(run / "val_scores.npy")
    assert val is not None and val["level"] == "jet"
    np.testing.assert_array_equal(np.sort(val["score"]), vs)  # the same rows as the eff_b reference
    assert np.isfinite(val["pt"]).all() and np.isfinite(val["mass"]).all() and (val["pt"] > 0).all()
    # the variables are those of the jets: the held-out jets of the dataset, matched by (event_id, jet_idx)
    jets_ds = pd.DataFrame(decor_table(qcd_ds.read_chunk(0), "jet"))
    assert np.isin(np.round(val["pt"], 6), np.round(jets_ds["pt"], 6)).mean() > 0.3
    assert read_val_decor(run, "last") is not None
    out = tmp_path / "s.parquet"
    assert main(["score", str(run), str(qcd_ds.path), str(svj_ds.path), "--out", str(out), "--decorrelate",
                 "--decorrelate-min-rows", "20", "--no-progress"]) == 0
    assert "with score_decor" in capsys.readouterr().out
    df = pd.read_parquet(out)
    assert {"eff_b_decor", "score_decor"} <= set(df.columns) and not any(c.startswith("_decor") for c in df.columns)
    ok = df.score.notna()
    assert df.eff_b_decor[ok].between(0, 1).all() and np.allclose(df.score_decor[ok], -np.log10(df.eff_b_decor[ok]))
    ev = pd.read_parquet(str(out).replace(".parquet", ".events.parquet"))
    assert {"score_decor_lead", "score_decor_max2"} <= set(ev.columns)
    assert (ev.score_decor_max2 >= ev.score_decor_lead - 1e-12).all()
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(out).metadata[b"darkshower"])
    assert meta["decorrelation"]["variables"] == ["pt", "mass"] and meta["decorrelation"]["min_rows"] == 20
    # the library: the same numbers; the default scores as before (no column)
    j2, _ = score(run, [qcd_ds, svj_ds], tmp_path / "l.parquet", progress=False, decorrelate=True, decor_min_rows=20)
    np.testing.assert_allclose(pd.read_parquet(j2).score_decor, df.score_decor)
    j3, _ = score(run, [qcd_ds], tmp_path / "p.parquet", progress=False)
    assert "score_decor" not in pd.read_parquet(j3).columns
    # read back as a score file: the decorrelated view
    from darkshower.evaluate.scores import decorrelated, has_decorrelated, read_scores

    sf = read_scores(out)
    assert has_decorrelated(sf)
    d = decorrelated(sf)
    assert d.name == "ae-hlf (decor)" and d.meta["decorrelated"]
    np.testing.assert_array_equal(d.events.score_max2, ev.score_decor_max2)
    np.testing.assert_array_equal(d.jets.score, df.score_decor)
    # errors: unknown variables, too few validation rows per bin is fine (one bin), bad options
    with pytest.raises(ConfigError, match="decorrelation variables"):
        score(run, [qcd_ds], tmp_path / "x.parquet", progress=False, decorrelate=True, decor_variables=("eta",))
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(tmp_path / "x.parquet"), "--decorrelate-vars",
                 "pt,pt", "--no-progress"]) == 2
    assert not (tmp_path / "x.parquet").exists()
    # a damaged reference: one clear error naming the file, nothing written
    good = (run / "val_decor.npz").read_bytes()
    (run / "val_decor.npz").write_bytes(good[:100])
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(tmp_path / "d.parquet"), "--decorrelate",
                 "--no-progress"]) == 2
    assert "val_decor.npz" in capsys.readouterr().err and not (tmp_path / "d.parquet").exists()
    # a run trained before val_decor.npz: scores as before, with a note
    for f in ("val_decor.npz", "val_decor_last.npz"):
        (run / f).unlink()
    with caplog.at_level(logging.WARNING):
        assert main(["score", str(run), str(qcd_ds.path), "--out", str(tmp_path / "o.parquet"), "--decorrelate",
                     "--no-progress"]) == 0
    assert "score_decor" not in pd.read_parquet(tmp_path / "o.parquet").columns
    assert "no val_decor.npz" in capsys.readouterr().out and "val_decor.npz" in caplog.text
    sf_old = read_scores(tmp_path / "o.parquet")
    assert not has_decorrelated(sf_old)
    with pytest.raises(EvaluationError, match="--decorrelate"):
        decorrelated(sf_old)


def test_evaluate_and_search_use_the_decorrelated_column(qcd_ds, svj_ds, tmp_path):
    """evaluate shows raw and decorrelated side by side; search --decorrelated cuts on score_decor."""
    from darkshower.evaluate import evaluate, search

    g = np.random.default_rng(0)
    parts = []
    for ds, shift in ((qcd_ds, 0.0), (svj_ds, 1.0)):
        ids = np.concatenate([np.asarray(ds.read_chunk(i)["event_id"]) for i in range(len(ds.chunks))])
        parts.append((ds, ids, g.normal(shift, 1, len(ids))))
    sfile = tmp_path / "m.parquet"
    from darkshower.data.dataset import atomic_write_parquet

    jets = pd.concat([pd.DataFrame({"dataset": str(ds.path.resolve()), "event_id": ids, "jet_idx": 0, "score": s,
                                    "score_decor": -s}) for ds, ids, s in parts])  # decor = reversed ranking
    atomic_write_parquet(jets, sfile, {"method": "m"})
    m = evaluate([sfile], [qcd_ds.path], [svj_ds.path], n_bootstrap=0, supervised=False)
    names = [x["name"] for x in m["methods"]]
    assert names == ["m", "m (decor)"]
    auc = {r["method"]: r["auc"]["value"] for r in m["results"] if r["level"] == "event"}
    assert auc["m"] > 0.6 and auc["m (decor)"] == pytest.approx(1 - auc["m"], abs=1e-9)
    (row,) = m["decorrelation"]
    assert row["auc"] == auc["m"] and row["auc_decor"] == auc["m (decor)"]
    assert set(row["sculpting"]) == {"lead_jet_mass", "mt"}
    c = row["sculpting"]["lead_jet_mass"]["0.1"]
    assert c["jsd"] is not None and c["jsd_decor"] is not None and c["jsd_random"] is not None
    raw = search([sfile], [qcd_ds.path], [svj_ds.path], n_signal=50, cut_effs=(0.5,), plots=False, seed=1)
    dec = search([sfile], [qcd_ds.path], [svj_ds.path], n_signal=50, cut_effs=(0.5,), plots=False, seed=1,
                 decorrelated=True)
    assert raw["searches"][0]["method"] == "m" and dec["searches"][0]["method"] == "m (decor)"
    assert dec["settings"]["decorrelated"] is True
    sr, sd = raw["searches"][0]["levels"][-1], dec["searches"][0]["levels"][-1]
    # the same background passes (ε_B fixed), reversed ranking: less signal passes the decorrelated cut
    assert sd["sig_eff"] < sr["sig_eff"]
    # a score file without decorrelated scores: one clear error naming the fix, exit code 2, nothing written
    plain = tmp_path / "p.parquet"
    atomic_write_parquet(jets.drop(columns="score_decor"), plain, {"method": "p"})
    with pytest.raises(EvaluationError, match="--decorrelate"):
        search([plain], [qcd_ds.path], [svj_ds.path], n_signal=50, plots=False, decorrelated=True)
    out = tmp_path / "ev"
    assert main(["search", "--scores", str(plain), "--background", str(qcd_ds.path), "--signal", str(svj_ds.path),
                 "--n-signal", "50", "--out", str(out), "--decorrelated"]) == 2
    assert not (out / "search").exists()


def test_event_level_run_decorrelates_in_mt_and_leading_jet_mass(qcd_ds, tmp_path):
    run = train("suep-ae", qcd_ds, tmp_path / "suep", config=FAST, epochs=1, progress=False)
    val = read_val_decor(run)
    assert val is not None and val["level"] == "event" and len(val["score"]) == len(np.load(run / "val_scores.npy"))
    ev = pd.DataFrame(decor_table(qcd_ds.read_chunk(0), "event"))
    assert np.isin(np.round(val["mt"], 6), np.round(ev["mt"], 6)).mean() > 0.3  # the events' MT
    j, e = score(run, [qcd_ds], tmp_path / "s.parquet", progress=False, decorrelate=True, decor_min_rows=5)
    df = pd.read_parquet(j)
    assert (df.jet_idx == -1).all() and df.score_decor.notna().all()
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(j).metadata[b"darkshower"])["decorrelation"]
    assert meta["variables"] == ["mt", "mass"] and meta["level"] == "event"
    np.testing.assert_array_equal(pd.read_parquet(e).score_decor_max2, df.score_decor)
