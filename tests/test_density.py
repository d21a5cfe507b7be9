"""Density methods: the Gaussian-mixture baseline (`gmm`) and the normalizing flow (`flow`)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_onnx_matches_torch
from darkshower.config import validate
from darkshower.errors import ConfigError
from darkshower.models import get_method
from darkshower.train import load_run, score, train

FAST = {"threads": 1, "early_stopping": {"patience": None}}


def _gmm(names, **cfg):
    cls = get_method("gmm")
    return cls(validate(cls.Config, cfg, "model"), {"kind": "observables", "names": names, "n_features": len(names)})


def _store(x):
    return {"x": np.asarray(x, np.float32), "label": np.zeros(len(x), np.float32)}


def _log_normal_pdf(y, mu, cov):
    d = y - mu
    inv = np.linalg.inv(cov)
    return -0.5 * np.einsum("bi,ij,bj->b", d, inv, d) - 0.5 * np.log(np.linalg.det(2 * np.pi * cov))


# -- gmm ------------------------------------------------------------------------------------------
def test_gmm_score_is_the_analytic_negative_log_density_of_one_gaussian():
    """One correlated Gaussian in (log m, a): the score is -log N of the standardized features, i.e. the
    analytic -log density of (log m, a) up to a constant (the standardization's Jacobian)."""
    g = np.random.default_rng(0)
    mu, cov = np.array([4.0, 1.0]), np.array([[0.25, 0.3], [0.3, 1.0]])
    y = g.multivariate_normal(mu, cov, 40000)
    x = np.column_stack([np.exp(y[:, 0]), y[:, 1]])  # mass is log-normal: its log is the Gaussian coordinate
    m = _gmm(["mass", "a"], components=[1], log_features=["mass"])
    m.prepare(_store(x[:30000]))
    logs = m.fit_offline(_store(x[:30000]), _store(x[30000:]))
    assert int(m.n_components) == 1 and logs["n_components"] == 1
    with torch.no_grad():
        s = m.score({"x": torch.from_numpy(x[30000:])}).double().numpy()
    # one component's maximum-likelihood fit is the sample mean and covariance of (log m, a): by hand
    yt = np.column_stack([np.log(x[:30000, 0].astype(np.float32).astype(np.float64)), x[:30000, 1]])
    diff = s + _log_normal_pdf(y[30000:], yt.mean(0), np.cov(yt.T, bias=True))
    # the same up to one constant, -log(std_logm * std_a): the Jacobian of the standardization
    assert np.std(diff) < 1e-3
    assert np.mean(diff) == pytest.approx(-np.log(m.pre.std.numpy()).sum(), abs=1e-3)
    # and the true density, up to the estimation error of 30000 samples
    assert np.std(s + _log_normal_pdf(y[30000:], mu, cov)) < 0.03
    # the training loss is the mean -log density of the training jets
    with torch.no_grad():
        train_s = m.score({"x": torch.from_numpy(x[:30000])}).double().numpy()
    assert logs["loss"] == pytest.approx(train_s.mean(), abs=1e-4)
    # the validation metric of the trainer is the mean score (validation NLL)
    with torch.no_grad():
        assert float(m.val_metrics({"x": torch.from_numpy(x[30000:])})["loss"]) == pytest.approx(s.mean(), abs=1e-4)


def test_gmm_torch_density_equals_sklearn_and_chooses_components_without_labels():
    g = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 7.0, -2.0]])
    x = np.concatenate([c + g.normal(0, 1, (1500, 3)) for c in centres])
    g.shuffle(x)
    for select in ("val_loglik", "bic"):
        m = _gmm(["a", "b", "c"], components=[1, 2, 3, 4, 5], log_features=[], select=select, n_init=1)
        m.prepare(_store(x[:3000]))
        m.fit_offline(_store(x[:3000]), _store(x[3000:]))
        assert int(m.n_components) == 3, (select, m.cand_val_loglik, m.cand_bic)
    # the chosen candidate has the best validation log-likelihood / the lowest BIC of the table
    assert int(m.candidates[torch.argmin(m.cand_bic)]) == 3
    # the padded torch mixture evaluates sklearn's fitted density
    from sklearn.mixture import GaussianMixture

    z = m.pre.transform_np(x[3000:])
    ref = GaussianMixture(3, random_state=0, n_init=1, max_iter=300, tol=1e-4, reg_covar=1e-6).fit(
        m.pre.transform_np(x[:3000]))
    with torch.no_grad():
        got = m.log_density(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(got, ref.score_samples(z), rtol=1e-6, atol=1e-6)
    # diagonal covariances too
    d = _gmm(["a", "b", "c"], components=[3], log_features=[], covariance="diag", n_init=1)
    d.prepare(_store(x[:3000]))
    d.fit_offline(_store(x[:3000]), _store(x[3000:]))
    ref = GaussianMixture(3, covariance_type="diag", random_state=0, n_init=1).fit(d.pre.transform_np(x[:3000]))
    with torch.no_grad():
        got = d.log_density(torch.from_numpy(d.pre.transform_np(x[3000:]))).numpy()
    np.testing.assert_allclose(got, ref.score_samples(d.pre.transform_np(x[3000:])), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad, match", [({"components": []}, "at least one"), ({"components": [0, 2]}, "1..64"),
                                        ({"components": [2, 2]}, "duplicate"), ({"select": "auc"}, "select"),
                                        ({"log_floor": 0}, "log_floor")])
