"""Contrastive losses and label-free scores by hand (aCLR+, the ‖z‖ term, the Mahalanobis score on the
frozen representation), runs saved before the maha score, and the training-device selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from darkshower.errors import ConfigError
from darkshower.models.contrastive import ACLR, CLR, aclr_plus
from darkshower.represent.build import build
from darkshower.represent.config import parse_representation
from darkshower.represent.constituents import feature_names
from darkshower.represent.toys import toy_events
from darkshower.train import load_run, train
from darkshower.train.session import resolve_device

TINY = {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "head": [16], "output": 16, "bank_size": 256}
FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None},
        "representation": {"n_constituents": 30}, "optimizer": {"lr": 3e-3}}
REP = parse_representation({"kind": "constituents", "n_constituents": 30, "standardize": False, "max_jets": 2})


def _method(cls, **model):
    r = build(REP, toy_events(30, n_prongs=1, seed=3, n_constituents=(8, 25)))
    names = feature_names(r["x"].shape[-1] == len(feature_names(True)))
    spec = {"kind": "constituents", "names": names, "n_constituents": 30, "shape": list(r["x"].shape[1:])}
    m = cls(cls.Config(**{**TINY, **model}), spec)
    m.prepare({"x": r["x"], "mask": r["mask"]})
    return m, {"x": torch.from_numpy(r["x"]), "mask": torch.from_numpy(r["mask"])}


# -- losses by hand -----------------------------------------------------------------------------------
def test_aclr_plus_by_hand():
    # two jets in 2D; views a, b (physical) and n (anomalous); unnormalized on purpose (only angles count)
    za = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    zb = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    zn = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    t = 0.5
    r = 1 / math.sqrt(2)
    # jet 0: s(a,b) = cos 45° = r, s(a,n) = -1, s(b,n) = -r; jet 1: s(a,b) = 1, s(a,n) = 0, s(b,n) = 0
    jet0 = ((-1 - r) / 2 - r) / t
    jet1 = ((0 + 0) / 2 - 1) / t
    assert aclr_plus(za, zb, zn, t).item() == pytest.approx((jet0 + jet1) / 2, abs=1e-6)
    # no batch denominator: the loss of a jet does not depend on the other jets of the batch
    assert aclr_plus(za[:1], zb[:1], zn[:1], t).item() == pytest.approx(jet0, abs=1e-6)


def test_aclr_loss_option_and_norm_term_by_hand():
    captured = {}
    m, b = _method(ACLR, loss="aclr_plus", norm_weight=0.25)
    enc = m.encode_raw

    def spy(x, mask):
        captured["z"] = enc(x, mask)
        return captured["z"]

    m.encode_raw = spy
    loss, _, _ = m._contrastive(b, torch.Generator().manual_seed(1))
    z = captured["z"].float()
    P = len(b["x"])
    want = aclr_plus(z[:P], z[P:2 * P], z[2 * P:], m.config.temperature) + 0.25 * z[:2 * P].pow(2).sum(1).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    # the same views with NT-Xent (the default) give another number
    m.config = m.config.model_copy(update={"loss": "ntxent", "norm_weight": 0.0})
    loss2, _, _ = m._contrastive(b, torch.Generator().manual_seed(1))
    assert abs(loss2.item() - loss.item()) > 1e-3


# -- the Mahalanobis score ----------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["z", "pooled"])
def test_maha_distance_by_hand(space):
    m, b = _method(CLR, maha_space=space, maha_shrink=0.0)
    g = np.random.default_rng(0)
    d = m.gauss_mean.shape[0]
    feats = torch.from_numpy(g.normal(size=(400, d)) @ g.normal(size=(d, d)) + 3.0).float()
    m.fit_gaussian(feats)
    m.bank_n.fill_(1)
    f = feats.double().numpy()
    mu, cov = f.mean(0), np.cov(f, rowvar=False)
    x = torch.from_numpy(g.normal(size=(5, d)) + 3.0).float()
    want = np.einsum("ij,jk,ik->i", x.numpy() - mu, np.linalg.inv(cov), x.numpy() - mu)
    got = m.maha_distance(x, x).numpy()  # the configured space is picked; both arguments are x here
    np.testing.assert_allclose(got, want, rtol=1e-3)
    # the score of a batch is the distance of the configured space's features
    with torch.no_grad():
        pooled, z = m._encode_batch(b)
        m.score_kind = "maha"
        np.testing.assert_allclose(m.score(b).numpy(), m.maha_distance(pooled, z).numpy(), rtol=1e-6)


def test_refresh_fits_gaussian_on_training_jets():
    m, b = _method(CLR, maha_space="pooled", maha_shrink=1e-3, bank_size=64)
    m._stash, m._stash_n = [(b["x"], b["mask"])], len(b["x"])
    with torch.no_grad():
        m.refresh_bank()
        pooled, _ = m._encode_batch(b)
    n = min(64, len(b["x"]))
    assert int(m.bank_n) == n
    np.testing.assert_allclose(m.gauss_mean.numpy(), pooled[:n].mean(0).numpy(), atol=1e-5)
    s = m.scores(b)
    assert set(s) == {"norm", "knn", "maha"} and torch.isfinite(s["maha"]).all()
    # the training jets are closer to their own Gaussian than a displaced copy of them
    far = pooled + 3 * pooled.std(0)
    assert m.maha_distance(far, None).median() > s["maha"].median()


def test_runs_saved_before_the_maha_score_still_load():
    m, b = _method(CLR)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("gauss_")}
    m2, _ = _method(CLR)
    m2.load_state_dict(state)  # strict: the missing Gaussian is filled in, unfitted
    m2.bank_n.fill_(3)
    assert "maha" not in m2.scores(b)
    m2.score_kind = "maha"
    with pytest.raises(ConfigError, match="maha Gaussian is not fitted"):
        m2.score(b)


@pytest.mark.parametrize("kind", ["norm", "knn", "maha"])
def test_export_wrapper_gives_the_score(kind):
    # the module ONNX exports (method.export()) computes score() without the fitted-state checks;
    # the ONNX files themselves are checked by the slow test below and by test_contrastive.py (norm)
    m, b = _method(CLR, bank_size=64, score=kind)
    m._stash, m._stash_n = [(b["x"], b["mask"])], len(b["x"])
    m.eval()
    with torch.no_grad():
        m.refresh_bank()
        module, (x, mask) = m.export()
        np.testing.assert_allclose(module(b["x"], b["mask"]).numpy(), m.score(b).numpy(), rtol=1e-6)
        assert module(x, mask).shape == (len(x),)
    m.bank_n.zero_()
    with pytest.raises(ConfigError, match=r"not fitted|bank is empty") if kind != "norm" else _nothing():
        m.export()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow  # ONNX export of maha and knn scores; test_export_wrapper_gives_the_score covers the wrapper
def test_trained_run_scores_maha_and_exports_it(qcd_ds, tmp_path):
    from conftest import assert_onnx_matches_torch

    cfg = {**FAST, "model": {**TINY, "score": "maha", "loss": "aclr_plus", "norm_weight": 0.01}}
    run = train("aclr", qcd_ds, tmp_path / "run", config=cfg, epochs=2, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert np.isfinite([h["train_loss"] for h in hist]).all()
    m, rep, _, _ = load_run(run)
    assert bool(m.gauss_prec.any()) and int(m.bank_n) > 0
    store = build(rep, qcd_ds.arrays())
    b = {"x": torch.from_numpy(store["x"][:9]), "mask": torch.from_numpy(store["mask"][:9])}
    assert_onnx_matches_torch(m, b, tmp_path / "maha.onnx")
    m.score_kind = "knn"
    assert_onnx_matches_torch(m, b, tmp_path / "knn.onnx")


# -- training device ----------------------------------------------------------------------------------
def test_device_selection():
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(ConfigError, match="no GPU"):
        resolve_device("cuda", cuda_available=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_gpu_is_refused_before_anything_is_written(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match="device: cuda"):
        train("clr", qcd_ds, tmp_path / "run", config={**FAST, "model": TINY, "device": "cuda"}, epochs=1,
              progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_may_change_the_device(qcd_ds, tmp_path):
    cfg = {**FAST, "model": TINY, "device": "cpu"}
    run = train("clr", qcd_ds, tmp_path / "run", config=cfg, epochs=1, seed=2, progress=False)
    train("clr", qcd_ds, run, config={"device": "auto"}, epochs=2, resume=True, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


# -- anomalous augmentation: pT reweighting -----------------------------------------------------------
def test_reweight_pt_by_hand():
    from darkshower.represent import augment as A

    names = feature_names(False)
    f = A.Features(names)
    x = torch.zeros(1, 4, len(names))
    mask = torch.tensor([[True, True, True, False]])
    pt = torch.tensor([60.0, 30.0, 10.0])
    x[0, :3, f.idx["log_pt"]] = torch.log(pt)
    if f.has("pt_rel"):
        x[0, :3, f.idx["pt_rel"]] = pt / 100
    y, my = A.reweight_pt(x, mask, f, 0.5, 0.5)
    want = torch.sqrt(pt) * 100 / torch.sqrt(pt).sum()  # pT^0.5, scalar sum kept at 100 GeV
    np.testing.assert_allclose(torch.exp(y[0, :3, f.idx["log_pt"]]).numpy(), want.numpy(), rtol=1e-5)
    assert torch.equal(my, mask) and float(y[0, 3].abs().sum()) == 0.0  # padding stays zero
    if f.has("pt_rel"):
        np.testing.assert_allclose(y[0, :3, f.idx["pt_rel"]].numpy(), (want / 100).numpy(), rtol=1e-5)
    y1, _ = A.reweight_pt(x, mask, f, 1.0, 1.0)  # beta = 1: unchanged
    np.testing.assert_allclose(y1.numpy(), x.numpy(), atol=1e-5)
    cfg = A.AnomalousConfig(kinds=["drop", "prongs", "reweight"])
    x3, m3 = A.anomalous(x.expand(8, -1, -1).clone(), mask.expand(8, -1).clone(), f, cfg,
                         torch.Generator().manual_seed(0))
    assert x3.shape == (8, 4, len(names)) and torch.isfinite(x3).all()
    with pytest.raises(ConfigError, match="reweight"):
        A.AnomalousConfig(kinds=["bogus"])


@pytest.mark.parametrize("shrink", [0.0, 1e-3])
def test_maha_with_a_singular_covariance_stays_finite(shrink):
    """Fewer training jets than features and a constant feature: with maha_shrink 0 the covariance is singular
    (the pseudo-inverse is used, not inv's garbage); with the default shrink it is regularized."""
    m, _ = _method(CLR, maha_space="z", maha_shrink=shrink)
    d = m.gauss_mean.shape[0]
    feats = torch.from_numpy(np.random.default_rng(1).normal(size=(4, d))).float()  # 4 jets < d features
    feats[:, 0] = 2.0  # a constant feature
    m.fit_gaussian(feats)
    m.bank_n.fill_(1)
    assert torch.isfinite(m.gauss_prec).all()
    s = m.maha_distance(feats, feats)
    assert torch.isfinite(s).all()
    if shrink == 0.0:  # pinv: the training jets sit at distance n - 1 = 3 in their own (rank-3) subspace
        np.testing.assert_allclose(s.numpy(), 3 * 3 / 4, rtol=1e-3)
    far = feats.mean(0) + 10 * (feats - feats.mean(0))  # 10x further from the mean: 100x the distance
    np.testing.assert_allclose(m.maha_distance(far, far).numpy(), 100 * s.numpy(), rtol=1e-3)


# -- another score of the same trained run: score --score-kind ----------------------------------------
def test_score_kind_is_calibrated_on_its_own_reference(qcd_ds, svj_ds, tmp_path, capsys):
    import pandas as pd

    from darkshower.cli.main import main
    from darkshower.train import score
    from darkshower.train.scorefiles import read_score_file

    cfg = {**FAST, "model": {**TINY, "score": "maha"}}
    run = train("clr", qcd_ds, tmp_path / "run", config=cfg, epochs=1, seed=3, progress=False)
    for kind in ("norm", "knn", "maha"):  # training stores one validation reference per offered kind
        assert (run / f"val_scores.{kind}.npy").exists() and (run / f"val_scores_last.{kind}.npy").exists()
    np.testing.assert_array_equal(np.load(run / "val_scores.maha.npy"), np.load(run / "val_scores.npy"))
    ref = np.load(run / "val_scores.norm.npy")
    assert len(ref) > 10 and np.all(np.diff(ref) >= 0)

    jets, _ = score(run, [qcd_ds.path, svj_ds.path], tmp_path / "norm.parquet", score_kind="norm", progress=False)
    t, meta = read_score_file(jets)
    assert meta["score_kind"] == "norm"
    m, rep, _, _ = load_run(run)
    store = build(rep, qcd_ds.arrays())
    b = {"x": torch.from_numpy(store["x"][:7]), "mask": torch.from_numpy(store["mask"][:7])}
    with torch.no_grad():
        z_norm = m.scores(b)["norm"].numpy()
    q = t[t["dataset"] == str(qcd_ds.path.resolve())].head(7)
    np.testing.assert_allclose(q["score"].to_numpy(), z_norm, rtol=1e-4)
    # eff_b of each sample: the fraction of the norm reference above it (not of the maha reference)
    s = t["score"].to_numpy()
    want = 1 - np.searchsorted(ref, s, side="right") / len(ref)
    np.testing.assert_allclose(t["eff_b"].to_numpy(), want, atol=1e-12)
    two, _ = read_score_file(score(run, [qcd_ds.path, svj_ds.path], tmp_path / "two.parquet", score_kind="norm",
                                   jobs=2, threads=1, progress=False)[0])  # worker processes load the kind too
    np.testing.assert_allclose(two["score"].to_numpy(), t["score"].to_numpy(), rtol=1e-5)
    base, meta0 = read_score_file(score(run, [qcd_ds.path], tmp_path / "maha.parquet", progress=False)[0])
    assert meta0["score_kind"] == "maha" and not np.allclose(base["score"], t["score"].head(len(base)))

    # a run trained before the per-kind references: computed once from its training data's validation split,
    # the same events as in training, so the same reference
    decor = dict(np.load(run / "val_decor.norm.npz"))
    (run / "val_scores.norm.npy").unlink()
    (run / "val_decor.norm.npz").unlink()
    score(run, [svj_ds.path], tmp_path / "again.parquet", score_kind="norm", progress=False)
    np.testing.assert_allclose(np.load(run / "val_scores.norm.npy"), ref, rtol=1e-5)
    # with it the decorrelation reference of that kind (score --decorrelate --score-kind), row for row as training
    # wrote it; also when only that file is missing
    for again in range(2):
        got = dict(np.load(run / "val_decor.norm.npz"))
        assert set(got) == set(decor) and str(got["level"]) == str(decor["level"])
        np.testing.assert_allclose(got["score"], decor["score"], rtol=1e-5)
        for v in ("pt", "mass", "mt", "mjj"):
            np.testing.assert_array_equal(got[v], decor[v])
        if again:
            break
        (run / "val_decor.norm.npz").unlink()
        dec, _ = score(run, [svj_ds.path], tmp_path / "decor.parquet", score_kind="norm", decorrelate=True,
                       progress=False)
        assert "eff_b_decor" in pd.read_parquet(dec).columns

    # the last model's reference too
    last = np.load(run / "val_scores_last.norm.npy")
    (run / "val_scores_last.norm.npy").unlink()
    score(run, [svj_ds.path], tmp_path / "last.parquet", which="last", score_kind="norm", progress=False)
    np.testing.assert_allclose(np.load(run / "val_scores_last.norm.npy"), last, rtol=1e-5)

    # error paths: a kind the method lacks; a method with one score; the CLI names the option
    with pytest.raises(ConfigError, match=r"no such score.*offered: norm, knn, maha"):
        score(run, [svj_ds.path], tmp_path / "x.parquet", score_kind="bogus", progress=False)
    gmm = train("gmm", qcd_ds, tmp_path / "gmm", progress=False)
    with pytest.raises(ConfigError, match="offered: none besides"):
        score(gmm, [svj_ds.path], tmp_path / "y.parquet", score_kind="norm", progress=False)
    assert main(["score", str(run), str(svj_ds.path), "--out", str(tmp_path / "cli.parquet"), "--score-kind", "knn",
                 "--no-progress"]) == 0
    assert read_score_file(tmp_path / "cli.parquet")[1]["score_kind"] == "knn"
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "scores    norm, knn, maha (configured: maha): darkshower score" in capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "cli.parquet")["eff_b"].between(0, 1).all()


