"""Distributed data-parallel training (torch.distributed, gloo on CPU) with 2 local ranks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from darkshower.errors import ConfigError
from darkshower.train import load_run, score, train
from darkshower.train.distributed import SINGLE, World, current_world
from darkshower.train.loop import TrainingData

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


def test_batches_are_sharded_in_whole_rounds():
    """Two ranks see disjoint batches that together are the single-process epoch, cut to whole rounds."""
    n = 330
    store = {"label": np.zeros(n, np.float32), "event_id": np.arange(n), "x": np.arange(n, dtype=np.float32)[:, None]}
    data = TrainingData(store, store)

    class M:
        def batch_order(self, *a):
            return None

    single = [b["event_id"].numpy() for b in data.train_batches(M(), 32, 7, 3)]
    r0 = [b["event_id"].numpy() for b in data.train_batches(M(), 32, 7, 3, World(0, 2))]
    r1 = [b["event_id"].numpy() for b in data.train_batches(M(), 32, 7, 3, World(1, 2))]
    assert len(single) == 10 and len(r0) == len(r1) == 5
    np.testing.assert_array_equal(np.concatenate(r0), np.concatenate(single[0::2]))
    np.testing.assert_array_equal(np.concatenate(r1), np.concatenate(single[1::2]))
    assert not set(np.concatenate(r0)) & set(np.concatenate(r1))
    v1 = np.concatenate([b["event_id"].numpy() for b in data.val_batches(100, World(1, 2))])
    np.testing.assert_array_equal(v1, np.arange(1, n, 2))
    assert len(data.val_batches(100)) == 4
    assert current_world() == SINGLE


@pytest.mark.parametrize("method,extra", [
    ("ae-hlf", {}),
    pytest.param("clr", {"model": {"d_model": 16, "heads": 2, "layers": 1, "output": 8}}, marks=pytest.mark.slow),
])
def test_two_rank_training_checkpoints_resumes_and_scores(method, extra, qcd_ds, tmp_path):
    run = train(method, qcd_ds, tmp_path / "run", config={**FAST, **extra}, epochs=1, seed=3, progress=False, nproc=2)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["world_size"] == 2 and info["epochs_done"] == 1
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    # resume continues the 2-rank run
    train(method, qcd_ds, run, epochs=2, resume=True, progress=False, nproc=2)
    hist = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in hist)
    assert np.isfinite(hist[-1]["selection_value"])
    m, *_ = load_run(run)
    jets, _ = score(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    s = pd.read_parquet(jets)["score"]
    assert len(s) > 0 and np.isfinite(s).all() and s.std() > 0


def test_two_ranks_equal_one_process_with_twice_the_batch(qcd_ds, tmp_path):
    """Rank r takes batches r, r+2, ... of the seeded epoch order and DDP averages the gradients, so
    2 ranks with batch B take the same steps as 1 process with batch 2B on the same samples (the loss
    is a per-sample mean): the weights agree to float precision."""
    cfg = {**FAST, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.0}}
    one = train("ae-hlf", qcd_ds, tmp_path / "one", config={**cfg, "batch_size": 64}, epochs=2, seed=2,
                progress=False)
    two = train("ae-hlf", qcd_ds, tmp_path / "two", config={**cfg, "batch_size": 32}, epochs=2, seed=2,
                progress=False, nproc=2)
    a = torch.load(one / "model_last.pt", weights_only=False)["model"]
    b = torch.load(two / "model_last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    init = train("ae-hlf", qcd_ds, tmp_path / "zero", config={**cfg, "optimizer": {"name": "sgd", "lr": 1e-12,
                                                                                        "momentum": 0.0}},
                 epochs=1, seed=2, progress=False)
    z = torch.load(init / "model_last.pt", weights_only=False)["model"]
    moved = [k for k in a if a[k].dtype.is_floating_point and not torch.allclose(a[k], z[k], atol=1e-6)]
    assert moved  # training changed the weights, so the comparison below means something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    la = json.loads((one / "metrics.json").read_text())[-1]
    lb = json.loads((two / "metrics.json").read_text())[-1]
    assert la["val_loss"] == pytest.approx(lb["val_loss"], rel=1e-4)  # validation reduced over both ranks


def test_offline_methods_refuse_nproc(qcd_ds, svj_ds, tmp_path):
    with pytest.raises(Exception, match="fitted offline"):
        train("sup-bdt", qcd_ds, tmp_path / "b", config={"data": {"signal": [str(svj_ds.path)]}, "threads": 1},
              epochs=1, progress=False, nproc=2)


def test_bad_nproc(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match="nproc=0"):
        train("ae-hlf", qcd_ds, tmp_path / "r", config=FAST, nproc=0, progress=False)
