"""`darkshower benchmark`: the whole pipeline on tiny samples, resuming, failures, bad configs."""

from __future__ import annotations

import json

import pytest
import torch

from darkshower.cli.main import main
from darkshower.errors import ConfigError
from darkshower.pipeline import load_benchmark_config, run_benchmark


def _config(qcd_ds, svj_ds, methods):
    return {
        "name": "tiny", "seed": 3, "threads": 1,
        "train": {"name": "qcd_train", "path": str(qcd_ds.path)},
        "background": {"name": "qcd_test", "process": "qcd", "events": 100, "params": {"pthat_min": 300},
                       "generate": {"chunk_size": 50}},
        "signals": [{"name": "svj", "path": str(svj_ds.path)}],
        "methods": methods,
        "evaluation": {"n_bootstrap": 10},
        "search": {"signal": "svj", "xsec_pb": 1.0},
    }


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_benchmark_end_to_end_resume_and_failure(full, qcd_ds, svj_ds, tmp_path, monkeypatch):
    """full: the defaults (supervised reference, evaluation on the default executor) and the bump-hunt
    search; else the same pipeline with the cheap options (no supervised reference, datasets read in this
    process, no search)."""
    from darkshower.models.ae import ImageAutoencoder

    monkeypatch.setattr(ImageAutoencoder, "loss", lambda self, b, ctx: (torch.tensor(float("nan"), requires_grad=True), {}))
    cfg = _config(qcd_ds, svj_ds, [{"method": "ae-hlf", "epochs": 2 if full else 1, "config": {"batch_size": 32}},
                                   {"method": "ae-image", "name": "broken", "epochs": 1}])
    if not full:
        cfg["supervised_reference"] = False
        cfg["evaluation"]["executor"] = "local"
        cfg["search"] = None
    out = tmp_path / "bench"
    s = run_benchmark(cfg, out, jobs=1, progress=False)
    status = json.loads((out / "status.json").read_text())
    assert status["generate:qcd_test"]["status"] == "done"
    assert status["train:ae-hlf"]["status"] == "done" and status["score:ae-hlf"]["status"] == "done"
    assert status["train:broken"]["status"] == "failed" and "loss became nan" in status["train:broken"]["message"]
    assert "train:broken" in s["failed"]
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert any("broken" in w and "FAILED" in w for w in metrics["warnings"])
    assert {r["method"] for r in metrics["results"]} >= {"ae-hlf"}
    assert any(r["method"] == "ae-hlf" and 0 <= r["auc"]["value"] <= 1 for r in metrics["results"])
    html = (out / "evaluation" / "report.html").read_text()
    assert "FAILED" in html and "ae-hlf" in html
    assert (out / "evaluation" / "search" / "search.json").exists() == full
    # rerun: finished stages are skipped (the run is not retrained)
    mtime = (out / "runs" / "ae-hlf" / "model_last.pt").stat().st_mtime_ns
    run_benchmark(cfg, out, jobs=1, progress=False, stages=("generate", "train", "score"))
    assert (out / "runs" / "ae-hlf" / "model_last.pt").stat().st_mtime_ns == mtime


def test_bad_benchmark_configs(qcd_ds, svj_ds, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown method\(s\) \['no-such'\]"):
        load_benchmark_config(_config(qcd_ds, svj_ds, [{"method": "no-such"}]))
    with pytest.raises(ConfigError, match="unique"):
        load_benchmark_config(_config(qcd_ds, svj_ds, [{"method": "ae-hlf"}, {"method": "ae-hlf"}]))
    bad = _config(qcd_ds, svj_ds, [{"method": "ae-hlf"}])
    bad["signals"] = [{"name": "x"}]
    with pytest.raises(ConfigError, match="needs 'process'"):
        load_benchmark_config(bad)
    f = tmp_path / "b.yaml"
    f.write_text("name: x\nmethods: [{method: ae-hlf}]\n")
    assert main(["benchmark", str(f), "--out", str(tmp_path / "o")]) == 2


def test_shipped_grids_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "benchmark"
    files = sorted(root.glob("*.yaml"))
    assert files, f"no benchmark grids in {root}"
    for f in files:
        cfg = load_benchmark_config(f)
        assert cfg.signals and cfg.methods
        if f.stem in ("default", "large", "sensitivity"):  # the grids
            assert len(cfg.signals) >= 9


def test_methods_subset(qcd_ds, svj_ds, tmp_path):
    """--methods trains and scores only the listed methods; a later run of the others adds them; the evaluation
    includes every method scored so far; an unknown name is refused before any work."""
    cfg = _config(qcd_ds, svj_ds, [{"method": "gmm"}, {"method": "gmm", "name": "gmm-b",
                                                       "config": {"model": {"components": [2]}}}])
    cfg["supervised_reference"] = False
    cfg["evaluation"]["executor"] = "local"
    cfg["search"] = None
    out = tmp_path / "bench"
    with pytest.raises(ConfigError, match="--methods nope: not in the benchmark config"):
        run_benchmark(cfg, out, jobs=1, progress=False, methods=("nope",))
    assert not (out / "status.json").exists()
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("gmm",), stages=("generate", "train", "score"))
    status = json.loads((out / "status.json").read_text())
    assert status["score:gmm"]["status"] == "done" and "train:gmm-b" not in status
    assert set(s["scores"]) == {"gmm"}
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("gmm-b",))
    assert set(s["scores"]) == {"gmm", "gmm-b"}
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {r["method"] for r in metrics["results"]} >= {"gmm (gmm)", "gmm (gmm-b)"}  # two runs of one method