def test_score_kind_reference_follows_max_val_and_needs_the_training_data(qcd_ds, svj_ds, tmp_path):
    """The recomputed reference keeps the trainer's first data.max_val validation rows; with the training data gone
    or changed it cannot be computed, and the error says what to do."""
    import shutil

    from darkshower.train import score

    data = tmp_path / "qcd"
    shutil.copytree(qcd_ds.path, data)
    cfg = {**FAST, "model": TINY, "data": {"max_val": 25}}
    run = train("clr", data, tmp_path / "run", config=cfg, epochs=1, seed=3, progress=False)
    ref = np.load(run / "val_scores.knn.npy")
    assert 0 < len(ref) <= 25
    (run / "val_scores.knn.npy").unlink()
    score(run, [svj_ds.path], tmp_path / "a.parquet", score_kind="knn", progress=False)
    np.testing.assert_allclose(np.load(run / "val_scores.knn.npy"), ref, rtol=1e-5)
    (run / "val_scores.knn.npy").unlink()
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["chunks"][0]["sha256"] = "0" * 64  # as if the data were regenerated at the same path
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="changed since the run was trained"):
        score(run, [svj_ds.path], tmp_path / "b.parquet", score_kind="knn", progress=False)
    shutil.rmtree(data)
    with pytest.raises(ConfigError, match=r"is not there to compute it from; retrain the run, or score it with its "
                                          r"configured score"):
        score(run, [svj_ds.path], tmp_path / "c.parquet", score_kind="knn", progress=False)
    assert not (run / "val_scores.knn.npy").exists()
