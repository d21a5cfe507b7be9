"""The trainer's structure: declared Method hooks, the method registry (checks, entry points),
callbacks, and the resume/restart rules of run directories."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch

from darkshower.errors import ConfigError, RunError
from darkshower.models import _EXTERNAL, _LOADED, METHODS, get_method, register_method
from darkshower.models.ae import HLFAutoencoder, HLFConfig
from darkshower.models.base import Method, check_method
from darkshower.train import load_run, train
from darkshower.train.callbacks import Callback

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    for name in list(_EXTERNAL):
        _EXTERNAL.pop(name)
        _LOADED.pop(name, None)


# -- hooks declared on the base class -------------------------------------------------------------
def test_every_builtin_method_passes_the_registry_check():
    for name in METHODS:
        cls = get_method(name)
        check_method(cls, name)
        assert isinstance(cls.fits_offline, bool) and isinstance(cls.has_embedding, bool)
    assert get_method("sup-bdt").fits_offline and not get_method("ae-hlf").fits_offline
    assert get_method("clr").has_embedding and get_method("ae-hlf").has_embedding
    assert not get_method("ae-image").has_embedding
    assert get_method("rs3l").extra_column_names(get_method("rs3l").Config()) == ("resim_id",)
    assert get_method("ae-hlf").extra_column_names(HLFConfig()) == ()


def test_base_hooks_have_defaults():
    m = HLFAutoencoder(HLFConfig(), {"kind": "observables", "n_features": 3, "names": ["a", "b", "c"]})
    assert m.batch_order({}, 32, 0, 0) is None
    assert Method.embed_dim is None
    assert m.embed_dim == HLFConfig().latent
    with pytest.raises(NotImplementedError, match="fits_offline is False"):
        m.fit_offline({}, {})


class _NoScore(Method):
    name = "no-score"

    def loss(self, batch, ctx):
        return torch.zeros(()), {}


class _BadOffline(HLFAutoencoder):
    name = "bad-offline"

    def fit_offline(self, train_store, val_store):
        return {}


class _BadEmbedding(Method):
    name = "bad-embedding"
    has_embedding = True

    def loss(self, batch, ctx):
        return torch.zeros(()), {}

    def score(self, batch):
        return torch.zeros(len(batch["x"]))


class _BadSpaces(HLFAutoencoder):
    name = "bad-spaces"
    embed_spaces = ("latent2",)  # named, but no embed_in / embed_dim_in that would compute it


def test_registry_checks_declarations():
    with pytest.raises(ConfigError, match="does not implement score"):
        register_method("no-score", _NoScore)
    with pytest.raises(ConfigError, match="does not declare fits_offline"):
        register_method("bad-offline", _BadOffline)
    with pytest.raises(ConfigError, match="has_embedding = True needs both embed"):
        register_method("bad-embedding", _BadEmbedding)
    with pytest.raises(ConfigError, match="embed_spaces needs has_embedding = True and both embed_in"):
        register_method("bad-spaces", _BadSpaces)
    with pytest.raises(ConfigError, match="registered as 'other' but its name attribute is 'ae-hlf'"):
        register_method("other", HLFAutoencoder)
    with pytest.raises(ConfigError, match="already registered"):
        register_method("ae-hlf", HLFAutoencoder)
    with pytest.raises(ConfigError, match="not a subclass"):
        register_method("x", dict)


class ToyAE(HLFAutoencoder):
    """A method from 'another package' (this test module)."""

    name = "toy-ae"


def test_register_method_and_train(qcd_ds, tmp_path):
    register_method("toy-ae", ToyAE)
    assert get_method("toy-ae") is ToyAE
    run = train("toy-ae", qcd_ds, tmp_path / "r", config=FAST, epochs=1, progress=False)
    method, *_ = load_run(run)
    assert isinstance(method, ToyAE)


def test_entry_point_methods(monkeypatch):
    ep = importlib.metadata.EntryPoint(name="toy-ae", value=f"{__name__}:ToyAE", group="darkshower.methods")
    shadow = importlib.metadata.EntryPoint(name="nae", value=f"{__name__}:ToyAE", group="darkshower.methods")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep, shadow] if kw.get("group") == "darkshower.methods" else real(**kw))
    from darkshower.models import available_methods

    assert "toy-ae" in available_methods()
    assert get_method("toy-ae") is ToyAE
    assert get_method("nae").__name__ == "NormalizedAutoencoder"  # built-ins cannot be shadowed
    _LOADED.pop("toy-ae", None)
    bad = importlib.metadata.EntryPoint(name="broken", value=f"{__name__}:NoSuchClass", group="darkshower.methods")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [bad])
    with pytest.raises(ConfigError, match="has no class 'NoSuchClass'"):
        get_method("broken")


# -- callbacks ---------------------------------------------------------------------------------------
class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, loop):
        self.events.append("start")

    def on_epoch_end(self, loop, epoch, row):
        self.events.append(("epoch", epoch, "selection_value" in row))
        if epoch == 1:
            loop.stop("recorder asked to stop")

    def on_train_end(self, loop):
        self.events.append("end")


def test_callbacks_see_the_loop_and_can_stop_it(qcd_ds, tmp_path):
    rec = _Recorder()
    run = train("ae-hlf", qcd_ds, tmp_path / "r", config=FAST, epochs=5, progress=False, callbacks=[rec])
    assert rec.events == ["start", ("epoch", 0, True), ("epoch", 1, True), "end"]
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_done"] == 2
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["stopped_early"] and ckpt["epoch"] == 1 and len(ckpt["history"]) == 2


# -- interrupted before the first checkpoint; resume overrides ------------------------------------
def _interrupted_run(qcd_ds, tmp_path, monkeypatch):
    """A run killed during its first epoch: run.json + config.yaml written, no checkpoint."""
    class Killed(Exception):
        pass

    def boom(self, batch, ctx):
        raise Killed()

    monkeypatch.setattr(HLFAutoencoder, "loss", boom)
    with pytest.raises(Killed):
        train("ae-hlf", qcd_ds, tmp_path / "r", config=FAST, epochs=2, seed=3, progress=False)
    monkeypatch.undo()
    run = tmp_path / "r"
    assert (run / "run.json").exists() and not (run / "checkpoint.pt").exists()
    return run


@pytest.mark.parametrize("how", ["rerun", "resume"])
def test_run_killed_before_first_epoch_can_continue(qcd_ds, tmp_path, monkeypatch, how):
    run = _interrupted_run(qcd_ds, tmp_path, monkeypatch)
    if how == "rerun":
        train("ae-hlf", qcd_ds, run, config=FAST, epochs=2, seed=3, progress=False)
    else:
        train("ae-hlf", qcd_ds, run, resume=True, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["epochs_done"] == 2 and info["seed"] == 3
    # identical to an uninterrupted run with the same seed
    ref = train("ae-hlf", qcd_ds, tmp_path / "ref", config=FAST, epochs=2, seed=3, progress=False)
    a = torch.load(run / "model_last.pt", weights_only=False)["model"]
    b = torch.load(ref / "model_last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_rejects_changes_it_would_ignore(qcd_ds, tmp_path):
    run = train("ae-hlf", qcd_ds, tmp_path / "r", config=FAST, epochs=1, seed=2, progress=False)
    with pytest.raises(RunError, match=r"cannot change seed=9 \(run has 2\)"):
        train("ae-hlf", qcd_ds, run, epochs=2, seed=9, resume=True, progress=False)
    with pytest.raises(RunError, match=r"cannot change model.latent=3"):
        train("ae-hlf", qcd_ds, run, config={"model": {"latent": 3}}, epochs=2, resume=True, progress=False)
    with pytest.raises(RunError, match=r"optimizer.lr"):
        train("ae-hlf", qcd_ds, run, config={"optimizer": {"lr": 0.5}}, epochs=2, resume=True, progress=False)
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 1  # nothing happened
    # what can change: epochs, threads; repeating the run's own values is fine
    train("ae-hlf", qcd_ds, run, config={**FAST, "threads": 2}, epochs=2, seed=2, resume=True, progress=False)
    hist = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2]
    assert np.isfinite(hist[-1]["train_loss"])


def test_failed_setup_leaves_no_run_directory(tmp_path):
    """A representation that cannot be built (here: a dataset without constituents for images) fails
    before the run exists: no half run directory is left at --out, and the error names the dataset."""
    from conftest import shared_file
    from darkshower.errors import DatasetError
    from darkshower.io import import_dataset

    ds = import_dataset("treemaker", [shared_file("cms_pfnano", "treemaker_svj_search.root")], tmp_path / "tm")
    with pytest.raises(DatasetError, match=str(tmp_path / "tm")):
        train("ae-image", ds, tmp_path / "out" / "r", config=FAST, epochs=1, progress=False)
    assert not (tmp_path / "out" / "r").exists()


def test_cache_built_on_an_executor_gives_the_same_model(qcd_ds, tmp_path):
    from darkshower.execute import Processes

    a = train("ae-hlf", qcd_ds, tmp_path / "a", config=FAST, epochs=1, seed=1, progress=False)
    b = train("ae-hlf", qcd_ds, tmp_path / "b", config=FAST, epochs=1, seed=1, progress=False, executor=Processes(2))
    assert len(list((b / "cache").glob("*.npz"))) == len(qcd_ds.chunks)
    ma = torch.load(a / "model_last.pt", weights_only=False)["model"]
    mb = torch.load(b / "model_last.pt", weights_only=False)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
