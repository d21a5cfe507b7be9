"""The shared training framework (trainer, run directories, scoring) with the plain autoencoders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_file
from darkshower.cli.main import main
from darkshower.errors import ConfigError, DarkshowerError
from darkshower.train import RunError, TrainingError, load_run, score, train
from darkshower.train.data import event_fraction

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["ae-hlf", "ae-image"])
def test_loss_decreases_and_scores(method, qcd_ds, tmp_path):
    run = train(method, qcd_ds, tmp_path / "run", config={**FAST, "optimizer": {"lr": 3e-3}}, epochs=6,
                progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert len(hist) == 6
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["n_train"] > 0 and info["n_val"] > 0
    assert (run / "config.yaml").exists() and (run / "metrics.csv").exists()
    jets, events = score(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    df = pd.read_parquet(jets)
    assert {"dataset", "event_id", "jet_idx", "score"} <= set(df.columns)
    assert np.isfinite(df.score).all() and (df.score >= 0).all()
    ev = pd.read_parquet(events)
    assert len(ev) == df.event_id.nunique()
    assert (ev.score_max2 >= ev.score_lead - 1e-12).all()


def test_epoch_log_names_the_run(qcd_ds, tmp_path, caplog):
    """Runs trained side by side (train auto's members, a benchmark) say which run an epoch line is from."""
    import logging

    with caplog.at_level(logging.INFO, logger="darkshower"):
        train("ae-hlf", qcd_ds, tmp_path / "event-flow", config=FAST, epochs=1, progress=False)
        train("ae-hlf", qcd_ds, tmp_path / "ae-hlf", config=FAST, epochs=1, progress=False)
    lines = [r.getMessage() for r in caplog.records if " epoch 1/1" in r.getMessage()]
    assert any(m.startswith("ae-hlf (event-flow) epoch 1/1") for m in lines), lines
    assert any(m.startswith("ae-hlf epoch 1/1") for m in lines), lines  # the run named as its method: once


def test_anomalous_toy_scores_higher(qcd_ds, tmp_path):
    """Inputs far outside the training distribution get larger reconstruction errors."""
    run = train("ae-hlf", qcd_ds, tmp_path / "run", config=FAST, epochs=8, progress=False)
    method, rep, cfg, info = load_run(run)
    from darkshower.represent.build import build

    x = build(rep, qcd_ds.arrays())["x"]
    normal = method.score({"x": torch.from_numpy(x)})
    weird = x.copy()
    names = rep.columns
    weird[:, names.index("tau21")] = 0.02  # extremely 2-prong ...
    weird[:, names.index("n_constituents")] = 3  # ... with almost no constituents ...
    weird[:, names.index("mass")] = 600.0  # ... and a huge mass
    anomalous = method.score({"x": torch.from_numpy(weird)})
    assert anomalous.median() > 3 * normal.median()


def test_same_seed_same_model_and_resume_is_exact(qcd_ds, tmp_path):
    a = train("ae-hlf", qcd_ds, tmp_path / "a", config=FAST, epochs=3, seed=5, progress=False)
    b = train("ae-hlf", qcd_ds, tmp_path / "b", config=FAST, epochs=3, seed=5, progress=False)
    sa = torch.load(a / "model_last.pt")["model"]
    assert _states_equal(sa, torch.load(b / "model_last.pt")["model"])
    # interrupted after 1 epoch, then resumed to 3
    c = train("ae-hlf", qcd_ds, tmp_path / "c", config=FAST, epochs=1, seed=5, progress=False)
    train("ae-hlf", qcd_ds, c, epochs=3, resume=True, progress=False)
    assert _states_equal(sa, torch.load(c / "model_last.pt")["model"])
    ha = json.loads((a / "metrics.json").read_text())
    hc = json.loads((c / "metrics.json").read_text())
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hc]
    d = train("ae-hlf", qcd_ds, tmp_path / "d", config=FAST, epochs=3, seed=6, progress=False)
    assert not _states_equal(sa, torch.load(d / "model_last.pt")["model"])


def test_validation_split_is_by_event():
    ids = np.repeat(np.arange(1000, dtype=np.int64), 2)  # two jets per event
    u = event_fraction(ids, seed=3)
    assert np.all(u[::2] == u[1::2])
    assert 0.15 < np.mean(u[::2] < 0.2) < 0.25
    assert not np.array_equal(u, event_fraction(ids, seed=4))


