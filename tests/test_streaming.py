"""Streaming (out-of-core) training: batches read chunk by chunk from the representation cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from darkshower.errors import ConfigError
from darkshower.train import train
from darkshower.train.distributed import World

FAST = {"batch_size": 16, "threads": 1, "early_stopping": {"patience": None}}


def _model(run):
    return torch.load(run / "model_last.pt", weights_only=False)["model"]


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_with_a_buffer_that_holds_everything_is_the_in_memory_run(qcd_ds, tmp_path):
    mem = train("ae-hlf", qcd_ds, tmp_path / "mem", config={**FAST, "data": {"streaming": "off"}}, epochs=2, seed=4,
                progress=False)
    st = train("ae-hlf", qcd_ds, tmp_path / "st", config={**FAST, "data": {"streaming": "on"}}, epochs=2, seed=4,
               progress=False)
    assert json.loads((st / "run.json").read_text())["streaming"] is True
    assert json.loads((mem / "run.json").read_text())["streaming"] is False
    assert _same(_model(mem), _model(st))
    hm = json.loads((mem / "metrics.json").read_text())
    hs = json.loads((st / "metrics.json").read_text())
    assert [r["val_loss"] for r in hm] == [r["val_loss"] for r in hs]


def _session_data(qcd_ds, tmp_path, buffer):
    """A StreamingData over qcd_ds (2 chunks) with a small shuffle buffer, as the trainer builds it."""
    from darkshower.train.session import open_session
    from darkshower.train.trainer import load_data

    cfg = {**FAST, "data": {"streaming": "on", "shuffle_buffer": buffer, "prepare_samples": 50}}
    s = open_session("ae-hlf", qcd_ds, tmp_path / "r", config=cfg, seed=3)
    return load_data(s, progress=False)


def test_small_buffer_epoch_visits_every_training_sample_once(qcd_ds, tmp_path):
    from darkshower.train.stream import StreamingData

    data = _session_data(qcd_ds, tmp_path, buffer=40)
    assert isinstance(data, StreamingData) and data.n_train > 40
    assert len(data.train["label"]) == 50  # preprocessing sees prepare_samples samples

    class M:
        def batch_order(self, *a):
            return None

    def epoch(e, world=None):
        world = World() if world is None else world
        keys = [np.stack([b["event_id"].numpy(), b["jet_idx"].numpy()], 1) for b in data.train_batches(M(), 16, 3, e, world)]
        return np.concatenate(keys)

    e0, e0_again, e1 = epoch(0), epoch(0), epoch(1)
    np.testing.assert_array_equal(e0, e0_again)  # deterministic for a seed and epoch
    assert not np.array_equal(e0, e1)  # reshuffled every epoch
    assert len(e0) == (data.n_train // 16) * 16
    assert len({tuple(k) for k in e0}) == len(e0)  # no sample twice in an epoch
    # all training samples but fewer than one batch are seen; none of the validation samples
    val = {tuple(k) for k in np.stack([data.val["event_id"], data.val["jet_idx"]], 1)}
    assert not val & {tuple(k) for k in e0}
    # two ranks: disjoint shares of the same size
    r0, r1 = epoch(0, World(0, 2)), epoch(0, World(1, 2))
    assert len(r0) == len(r1) > 0
    assert not {tuple(k) for k in r0} & {tuple(k) for k in r1}


def test_small_buffer_training_resumes_exactly(qcd_ds, tmp_path):
    cfg = {**FAST, "data": {"streaming": "on", "shuffle_buffer": 40}}
    a = train("ae-hlf", qcd_ds, tmp_path / "a", config=cfg, epochs=2, seed=5, progress=False)
    b = train("ae-hlf", qcd_ds, tmp_path / "b", config=cfg, epochs=1, seed=5, progress=False)
    train("ae-hlf", qcd_ds, b, epochs=2, resume=True, progress=False)
    assert _same(_model(a), _model(b))
    hist = json.loads((a / "metrics.json").read_text())
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in hist)


def test_auto_streams_above_the_threshold(qcd_ds, tmp_path):
    small = train("ae-hlf", qcd_ds, tmp_path / "s", config={**FAST, "data": {"stream_above": 10}}, epochs=1,
                  progress=False)
    big = train("ae-hlf", qcd_ds, tmp_path / "b", config=FAST, epochs=1, progress=False)
    assert json.loads((small / "run.json").read_text())["streaming"] is True
    assert json.loads((big / "run.json").read_text())["streaming"] is False


def test_streaming_refusals(qcd_ds, svj_ds, tmp_path):
    with pytest.raises(ConfigError, match=r"data.cache is false"):
        train("ae-hlf", qcd_ds, tmp_path / "a", config={**FAST, "data": {"streaming": "on", "cache": False}},
              epochs=1, progress=False)
    with pytest.raises(ConfigError, match="fitted offline"):
        train("sup-bdt", qcd_ds, tmp_path / "b", config={"threads": 1, "data": {"streaming": "on",
                                                                                "signal": [str(svj_ds.path)]}},
              epochs=1, progress=False)


def test_streaming_on_off_from_the_command_line_yaml():
    """`--set data.streaming=on` reaches the config as YAML's boolean true."""
    from darkshower.config import parse_assignment
    from darkshower.models.runconfig import DataConfig

    k, v = parse_assignment("data.streaming=on")
    assert DataConfig(streaming=v).streaming == "on"
    assert DataConfig(streaming=False).streaming == "off"
    with pytest.raises(Exception, match="streaming"):
        DataConfig(streaming="sometimes")


def test_max_train_caps_each_streamed_epoch(qcd_ds, tmp_path):
    from darkshower.train.session import open_session
    from darkshower.train.trainer import load_data

    cfg = {**FAST, "data": {"streaming": "on", "shuffle_buffer": 40, "max_train": 64}}
    data = load_data(open_session("ae-hlf", qcd_ds, tmp_path / "r", config=cfg, seed=3), progress=False)

    class M:
        def batch_order(self, *a):
            return None

    batches = list(data.train_batches(M(), 16, 3, 0))
    assert data.n_train == 64 and len(batches) == 4
    assert data._n_train > 64  # the data were not cut, the epoch was