def test_gmm_config_is_validated(bad, match):
    with pytest.raises(ConfigError, match=match):
        validate(get_method("gmm").Config, bad, "train config: model")


def test_gmm_trains_scores_and_exports(qcd_ds, svj_ds, tmp_path):
    run = train("gmm", qcd_ds, tmp_path / "gmm", config={**FAST, "model": {"components": [1, 2, 3]}}, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["epochs_done"] == 1
    assert info["representation"]["columns"] == ["mass", "n_constituents", "pt"]
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[0]["train_n_components"] in (1, 2, 3) and math.isfinite(hist[0]["val_loss"])
    m, rep, _, _ = load_run(run)
    # the chosen k has the best validation log-likelihood of the candidates
    best = int(m.candidates[torch.argmax(torch.nan_to_num(m.cand_val_loglik, nan=-1e300))])
    assert int(m.n_components) == best == hist[0]["train_n_components"]
    jets, _ = score(run, [qcd_ds, svj_ds], tmp_path / "s.parquet", progress=False)
    df = pd.read_parquet(jets)
    assert np.isfinite(df.score).all() and df.eff_b.between(0, 1).all()
    from darkshower.represent.build import build

    xs = torch.from_numpy(build(rep, svj_ds.arrays())["x"][:9]).float()
    assert_onnx_matches_torch(m, {"x": xs}, tmp_path / "gmm.onnx")


# -- flow -----------------------------------------------------------------------------------------
def _flow(names, **cfg):
    cls = get_method("flow")
    return cls(validate(cls.Config, {"log_features": [], "dequantize": [], **cfg}, "model"),
               {"kind": "observables", "names": names, "n_features": len(names)})


def _fit(m, x, steps=400, lr=3e-3, batch=256, seed=0):
    torch.manual_seed(seed)
    m.prepare(_store(x))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    xt = torch.from_numpy(np.asarray(x, np.float32))
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=g)
        loss, _ = m.loss({"x": xt[idx]}, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_conditional_flow_score_is_independent_of_pt():
    """x depends on pT in location and width; the conditional flow's (base-space) score does not."""
    g = np.random.default_rng(2)
    n = 8000
    pt = g.uniform(0, 3, n)
    x1 = 2 * pt + (0.3 + 0.5 * pt) * g.normal(size=n)
    x2 = -pt + 0.5 * x1 + (0.3 + 0.3 * pt) * g.normal(size=n)
    x = np.column_stack([x1, x2, pt])
    m = _flow(["x1", "x2", "pt"], condition=["pt"], transform="maf", transforms=3, hidden=[32, 32])
    assert m.score_kind == "base"
    losses = _fit(m, x[:6000], steps=600)
    assert np.mean(losses[-50:]) < np.mean(losses[:10]) - 0.5  # the NLL went down
    test = x[6000:]  # held out
    m.eval()
    with torch.no_grad():
        s = m.score({"x": torch.from_numpy(test).float()}).numpy()
        nll = m.nll({"x": torch.from_numpy(test).float()}).numpy()
    pt_t = test[:, 2]
    assert abs(np.corrcoef(test[:, 0], pt_t)[0, 1]) > 0.8  # the inputs are strongly pT-dependent
    assert abs(np.corrcoef(s, pt_t)[0, 1]) < 0.08
    lo, hi = s[pt_t < 1], s[pt_t > 2]
    assert abs(np.median(lo) - np.median(hi)) < 0.15 and abs(np.quantile(lo, 0.9) - np.quantile(hi, 0.9)) < 0.5
    # base score of a 2-d standard normal: 0.5 chi2(2), mean 1
    assert abs(s.mean() - 1.0) < 0.15
    # -log p(x | pT) keeps the pT-dependent width (log sigma(pT)): not decorrelated
    assert np.corrcoef(nll, pt_t)[0, 1] > 0.3


def test_flow_config_and_columns():
    with pytest.raises(ConfigError, match="duplicate"):
        validate(get_method("flow").Config, {"condition": ["pt", "pt"]}, "model")
    with pytest.raises(ConfigError, match="not columns of the representation"):
        _flow(["mass", "tau21"], condition=["pt"])
    with pytest.raises(ConfigError, match="nothing is left"):
        _flow(["pt"], condition=["pt"])
    cls = get_method("flow")
    req = cls.representation_request(validate(cls.Config, {"condition": ["pt", "mass"]}, "model"), {})
    assert req["columns"][-1] == "pt" and req["columns"].count("mass") == 1  # pt added, mass already there
    assert _flow(["a", "b"]).score_kind == "nll"


def test_missing_zuko_is_one_clear_error(monkeypatch, qcd_ds, tmp_path):
    monkeypatch.setitem(sys.modules, "zuko", None)  # import zuko -> ImportError
    with pytest.raises(ConfigError, match=r"zuko.*\[flow\]"):
        validate(get_method("flow").Config, {}, "model")
    with pytest.raises(ConfigError, match=r"\[flow\]"):
        train("flow", qcd_ds, tmp_path / "f", config=FAST, epochs=1, progress=False)
    assert not (tmp_path / "f").exists()


def test_flow_trains_with_the_shared_trainer_and_exports(qcd_ds, svj_ds, tmp_path, capsys):
    cfg = {**FAST, "batch_size": 32, "optimizer": {"lr": 3e-3},
           "model": {"condition": ["pt"], "transforms": 2, "hidden": [32, 32]}}
    run = train("flow", qcd_ds, tmp_path / "flow", config=cfg, epochs=5, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(math.isfinite(r["val_loss"]) for r in hist)
    m, rep, _, info = load_run(run)
    assert info["representation"]["columns"][-1] == "pt" and m.score_kind == "base"
    jets, _ = score(run, [qcd_ds, svj_ds], tmp_path / "s.parquet", progress=False)
    df = pd.read_parquet(jets)
    assert np.isfinite(df.score).all() and (df.score >= 0).all()
    from darkshower.represent.build import build

    xs = torch.from_numpy(build(rep, svj_ds.arrays())["x"][:9]).float()
    assert_onnx_matches_torch(m, {"x": xs}, tmp_path / "flow.onnx")

    # the other score of the same run (score --score-kind nll): -log p(x | pt), calibrated on its own reference
    from darkshower.cli.main import main
    from darkshower.train.scorefiles import read_score_file

    for kind in ("nll", "base"):
        assert (run / f"val_scores.{kind}.npy").exists() and (run / f"val_scores_last.{kind}.npy").exists()
    np.testing.assert_array_equal(np.load(run / "val_scores.base.npy"), np.load(run / "val_scores.npy"))
    assert read_score_file(jets)[1]["score_kind"] == "base"
    nll_file, _ = score(run, [svj_ds], tmp_path / "nll.parquet", score_kind="nll", progress=False)
    t, meta = read_score_file(nll_file)
    assert meta["score_kind"] == "nll"
    with torch.no_grad():
        want = m.nll({"x": xs}).numpy()
    np.testing.assert_allclose(t["score"].to_numpy()[:9], want, rtol=1e-4, atol=1e-5)
    ref = np.load(run / "val_scores.nll.npy")
    np.testing.assert_allclose(t["eff_b"].to_numpy(), 1 - np.searchsorted(ref, t["score"].to_numpy(), side="right")
                               / len(ref), atol=1e-12)
    # each reference holds its own kind: the nll reference is the nll of the validation jets (recomputed below
    # for a run trained before the per-kind files, which must give the same), the base one is 0.5 |u|^2 >= 0
    base_ref = np.load(run / "val_scores.base.npy")
    assert len(ref) == len(base_ref) and (base_ref >= 0).all() and not np.allclose(ref, base_ref)
    for f in ("val_scores.nll.npy", "val_scores.base.npy"):
        (run / f).unlink()
    score(run, [svj_ds], tmp_path / "nll2.parquet", score_kind="nll", progress=False)
    np.testing.assert_allclose(np.load(run / "val_scores.nll.npy"), ref, rtol=1e-5, atol=1e-6)
    # the configured kind (base, by model.score auto with a condition) keeps using val_scores.npy: nothing recomputed
    score(run, [svj_ds], tmp_path / "base2.parquet", score_kind="base", progress=False)
    assert not (run / "val_scores.base.npy").exists()
    assert not np.allclose(t["score"].to_numpy()[:9], df[df.dataset == str(svj_ds.path.resolve())].score.to_numpy()[:9])
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "scores    nll, base (configured: base)" in capsys.readouterr().out


def _two_slot_events(n, seed=0, p_second=0.6):
    """Event-level toy: a leading-jet column, a second jet's two columns (present in ``p_second`` of the events,
    else padded with 0 and flagged by j1_present = 0) and an event column; all Gaussian."""
    g = np.random.default_rng(seed)
    j0 = g.normal(size=n)
    e = g.normal(size=n)
    present = (g.uniform(size=n) < p_second).astype(float)
    j1a = (5 + j0 + 0.5 * g.normal(size=n)) * present
    j1b = (3 + 0.5 * g.normal(size=n)) * present
    return np.column_stack([j0, j1a, j1b, present, e])


def test_flow_with_a_missing_second_jet_models_the_columns_that_exist():
    """Event level with one-jet events: the missing jet's columns are noise while training, so the likelihood
    stays bounded (padded zeros are a point mass: it runs away), the score ignores the padded values and is
    the density of the columns that exist; the slot is standardized on the events that have the jet."""
    names = ["j0_a", "j1_a", "j1_b", "j1_present", "e"]
    x = _two_slot_events(6000)
    kw = {"transform": "maf", "transforms": 3, "hidden": [32, 32], "dequantize": ["present"]}
    m = _flow(names, **kw)
    assert list(m.present_of) == [-1, 3, 3, -1, -1]
    from darkshower.models.density import _present_columns

    assert list(_present_columns(["j0_mass", "j1_mass", "j1_present", "dphi_j0", "dphi_j1", "met_pt"])) == [
        -1, 2, -1, -1, 2, -1]  # dphi to a missing jet is 0 too
    # m_jj without a second jet is the first jet's mass (a copy of j0_mass): the second jet's column with pairs
    assert list(_present_columns(["j0_mass", "j1_present", "mjj", "ht"], pairs=True)) == [-1, -1, 1, -1]
    assert list(_present_columns(["j0_mass", "j1_present", "mjj", "ht"])) == [-1, -1, -1, -1]
    losses = _fit(m, x[:5000], steps=500)
    have = x[:5000][x[:5000, 3] > 0]
    np.testing.assert_allclose(m.pre.mean.numpy()[1:3], have[:, 1:3].mean(0), rtol=1e-4)  # not diluted by the zeros
    np.testing.assert_allclose(m.pre.std.numpy()[1:3], have[:, 1:3].std(0), rtol=1e-4)
    pad = _flow(names, missing_jets="pad", **kw)
    assert (pad.present_of == -1).all()
    pad_losses = _fit(pad, x[:5000], steps=500)
    assert np.mean(pad_losses[-50:]) < np.mean(losses[-50:]) - 2  # the point mass: the padded likelihood runs away
    m.eval()
    test = torch.from_numpy(x[5000:]).float()
    one = test[:, 3] == 0
    with torch.no_grad():
        s = m.score({"x": test}).numpy()
        moved = test.clone()
        moved[one, 1:3] = torch.tensor([123.0, -7.0])  # whatever a missing jet's slot holds
        np.testing.assert_array_equal(m.score({"x": moved}).numpy(), s)
        # by hand: -log p(x, 0) of the flow with the missing columns at 0, + ln N(0; 0, 1) per missing column
        f, _ = m._inputs(test, False)
        assert (f[one][:, 1:3] == 0).all()
        by_hand = -m._dist(None).log_prob(f).numpy() - 0.5 * math.log(2 * math.pi) * 2 * one.numpy()
        np.testing.assert_allclose(s, by_hand, rtol=1e-5, atol=1e-5)
    # one-jet events: the score follows the Gaussian density of the existing columns, -log p = (j0^2 + e^2)/2 + c
    t = x[5000:][one.numpy()]
    slope = np.polyfit(0.5 * (t[:, 0] ** 2 + t[:, 4] ** 2), s[one.numpy()], 1)[0]
    assert 0.7 < slope < 1.3
    assert np.isfinite(s).all()
    # one-jet vs two-jet events, mean -log p in the standardized space (the entropies of the toy): j0 and e are
    # N(0, 1) (1.419 each); the dequantized flag v = present + U[0, 1) has density 0.4 (0.6) on [0, 1) ([1, 2))
    # and standard deviation sqrt(0.24 + 1/12); j1a | j0 has width 0.5 / sqrt(1.25) in standardized units, j1b 1.
    h = 0.5 * math.log(2 * math.pi * math.e)
    sd_v = math.sqrt(0.24 + 1 / 12)
    want = (2 * h - math.log(0.4 * sd_v)) - (4 * h - math.log(0.6 * sd_v) + math.log(0.5 / math.sqrt(1.25)))
    got = s[one.numpy()].mean() - s[~one.numpy()].mean()
    assert abs(got - want) < 0.4, (got, want)  # -1.63: the missing columns are marginalized, not penalized


def test_flow_with_missing_jets_exports_to_onnx(tmp_path):
    """The missing-jet handling (mask from the j1_present column, marginal term) is in the exported graph."""
    names = ["j0_a", "j1_a", "j1_b", "j1_present", "e"]
    x = _two_slot_events(2000, seed=3)
    m = _flow(names, transform="maf", transforms=2, hidden=[16, 16], dequantize=["present"])
    _fit(m, x, steps=50)
    m.eval()
    xs = torch.from_numpy(x[:16]).float()
    assert (xs[:, 3] == 0).any() and (xs[:, 3] == 1).any()
    assert_onnx_matches_torch(m, {"x": xs}, tmp_path / "flow_missing.onnx")


def test_base_score_warning_with_missing_jets_only_when_base_is_used(caplog):
    """The base score does not marginalize a missing jet: said once when base is used (configured or chosen),
    not when the run is scored by nll (score --score-kind nll), and never without jet slots that can be missing."""
    names = ["j0_a", "j1_a", "j1_b", "j1_present", "e"]
    x = torch.from_numpy(_two_slot_events(64, seed=4)).float()
    says = "does not marginalize a missing jet"
    m = _flow(names, score="base", transform="maf", transforms=1, hidden=[8], dequantize=["present"])
    assert says not in caplog.text  # loading a run says nothing yet
    with torch.no_grad():
        m.use_score("nll")
        m.score({"x": x})
        assert says not in caplog.text
        m.use_score("base")
        m.score({"x": x})
        m.score({"x": x})
    assert caplog.text.count(says) == 1
    caplog.clear()
    plain = _flow(["a", "b"], score="base", transform="maf", transforms=1, hidden=[8])
    with torch.no_grad():
        plain.score({"x": x[:, :2]})
    assert says not in caplog.text


def test_flow_missing_pair_marginalizes_mjj_of_one_jet_events():
    """m_jj of a one-jet event is a copy of the first jet's mass: with missing_pair (the default) it is the
    second jet's column, so a one-jet event's score does not depend on it; without, it does."""
    g = np.random.default_rng(3)
    n = 4000
    j0 = g.normal(5, 1, n)
    present = (g.uniform(size=n) < 0.5).astype(float)
    j1 = (g.normal(4, 1, n)) * present
    mjj = np.where(present > 0, j0 + j1 + g.normal(0, 0.3, n), j0)  # one jet: an exact copy of j0
    x = np.column_stack([j0, j1, present, mjj])
    names = ["j0_mass", "j1_mass", "j1_present", "mjj"]
    kw = {"transform": "maf", "transforms": 2, "hidden": [16, 16], "dequantize": ["present"]}
    one = torch.from_numpy(x[present == 0][:200]).float()
    moved = one.clone()
    moved[:, 3] += 2.0
    for pair, changes in ((True, False), (False, True)):
        m = _flow(names, missing_pair=pair, **kw)
        assert list(m.present_of) == [-1, 2, -1, 2 if pair else -1]
        _fit(m, x, steps=100)
        m.eval()
        with torch.no_grad():
            diff = (m.score({"x": moved}) - m.score({"x": one})).abs().max().item()
        assert (diff > 1e-3) == changes, (pair, diff)


def test_flow_runs_saved_before_missing_jets_keep_the_padding(tmp_path):
    """A flow run whose config.yaml predates model.missing_jets trained on the padded zeros: reading it back
    gives missing_jets: pad (its behaviour), while a new config gets the default noise."""
    import yaml

    from darkshower.models.runs import read_run_config

    cls = get_method("flow")
    assert validate(cls.Config, {}, "model").missing_jets == "noise"
    (tmp_path / "run.json").write_text(json.dumps({"method": "flow", "status": "complete"}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"method": "flow", "model": {"transforms": 2}}))
    assert read_run_config(tmp_path).model["missing_jets"] == "pad"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"method": "flow", "model": {"transforms": 2,
                                                                             "missing_jets": "noise"}}))
    assert read_run_config(tmp_path).model["missing_jets"] == "noise"
    # a noise run saved before model.missing_pair kept m_jj of one-jet events as it was
    assert read_run_config(tmp_path).model["missing_pair"] is False
    assert validate(cls.Config, {}, "model").missing_pair is True