@pytest.mark.parametrize("grid", [False, True])
def test_embedding_of_trains_after_its_representation(grid, qcd_ds, svj_ds, tmp_path, capsys):
    """embedding_of: an nae on the frozen representation of another entry's run (DarkCLR's second score as a
    benchmark entry) gets model.embedding_run = that run, trains after it (also on an executor, where the runs
    of one wave train side by side) and is skipped with a message while its representation is not trained."""
    from darkshower.execute import Local
    from darkshower.models.runs import read_run_config

    nae = {"method": "nae", "name": "nae-on-ae", "embedding_of": "ae-hlf", "epochs": 1,
           "config": {"batch_size": 64, "model": {"pretrain_epochs": 1, "hidden": [16], "latent": 4}}}
    cfg = _config(qcd_ds, svj_ds, [{"method": "ae-hlf", "epochs": 1, "config": {"batch_size": 64}}, nae])
    cfg["supervised_reference"] = False
    cfg["evaluation"]["executor"] = "local"
    cfg["search"] = None
    with pytest.raises(ConfigError, match="embedding_of 'ae-hlf' is not an earlier method"):
        load_benchmark_config({**cfg, "methods": [nae, cfg["methods"][0]]})
    with pytest.raises(ConfigError, match="embedding_of is for nae, wnae"):
        load_benchmark_config({**cfg, "methods": [cfg["methods"][0], {**nae, "method": "gmm"}]})
    out = tmp_path / "bench"
    ex = Local() if grid else None
    run_benchmark(cfg, out, jobs=1, progress=False, methods=("nae-on-ae",), stages=("generate", "train"), executor=ex)
    assert "train:nae-on-ae skipped: its representation's run 'ae-hlf' is not trained" in capsys.readouterr().out
    assert "train:nae-on-ae" not in json.loads((out / "status.json").read_text())
    run_benchmark(cfg, out, jobs=1, progress=False, methods=("ae-hlf",), stages=("generate", "train"), executor=ex)
    # the representation's run trained by an earlier call, the entry alone now (its source is not in --methods)
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("nae-on-ae",), stages=("generate", "train", "score"),
                      executor=ex)
    assert set(s["scores"]) == {"nae-on-ae"}
    s = run_benchmark(cfg, out, jobs=1, progress=False, stages=("generate", "train", "score"), executor=ex)
    assert set(s["scores"]) == {"ae-hlf", "nae-on-ae"}
    assert read_run_config(out / "runs" / "nae-on-ae").model["embedding_run"] == str(out / "runs" / "ae-hlf")