def test_early_stopping_and_best_model(qcd_ds, tmp_path):
    run = train("ae-hlf", qcd_ds, tmp_path / "r", config={**FAST, "early_stopping": {"patience": 1},
                                                           "optimizer": {"lr": 0.3}}, epochs=30, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert len(hist) < 30  # stopped early
    best = min(hist, key=lambda r: r["selection_value"])
    assert info["best_epoch"] == best["epoch"]
    assert torch.load(run / "model_best.pt")["epoch"] == best["epoch"]


def test_errors(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match="latnt"):
        train("ae-hlf", qcd_ds, tmp_path / "a", config={"model": {"latnt": 3}}, progress=False)
    with pytest.raises(ConfigError, match="unknown method"):
        train("no-such", qcd_ds, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match=r"needs representation.kind 'image'"):
        train("ae-image", qcd_ds, tmp_path / "a", config={"representation": {"kind": "observables"}}, progress=False)
    with pytest.raises(RunError, match="nothing to resume"):
        train("ae-hlf", qcd_ds, tmp_path / "b", resume=True, progress=False)
    run = train("ae-hlf", qcd_ds, tmp_path / "c", config=FAST, epochs=1, progress=False)
    with pytest.raises(RunError, match="already exists"):
        train("ae-hlf", qcd_ds, run, config=FAST, epochs=1, progress=False)
    # corrupt checkpoint on --resume
    (run / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(RunError, match="corrupt"):
        train("ae-hlf", qcd_ds, run, epochs=2, resume=True, progress=False)
    # a run from an incompatible format version
    info = json.loads((run / "run.json").read_text())
    info["format_version"] = "9.0"
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match=r"format version 9.0"):
        score(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    with pytest.raises(RunError, match="not a training run"):
        load_run(tmp_path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(qcd_ds, tmp_path, monkeypatch):
    run = train("ae-hlf", qcd_ds, tmp_path / "r", config=FAST, epochs=1, progress=False)
    from darkshower.models.ae import HLFAutoencoder

    monkeypatch.setattr(HLFAutoencoder, "loss", lambda self, b, ctx: (torch.tensor(float("nan"), requires_grad=True), {}))
    with pytest.raises(TrainingError, match=r"loss became nan.*last good checkpoint"):
        train("ae-hlf", qcd_ds, run, epochs=3, resume=True, progress=False)
    monkeypatch.undo()
    method, *_ = load_run(run)  # still loadable
    assert json.loads((run / "run.json").read_text())["status"].startswith("failed")
    assert torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == 0


def test_dataset_without_inputs(tmp_path):
    """A dataset without constituents (TreeMaker ntuple) cannot feed jet images: one clear error."""
    src = shared_file("cms_pfnano", "treemaker_svj_search.root")
    from darkshower.io import import_dataset

    ds = import_dataset("treemaker", [src], tmp_path / "tm")
    with pytest.raises(DarkshowerError, match=r"no constituents.*cannot be built"):
        train("ae-image", ds, tmp_path / "r", config=FAST, epochs=1, progress=False)


def test_cli_train_score(qcd_ds, svj_ds, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "ae-hlf", "--data", str(qcd_ds.path), "--out", str(run), "--epochs", "2", "--seed", "3",
               "--set", "batch_size=32", "--set", "model.latent=4", "--threads", "1", "--no-progress"])
    assert rc == 0 and "trained ae-hlf" in capsys.readouterr().out
    rc = main(["train", "ae-hlf", "--data", str(qcd_ds.path), "--out", str(run), "--epochs", "3", "--resume", "--no-progress"])
    assert rc == 0
    assert len(json.loads((run / "metrics.json").read_text())) == 3
    out = tmp_path / "scores.parquet"
    assert main(["score", str(run), str(qcd_ds.path), str(svj_ds.path), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out)
    assert df.dataset.nunique() == 2
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(out).metadata[b"darkshower"])
    assert meta["method"] == "ae-hlf"
    assert main(["train", "ae-hlf", "--data", str(qcd_ds.path), "--out", str(tmp_path / "x"), "--set", "epochs=-1"]) == 2
    assert "epochs" in capsys.readouterr().err
    shutil.rmtree(run / "cache")  # the cache is optional
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(out), "--no-progress"]) == 0