@pytest.mark.slow
def test_score_kind_decorrelation_reference_of_an_older_run_with_a_jet_window(qcd_ds, svj_ds, tmp_path, caplog):
    """A run trained before the per-kind references, with a jet pT window that drops leading jets: the kind's
    decorrelation reference is recomputed row for row as training wrote it (score files number jets as the
    dataset does, training inside the window); when only that file is missing and the training data is gone,
    scoring goes on without decorrelated columns and says why (the stored eff_b reference is kept)."""
    import shutil

    import awkward as ak

    pts = ak.to_numpy(ak.flatten(qcd_ds.arrays()["jets"]["pt"]))
    cut = float(np.quantile(pts, 0.6))  # leading jets above it are outside the window
    data = tmp_path / "qcd"
    shutil.copytree(qcd_ds.path, data)
    cfg = {**FAST, "batch_size": 32, "data": {"jet_pt_max": cut},
           "model": {"condition": ["pt"], "transforms": 1, "hidden": [16]}}
    run = train("flow", data, tmp_path / "flow", config=cfg, epochs=2, progress=False)
    trained = dict(np.load(run / "val_decor.nll.npz"))
    ref = np.load(run / "val_scores.nll.npy")
    for f in ("val_scores.nll.npy", "val_decor.nll.npz"):
        (run / f).unlink()
    score(run, [svj_ds], tmp_path / "a.parquet", score_kind="nll", progress=False)
    got = dict(np.load(run / "val_decor.nll.npz"))
    np.testing.assert_allclose(got["score"], trained["score"], rtol=1e-5, atol=1e-6)
    for v in ("pt", "mass", "mt", "mjj"):
        np.testing.assert_array_equal(got[v], trained[v])
    assert (got["pt"] < cut).all()
    np.testing.assert_allclose(np.load(run / "val_scores.nll.npy"), ref, rtol=1e-5, atol=1e-6)

    (run / "val_decor.nll.npz").unlink()
    stored = np.load(run / "val_scores.nll.npy")
    shutil.rmtree(data)
    out, _ = score(run, [svj_ds], tmp_path / "b.parquet", score_kind="nll", decorrelate=True, progress=False)
    assert "not there to compute it from" in caplog.text and "no decorrelated columns" in caplog.text
    assert "eff_b_decor" not in pd.read_parquet(out).columns and pd.read_parquet(out)["eff_b"].notna().any()
    np.testing.assert_array_equal(np.load(run / "val_scores.nll.npy"), stored)
