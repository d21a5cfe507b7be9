"""Calibrated scores (``eff_b``: the fraction of the run's validation background above a score) and
ensembles of runs (rank average, Fisher's method or min of eff_b; jet- and event-level members)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.errors import ConfigError
from darkshower.train import score, train
from darkshower.train.data import event_fraction
from darkshower.train.ensemble import combine_tables, event_level, rank_average
from darkshower.train.score import eff_b, read_val_scores

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


def test_eff_b_by_hand():
    val = np.array([1.0, 2.0, 2.0, 3.0, 10.0])
    got = eff_b(val, [0.0, 1.0, 1.5, 2.0, 3.0, 9.0, 10.0, 11.0, np.nan])
    np.testing.assert_array_equal(got[:-1], [1.0, 0.8, 0.8, 0.4, 0.2, 0.2, 0.0, 0.0])  # strictly above
    assert np.isnan(got[-1])
    assert np.isnan(eff_b(None, [1.0, 2.0])).all() and np.isnan(eff_b(np.empty(0), [1.0])).all()


def test_eff_b_is_uniform_on_background_and_monotone():
    g = np.random.default_rng(0)
    val = np.sort(g.gamma(2.0, 1.0, 5000))
    # the validation scores themselves: exactly the grid (n-1-i)/n
    np.testing.assert_allclose(eff_b(val, val), (len(val) - 1 - np.arange(len(val))) / len(val))
    # fresh background from the same distribution: uniform (Kolmogorov-Smirnov)
    from scipy.stats import kstest

    fresh = eff_b(val, g.gamma(2.0, 1.0, 5000))
    assert kstest(fresh, "uniform").pvalue > 0.01
    # a cut at eff_b <= 0.1 keeps 10 % of background
    assert np.mean(fresh <= 0.1) == pytest.approx(0.1, abs=0.015)
    # non-increasing in the score
    s = np.sort(g.normal(2, 3, 1000))
    assert (np.diff(eff_b(val, s)) <= 0).all()


def test_runs_store_validation_scores_and_score_writes_eff_b(qcd_ds, svj_ds, tmp_path, caplog):
    run = train("ae-hlf", qcd_ds, tmp_path / "ae", config=FAST, epochs=3, progress=False)
    info = json.loads((run / "run.json").read_text())
    best, last = read_val_scores(run, "best"), read_val_scores(run, "last")
    for v in (best, last):
        assert v is not None and v.dtype == np.float64 and (np.diff(v) >= 0).all()
        assert 0 < len(v) <= info["n_val"] and np.isfinite(v).all()
    jets, events = score(run, [qcd_ds, svj_ds], tmp_path / "s.parquet", progress=False)
    df = pd.read_parquet(jets)
    assert "eff_b" in df.columns and df.eff_b.between(0, 1).all()
    np.testing.assert_array_equal(df.eff_b, eff_b(best, df.score))
    # the validation jets (held-out events of the training data) get uniform eff_b: their scores are the reference
    val_rows = df[df.dataset.str.endswith("qcd") & (event_fraction(df.event_id.to_numpy(), 0) < 0.2)]
    assert len(val_rows) == len(best)
    e = np.sort(val_rows.eff_b.to_numpy())[::-1]
    assert np.max(np.abs(e - (len(e) - 1 - np.arange(len(e))) / len(e))) <= 2 / len(e)
    # larger score <=> smaller eff_b
    o = np.argsort(df.score.to_numpy())
    assert (np.diff(df.eff_b.to_numpy()[o]) <= 0).all()
    # --model last uses the last model's validation scores
    jl, _ = score(run, [qcd_ds], tmp_path / "l.parquet", which="last", progress=False)
    dl = pd.read_parquet(jl)
    np.testing.assert_array_equal(dl.eff_b, eff_b(last, dl.score))
    # a run without validation scores (trained before they were stored): NaN with a warning
    (run / "val_scores.npy").unlink()
    with caplog.at_level(logging.WARNING):
        jo, _ = score(run, [qcd_ds], tmp_path / "o.parquet", progress=False)
    assert pd.read_parquet(jo).eff_b.isna().all()
    assert "val_scores.npy" in caplog.text and "eff_b is NaN" in caplog.text

    # score_pair: -ln of Fisher's method over the two leading jets' eff_b (floor 0.5 / n_val), by hand
    ev = pd.read_parquet(events).set_index(["dataset", "event_id"])
    floor = 0.5 / len(best)
    two = df[df.jet_idx < 2]
    x = (-np.log(np.maximum(two.eff_b, floor))).groupby([two.dataset, two.event_id]).sum()
    k = two.groupby(["dataset", "event_id"]).size()
    np.testing.assert_allclose(ev.loc[x.index, "score_pair"], -np.log(np.exp(-x) * np.where(k == 2, 1 + x, 1)),
                               rtol=1e-10)
    # evaluate --event-score pair uses it; an uncalibrated file has none: one clear error
    ds = ["--background", str(qcd_ds.path), "--signal", str(svj_ds.path), "--bootstrap", "0", "--no-supervised"]
    assert main(["evaluate", "--scores", str(jets), *ds, "--out", str(tmp_path / "ev"), "--event-score", "pair"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["settings"]["event_score"] == "pair"
    assert main(["evaluate", "--scores", str(jo), *ds, "--out", str(tmp_path / "ev2"), "--event-score", "pair"]) == 2


def test_supervised_reference_calibrates_on_background_only(qcd_ds, svj_ds, tmp_path):
    run = train("sup-bdt", qcd_ds, tmp_path / "bdt", config={"threads": 1, "data": {"signal": [str(svj_ds.path)]},
                                                            "model": {"max_iter": 20}}, progress=False)
    val = read_val_scores(run)
    info = json.loads((run / "run.json").read_text())
    assert val is not None and 0 < len(val) < info["n_val"]  # the signal part of the validation split is left out


def _table(ds, ids, jet_idx, eff, nonfinite=None):
    t = pd.DataFrame({"dataset": ds, "event_id": ids, "jet_idx": jet_idx, "eff_b": eff})
    if nonfinite is not None:
        t["nonfinite_input"] = nonfinite
    return t


def test_rank_average_by_hand():
    a = _table("d", [1, 1, 2, 3], [0, 1, 0, 0], [0.5, 0.1, 1.0, 0.02], [False, False, False, False])
    b = _table("d", [1, 1, 2, 3], [0, 1, 0, 0], [0.3, 0.3, 0.0, np.nan], [False, False, False, True])
    c = _table("d", [3, 2, 1, 1], [0, 0, 1, 0], [0.06, 0.5, 0.2, 0.1])  # another row order, no nonfinite column
    out = rank_average([a, b, c], ["a", "b", "c"])
    assert list(out.columns) == ["dataset", "event_id", "jet_idx", "score", "nonfinite_input",
                                 "eff_b.a", "eff_b.b", "eff_b.c"]
    assert out[["event_id", "jet_idx"]].values.tolist() == [[1, 0], [1, 1], [2, 0], [3, 0]]
    np.testing.assert_allclose(out.score[:3], [1 - 0.3, 1 - 0.2, 1 - 0.5])
    assert np.isnan(out.score[3]) and out.nonfinite_input.tolist() == [False, False, False, True]
    # a sample one member did not score: NaN
    out = rank_average([a, b.iloc[:3]], ["a", "b"])
    assert np.isnan(out.score.iloc[3]) and out.score.iloc[0] == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="eff_b"):
        rank_average([a, a.drop(columns="eff_b")], ["a", "b"])
    with pytest.raises(ConfigError, match="unique name"):
        rank_average([a, b], ["a", "a"])


def test_fisher_min_and_mixed_levels_by_hand():
    a = _table("d", [1, 1, 2, 3], [0, 1, 0, 0], [0.5, 0.1, 0.0, 0.02])
    b = _table("d", [1, 1, 2, 3], [0, 1, 0, 0], [0.3, 0.4, 0.0, np.nan])
    f = combine_tables([a, b], ["a", "b"], "fisher", n_val=[100, None])
    # b has no n_val: its floor is half its smallest positive eff_b (0.3)
    np.testing.assert_allclose(f.score[:3], [-np.log(0.5 * 0.3), -np.log(0.1 * 0.4), -np.log(0.005 * 0.15)])
    assert np.isnan(f.score[3])  # a member without a score: NaN, as for the rank average
    m = combine_tables([a, b], ["a", "b"], "min")
    np.testing.assert_allclose(m.score[:3], [0.7, 0.9, 1.0])
    with pytest.raises(ConfigError, match="choose one of mean, fisher, min, stouffer"):
        combine_tables([a, b], ["a", "b"], "max")
    # Stouffer: the sum of z-scores Phi^-1(1 - eff_b), floored as fisher
    from scipy.stats import norm

    st = combine_tables([a, b], ["a", "b"], "stouffer", n_val=[100, None])
    np.testing.assert_allclose(st.score[:3], [norm.isf(0.5) + norm.isf(0.3), norm.isf(0.1) + norm.isf(0.4),
                                              norm.isf(0.005) + norm.isf(0.15)])
    assert np.isnan(st.score[3])
    # eff_b = 1 (below every validation score) is capped at 1 - floor: finite, and a rare member still counts
    lo = _table("d", [1], [0], [1.0])
    hi = _table("d", [1], [0], [0.0])
    st1 = combine_tables([lo, hi], ["lo", "hi"], "stouffer", n_val=[100, 100])
    np.testing.assert_allclose(st1.score, [norm.isf(1 - 0.005) + norm.isf(0.005)])
    # a jet-level member per event: 1 - (1 - min over the two leading jets)^k; a third jet does not count
    j = _table("d", [1, 1, 1, 2, 3, 3], [0, 1, 2, 0, 0, 1], [0.5, 0.1, 0.0, 0.2, 0.3, np.nan],
               [False, False, False, False, False, True])
    e = event_level(j)
    assert e.event_id.tolist() == [1, 2, 3] and (e.jet_idx == -1).all()
    np.testing.assert_allclose(e.eff_b[:2], [1 - 0.9**2, 0.2])
    assert np.isnan(e.eff_b[2]) and e.nonfinite_input.tolist() == [False, False, True]
    ev = _table("d", [1, 2, 3, 4], [-1, -1, -1, -1], [0.05, 0.5, 0.01, 0.3])
    mixed = combine_tables([ev, j], ["ev", "jet"], "fisher", n_val=[1000, 1000])
    assert (mixed.jet_idx == -1).all() and mixed.event_id.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(mixed.score[:2], [-np.log(0.05 * 0.19), -np.log(0.5 * 0.2)])
    assert np.isnan(mixed.score[2:]).all()  # event 3: a non-finite jet; event 4: no jets scored


def test_fisher_jet_rule_by_hand():
    """jets="fisher": x = -ln e0 - ln e1, eff_b = exp(-x) (1 + x) for two jets, e0 for one (zeros floored)."""
    j = _table("d", [1, 1, 1, 2, 3, 3, 4, 4], [0, 1, 2, 0, 0, 1, 1, 2], [0.5, 0.1, 0.0, 0.2, 0.3, np.nan, 0.0, 0.4],
               [False] * 5 + [True, False, False])
    e = event_level(j, "fisher", floor=0.001)
    x1 = -np.log(0.5 * 0.1)
    x4 = -np.log(0.001 * 0.4)  # event 4: its two scored jets (a window dropped jet 0); the 0 floored
    np.testing.assert_allclose(e.eff_b[[0, 1, 3]], [np.exp(-x1) * (1 + x1), 0.2, np.exp(-x4) * (1 + x4)])
    assert np.isnan(e.eff_b[2]) and e.nonfinite_input.tolist() == [False, False, True, False]
    # calibrated for independent uniform jets: P(eff_b <= a) = a (checked by sampling)
    rng = np.random.default_rng(3)
    n = 200_000
    u = _table("d", np.repeat(np.arange(n), 2), np.tile([0, 1], n), rng.uniform(size=2 * n))
    eff = event_level(u, "fisher", floor=1e-12).eff_b.to_numpy()
    for a in (0.01, 0.1, 0.5):
        assert abs(np.mean(eff <= a) - a) < 4 * np.sqrt(a * (1 - a) / n)
    # an event with both jets moderately rare ranks above one with a single rarer jet (min ranks them reversed)
    pair = _table("d", [1, 1, 2, 2], [0, 1, 0, 1], [0.02, 0.02, 0.005, 0.9])
    f, m = event_level(pair, "fisher", 1e-6).eff_b.to_numpy(), event_level(pair, "min").eff_b.to_numpy()
    assert f[0] < f[1] and m[0] > m[1]
    with pytest.raises(ConfigError, match="choose one of min, fisher"):
        event_level(pair, "mean")
    # the pair event score of one run: a jet without a finite eff_b is left out (as max2 leaves out a NaN jet)
    from darkshower.train.scorefiles import pair_scores

    nan_jet = _table("d", [1, 1, 2, 2, 3], [0, 1, 0, 1, 0], [0.1, np.nan, 0.1, 0.2, np.nan])
    ps = pair_scores(nan_jet, n_val=1000)
    x2 = -np.log(0.1 * 0.2)
    np.testing.assert_allclose(ps.to_numpy()[:2], [-np.log(0.1), -np.log(np.exp(-x2) * (1 + x2))])
    assert np.isnan(ps.to_numpy()[2]) and len(ps) == 3
    # train auto runs record their rule; runs written before the key existed were calibrated with min
    from darkshower.train.scorefiles import run_jet_rule

    assert run_jet_rule({"jets": "fisher"}) == "fisher" and run_jet_rule({"combine": "fisher"}) == "min"
    ev = _table("d", [1, 2, 4], [-1, -1, -1], [0.05, 0.5, 0.3])
    mixed = combine_tables([ev, j], ["ev", "jet"], "fisher", n_val=[1000, 1000], jets="fisher")
    x4 = -np.log(0.0005 * 0.4)  # the member's floor 0.5 / n_val
    np.testing.assert_allclose(mixed.score[[0, 1]], [-np.log(0.05 * np.exp(-x1) * (1 + x1)), -np.log(0.5 * 0.2)])
    np.testing.assert_allclose(mixed.score[3], -np.log(0.3 * np.exp(-x4) * (1 + x4)))
    # the member's floor is what the rule reaches with both jets at 0.5 / n_val, not 0.5 / n_val itself: an event
    # with two jets at 1e-3 is not tied with one whose jets are beyond every validation score
    rare = _table("d", [1, 1, 2, 2], [0, 1, 0, 1], [1e-3, 1e-3, 0.0, 0.0])
    one = _table("d", [1, 2], [-1, -1], [0.5, 0.5])
    c = combine_tables([one, rare], ["ev", "jet"], "fisher", n_val=[1000, 1000], jets="fisher")
    xr, f = -2 * np.log(1e-3), 0.0005
    np.testing.assert_allclose(c.score, [-np.log(0.5 * np.exp(-xr) * (1 + xr)), -np.log(0.5 * f * f * (1 - 2 * np.log(f)))])
    assert c.score[1] > c.score[0]


def test_ensemble_command(qcd_ds, svj_ds, tmp_path, capsys):
    ae = train("ae-hlf", qcd_ds, tmp_path / "ae", config=FAST, epochs=2, progress=False)
    gmm = train("gmm", qcd_ds, tmp_path / "gmm", config={"threads": 1, "model": {"components": [1, 2]}},
                progress=False)
    out = tmp_path / "e" / "ens.parquet"
    assert main(["ensemble", str(ae), str(gmm), "--data", str(qcd_ds.path), str(svj_ds.path), "--out", str(out),
                 "--no-progress"]) == 0
    df = pd.read_parquet(out)
    np.testing.assert_allclose(df.score, 1 - (df["eff_b.ae"] + df["eff_b.gmm"]) / 2)
    assert df.dataset.nunique() == 2 and df.score.between(0, 1).all()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # the members' scores were removed
    # the members' eff_b are their own score files' eff_b
    s_ae, _ = score(ae, [qcd_ds, svj_ds], tmp_path / "ae.parquet", progress=False)
    ref = pd.read_parquet(s_ae).merge(df, on=["dataset", "event_id", "jet_idx"])
    assert len(ref) == len(df)
    np.testing.assert_array_equal(ref["eff_b"], ref["eff_b.ae"])
    # score files combine too, and evaluate reads the result (with its per-event table)
    s_gmm, _ = score(gmm, [qcd_ds, svj_ds], tmp_path / "gmm.parquet", progress=False)
    out2 = tmp_path / "ens2.parquet"
    assert main(["ensemble", str(s_ae), str(s_gmm), "--out", str(out2), "--no-progress"]) == 0
    got = pd.read_parquet(out2)
    np.testing.assert_allclose(got.score, df.score)
    out3 = tmp_path / "ens3.parquet"
    assert main(["ensemble", str(s_ae), str(s_gmm), "--out", str(out3), "--combine", "fisher", "--no-progress"]) == 0
    n_ae, n_gmm = len(read_val_scores(ae)), len(read_val_scores(gmm))
    np.testing.assert_allclose(pd.read_parquet(out3).score, -np.log(np.maximum(got["eff_b.ae"], 0.5 / n_ae))
                               - np.log(np.maximum(got["eff_b.gmm"], 0.5 / n_gmm)))
    from darkshower.evaluate.scores import read_scores

    sf = read_scores(out2)
    assert sf.method == "ensemble" and len(sf.events) == df[["dataset", "event_id"]].drop_duplicates().shape[0]
    assert (sf.events.score_max2 >= sf.events.score_lead - 1e-12).all()
    # errors: one clear line, exit code 2, nothing written
    capsys.readouterr()
    bad = tmp_path / "bad.parquet"
    assert main(["ensemble", str(ae), "--data", str(qcd_ds.path), "--out", str(bad), "--no-progress"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["ensemble", str(ae), str(gmm), "--out", str(bad), "--no-progress"]) == 2
    assert "--data" in capsys.readouterr().err
    (gmm / "val_scores.npy").unlink()
    assert main(["ensemble", str(ae), str(gmm), "--data", str(qcd_ds.path), "--out", str(bad), "--no-progress"]) == 2
    assert "val_scores.npy" in capsys.readouterr().err
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]
