"""Energy-based autoencoders (nae, wnae), their Langevin sampler and the label-free EMD selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from darkshower.errors import ConfigError
from darkshower.models.emd import best_epoch, emd, sample_emd
from darkshower.train import TrainingError, load_run, score, train

#: small and fast: few MCMC steps, small buffer, no early stopping
FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}, "emd_samples": 64,
        "model": {"pretrain_epochs": 2, "z_steps": 3, "x_steps": 3, "n_negative": 32, "buffer_size": 256}}


def _cfg(**model):
    return {**FAST, "model": {**FAST["model"], **model}}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _hist(run):
    return json.loads((run / "metrics.json").read_text())


# -- the EMD helper ----------------------------------------------------------------------------
def test_emd_equals_sorted_1d_wasserstein():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(1.0, 2.0, size=40)
    x, y = torch.tensor(a)[:, None], torch.tensor(b)[:, None]
    d = np.sort(a) - np.sort(b)  # in 1-D the optimal plan matches sorted samples
    assert float(emd(x, y, "sqeuclidean")) == pytest.approx(np.mean(d ** 2), rel=1e-9)
    assert float(emd(x, y, "euclidean")) == pytest.approx(np.mean(np.abs(d)), rel=1e-6)
    # unequal sizes against scipy's 1-D W1
    from scipy.stats import wasserstein_distance

    z = torch.tensor(b[:25])[:, None]
    assert float(emd(x, z, "euclidean")) == pytest.approx(wasserstein_distance(a, b[:25]), rel=1e-6)
    # differentiable: d/dy of mean((sort x - sort y)^2) = 2 (y - x_matched) / n
    yy = y.clone().requires_grad_(True)
    emd(x, yy).backward()
    order_a, order_b = np.argsort(a), np.argsort(b)
    expect = np.empty(40)
    expect[order_b] = 2 * (b[order_b] - a[order_a]) / 40
    np.testing.assert_allclose(yy.grad[:, 0].numpy(), expect, rtol=1e-6, atol=1e-12)
    # block-wise (minibatch) OT is a feasible plan: an upper bound of the exact EMD
    assert float(emd(x, y, block=10)) >= float(emd(x, y)) - 1e-12
    assert float(emd(x, x)) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(float(emd(x, torch.full_like(y, float("inf")))))


def test_sample_emd_fixed_seed_and_best_epoch():
    data = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    draw = lambda n, gen: torch.randn(n, 3, generator=gen) + 0.5
    state = torch.get_rng_state()
    d3 = sample_emd(data, draw, seed=3)
    assert d3 == sample_emd(data, draw, seed=3) and d3 != sample_emd(data, draw, seed=4)
    assert d3 > 0  # the samples are shifted by 0.5 from the data
    assert torch.equal(state, torch.get_rng_state())  # the training RNG is untouched
    assert best_epoch([{"epoch": 1, "val_emd": math.nan}, {"epoch": 2, "val_emd": 2.0},
                       {"epoch": 3, "val_emd": 1.5}, {"epoch": 4, "val_emd": 1.7}]) == 3
    assert best_epoch([{"epoch": 1}]) is None


# -- Langevin ------------------------------------------------------------------------------------
def test_langevin_clamps_and_carries_graph():
    from darkshower.models.nae import langevin

    w = torch.nn.Parameter(torch.tensor(2.0))
    energy = lambda x: w * (x ** 2).sum(1)
    x0 = torch.full((5, 2), 3.0)
    lo, hi = torch.full((2,), -1.0), torch.full((2,), 1.0)
    # an energy that pushes the samples outwards (x <- 1.4 x per step): only the clamp keeps them in the box
    x = langevin(x0 * 0.5, lambda x: -w * (x ** 2).sum(1), 4, 0.1, 0.01, lo=lo, hi=hi, params=[w],
                 generator=torch.Generator().manual_seed(0))
    assert not x.requires_grad and (x <= 1).all() and (x >= -1).all() and (x.abs() > 0.95).all()
    assert w.requires_grad  # the parameters frozen during the detached steps are trainable again
    # noise-free: x <- x - 0.1 * 2 w x = (1 - 0.2 w) x; the last 2 of 4 steps keep the graph, so
    # d sum(x) / dw = sum(x_2) * 2 (1 - 0.2 w) (-0.2) with x_2 = 3 * 0.6^2 detached
    x1 = langevin(x0, energy, 4, 0.1, 0.0, graph_steps=2)
    torch.testing.assert_close(x1, torch.full((5, 2), 3 * 0.6 ** 4))
    x1.sum().backward()
    assert float(w.grad) == pytest.approx(10 * 3 * 0.6 ** 2 * 2 * 0.6 * -0.2, rel=1e-5)


# -- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nae", "wnae"])
def test_trains_scores_and_anomalous_toy(method, qcd_ds, tmp_path):
    run = train(method, qcd_ds, tmp_path / "run", config=_cfg(pretrain_epochs=4), epochs=6, progress=False)
    hist = _hist(run)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["selection"] == "val_emd"
    # the pre-training (plain AE) loss decreases; the energy phase logs its terms
    assert hist[3]["train_loss"] < hist[0]["train_loss"]
    assert all(math.isnan(r["val_emd"]) for r in hist[:4])  # pre-training epochs are not candidates
    assert all(math.isfinite(r["val_emd"]) and r["val_emd"] > 0 for r in hist[4:])
    assert ("train_neg_energy" if method == "nae" else "train_emd") in hist[-1]
    assert info["best_epoch"] in (5, 6)
    method_, rep, cfg, _ = load_run(run)
    assert int(method_.replay_n) > 0  # the replay buffer is part of the saved state
    from darkshower.represent.build import build

    x = build(rep, qcd_ds.arrays())["x"]
    with torch.no_grad():
        normal = method_.score({"x": torch.from_numpy(x)})
        weird = x.copy()
        names = rep.columns
        weird[:, names.index("tau21")] = 0.02
        weird[:, names.index("n_constituents")] = 3
        weird[:, names.index("mass")] = 600.0
        anomalous = method_.score({"x": torch.from_numpy(weird)})
    assert torch.isfinite(normal).all()
    assert anomalous.median() > 3 * normal.median()
    import pandas as pd

    jets, _ = score(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    s = pd.read_parquet(jets).score
    assert np.isfinite(s).all() and (s >= 0).all()


# wnae resumes the same replay buffer and RNG states as nae
@pytest.mark.parametrize("method", ["nae", pytest.param("wnae", marks=pytest.mark.slow)])
def test_resume_reproduces_uninterrupted_run(method, qcd_ds, tmp_path):
    cfg = _cfg(pretrain_epochs=1)
    a = train(method, qcd_ds, tmp_path / "a", config=cfg, epochs=3, seed=4, progress=False)
    b = train(method, qcd_ds, tmp_path / "b", config=cfg, epochs=1, seed=4, progress=False)
    train(method, qcd_ds, b, epochs=2, resume=True, progress=False)
    train(method, qcd_ds, b, epochs=3, resume=True, progress=False)
    sa, sb = torch.load(a / "model_last.pt")["model"], torch.load(b / "model_last.pt")["model"]
    assert "replay" in sa and int(sa["replay_n"]) > 0
    assert _states_equal(sa, sb)
    ha, hb = _hist(a), _hist(b)
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    assert [r["val_emd"] for r in ha[1:]] == [r["val_emd"] for r in hb[1:]]


def test_emd_selection_picks_lowest_validation_emd(qcd_ds, tmp_path):
    run = train("nae", qcd_ds, tmp_path / "r", config=_cfg(pretrain_epochs=1), epochs=6, progress=False)
    hist = _hist(run)
    info = json.loads((run / "run.json").read_text())
    emds = [(r["val_emd"], r["epoch"]) for r in hist if math.isfinite(r["val_emd"])]
    assert len({e for e, _ in emds}) > 1  # the metric varies between epochs
    want = min(emds)[1]
    assert best_epoch(hist) == want == info["best_epoch"]
    assert torch.load(run / "model_best.pt")["epoch"] == want
    assert [r["selection_value"] for r in hist[1:]] == [r["val_emd"] for r in hist[1:]]
    # and val_emd is available to an energy-based method with selection: last
    run2 = train("wnae", qcd_ds, tmp_path / "r2", config={**_cfg(pretrain_epochs=0), "selection": "last"}, epochs=2,
                 progress=False)
    assert all(math.isfinite(r["val_emd"]) for r in _hist(run2))


def test_divergence_stops_with_training_error_and_keeps_checkpoint(qcd_ds, tmp_path):
    # MCMC without its guards (no clamp, no gradient clip, no energy regularization, huge steps)
    bad = _cfg(pretrain_epochs=1, x_step_size=1e12, x_steps=6, clamp_samples=False, x_grad_clip=None,
               z_grad_clip=None, gamma=0.0)
    run = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"loss became .*epoch 2.*last good checkpoint.*MCMC step size"):
        train("nae", qcd_ds, run, config=bad, epochs=3, progress=False)
    assert json.loads((run / "run.json").read_text())["status"].startswith("failed")
    method, *_ = load_run(run)  # epoch 1 is still loadable
    assert torch.load(run / "model_last.pt")["epoch"] == 1
    assert torch.isfinite(method.score({"x": torch.ones(3, 15)})).all()
    # the same huge step with the guards on stays finite
    ok = train("nae", qcd_ds, tmp_path / "ok", config=_cfg(pretrain_epochs=1, x_step_size=1e12), epochs=2,
               progress=False)
    assert math.isfinite(_hist(ok)[-1]["train_loss"])
    # a huge learning rate
    with pytest.raises(TrainingError, match="loss became"):
        train("wnae", qcd_ds, tmp_path / "lr", config={**_cfg(pretrain_epochs=0), "optimizer": {"lr": 1e30},
                                                       "grad_clip": None}, epochs=2, progress=False)


# -- inputs: embedding of another run, images ------------------------------------------------------
def test_nae_on_frozen_embedding_of_another_run(qcd_ds, tmp_path):
    ae = train("ae-hlf", qcd_ds, tmp_path / "ae", config={"batch_size": 32, "threads": 1}, epochs=2, progress=False)
    ae_state = torch.load(ae / "model_best.pt")["model"]
    run = train("wnae", qcd_ds, tmp_path / "w", config=_cfg(pretrain_epochs=1, embedding_run=str(ae)), epochs=2,
                progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["representation"] == json.loads((ae / "run.json").read_text())["representation"]
    method, rep, cfg, _ = load_run(run)
    assert method.space_shape == (6,)  # the ae-hlf latent
    emb = {k[len("embedder."):]: v for k, v in method.state_dict().items() if k.startswith("embedder.")}
    assert _states_equal(emb, ae_state)  # frozen: identical to the embedding run's weights
    from darkshower.represent.build import build

    b = {"x": torch.from_numpy(build(rep, qcd_ds.arrays())["x"])}
    with torch.no_grad():
        s = method.score(b)
        h = method.embedder.embed(b)
    assert torch.isfinite(s).all() and h.shape[1] == 6
    with pytest.raises(ConfigError, match="representation is that run's"):
        train("nae", qcd_ds, tmp_path / "x", config=_cfg(embedding_run=str(ae)) | {"representation": {"kind": "image"}},
              progress=False)


def test_image_representation_and_errors(qcd_ds, tmp_path):
    cfg = _cfg(pretrain_epochs=1, channels=[4, 8], latent=8, z_steps=2, x_steps=2, n_negative=16)
    run = train("nae", qcd_ds, tmp_path / "img", config={**cfg, "representation": {"kind": "image", "n_pixels": 16}},
                epochs=2, progress=False)
    method, *_ = load_run(run)
    assert method.mode == "image" and method.box_lo.shape == (1, 16, 16)
    assert math.isfinite(_hist(run)[-1]["val_emd"])
    with pytest.raises(ConfigError, match=r"constituents.*embedding_run"):
        train("nae", qcd_ds, tmp_path / "c", config={"representation": {"kind": "constituents"}}, progress=False)
    with pytest.raises(ConfigError, match="x_steps >= 1"):
        train("wnae", qcd_ds, tmp_path / "c", config=_cfg(x_steps=0), progress=False)
    with pytest.raises(ConfigError, match=r"embedding_run.*not a training run"):
        train("nae", qcd_ds, tmp_path / "c", config=_cfg(embedding_run=str(tmp_path)), progress=False)
    with pytest.raises(ConfigError, match="val_emd"):
        train("ae-hlf", qcd_ds, tmp_path / "c", config={"selection": "val_emd"}, progress=False)


# wnae differs from nae in its training loss only: the same score and export
@pytest.mark.parametrize("method", ["nae", pytest.param("wnae", marks=pytest.mark.slow)])
def test_export(method, qcd_ds, tmp_path):
    from conftest import assert_onnx_matches_torch

    run = train(method, qcd_ds, tmp_path / "r", config=_cfg(pretrain_epochs=1), epochs=1, progress=False)
    m, *_ = load_run(run)
    _, inputs = m.export()
    x = torch.randn(5, *inputs[0].shape[1:], generator=torch.Generator().manual_seed(0))
    assert_onnx_matches_torch(m, {"x": x}, tmp_path / "m.onnx")


@pytest.mark.parametrize("method", ["nae", "wnae"])
def test_paper_config_validates(method):
    from conftest import REPO
    from darkshower.config import validate
    from darkshower.models import get_method
    from darkshower.train import resolve_config

    cfg = resolve_config(method, REPO / "configs" / "methods" / f"{method}-paper.yaml")
    model = validate(get_method(method).Config, cfg.model, "model")
    assert model.pretrain_epochs < cfg.epochs


def test_nae_on_the_pooled_representation_of_a_contrastive_run(qcd_ds, svj_ds, tmp_path):
    """model.embedding_space: pooled reads the contrastive encoder's output before the projection head
    (d_model wide), z the head's output (embed's); the probe reads the same spaces; bad names are refused."""
    from darkshower.represent.build import build
    from darkshower.train.probe import linear_probe

    clr = train("clr", qcd_ds, tmp_path / "clr", epochs=1, progress=False,
                config={"batch_size": 32, "threads": 1,
                        "model": {"d_model": 16, "ff": 32, "layers": 1, "head": [16], "output": 8}})
    m, rep, _, _ = load_run(clr)
    r = build(rep, qcd_ds.arrays())
    b = {"x": torch.as_tensor(r["x"][:20]), "mask": torch.as_tensor(r["mask"][:20])}
    with torch.no_grad():
        pooled, z = m._encode_batch(b)
        assert torch.equal(m.embed_in(b, "pooled"), pooled) and m.embed_in(b, "pooled").shape == (20, 16)
        assert torch.equal(m.embed_in(b, "z"), m.embed(b)) and torch.equal(m.embed_in(b), z)
    assert (m.embed_dim_in("pooled"), m.embed_dim_in("z"), m.embed_dim_in()) == (16, 8, 8)

    run = train("nae", qcd_ds, tmp_path / "nae", epochs=2, progress=False,
                config=_cfg(pretrain_epochs=1, embedding_run=str(clr), embedding_space="pooled"))
    method, *_ = load_run(run)
    assert method.space_shape == (16,)
    with torch.no_grad():
        h = method.to_space(b)
        s = method.score(b)
    # standardized pooled output: the embedding the NAE reads is the encoder's, not z
    torch.testing.assert_close(h, ((pooled - method.emb_mean) / method.emb_std).float())
    assert torch.isfinite(s).all()

    from conftest import assert_onnx_matches_torch

    big = {"x": torch.as_tensor(r["x"][:7]), "mask": torch.as_tensor(r["mask"][:7])}
    assert_onnx_matches_torch(method, big, tmp_path / "nae_pooled.onnx")  # the export reads the pooled output too

    p = linear_probe(clr, qcd_ds, svj_ds, space="pooled")
    assert p["dim"] == 16 and p["space"] == "pooled" and 0 <= p["auc"] <= 1
    assert linear_probe(clr, qcd_ds, svj_ds)["dim"] == 8

    with pytest.raises(ConfigError, match=r"no embedding space 'bogus'.*offered: z, pooled"):
        train("nae", qcd_ds, tmp_path / "b", config=_cfg(embedding_run=str(clr), embedding_space="bogus"),
              progress=False)
    with pytest.raises(ConfigError, match=r"embedding_space.*set model.embedding_run"):
        train("nae", qcd_ds, tmp_path / "c", config=_cfg(embedding_space="pooled"), progress=False)
    ae = train("ae-hlf", qcd_ds, tmp_path / "ae", config={"batch_size": 32, "threads": 1}, epochs=1, progress=False)
    with pytest.raises(ConfigError, match=r"ae-hlf.*no embedding space 'pooled'"):
        train("nae", qcd_ds, tmp_path / "d", config=_cfg(embedding_run=str(ae), embedding_space="pooled"),
              progress=False)
    gmm = train("gmm", qcd_ds, tmp_path / "gmm", config={"threads": 1}, progress=False)
    with pytest.raises(ConfigError, match=r"method 'gmm'.*has no embed"):
        train("nae", qcd_ds, tmp_path / "e", config=_cfg(embedding_run=str(gmm)), progress=False)


def test_a_run_that_ends_within_pretraining_says_so(qcd_ds, tmp_path, caplog):
    """Epochs <= model.pretrain_epochs: val_emd is nan throughout, no epoch is selected; training says so."""
    run = train("nae", qcd_ds, tmp_path / "nae", config=_cfg(), epochs=1, progress=False)
    assert json.loads((run / "run.json").read_text())["best_epoch"] is None
    assert "none was selected" in caplog.text and "--resume --epochs N" in caplog.text
