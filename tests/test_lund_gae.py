"""lund-gae: the energy-based graph autoencoder on Lund-plane graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from darkshower.models.base import StepContext
from darkshower.models.lund_gae import LundGAEConfig, LundGraphEBAE, graph_structure
from darkshower.represent.build import build
from darkshower.represent.store import store_from_rep, take, to_torch
from darkshower.train import load_run, train

#: small and quick: few Langevin steps, NAE phase from the second epoch
SMALL = {"hidden": 16, "layers": 2, "latent": 4, "pretrain_epochs": 1, "latent_steps": 3, "x_steps": 3}
FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}, "emd_samples": 64,
        "optimizer": {"lr": 1e-2}, "model": SMALL}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def qcd_store(qcd_ds):
    torch.set_num_threads(1)
    return store_from_rep(build({"kind": "lund"}, qcd_ds.arrays()), 0.0)


def _model(store, **kw):
    torch.manual_seed(0)
    m = LundGraphEBAE(LundGAEConfig(**{**SMALL, **kw}), {"kind": "lund", "n_features": 5})
    m.prepare(store)
    return m


def test_tree_structure_is_vectorized_and_exact():
    # graph 0: 0 -> (1, 4), 1 -> (2, 3); graph 1: empty; graph 2: chain 5 -> 6 -> 7
    edge_index = torch.tensor([[0, 1, 1, 0, 5, 6], [1, 2, 3, 4, 6, 7]])
    batch = torch.tensor([0, 0, 0, 0, 0, 2, 2, 2])
    counts = torch.tensor([5, 0, 3])
    st = graph_structure(edge_index, batch, counts)
    depth = st["pos"][:, 0] * 8
    level = st["pos"][:, 1] * 2
    assert depth.tolist() == [0, 1, 2, 2, 1, 0, 1, 2]
    assert level.tolist() == [0, 0, 0, 1, 1, 0, 0, 0]  # the later child of a node is the softer branch
    assert (st["pos"][:, 2] * 2).tolist() == [2, 2, 0, 0, 0, 1, 1, 0]
    assert st["parent"].tolist() == [0, 0, 1, 1, 0, 5, 5, 6]
    # undirected edges give the same structure
    und = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    st2 = graph_structure(und, batch, counts)
    assert torch.equal(st["pos"], st2["pos"])


def test_loss_decreases_and_nae_phase_runs(qcd_store):
    m = _model(qcd_store)
    b = to_torch(take(qcd_store, np.arange(128)))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for step in range(25):
        loss, logs = m.loss(b, StepContext(0, step, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    # NAE phase: negatives from Langevin sampling; the parameters get gradients, finite loss
    loss, logs = m.loss(b, StepContext(1, 25, 2))
    assert torch.isfinite(loss) and {"e_data", "e_neg"} <= set(logs)
    opt.zero_grad()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_empty_and_single_node_graphs(qcd_store):
    m = _model(qcd_store).eval()
    # a batch of: empty graph, 1-node graph, empty graph, a real jet
    real = take(qcd_store, np.array([0]))["graphs"]
    x = torch.cat([torch.tensor([[0.5, -1.0, -2.0, 2.0, 0.3]]), torch.from_numpy(real.x)])
    edge_index = torch.from_numpy(real.edge_index) + 1
    counts = torch.tensor([0, 1, 0, int(real.node_counts[0])])
    batch = torch.repeat_interleave(torch.arange(4), counts)
    with torch.no_grad():
        s = m.score({"x": x, "edge_index": edge_index, "batch": batch, "node_counts": counts})
    assert s.shape == (4,) and torch.isfinite(s).all()
    assert s[0] == s[2]  # every empty graph has the energy of the empty tree
    # a batch made only of empty graphs
    with torch.no_grad():
        e = m.score({"x": torch.zeros(0, 5), "edge_index": torch.zeros(2, 0, dtype=torch.long),
                     "batch": torch.zeros(0, dtype=torch.long), "node_counts": torch.zeros(3, dtype=torch.long)})
    assert e.shape == (3,) and torch.isfinite(e).all() and torch.allclose(e, s[0].expand(3))
    # sampling and the NAE loss accept empty graphs too
    b = {"x": x, "edge_index": edge_index, "batch": batch, "node_counts": counts}
    loss, _ = m.loss(b, StepContext(5, 0, 6))
    assert torch.isfinite(loss)


def test_anomalous_toy_scores_higher_and_cli_run(qcd_ds, tmp_path):
    run = train("lund-gae", qcd_ds, tmp_path / "run", config={**FAST, "model": {**SMALL, "pretrain_epochs": 5}},
                epochs=6, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["selection"] == "val_emd" and info["status"] == "complete"
    hist = json.loads((run / "metrics.json").read_text())
    assert all(np.isfinite(r["val_emd"]) for r in hist) and "train_e_neg" in hist[-1]
    assert hist[4]["train_loss"] < hist[0]["train_loss"]  # reconstruction phase learns
    method, rep, _, _ = load_run(run)
    store = store_from_rep(build(rep, qcd_ds.arrays()), 0.0)
    b = to_torch(store)
    with torch.no_grad():
        normal = method.score(b)
        weird = dict(b)
        weird["x"] = b["x"].clone()
        weird["x"][:, 0] += 2.5  # every emission 12x harder in kT ...
        weird["x"][:, 2] += 1.5  # ... and more symmetric in z
        anomalous = method.score(weird)
    assert anomalous.median() > 1.5 * normal.median()
    assert (anomalous > normal).float().mean() > 0.9


def test_resume_reproduces_uninterrupted_run(qcd_ds, tmp_path):
    cfg = {**FAST, "data": {"max_train": 128}}
    a = train("lund-gae", qcd_ds, tmp_path / "a", config=cfg, epochs=3, seed=3, progress=False)
    c = train("lund-gae", qcd_ds, tmp_path / "c", config=cfg, epochs=2, seed=3, progress=False)
    train("lund-gae", qcd_ds, c, epochs=3, resume=True, progress=False)
    assert _states_equal(torch.load(a / "model_last.pt")["model"], torch.load(c / "model_last.pt")["model"])
    ha = json.loads((a / "metrics.json").read_text())
    hc = json.loads((c / "metrics.json").read_text())
    assert [r["val_emd"] for r in ha] == [r["val_emd"] for r in hc]


def test_export_traces_and_matches(qcd_store):
    m = _model(qcd_store).eval()
    module, inputs = m.export()
    with torch.no_grad():
        traced = torch.jit.trace(module, inputs, check_trace=False)
        # real jets: other numbers of graphs and nodes than the example the trace was made with
        for rows in (np.arange(7), np.arange(20, 24)):
            b = to_torch(take(qcd_store, rows))
            assert b["x"].shape[0] != inputs[0].shape[0] and len(b["node_counts"]) != len(inputs[3])
            torch.testing.assert_close(traced(b["x"], b["edge_index"], b["batch"], b["node_counts"]), m.score(b))


def test_bad_config_and_representation(qcd_ds, tmp_path):
    from darkshower.errors import ConfigError

    with pytest.raises(ConfigError, match=r"representation.kind 'lund'"):
        train("lund-gae", qcd_ds, tmp_path / "r", config={"representation": {"kind": "image"}}, progress=False)
    with pytest.raises(ConfigError, match="feature_weights"):
        LundGraphEBAE(LundGAEConfig(feature_weights=[1, 1]), {"kind": "lund", "n_features": 5})
    with pytest.raises(ConfigError, match="latnt"):
        train("lund-gae", qcd_ds, tmp_path / "r2", config={"model": {"latnt": 3}}, progress=False)
