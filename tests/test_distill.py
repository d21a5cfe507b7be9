"""distill: a small student regressing a trained teacher's anomaly score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from darkshower.cli.main import main
from darkshower.errors import ConfigError
from darkshower.models.distill import TargetTransform, teacher_scores
from darkshower.represent.build import build
from darkshower.represent.store import store_from_rep, to_torch
from darkshower.train import load_run, score, train
from darkshower.train.data import event_fraction

FAST = {"threads": 1, "early_stopping": {"patience": None}}


@pytest.fixture(scope="module")
def teacher(qcd_ds, tmp_path_factory):
    """A toy teacher: ae-hlf trained a few epochs on the QCD fixture."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher") / "ae"
    return train("ae-hlf", qcd_ds, out, config={**FAST, "batch_size": 32}, epochs=4, progress=False)


def test_student_reproduces_teacher_on_held_out_jets(teacher, qcd_ds, tmp_path):
    cfg = {**FAST, "batch_size": 32, "optimizer": {"lr": 3e-3}, "model": {"teacher_run": str(teacher)}}
    run = train("distill", qcd_ds, tmp_path / "student", config=cfg, epochs=40, seed=1, progress=False)
    student, srep, scfg, _ = load_run(run)
    events = qcd_ds.arrays()
    store = store_from_rep(build(srep, events), 0.0)
    t = teacher_scores(student.config, events, store)
    held_out = event_fraction(store["event_id"], scfg.seed) < scfg.data.val_fraction  # the student's val split
    assert held_out.sum() >= 30
    with torch.no_grad():
        s = student.score(to_torch(store)).numpy()
    corr = np.corrcoef(s[held_out], np.log(t[held_out]))[0, 1]
    assert corr > 0.9
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[-1]["val_corr"] > 0.9 and hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_distill_cli_end_to_end_resume_and_score(teacher, qcd_ds, tmp_path, capsys):
    out = tmp_path / "student"
    args = ["distill", str(teacher), "--data", str(qcd_ds.path), "--out", str(out), "--threads", "1",
            "--no-progress", "--set", "batch_size=64"]
    assert main([*args, "--epochs", "1"]) == 0
    assert "correlation with the teacher" in capsys.readouterr().out
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["method"] == "distill" and info["epochs_done"] == 2 and info["spec"]["kind"] == "observables"
    run_cfg = load_run(out)[2]
    assert run_cfg.model["teacher_run"] == str(teacher.resolve())
    # scoring needs only the student
    assert main(["score", str(out), str(qcd_ds.path), "--out", str(tmp_path / "s.parquet"), "--no-progress"]) == 0
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert len(df) == info["n_train"] + info["n_val"] and np.isfinite(df.score).all()


def test_deepsets_student_and_export(teacher, qcd_ds, tmp_path):
    from darkshower.cli.distill import build_config

    cfg = build_config(teacher, "deepsets", {**FAST, "batch_size": 64, "representation": {"n_constituents": 32}})
    assert cfg["representation"]["kind"] == "constituents" and cfg["representation"]["n_constituents"] == 32
    run = train("distill", qcd_ds, tmp_path / "ds", config=cfg, epochs=3, progress=False)
    method, rep, _, _ = load_run(run)
    assert rep.kind == "constituents"
    jets, _ = score(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    assert np.isfinite(pd.read_parquet(jets).score).all()
    # the deployable student: its ONNX graph gives the student's score on real jets
    from conftest import assert_onnx_matches_torch

    b = to_torch(store_from_rep(build(rep, qcd_ds.read_chunk(0)), 0.0))
    assert_onnx_matches_torch(method, {"x": b["x"], "mask": b["mask"]}, tmp_path / "student.onnx")


def test_missing_or_incompatible_teacher_gives_one_clear_error(qcd_ds, tmp_path, capsys):
    base = ["--data", str(qcd_ds.path), "--out", str(tmp_path / "s"), "--no-progress"]
    assert main(["distill", str(tmp_path / "nope"), *base]) == 2
    err = capsys.readouterr().err
    assert "model.teacher_run" in err and "no such run directory" in err and "Traceback" not in err
    assert main(["distill", str(qcd_ds.path), *base]) == 2  # a dataset, not a run
    err = capsys.readouterr().err
    assert "cannot be used as a teacher" in err and "not a training run" in err
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="teacher_run"):
        train("distill", qcd_ds, tmp_path / "t", config=FAST, progress=False)


def test_mlp_student_needs_observables(teacher, qcd_ds, tmp_path):
    cfg = {**FAST, "model": {"teacher_run": str(teacher)}, "representation": {"kind": "constituents"}}
    with pytest.raises(ConfigError, match=r"model.student 'mlp' needs representation.kind 'observables'"):
        train("distill", qcd_ds, tmp_path / "x", config=cfg, progress=False)


@pytest.mark.parametrize("kind", ["log", "quantile", "standard"])
def test_target_transforms_are_monotone(kind):
    s = np.random.default_rng(0).lognormal(0, 1, 5000)
    t = TargetTransform(kind)
    t.fit(s)
    grid = torch.from_numpy(np.sort(np.r_[s[:200], 1e-3, 1e3]))
    y = t(grid)
    assert torch.isfinite(y).all() and (y[1:] >= y[:-1]).all()
    assert abs(float(t(torch.from_numpy(s)).mean())) < 0.05
    if kind == "log":
        with pytest.raises(ConfigError, match=r"model.target"):
            TargetTransform("log").fit(np.r_[s, -1.0])
