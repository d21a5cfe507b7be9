"""Metrics against hand-computed values, bootstrap coverage on toys, JSD, sculpting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

from darkshower.errors import EvaluationError
from darkshower.evaluate import metrics as M
from darkshower.evaluate.sculpting import jensen_shannon, sculpting


def test_small_roc_by_hand():
    # signal 0.9, 0.8, 0.4 vs background 0.7, 0.3, 0.2: 8 of 9 pairs ordered correctly
    c = M.roc_curve([0.9, 0.8, 0.4], [0.7, 0.3, 0.2])
    np.testing.assert_allclose(c.eff_s, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(c.eff_b, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert M.auc([0.9, 0.8, 0.4], [0.7, 0.3, 0.2]) == pytest.approx(8 / 9)
    # ties count one half: pairs (1,1) (1,0) (1,1) (1,0) -> (0.5 + 1 + 0.5 + 1) / 4
    assert M.auc([1, 1], [1, 0]) == pytest.approx(0.75)


def test_weighted_roc_by_hand():
    s, ws = [3.0, 1.0], [2.0, 1.0]
    b, wb = [2.0, 0.0], [3.0, 1.0]
    # weighted pairs with s > b: (3,2) 2*3 + (3,0) 2*1 + (1,0) 1*1 = 9 of 3*4 = 12
    assert M.auc(s, b, ws, wb) == pytest.approx(0.75)
    c = M.roc_curve(s, b, ws, wb)
    np.testing.assert_allclose(c.eff_s, [0, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(c.eff_b, [0, 0, 3 / 4, 3 / 4, 1])
    assert M.eff_s_at_eff_b(c, 0.5) == pytest.approx(2 / 3)
    assert M.eff_b_at_eff_s(c, 0.8) == pytest.approx(0.75)  # between (2/3, 3/4) and (1, 3/4)
    # an integer weight is the same as repeating the event
    assert M.auc(s, b, ws, wb) == pytest.approx(M.auc([3, 3, 1], [2, 2, 2, 0]))
    m = M.binary_metrics(s, b, ws, wb, n_bootstrap=0, min_bkg=1)
    assert m["auc"]["value"] == pytest.approx(0.75)
    assert m["rejection"]["0.5"]["value"] is None and "no_bkg_passes@eff_s=0.5" in m["flags"]


def test_matches_sklearn_weighted():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    s, b = np.round(rng.normal(1, 1, 500), 1), np.round(rng.normal(0, 1, 700), 1)  # rounding makes ties
    ws, wb = rng.uniform(0, 2, 500), rng.uniform(0, 2, 700)
    ref = roc_auc_score(np.r_[np.ones(500), np.zeros(700)], np.r_[s, b], sample_weight=np.r_[ws, wb])
    assert M.auc(s, b, ws, wb) == pytest.approx(ref, abs=1e-12)


def test_perfect_and_random_scorers():
    rng = np.random.default_rng(1)
    perfect = M.binary_metrics(rng.uniform(2, 3, 2000), rng.uniform(0, 1, 2000), n_bootstrap=50)
    assert perfect["auc"]["value"] == 1.0
    assert perfect["eff_s"]["0.01"]["value"] == pytest.approx(1.0)
    assert perfect["max_sic"]["value"] == pytest.approx(1 / math.sqrt(10 / 2000), rel=0.02)  # at the guard
    assert "no_bkg_passes@eff_s=0.3" in perfect["flags"]
    assert perfect["rejection_lower_bound"]["0.3"] == pytest.approx(2000)
    rand = M.binary_metrics(rng.normal(size=20000), rng.normal(size=20000), n_bootstrap=50)
    assert rand["auc"]["value"] == pytest.approx(0.5, abs=0.01)
    for p in ("0.1", "0.3", "0.5"):
        assert rand["rejection"][p]["value"] == pytest.approx(1 / float(p), rel=0.08)
    assert rand["eff_s"]["0.01"]["value"] == pytest.approx(0.01, abs=0.004)


def test_sic_guard():
    rng = np.random.default_rng(2)
    s, b = rng.normal(2, 1, 3000), rng.normal(0, 1, 1000)
    m = M.binary_metrics(s, b, n_bootstrap=0, min_bkg=10)
    assert m["max_sic_eff_b"] * 1000 >= 10 - 1e-9
    # brute force over thresholds with >= 10 background events passing
    best = 0.0
    for t in np.unique(np.r_[s, b]):
        nb = np.sum(b >= t)
        if nb >= 10:
            best = max(best, np.mean(s >= t) / math.sqrt(nb / 1000))
    assert m["max_sic"]["value"] == pytest.approx(best)
    # with too few background events there is no SIC
    few = M.binary_metrics(s, b[:5], n_bootstrap=0, min_bkg=10)
    assert few["max_sic"]["value"] is None and "no_sic_point" in few["flags"]
    assert "too_few_bkg@eff_b=0.01" in few["flags"]


def test_degenerate_and_empty():
    m = M.binary_metrics(np.ones(50), np.ones(80))
    assert m["auc"]["value"] == 0.5 and "degenerate_scores" in m["flags"]
    assert m["max_sic"]["value"] is None
    e = M.binary_metrics([], np.ones(80))
    assert e["auc"]["value"] is None and "empty_signal" in e["flags"]
    n = M.binary_metrics([1.0, np.nan, 2.0], [0.0, 0.5], n_bootstrap=0, min_bkg=1)
    with pytest.raises(EvaluationError, match="negative event weights"):
        M.binary_metrics([1.0], [0.0], [1.0], [-1.0])
    assert n["n_sig"] == 2 and "nonfinite_scores_dropped" in n["flags"] and n["auc"]["value"] == 1.0
    # the bare AUC / ROC refuse NaN scores: unranked, all-NaN samples used to give AUC 1.0 (signal listed first)
    with pytest.raises(EvaluationError, match="2 signal and 2 background scores are NaN"):
        M.auc([np.nan, np.nan], [np.nan, np.nan])
    with pytest.raises(EvaluationError, match="0 signal and 1 background scores are NaN"):
        M.roc_curve([1.0], [np.nan, 0.5])
    assert M.auc([np.inf], [1.0]) == 1.0  # +-inf are ranked, not refused


def test_threshold_at_bkg_eff():
    b = np.arange(100.0)
    t = M.threshold_at_bkg_eff(b, 0.1)
    assert np.mean(b >= t) == pytest.approx(0.1)
    w = np.r_[np.full(50, 3.0), np.ones(50)]  # the low half carries 3/4 of the weight
    t = M.threshold_at_bkg_eff(b, 0.25, w)
    assert np.sum(w[b >= t]) / w.sum() == pytest.approx(0.25)


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_coverage(weighted):
    """95% (68%) bootstrap intervals cover the true AUC and ε_B in >= 85% (~68%) of 40 toys."""
    d = 1.0
    true_auc = ndtr(d / math.sqrt(2))
    true_eb = 1 - ndtr(d)  # at ε_S = 0.5 the signal threshold is its median d
    rng = np.random.default_rng(100 + weighted)
    cover95 = cover68 = cover_eb = 0
    n_toys = 40
    for i in range(n_toys):
        s, b = rng.normal(d, 1, 300), rng.normal(0, 1, 300)
        ws = rng.uniform(0.5, 1.5, 300) if weighted else None
        wb = rng.uniform(0.5, 1.5, 300) if weighted else None
        m = M.binary_metrics(s, b, ws, wb, n_bootstrap=200, seed=i)
        lo, hi = m["auc"]["ci95"]
        cover95 += lo <= true_auc <= hi
        lo, hi = m["auc"]["ci68"]
        cover68 += lo <= true_auc <= hi
        lo, hi = m["eff_b"]["0.5"]["ci95"]
        cover_eb += lo <= true_eb <= hi
    assert cover95 / n_toys >= 0.85
    assert 0.45 <= cover68 / n_toys <= 0.9
    assert cover_eb / n_toys >= 0.85


def test_jensen_shannon():
    p = np.array([1.0, 2.0, 3.0])
    assert jensen_shannon(p, 2 * p) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon([1, 0, 0], [0, 0, 5]) == pytest.approx(1.0)  # bits
    assert jensen_shannon([1, 0], [0, 1], base=math.e) == pytest.approx(math.log(2))
    # by hand: p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    kl_p = math.log(1 / 0.75)
    kl_q = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert jensen_shannon([1, 0], [1, 1]) == pytest.approx(0.5 * (kl_p + kl_q) / math.log(2))
    assert jensen_shannon([1, 0], [1, 1]) == pytest.approx(jensen_shannon([1, 1], [1, 0]))


def test_sculpting_correlated_vs_independent():
    rng = np.random.default_rng(5)
    mass = rng.exponential(50, 5000)
    indep = sculpting(rng.normal(size=5000), {"m": mass}, effs=(0.5, 0.1))["m"]["cuts"]
    corr = sculpting(mass + rng.normal(0, 5, 5000), {"m": mass}, effs=(0.5, 0.1))["m"]["cuts"]
    assert corr["0.1"]["jsd"] > 0.5
    assert indep["0.1"]["jsd"] < 3 * indep["0.1"]["jsd_random"] + 0.01
    assert corr["0.1"]["eff_b"] == pytest.approx(0.1, abs=0.002)
    # the spread of random subsets: a sculpting cut lies beyond all 100 of them (p = 1/101), an
    # independent score is one of them (its p-value is uniform; this seed's is well inside)
    assert corr["0.1"]["jsd_random_p"] == pytest.approx(1 / 101)
    assert corr["0.1"]["jsd"] > corr["0.1"]["jsd_random_q95"] >= corr["0.1"]["jsd_random"]
    assert indep["0.1"]["jsd_random_p"] > 0.05
    assert indep["0.1"]["jsd"] <= indep["0.1"]["jsd_random_q95"]
    # a cut that keeps every event is its own random subset; a variable without finite values has no level
    keep = sculpting(rng.normal(size=500), {"m": mass[:500]}, effs=(1.0,))["m"]["cuts"]["1"]
    assert keep["jsd"] == 0 and keep["jsd_random_p"] == 1.0 and keep["jsd_random_q95"] == 0.0
    none = sculpting(rng.normal(size=50), {"m": np.full(50, np.nan)}, effs=(0.5,))["m"]["cuts"]["0.5"]
    assert np.isnan(none["jsd"]) and np.isnan(none["jsd_random_p"]) and np.isnan(none["jsd_random"])
