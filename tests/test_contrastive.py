"""Contrastive methods (clr, aclr, rs3l), their augmentations and encoder, and the supervised
references (sup-transformer, sup-bdt)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from darkshower.cli.main import main
from darkshower.errors import ConfigError, DarkshowerError, DatasetError
from darkshower.models.contrastive import in_batch_pairs, nt_xent
from darkshower.models.transformer import CloudInput, EncoderConfig, TransformerEncoder
from darkshower.represent import augment as A
from darkshower.represent.build import build
from darkshower.represent.config import parse_representation
from darkshower.represent.constituents import feature_names
from darkshower.represent.toys import toy_events
from darkshower.train import load_run, score, train

TINY = {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "head": [16], "output": 16, "bank_size": 256}
FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None},
        "representation": {"n_constituents": 30}, "optimizer": {"lr": 3e-3}}
REP = parse_representation({"kind": "constituents", "n_constituents": 40, "standardize": False, "max_jets": 2})


def _clouds(n_events=40, n_prongs=1, seed=0, n_constituents=(10, 30)):
    r = build(REP, toy_events(n_events, n_prongs=n_prongs, seed=seed, n_constituents=n_constituents))
    names = feature_names(r["x"].shape[-1] == len(feature_names(True)))
    return torch.from_numpy(r["x"]), torch.from_numpy(r["mask"]), A.Features(names)


def _rel(a, b):
    return ((a - b) / b).abs()


# -- augmentations ------------------------------------------------------------------------------------
def test_physical_augmentations_conserve_jet_pt_and_mass():
    torch.manual_seed(0)
    x, m, f = _clouds()
    pt0, m0 = A.jet_pt_mass(x, m, f)
    s0 = A.scalar_pt(x, m, f)
    cases = {
        "rotate": A.rotate(x, m, f),
        "translate": A.translate(x, m, f, 0.3),
        "permute": A.permute(x, m),
        "collinear": A.collinear_split(x, m, f, 0.5),
    }
    for name, (y, my) in cases.items():
        pt, mass = A.jet_pt_mass(y, my, f)
        assert _rel(pt, pt0).max() < 1e-3, name
        assert _rel(mass, m0).max() < 2e-3, name
        assert (y[~my] == 0).all(), f"{name}: padding must stay zero"
    # they do change the cloud
    y, _ = cases["rotate"]
    assert (y[..., f.idx["deta"]] - x[..., f.idx["deta"]]).abs().max() > 0.01
    # split: more constituents, same scalar pT; permutation and rotation keep the multiplicity
    assert (cases["collinear"][1].sum(1) > m.sum(1)).float().mean() > 0.5
    assert _rel(A.scalar_pt(*cases["collinear"], f), s0).max() < 1e-4
    assert torch.equal(cases["permute"][1].sum(1), m.sum(1))
    # dr stays consistent with the moved angles
    y, my = cases["rotate"]
    assert torch.allclose(y[..., f.idx["dr"]], torch.hypot(y[..., f.idx["deta"]], y[..., f.idx["dphi"]]) * my, atol=1e-5)


def test_soft_augmentations_change_little_and_anomalous_change_a_lot():
    torch.manual_seed(1)
    x, m, f = _clouds(n_prongs=2, n_constituents=(30, 40))
    pt0, m0 = A.jet_pt_mass(x, m, f)
    s0 = A.scalar_pt(x, m, f)
    ys, ms = A.smear(x, m, f, 0.1)
    assert 0 < _rel(A.jet_pt_mass(ys, ms, f)[1], m0).median() < 0.05
    yd, md = A.drop_soft(x, m, f, 1.0, 2.0)
    assert (md.sum(1) <= m.sum(1)).all() and (md.sum(1) < m.sum(1)).any()
    assert _rel(A.scalar_pt(yd, md, f), s0).median() < 0.05
    # anomalous: at fixed scalar pT sum, many fewer constituents / pT moved between prongs
    ya, ma = A.drop_fraction(x, m, f, 0.5, 0.8)
    assert _rel(A.scalar_pt(ya, ma, f), s0).max() < 1e-4
    assert (ma.sum(1).float() <= 0.6 * m.sum(1).float() + 1).all()
    yp, mp = A.shift_prongs(x, m, f, 0.4, 0.6)
    assert _rel(A.scalar_pt(yp, mp, f), s0).max() < 1e-4
    assert _rel(A.jet_pt_mass(yp, mp, f)[1], m0).median() > 0.05
    assert (yp[~mp] == 0).all() and (ya[~ma] == 0).all()


def test_augmentations_are_per_jet_not_batch_wide():
    x, m, f = _clouds()
    ang = torch.linspace(0, 3, len(x))
    full, _ = A.rotate(x, m, f, angle=ang)
    one, _ = A.rotate(x[3:4], m[3:4], f, angle=ang[3:4])
    assert torch.allclose(full[3:4], one, atol=1e-6)
    shift = torch.full((len(x), 2), 0.2)
    full, _ = A.translate(x, m, f, 0.0, shift=shift)
    one, _ = A.translate(x[5:6], m[5:6], f, 0.0, shift=shift[5:6])
    assert torch.allclose(full[5:6], one, atol=1e-6)


def test_augmentations_reproducible_with_generator():
    x, m, f = _clouds()
    cfg = A.AugmentConfig(translate=0.1)
    a = A.physical(x, m, f, cfg, torch.Generator().manual_seed(3))
    b = A.physical(x, m, f, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = A.physical(x, m, f, cfg, torch.Generator().manual_seed(4))  # the generator drives the draws
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], x)


# -- encoder -----------------------------------------------------------------------------------------
def _encoder(**kw):
    cfg = EncoderConfig(**{**TINY_ENC, **kw})
    torch.manual_seed(0)
    x, m, f = _clouds()
    inp = CloudInput(f.names, cfg)
    inp.fit(x.numpy(), m.numpy())
    enc = TransformerEncoder(inp.n_features, cfg).eval()
    return inp, enc, x, m, f


def _z(inp, enc, x, m):
    h, w = inp(x, m)
    return enc(h, m, w)[1]


TINY_ENC = {"d_model": 16, "heads": 2, "layers": 2, "ff": 32, "head": [16], "output": 8, "precision": "fp32"}


def test_encoder_is_permutation_invariant_and_ignores_padding():
    inp, enc, x, m, f = _encoder()
    z = _z(inp, enc, x, m)
    xp, mp = A.permute(x, m, torch.Generator().manual_seed(0))
    assert torch.allclose(z, _z(inp, enc, xp, mp), atol=1e-5)
    # more padding changes nothing
    xl = torch.cat([x, torch.zeros(x.shape[0], 7, x.shape[2])], 1)
    ml = torch.cat([m, torch.zeros(m.shape[0], 7, dtype=torch.bool)], 1)
    assert torch.allclose(z, _z(inp, enc, xl, ml), atol=1e-5)
    # packed (training) path = padded path
    enc.train()
    a = _z(inp, enc, x, m)
    enc.pack = False
    assert torch.allclose(a, _z(inp, enc, x, m), atol=1e-5)


def test_pt_weighted_angular_encoder_is_collinear_and_soft_safe():
    @torch.no_grad()
    def changes(**kw):
        """max |dz| from a collinear split, and from adding an (almost) zero-pT emission anywhere in the jet"""
        inp, enc, x, m, f = _encoder(features=["deta", "dphi", "dr", "charge"], **kw)
        z = _z(inp, enc, x, m)
        xs, ms = A.collinear_split(x, m, f, 0.5, torch.Generator().manual_seed(1))
        assert (ms.sum(1) > m.sum(1)).any()
        xe, me = x.clone(), m.clone()
        k = m.sum(1)
        rows = torch.arange(len(x))
        xe[rows, k, f.idx["deta"]] = 0.3
        xe[rows, k, f.idx["log_pt"]] = -30.0
        me[rows, k] = True
        return float((z - _z(inp, enc, xs, ms)).abs().max()), float((z - _z(inp, enc, xe, me)).abs().max())

    assert max(changes(pt_weighted_attention=True, pooling="pt")) < 1e-4
    # control: the same angular encoder with plain attention and mean pooling is neither
    assert min(changes(pt_weighted_attention=False, pooling="mean")) > 1e-2


# -- loss ----------------------------------------------------------------------------------------------
def test_nt_xent_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    za, zb, neg = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    t = 0.3

    def direct(extra):
        v = [u / u.norm() for u in torch.cat([za, zb])]
        n = [u / u.norm() for u in extra]
        P, total = len(za), 0.0
        for i in range(2 * P):
            pos = (i + P) % (2 * P)
            num = torch.exp(v[i] @ v[pos] / t)
            den = sum(torch.exp(v[i] @ v[k] / t) for k in range(2 * P) if k != i)
            den = den + sum(torch.exp(v[i] @ u / t) for u in n)
            total += -torch.log(num / den)
        return total / (2 * P)

    assert torch.allclose(nt_xent(za, zb, t), direct([]), atol=1e-5)
    assert torch.allclose(nt_xent(za, zb, t, neg), direct(neg), atol=1e-5)


def test_in_batch_pairs():
    rid = np.array([5, 7, 5, 9, 7, 5, 7, 7])
    jidx = np.array([0, 0, 0, 0, 0, 1, 0, 0])
    ia, ib = in_batch_pairs(rid, jidx)
    assert sorted(np.r_[ia, ib[ia != ib]].tolist()) == list(range(8))  # every row once
    for i, j in zip(ia, ib):
        assert rid[i] == rid[j] and jidx[i] == jidx[j]
    assert (ia != ib).sum() == 3  # (5,0)x2 -> 1 pair, 7 x4 -> 2 pairs; 9 and (5,1) alone


# -- training through the framework ------------------------------------------------------------------
# aclr's training (anomalous augmentations) is also run by test_resume_reproduces_uninterrupted_run
@pytest.mark.parametrize("method", ["clr", pytest.param("aclr", marks=pytest.mark.slow)])
def test_training_reduces_loss_and_scores(method, qcd_ds, tmp_path):
    run = train(method, qcd_ds, tmp_path / "run", config={**FAST, "model": TINY}, epochs=5, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.1
    m, rep, cfg, info = load_run(run)
    assert int(m.bank_n) > 0
    store = build(rep, qcd_ds.arrays())
    b = {"x": torch.from_numpy(store["x"]), "mask": torch.from_numpy(store["mask"])}
    with torch.no_grad():
        s = m.scores(b)
        assert s["norm"].shape == s["knn"].shape == (len(store["x"]),)
        assert torch.isfinite(s["knn"]).all() and (s["knn"] >= -1e-6).all()
        # kNN distance: jets far from anything in training are further from the bank
        weird = b["x"].clone()
        weird[..., 0] = weird[..., 0] * 8 + 0.5  # stretched and displaced in eta
        assert m.knn_distance(m.embed({"x": weird, "mask": b["mask"]})).median() > s["knn"].median()
        z = m.embed(b)
        assert z.shape == (len(store["x"]), TINY["output"])
    _check_export(m, b, tmp_path / "m.onnx")


def _check_export(m, b, path):
    """The ONNX graph (exported in eval mode) reproduces the method's score on real jets, at another batch size."""
    from conftest import assert_onnx_matches_torch

    assert_onnx_matches_torch(m, {"x": b["x"][:9], "mask": b["mask"][:9]}, path)