@pytest.mark.parametrize("grid", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_score_of_scores_another_entry_run_by_another_kind(grid, qcd_ds, svj_ds, tmp_path, capsys):
    """score_of + score_kind: a second entry scores the first's contrastive run by ‖z‖ (no training), on the
    sequential path and on an executor; skipped with a message while the source is not trained; bad entries
    are refused before any work."""
    import numpy as np

    from darkshower.execute import Local
    from darkshower.train import score, train
    from darkshower.train.scorefiles import read_score_file

    clr = {"method": "clr", "epochs": 1, "config": {"batch_size": 32, "representation": {"n_constituents": 20},
           "model": {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "head": [16], "output": 16, "bank_size": 256}}}
    norm = {"method": "clr", "name": "clr-norm", "score_of": "clr", "score_kind": "norm"}
    cfg = _config(qcd_ds, svj_ds, [clr, norm])
    cfg["supervised_reference"] = False
    cfg["evaluation"]["executor"] = "local"
    cfg["search"] = None
    for bad, msg in [([norm, clr], "must name an earlier clr entry"),
                     ([clr, {**norm, "score_kind": "bogus"}], "score_kind 'bogus' is not a score of 'clr'"),
                     ([clr, {**norm, "score_kind": None}], "needs score_kind"),
                     ([clr, {**norm, "epochs": 2}], "takes no run, config, epochs"),
                     ([{"method": "gmm"}, {"method": "gmm", "name": "g2", "score_kind": "norm"}], "offered: none")]:
        with pytest.raises(ConfigError, match=msg):
            load_benchmark_config({**cfg, "methods": bad})
    out = tmp_path / "bench"
    ex = Local() if grid else None
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("clr-norm",), stages=("generate", "train", "score"),
                      executor=ex)
    assert "score:clr-norm skipped: the run of 'clr' is not trained" in capsys.readouterr().out
    assert not s["scores"]
    run_benchmark(cfg, out, jobs=1, progress=False, methods=("clr",), stages=("generate", "train"), executor=ex)
    s = run_benchmark(cfg, out, jobs=1, progress=False, stages=("score", "evaluate"), executor=ex)  # no train stage
    assert set(s["scores"]) == {"clr", "clr-norm"} and s["runs"]["clr-norm"] == s["runs"]["clr"]
    assert not (out / "runs" / "clr-norm").exists()
    (t0, m0), (t1, m1) = (read_score_file(out / "scores" / f"{n}.parquet") for n in ("clr", "clr-norm"))
    assert m0["score_kind"] == "maha" and m1["score_kind"] == "norm"
    direct, _ = read_score_file(score(out / "runs" / "clr", [str(out / "data" / "qcd_test"), str(svj_ds.path)],
                                      tmp_path / "direct.parquet", score_kind="norm", progress=False)[0])
    np.testing.assert_allclose(t1["score"].to_numpy(), direct["score"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(t1["eff_b"].to_numpy(), direct["eff_b"].to_numpy())
    assert not np.allclose(t0["score"].to_numpy(), t1["score"].to_numpy())
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {r["method"] for r in metrics["results"]} >= {"clr (clr)", "clr (clr-norm)"}
    # the source trained on by a later call (--methods clr, train only): the next scoring call rescores both
    before = (out / "scores" / "clr-norm.parquet").stat().st_mtime_ns
    train("clr", qcd_ds, out / "runs" / "clr", epochs=2, resume=True, progress=False)
    run_benchmark(cfg, out, jobs=1, progress=False, stages=("score",), executor=ex)
    assert (out / "scores" / "clr-norm.parquet").stat().st_mtime_ns != before
    mtime = (out / "scores" / "clr-norm.parquet").stat().st_mtime_ns
    run_benchmark(cfg, out, jobs=1, progress=False, stages=("score",), executor=ex)  # nothing changed: kept
    assert (out / "scores" / "clr-norm.parquet").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("grid", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_scores_no_longer_of_their_run_are_left_out(grid, qcd_ds, svj_ds, tmp_path, monkeypatch):
    """Entries left out by --methods keep their earlier scores only while those are of the run as it is: after a
    failed retrain of the run (or of a score_of entry's source), or a retrain of it by another call, the old score
    files are out of the evaluation, with a warning that says so (sequential path and executor)."""
    import shutil

    import darkshower.pipeline.benchmark as bm
    from darkshower.errors import TrainingError
    from darkshower.execute import Local

    flow = {"method": "flow", "epochs": 1, "config": {"batch_size": 64, "model": {"condition": ["pt"], "transforms": 1,
                                                                                  "hidden": [8]}}}
    cfg = _config(qcd_ds, svj_ds, [{"method": "gmm"}, flow,
                                   {"method": "flow", "name": "flow-nll", "score_of": "flow", "score_kind": "nll"}])
    cfg["supervised_reference"] = False
    cfg["evaluation"]["executor"] = "local"
    cfg["search"] = None
    out = tmp_path / "bench"
    ex = Local() if grid else None
    s = run_benchmark(cfg, out, jobs=1, progress=False, executor=ex)
    assert set(s["scores"]) == {"gmm", "flow", "flow-nll"}

    def redo(label):  # as if its training were to be done again (its run removed, its status entry dropped)
        status = json.loads((out / "status.json").read_text())
        del status[f"train:{label}"]
        (out / "status.json").write_text(json.dumps(status))
        shutil.rmtree(out / "runs" / label)

    # retrained by a call without the score stage: its scores and those of the score_of entry are stale
    redo("flow")
    run_benchmark(cfg, out, jobs=1, progress=False, methods=("flow",), stages=("train",), executor=ex)
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("gmm",), stages=("evaluate",), executor=ex)
    assert set(s["scores"]) == {"gmm"} and set(s["left_out"]) == {"flow", "flow-nll"}
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {r["method"] for r in metrics["results"]} == {"gmm"}
    assert any("score:flow-nll" in w and "retrained after it was scored" in w for w in metrics["warnings"])
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("flow", "flow-nll"), stages=("score", "evaluate"),
                      executor=ex)  # rescored: back in
    assert set(s["scores"]) == {"gmm", "flow", "flow-nll"} and not s["left_out"]

    # a retrain that fails: the run's and the score_of entry's old files are out
    redo("flow")

    def broken(*a, **k):
        raise TrainingError("loss became nan")

    monkeypatch.setattr(bm, "_train_method", broken)  # Local() runs the grid's tasks in this process
    s = run_benchmark(cfg, out, jobs=1, progress=False, methods=("flow",), executor=ex)
    assert (out / "scores" / "flow.parquet").exists() and "train:flow" in s["failed"]
    assert set(s["scores"]) == {"gmm"}
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {r["method"] for r in metrics["results"]} == {"gmm"}
    assert any("train:flow" in w and "FAILED" in w for w in metrics["warnings"])
