"""Image autoencoders: ``suep-ae`` (inverse Dice loss on event images) and ``codae`` (dual encoder)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from darkshower.cli.main import main
from darkshower.errors import ConfigError
from darkshower.models.codae import CoDAEConfig, DualEncoderAutoencoder
from darkshower.models.image_blocks import dice_coefficient, inverse_dice_loss, reconstruction_loss
from darkshower.models.suep import SUEPAutoencoder, SUEPConfig
from darkshower.train import load_run, score, train

SMALL_EVENT = {"kind": "event_image", "n_eta": 16, "n_phi": 16}
FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}, "optimizer": {"lr": 3e-3}}
SUEP_CFG = {**FAST, "representation": SMALL_EVENT, "model": {"channels": [8, 16], "latent": 16}}
CODAE_CFG = {**FAST, "representation": {"kind": "image", "n_pixels": 16},
             "model": {"channels": [8, 16], "cond_channels": [4, 8], "latent": 16}}
CFG = {"suep-ae": SUEP_CFG, "codae": CODAE_CFG}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the Dice loss ------------------------------------------------------------------------------
def test_dice_loss_matches_hand_computation():
    x = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]], [[[0.0, 1.0], [1.0, 0.0]]]])  # [2, 1, 2, 2]
    y = torch.tensor([[[[1.0, 0.0], [1.0, 2.0]]], [[[0.0, 1.0], [1.0, 0.0]]]])
    # sample 0: sum x*y = 1 + 6 = 7, sum x^2 = 14, sum y^2 = 6 -> D = 14 / 20 = 0.7, 1/D - 1 = 3/7
    # sample 1: identical images -> D = 1, 1/D - 1 = 0
    torch.testing.assert_close(dice_coefficient(x, y, smooth=0.0), torch.tensor([0.7, 1.0]))
    torch.testing.assert_close(inverse_dice_loss(x, y, smooth=0.0), torch.tensor([3 / 7, 0.0]))
    torch.testing.assert_close(reconstruction_loss(x, y, "dice", 0.0), torch.tensor([0.3, 0.0]))
    torch.testing.assert_close(reconstruction_loss(x, y, "mse", 0.0), torch.tensor([(0 + 4 + 1 + 1) / 4, 0.0]))
    # the smoothing term s enters numerator and denominator: (20 + s) / (14 + s) - 1
    s = 1.0
    torch.testing.assert_close(inverse_dice_loss(x, y, smooth=s)[0], torch.tensor(21 / 15 - 1))
    # disjoint images: D = s / (sum x^2 + sum y^2 + s), finite thanks to s
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    torch.testing.assert_close(inverse_dice_loss(a, b, smooth=1e-3), torch.tensor([5.001 / 1e-3 - 1]))


def test_dice_loss_is_vectorized_per_sample():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 3, 4, 6, generator=g), torch.rand(5, 3, 4, 6, generator=g)
    batch = inverse_dice_loss(x, y)
    one_by_one = torch.stack([inverse_dice_loss(x[i:i + 1], y[i:i + 1])[0] for i in range(5)])
    torch.testing.assert_close(batch, one_by_one)
    by_formula = torch.stack([((a ** 2).sum() + (b ** 2).sum() + 1e-6) / (2 * (a * b).sum() + 1e-6) - 1
                              for a, b in zip(x, y)])
    torch.testing.assert_close(batch, by_formula)


# -- architecture -------------------------------------------------------------------------------
def test_suep_padding_cropping_and_phi_periodicity():
    torch.manual_seed(0)
    m = SUEPAutoencoder(SUEPConfig(channels=[4, 8], latent=4, spatial_latent=True), {"shape": [3, 13, 16]})
    x = torch.rand(3, 3, 13, 16) * (torch.rand(3, 3, 13, 16) < 0.2)
    assert m.reconstruct(x).shape == x.shape  # eta 13 padded to 16 and cropped back
    # a fully convolutional net with circular phi padding commutes with phi rotations by the
    # total stride (4 pixels): the score of a rotated event is the same
    with torch.no_grad():
        s0, s1 = m.score({"x": x}), m.score({"x": torch.roll(x, 4, dims=-1)})
        torch.testing.assert_close(s0, s1, rtol=1e-4, atol=1e-5)
        assert torch.allclose(torch.roll(m.reconstruct(x), 4, dims=-1), m.reconstruct(torch.roll(x, 4, dims=-1)),
                              atol=1e-5)
    # without circular padding the two ends of phi are not neighbours
    m2 = SUEPAutoencoder(SUEPConfig(channels=[4, 8], latent=4, spatial_latent=True, periodic_phi=False),
                         {"shape": [3, 13, 16]})
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert not torch.allclose(m2.score({"x": x}), m2.score({"x": torch.roll(x, 4, dims=-1)}), rtol=1e-4)
    with pytest.raises(ConfigError, match=r"representation.n_phi"):
        SUEPAutoencoder(SUEPConfig(channels=[4, 8]), {"shape": [3, 16, 18]})


def test_codae_decoder_is_conditioned_at_every_resolution():
    torch.manual_seed(0)
    for mode in ("scale", "concat"):
        m = DualEncoderAutoencoder(CoDAEConfig(channels=[4, 8, 8], cond_channels=[4], latent=8, conditioning=mode),
                                   {"kind": "image", "shape": [1, 12, 12]})
        assert len(m.decoder.conds) == 3
        x = torch.rand(2, 1, 12, 12)
        z, zm = m.encode(x)
        assert zm.shape == (2, 2)
        with torch.no_grad():
            y0, y1 = m.decoder(z, zm), m.decoder(z, zm + 1.0)
        assert y0.shape == (2, 1, 16, 16) and not torch.allclose(y0, y1)  # padded to 2^3
        assert m.reconstruct(x).shape == x.shape


def _jet_toys(n: int, g: torch.Generator, anomalous: bool = False) -> torch.Tensor:
    """pT-normalized 16x16 'jet images': one central core of random width, or (anomalous) two
    cores far apart in the corners."""
    i = torch.arange(16.0)
    yy, xx = torch.meshgrid(i, i, indexing="ij")
    if anomalous:
        a = torch.exp(-((yy - 2) ** 2 + (xx - 2) ** 2) / 2.0)
        b = torch.exp(-((yy - 13) ** 2 + (xx - 12) ** 2) / 2.0)
        img = (a + b)[None].expand(n, -1, -1)
    else:
        w = 1.0 + torch.rand(n, 1, 1, generator=g)
        cy, cx = 7.5 + 0.5 * torch.randn(n, 1, 1, generator=g), 7.5 + 0.5 * torch.randn(n, 1, 1, generator=g)
        img = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w ** 2))
    img = img * (1 + 0.2 * torch.rand(img.shape, generator=g))
    return (img / img.sum((1, 2), keepdim=True))[:, None]


def test_codae_steps_reduce_loss_and_anomalous_toy_scores_higher():
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)
    m = DualEncoderAutoencoder(CoDAEConfig(channels=[8, 16], cond_channels=[4, 8], latent=8),
                               {"kind": "image", "shape": [1, 16, 16]})
    train_x = _jet_toys(512, g)
    m.prepare({"x": train_x.numpy()})
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    fixed = {"x": train_x[:64]}
    with torch.no_grad():
        before = m.loss(fixed, None)[0].item()
    for step in range(80):
        b = {"x": train_x[(step * 64) % 512:(step * 64) % 512 + 64]}
        loss, _ = m.loss(b, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert m.loss(fixed, None)[0].item() < 0.5 * before
        normal = m.score({"x": _jet_toys(200, g)})
        weird = m.score({"x": _jet_toys(200, g, anomalous=True)})
    assert weird.median() > 3 * normal.median()


# -- with the trainer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def suep_run(qcd_ds, tmp_path_factory):
    return train("suep-ae", qcd_ds, tmp_path_factory.mktemp("suep") / "run", config={**SUEP_CFG, "batch_size": 16},
                 epochs=15, seed=1, progress=False)


def test_suep_trains_and_scores_events(suep_run, qcd_ds, tmp_path):
    hist = json.loads((suep_run / "metrics.json").read_text())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    info = json.loads((suep_run / "run.json").read_text())
    assert info["level"] == "event" and info["spec"]["shape"] == [3, 16, 16]
    # the generated QCD has no `particles` collection: the run records that its images hold the jet constituents
    assert load_run(suep_run)[1].collection == "jets"
    jets, events = score(suep_run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    df = pd.read_parquet(jets)
    assert (df.jet_idx == -1).all() and df.event_id.is_unique
    assert np.isfinite(df.score).all() and (df.score >= 0).all()
    ev = pd.read_parquet(events)
    assert len(ev) == len(df) and np.allclose(ev.score_lead, ev.score_max2)


def test_suep_diffuse_toy_scores_higher_than_qcd(suep_run, qcd_ds):
    """Trained on QCD event images (a few hard jets), a SUEP-like diffuse spray of soft deposits
    over the whole detector is reconstructed badly."""
    method, rep, *_ = load_run(suep_run)
    from darkshower.represent.build import build

    x = torch.from_numpy(build(rep, qcd_ds.arrays())["sparse"].dense())
    g = torch.Generator().manual_seed(0)
    n = 100
    spray = torch.zeros(n, *x.shape[1:])
    occupied = torch.rand(n, 2, *x.shape[2:], generator=g) < 0.5
    spray[:, :2] = occupied * torch.rand(n, 2, *x.shape[2:], generator=g) * 2.0  # ~1 GeV tracks + photons
    with torch.no_grad():
        normal, weird = method.score({"x": x}), method.score({"x": spray})
    assert weird.median() > 2 * normal.median()


# deterministic autoencoders: the trainer's exact resume is test_train.py::test_same_seed_same_model_and_resume_is_exact
@pytest.mark.slow
@pytest.mark.parametrize("method", ["suep-ae", "codae"])
def test_resume_reproduces_uninterrupted_run(method, qcd_ds, tmp_path):
    a = train(method, qcd_ds, tmp_path / "a", config=CFG[method], epochs=2, seed=4, progress=False)
    b = train(method, qcd_ds, tmp_path / "b", config=CFG[method], epochs=1, seed=4, progress=False)
    train(method, qcd_ds, b, epochs=2, resume=True, progress=False)
    assert _states_equal(torch.load(a / "model_last.pt")["model"], torch.load(b / "model_last.pt")["model"])
    ha, hb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]


def test_cli_train_and_score(qcd_ds, svj_ds, tmp_path, capsys):
    run = tmp_path / "codae"
    rc = main(["train", "codae", "--data", str(qcd_ds.path), "--out", str(run), "--epochs", "2",
               "--set", "representation.n_pixels=16", "--set", "model.channels=[8,16]", "--set", "batch_size=32",
               "--threads", "1", "--no-progress"])
    assert rc == 0 and "trained codae" in capsys.readouterr().out
    out = tmp_path / "codae.parquet"
    assert main(["score", str(run), str(qcd_ds.path), str(svj_ds.path), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out)
    assert df.dataset.nunique() == 2 and (df.jet_idx >= 0).all() and np.isfinite(df.score).all()

    run = tmp_path / "suep"
    rc = main(["train", "suep-ae", "--data", str(qcd_ds.path), "--out", str(run), "--epochs", "1",
               "--set", "representation.n_eta=16", "--set", "representation.n_phi=16", "--set", "batch_size=32",
               "--threads", "1", "--no-progress"])
    assert rc == 0 and "trained suep-ae" in capsys.readouterr().out
    out = tmp_path / "suep.parquet"
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(out), "--no-progress"]) == 0
    assert (pd.read_parquet(out).jet_idx == -1).all()
    # a bad phi size for the circular padding: one clear error naming the field
    rc = main(["train", "suep-ae", "--data", str(qcd_ds.path), "--out", str(tmp_path / "bad"), "--epochs", "1",
               "--set", "representation.n_phi=18", "--no-progress"])
    assert rc != 0 and "representation.n_phi" in capsys.readouterr().err


def test_errors(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match=r"needs representation.kind 'event_image'"):
        train("suep-ae", qcd_ds, tmp_path / "a", config={"representation": {"kind": "image"}}, progress=False)
    with pytest.raises(ConfigError, match=r"codae needs representation.kind 'image'"):
        train("codae", qcd_ds, tmp_path / "b", config={"representation": {"kind": "observables"}}, progress=False)
    with pytest.raises(ConfigError, match="los"):
        train("suep-ae", qcd_ds, tmp_path / "c", config={"model": {"los": "mse"}}, progress=False)
    with pytest.raises(ConfigError, match="loss"):
        train("suep-ae", qcd_ds, tmp_path / "d", config={"model": {"loss": "l1"}}, progress=False)


@pytest.mark.parametrize("method", ["suep-ae", "codae"])
def test_export(method, tmp_path):
    """The ONNX graph, exported in eval mode by the torch.export-based exporter with a dynamic batch, gives
    the method's score on images of another batch size; a corrupted graph is caught by the same comparison."""
    import onnx

    from conftest import assert_onnx_matches_torch, onnx_scores

    torch.manual_seed(0)
    if method == "suep-ae":
        m = SUEPAutoencoder(SUEPConfig(channels=[4, 8], latent=4), {"kind": "event_image", "shape": [3, 14, 16]})
    else:
        m = DualEncoderAutoencoder(CoDAEConfig(channels=[4, 8], cond_channels=[4], latent=4),
                                   {"kind": "image", "shape": [1, 16, 16]})
    _, inputs = m.export()
    other = {"x": torch.rand(5, *inputs[0].shape[1:], generator=torch.Generator().manual_seed(1))}
    path = tmp_path / "m.onnx"
    info = assert_onnx_matches_torch(m, other, path)
    assert info["exporter"] == "dynamo" and info["inputs"] == ["x"]
    # the comparison can fail: scale the graph's weights (initializers named after the torch parameters)
    model = onnx.load(str(path))
    weights = [t for t in model.graph.initializer if t.name.startswith("method.")]
    assert weights
    for t in weights:
        t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) * 1.5, t.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with torch.no_grad():
        want = m.score(other).numpy()
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(onnx_scores(tmp_path / "bad.onnx", other), want, rtol=1e-3, atol=1e-4)