def test_resume_reproduces_uninterrupted_run(qcd_ds, tmp_path):
    cfg = {**FAST, "model": TINY}
    a = train("aclr", qcd_ds, tmp_path / "a", config=cfg, epochs=2, seed=4, progress=False)
    c = train("aclr", qcd_ds, tmp_path / "c", config=cfg, epochs=1, seed=4, progress=False)
    train("aclr", qcd_ds, c, epochs=2, resume=True, progress=False)
    sa, sc = torch.load(a / "model_last.pt")["model"], torch.load(c / "model_last.pt")["model"]
    assert sa.keys() == sc.keys() and all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture(scope="module")
def resim_ds(tmp_path_factory):
    from darkshower.simulate.run import generate

    out = tmp_path_factory.mktemp("data") / "qcd_resim"
    return generate({"process": "qcd", "events": 60, "seed": 21, "resimulate": 3, "params": {"pthat_min": 300}},
                    out, jobs=1, progress=False, command=["pytest"])


def test_rs3l_pairs_resimulated_jets(resim_ds, qcd_ds, tmp_path):
    run = train("rs3l", resim_ds, tmp_path / "run", config={**FAST, "model": TINY}, epochs=3, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[0]["train_resim_pair_fraction"] > 0.5  # most jets found a re-simulated partner
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    jets, _ = score(run, [resim_ds], tmp_path / "s.parquet", progress=False)
    assert np.isfinite(pd.read_parquet(jets).score).all()
    with pytest.raises(DatasetError, match="resimulate"):
        train("rs3l", qcd_ds, tmp_path / "bad", config={**FAST, "model": TINY}, epochs=1, progress=False)


def test_batch_order_keeps_groups_together():
    from darkshower.models.contrastive import RS3L

    rid = np.repeat(np.arange(50), 4)
    store = {"resim_id": rid, "jet_idx": np.tile([0, 1], 100)}
    order = RS3L.batch_order(None, store, 32, 0, 0)
    assert sorted(order.tolist()) == list(range(200))
    key = rid[order] * 2 + store["jet_idx"][order]
    assert (np.diff(key) != 0).sum() == 99  # 100 groups, each contiguous


# -- supervised references ---------------------------------------------------------------------------
def _sup_transformer(n=12, **cfg):
    from darkshower.config import validate
    from darkshower.models.supervised import SupervisedTransformer

    torch.manual_seed(0)
    x0, m0, f = _clouds(n, n_prongs=1, seed=1)
    x1, m1, _ = _clouds(n, n_prongs=3, seed=2)
    x, m = torch.cat([x0, x1]), torch.cat([m0, m1])
    y = torch.cat([torch.zeros(len(x0)), torch.ones(len(x1))])
    cfg = validate(SupervisedTransformer.Config,
                   {**{k: v for k, v in TINY.items() if k not in ("bank_size", "output")}, **cfg}, "t")
    return SupervisedTransformer(cfg, {"names": f.names, "n_constituents": x.shape[1]}), x, m, y


def test_sup_transformer_learns_and_needs_both_classes():
    from darkshower.models.base import StepContext

    model, x, m, y = _sup_transformer(16)
    with pytest.raises(ConfigError, match="both classes"):
        model.prepare({"x": x.numpy(), "mask": m.numpy(), "label": np.zeros(len(x))})
    bkg, sig = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    keep = np.r_[bkg[:20], sig[:5]]  # 20 background, 5 signal jets: the signal is weighted up 4x
    model.prepare({"x": x[keep].numpy(), "mask": m[keep].numpy(), "label": y[keep].numpy()})
    assert float(model.pos_weight) == 4.0
    b = {"x": x, "mask": m, "label": y}
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    losses = []
    for step in range(15):
        loss, _ = model.loss(b, StepContext(0, step, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.slow  # learning itself: test_sup_transformer_learns_and_needs_both_classes
def test_sup_transformer_beats_chance_on_easy_toy():
    from sklearn.metrics import roc_auc_score

    from darkshower.config import validate
    from darkshower.models.base import StepContext
    from darkshower.models.supervised import SupervisedTransformer

    torch.manual_seed(0)
    x0, m0, f = _clouds(120, n_prongs=1, seed=1)
    x1, m1, _ = _clouds(120, n_prongs=3, seed=2)
    x, m = torch.cat([x0, x1]), torch.cat([m0, m1])
    y = torch.cat([torch.zeros(len(x0)), torch.ones(len(x1))])
    perm = torch.randperm(len(x))
    x, m, y = x[perm], m[perm], y[perm]
    ntr = int(0.7 * len(x))
    cfg = validate(SupervisedTransformer.Config, {k: v for k, v in TINY.items() if k != "bank_size" and k != "output"},
                   "t")
    model = SupervisedTransformer(cfg, {"names": f.names, "n_constituents": x.shape[1]})
    model.prepare({"x": x[:ntr].numpy(), "mask": m[:ntr].numpy(), "label": y[:ntr].numpy()})
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for step in range(60):
        i = torch.randint(0, ntr, (64,))
        loss, _ = model.loss({"x": x[i], "mask": m[i], "label": y[i]}, StepContext(0, step, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        s = model.score({"x": x[ntr:], "mask": m[ntr:]})
    assert roc_auc_score(y[ntr:].numpy(), s.numpy()) > 0.8


# without the pair bias the encoder is clr's, exported by test_training_reduces_loss_and_scores[clr]
@pytest.mark.parametrize("pair_bias", [True,
                                       pytest.param(False, marks=pytest.mark.slow)])
def test_sup_transformer_export_matches_torch(pair_bias, tmp_path):
    model, x, m, y = _sup_transformer(pair_bias=pair_bias)
    model.prepare({"x": x.numpy(), "mask": m.numpy(), "label": y.numpy()})
    _check_export(model, {"x": x, "mask": m}, tmp_path / "m.onnx")


def test_cli_train_score_clr_and_sup_bdt(qcd_ds, svj_ds, tmp_path):
    from sklearn.metrics import roc_auc_score

    from darkshower.train.data import event_fraction

    run = tmp_path / "clr"
    assert main(["train", "clr", "--data", str(qcd_ds.path), "--out", str(run), "--epochs", "1", "--no-progress",
                 "--set", "threads=1", "--set", "batch_size=32", "--set", "model.d_model=16", "--set", "model.ff=32",
                 "--set", "model.layers=1", "--set", "model.output=8", "--set", "model.score=knn"]) == 0
    out = tmp_path / "clr.parquet"
    assert main(["score", str(run), str(qcd_ds.path), str(svj_ds.path), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out)
    assert np.isfinite(df.score).all() and df.dataset.nunique() == 2
    from darkshower.train.probe import linear_probe, probe_embeddings

    p = linear_probe(run, qcd_ds, svj_ds)
    assert 0 <= p["auc"] <= 1 and p["uses_labels"] and p["n_test"] > 10
    g = np.random.default_rng(0)
    easy = probe_embeddings(g.normal(0, 1, (200, 4)), g.normal(2, 1, (200, 4)), np.arange(200) % 2 == 0,
                            np.arange(200) % 2 == 0)
    assert easy["auc"] > 0.95

    bdt = tmp_path / "bdt"
    assert main(["train", "sup-bdt", "--data", str(qcd_ds.path), "--out", str(bdt), "--no-progress",
                 "--set", f"data.signal=[{svj_ds.path}]", "--set", "model.max_iter=50"]) == 0
    info = json.loads((bdt / "run.json").read_text())
    assert info["supervised"] and info["epochs_done"] == 1
    out = tmp_path / "bdt.parquet"
    assert main(["score", str(bdt), str(qcd_ds.path), str(svj_ds.path), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out)
    held = event_fraction(df.event_id.to_numpy(), 0) < 0.2  # the validation events: never trained on
    df = df[held & (df.jet_idx == 0)]
    y = df.dataset.str.endswith("svj").to_numpy()
    assert roc_auc_score(y, df.score) > 0.7
    # resume of a finished offline fit does nothing; the torch export reproduces sklearn
    assert main(["train", "sup-bdt", "--data", str(qcd_ds.path), "--out", str(bdt), "--resume", "--no-progress"]) == 0
    m, rep, cfg, _ = load_run(bdt)
    mod, ex = m.export()
    xs = torch.from_numpy(build(rep, svj_ds.arrays())["x"]).float()
    assert torch.allclose(mod(xs), m.score({"x": xs}), atol=1e-4)
    assert torch.jit.trace(mod, ex)(xs).shape == (len(xs),)


def test_bad_inputs_give_clear_errors(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match="constituents"):
        train("clr", qcd_ds, tmp_path / "a", config={**FAST, "representation": {"kind": "observables"}}, epochs=1,
              progress=False)
    with pytest.raises(ConfigError, match=r"data.signal"):
        train("sup-bdt", qcd_ds, tmp_path / "b", config=FAST, epochs=1, progress=False)
    with pytest.raises(ConfigError, match="kinds"):
        train("aclr", qcd_ds, tmp_path / "c", config={**FAST, "model": {"anomalous": {"kinds": ["nope"]}}}, epochs=1,
              progress=False)
    with pytest.raises(ConfigError, match="features"):
        train("clr", qcd_ds, tmp_path / "d", config={**FAST, "model": {"features": ["deta", "bogus"]}}, epochs=1,
              progress=False)
    with pytest.raises(DarkshowerError, match="divisible"):
        train("clr", qcd_ds, tmp_path / "e", config={**FAST, "model": {"d_model": 30, "heads": 4}}, epochs=1,
              progress=False)


def test_canonicalized_inputs_are_rotation_and_translation_invariant():
    @torch.no_grad()
    def change(**kw):
        inp, enc, x, m, f = _encoder(**kw)
        z = _z(inp, enc, x, m)
        xr, mr = A.rotate(x, m, f, angle=torch.full((len(x),), 2.0))
        xr, mr = A.translate(xr, mr, f, 0.0, shift=torch.full((len(x), 2), 0.1))
        return (torch.abs(_z(inp, enc, xr, mr) - z).max(1).values / z.abs().max(1).values).median()

    # rotation about the jet momentum ~ a rotation in the (deta, dphi) plane for narrow jets
    assert change(canonicalize="centre_rotate") < 0.02
    # controls: the same encoder without canonicalization, or only centred, sees the change
    assert change(canonicalize="none") > 0.2 and change(canonicalize="centre") > 0.1
