"""darkshower tune: label-free objective, resume, interrupted trials, best.yaml, search-space errors, no signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna", reason="the [tune] extra (optuna) is not installed")

from darkshower.cli.main import main
from darkshower.errors import ConfigError, RunError
from darkshower.train.tune import default_space, parse_space, selection_value, tune

#: a small gmm space: fast fits for the tests of the study mechanics
GMM_SPACE = {"model.components": {"type": "categorical", "choices": [[1], [2], [3]]},
             "model.reg_covar": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}}


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def _study(out: Path):
    import optuna

    return optuna.load_study(study_name="darkshower-tune", storage=f"sqlite:///{out / 'study.db'}")


def _states(out: Path) -> list[tuple[int, str]]:
    return [(t.number, t.state.name) for t in _study(out).trials]


def test_resume_to_three_trials_then_best_yaml_trains(qcd_ds, tmp_path, capsys):
    out = tmp_path / "tune"
    res = tune("ae-hlf", qcd_ds, out, 2, epochs=1, progress=False)
    assert (res.n_complete, res.n_failed, res.selection) == (2, 0, "val_loss")
    assert _states(out) == [(0, "COMPLETE"), (1, "COMPLETE")]
    study = _study(out)
    # trial 0 is the method's default config; every objective is the run's own label-free selection value
    assert study.trials[0].user_attrs["default"] is True
    assert study.trials[0].params == {"optimizer.lr": 0.001, "batch_size": 256, "optimizer.weight_decay": 0.0,
                                      "model.hidden": "[64, 32]", "model.latent": 6}
    for t in study.trials:
        run = out / "trials" / f"{t.number:04d}"
        hist = json.loads((run / "metrics.json").read_text())
        assert t.value == pytest.approx(min(r["val_loss"] for r in hist), rel=1e-12)
        assert t.value == pytest.approx(selection_value(run)[0], rel=1e-12)
        assert (run / "cache").is_symlink()  # the trials share one representation cache
    assert res.default_value == study.trials[0].value
    first = {n: (out / "trials" / f"{n:04d}" / "run.json").stat().st_mtime_ns for n in (0, 1)}

    # rerunning with more trials continues: exactly one new trial, the first two are not rerun
    res3 = tune("ae-hlf", qcd_ds, out, 3, epochs=1, progress=False)
    assert res3.n_complete == 3 and _states(out) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert {n: (out / "trials" / f"{n:04d}" / "run.json").stat().st_mtime_ns for n in (0, 1)} == first
    rows = _rows(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and all(r["state"] == "complete" for r in rows)
    best = min(_study(out).trials, key=lambda t: t.value)
    assert (res3.best_trial, res3.best_value) == (best.number, best.value)
    assert float(rows[best.number]["val_loss"]) == pytest.approx(best.value)
    # ... and the same command again does nothing
    assert tune("ae-hlf", qcd_ds, out, 3, epochs=1, progress=False).n_complete == 3 and len(_study(out).trials) == 3

    # best.yaml is a training config: `darkshower train` reproduces the best trial's objective
    cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert cfg["method"] == "ae-hlf" and cfg["epochs"] == 1 and cfg["seed"] == 0
    assert cfg["model"]["latent"] == best.params["model.latent"]
    run = tmp_path / "retrain"
    rc = main(["train", "ae-hlf", "--config", str(out / "best.yaml"), "--data", str(qcd_ds.path), "--out", str(run),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert selection_value(run)[0] == pytest.approx(best.value, rel=1e-5)

    # a changed method/space/data/epochs on resume is a clear error, and changes nothing
    with pytest.raises(RunError, match="--epochs"):
        tune("ae-hlf", qcd_ds, out, 4, epochs=2, progress=False)
    with pytest.raises(RunError, match="--space"):
        tune("ae-hlf", qcd_ds, out, 4, epochs=1, space={"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-3}},
             progress=False)
    with pytest.raises(RunError, match="METHOD"):
        tune("gmm", qcd_ds, out, 4, progress=False, epochs=1)
    assert len(_study(out).trials) == 3


def test_interrupted_trials_are_retried(qcd_ds, tmp_path, monkeypatch):
    """A trial interrupted mid-way (Ctrl-C; or a killed process, which leaves it 'running') is failed and its
    parameters are the next trial's (a half run without a checkpoint is removed); only finished trials count."""
    import darkshower.train.trainer as trainer
    from darkshower.train.tune import STUDY_NAME

    out = tmp_path / "tune"
    real = trainer.train
    calls = []

    def interrupted(*a, **k):
        calls.append(Path(a[2]))
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune("gmm", qcd_ds, out, 2, space=GMM_SPACE, progress=False)
    monkeypatch.setattr(trainer, "train", real)
    # the run had finished (it has a checkpoint), so it is kept for the retry to continue
    assert _states(out) == [(0, "FAIL"), (1, "WAITING")] and (calls[0] / "checkpoint.pt").is_file()
    assert tune("gmm", qcd_ds, out, 2, space=GMM_SPACE, progress=False).n_complete == 2
    trials = _study(out).trials
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert not calls[0].exists() and (out / "trials" / "0001" / "model_best.pt").exists()
    assert _rows(out)[0]["error"] == "interrupted"

    # a killed process leaves its trial RUNNING with a half run directory
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")
    t = study.ask()
    for key, spec in parse_space(GMM_SPACE).items():
        spec.suggest(t, key)
    half = out / "trials" / f"{t.number:04d}"
    half.mkdir(parents=True)
    (half / "run.json").write_text("{}")
    res = tune("gmm", qcd_ds, out, 3, space=GMM_SPACE, progress=False)
    trials = _study(out).trials
    assert res.n_complete == 3 and trials[t.number].state.name == "FAIL"
    assert trials[t.number + 1].params == trials[t.number].params and trials[t.number + 1].state.name == "COMPLETE"
    assert (out / "trials" / f"{t.number + 1:04d}" / "model_best.pt").exists() and not half.exists()


def test_interrupted_trial_continues_its_run(qcd_ds, tmp_path, monkeypatch):
    """A trial interrupted after an epoch has finished keeps its run; the retry continues it from the last
    checkpoint (1 epoch left of 2) and reaches what an uninterrupted trial reaches."""
    import darkshower.train.trainer as trainer
    from darkshower.train.callbacks import Callback

    class StopAfterFirstEpoch(Callback):  # Ctrl-C as the second epoch starts (the first is checkpointed)
        def on_epoch_start(self, loop, epoch):
            if epoch == 1:
                raise KeyboardInterrupt

    real = trainer.train
    epochs_trained = []

    def interrupted(*a, **k):
        k["callbacks"] = [*(k.get("callbacks") or []), StopAfterFirstEpoch()]
        real(*a, **k)

    def counting(*a, **k):
        epochs_trained.append(k.get("resume"))
        return real(*a, **k)

    out = tmp_path / "tune"
    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune("ae-hlf", qcd_ds, out, 1, epochs=2, progress=False)
    assert _states(out) == [(0, "FAIL"), (1, "WAITING")]
    half = out / "trials" / "0000"
    assert (half / "checkpoint.pt").is_file()  # kept: one epoch of two is trained
    assert [r["epoch"] for r in json.loads((half / "metrics.json").read_text())] == [1]
    monkeypatch.setattr(trainer, "train", counting)
    res = tune("ae-hlf", qcd_ds, out, 1, epochs=2, progress=False)
    assert res.n_complete == 1 and epochs_trained == [True] and not half.exists()
    trials = _study(out).trials
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].user_attrs["resume_from"] == "0000"
    run = out / "trials" / "0001"
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 2 and (run / "cache").is_symlink()
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())] == [1, 2]
    # the same as one uninterrupted trial with the same parameters (the default config, trial 0 of a new study)
    ref = tune("ae-hlf", qcd_ds, tmp_path / "ref", 1, epochs=2, progress=False)
    assert res.best_value == pytest.approx(ref.best_value, rel=1e-9)


@pytest.mark.parametrize("space, needle", [
    ({"optimizer.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}, "'optimizer.lr': needs finite low < high"),
    ({"optimizer.lr": {"type": "float", "low": 0.0, "high": 1e-2, "log": True}}, "log: true needs low > 0"),
    ({"batch_size": {"type": "categorical"}}, "'batch_size': categorical needs a non-empty 'choices'"),
    ({"model.latent": {"type": "int", "low": 1.5, "high": 4}}, "int needs integer low"),
    ({"model.latent": {"type": "int", "low": 1, "high": 4, "lo": 2}}, "'model.latent': lo: unknown field"),
    ({"optimizer.lr": {"type": "uniform", "low": 1e-4, "high": 1e-2}}, "'optimizer.lr': type: Input should be"),
    ({"optimizer.lr": 0.001}, "'optimizer.lr': expected a mapping"),
    ({"seed": {"type": "int", "low": 0, "high": 9}}, "'seed' cannot be tuned"),
    ({"data.val_fraction": {"type": "float", "low": 0.1, "high": 0.5}}, "'data.val_fraction' cannot be tuned"),
    ({"model.nope": {"type": "int", "low": 1, "high": 4}}, "'model.nope': value 1 is not accepted"),
    ({"model.latent": {"type": "int", "low": 0, "high": 4}}, "'model.latent': value 0 is not accepted"),
])
def test_space_errors_name_the_key(space, needle, tmp_path):
    out = tmp_path / "tune"
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        tune("ae-hlf", tmp_path / "no-data", out, 2, space=space, progress=False)
    assert not out.exists()


def test_space_file_and_cli(qcd_ds, tmp_path, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("- optimizer.lr\n")
    assert main(["tune", "ae-hlf", "--data", str(qcd_ds.path), "--trials", "2", "--out", str(tmp_path / "t"),
                 "--space", str(bad)]) == 2
    assert f"--space {bad}: expected a mapping" in capsys.readouterr().err and not (tmp_path / "t").exists()
    import darkshower

    assert darkshower.tune is tune  # the library verb, loaded lazily
    assert main(["tune", "ae-hlf", "--show-space"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == default_space("ae-hlf")
    assert shown["optimizer.lr"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    assert set(parse_space(shown)) == {"optimizer.lr", "batch_size", "optimizer.weight_decay", "model.hidden",
                                       "model.latent"}
    space = tmp_path / "gmm.yaml"
    space.write_text("model.components: {type: categorical, choices: [[1], [3]]}\n")
    rc = main(["tune", "gmm", "--data", str(qcd_ds.path), "--trials", "2", "--out", str(tmp_path / "g"), "--space",
               str(space), "--seed", "3", "--no-progress"])
    assert rc == 0
    assert "tuned gmm: 2 complete, 0 pruned, 0 failed" in capsys.readouterr().out
    rows = _rows(tmp_path / "g")
    assert len(rows) == 2 and {r["model.components"] for r in rows} <= {"[1]", "[3]"}
    assert yaml.safe_load((tmp_path / "g" / "best.yaml").read_text())["seed"] == 3
    assert main(["tune", "gmm", "--data", str(qcd_ds.path)]) == 2  # --trials and --out missing
    assert "--trials, --out required" in capsys.readouterr().err


def test_never_signal_never_labels(qcd_ds, svj_ds, tmp_path):
    out = tmp_path / "tune"
    with pytest.raises(ConfigError, match="generated 'svj' dataset is signal"):
        tune("ae-hlf", svj_ds, out, 2, progress=False)
    with pytest.raises(ConfigError, match=r"--val .*'svj' dataset is signal"):
        tune("ae-hlf", qcd_ds, out, 2, val=svj_ds, progress=False)
    with pytest.raises(ConfigError, match="supervised reference"):
        tune("sup-bdt", qcd_ds, out, 2, progress=False)
    with pytest.raises(ConfigError, match=r"data\.signal is set"):
        tune("ae-hlf", qcd_ds, out, 2, config={"data": {"signal": [str(svj_ds.path)]}}, progress=False)
    with pytest.raises(ConfigError, match="selection 'last' has no label-free value"):
        tune("ae-hlf", qcd_ds, out, 2, config={"selection": "last"}, progress=False)
    with pytest.raises(ConfigError, match=r"--epochs 3 ends within model\.pretrain_epochs 3"):
        tune("nae", qcd_ds, out, 2, epochs=3, progress=False)  # val_emd is nan while pre-training
    assert not out.exists()


def test_diverged_trial_fails_without_counting_and_timeout_stops(qcd_ds, tmp_path, monkeypatch):
    import darkshower.train.trainer as trainer
    from darkshower.errors import TrainingError

    out = tmp_path / "tune"
    real = trainer.train
    calls = []

    def diverges_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingError("loss became nan at epoch 1")
        return real(*a, **k)

    monkeypatch.setattr(trainer, "train", diverges_once)
    res = tune("gmm", qcd_ds, out, 2, space=GMM_SPACE, progress=False)
    assert (res.n_complete, res.n_failed) == (2, 1) and len(calls) == 3
    assert _states(out) == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert _rows(out)[0]["error"] == "loss became nan at epoch 1"
    assert (out / "trials" / "0000").exists()  # a diverged trial's run is kept for inspection
    # --timeout: no new trial starts once it is reached; a rerun continues
    res = tune("gmm", qcd_ds, out, 4, space=GMM_SPACE, timeout=1e-9, progress=False)
    assert res.n_complete == 2 and "--timeout" in res.stopped and len(calls) == 3


class FakeTrial:
    """The part of an optuna trial that tune's pruning callback uses: its reports, and a pruner that stops the
    trial once ``prune_after`` steps are reported (None: never)."""

    def __init__(self, number: int, prune_after: int | None = None):
        self.number = number
        self.prune_after = prune_after
        self.reports: list = []

    def report(self, v, step):
        self.reports.append((step, v))

    def should_prune(self):
        return self.prune_after is not None and len(self.reports) >= self.prune_after


def test_pruning_reports_best_so_far_and_stops_the_loop():
    from darkshower.train.tune import _Report

    class Loop:
        stopped = ""

        def stop(self, why):
            self.stopped = why

    trial = FakeTrial(7, prune_after=3)
    cb, loop = _Report(trial), Loop()
    for epoch, v in enumerate([3.0, 1.0, 2.0]):
        cb.on_epoch_end(loop, epoch, {"selection_value": v})
    assert trial.reports == [(0, 3.0), (1, 1.0), (2, 1.0)]
    assert cb.pruned and "trial 7 pruned at epoch 3" in loop.stopped


def test_pruning_replays_the_epochs_of_a_continued_run(tmp_path):
    """The retry of an interrupted trial reports the epochs its run already trained (metrics.json counts from 1),
    then the new ones, each step once, so the median rule sees the whole run."""
    from darkshower.train.tune import _Report

    (tmp_path / "metrics.json").write_text(json.dumps([{"epoch": 1, "selection_value": 4.0},
                                                       {"epoch": 2, "selection_value": 5.0}]))
    trial = FakeTrial(3)
    cb = _Report(trial)
    cb.replay(tmp_path)
    cb.on_epoch_end(None, 2, {"selection_value": 2.0})
    assert trial.reports == [(0, 4.0), (1, 4.0), (2, 2.0)]


def test_a_study_continued_after_timeout_proposes_the_same_trials(qcd_ds, tmp_path, monkeypatch):
    import itertools

    import darkshower.train.tune as T

    space = GMM_SPACE
    whole = tune("gmm", qcd_ds, tmp_path / "whole", 3, space=space, progress=False)
    clock = itertools.count()  # every look at the clock: one second later
    monkeypatch.setattr(T.time, "monotonic", lambda: float(next(clock)))
    part = tune("gmm", qcd_ds, tmp_path / "parts", 3, space=space, timeout=2.5, progress=False)
    assert part.n_complete == 2 and "--timeout" in part.stopped
    monkeypatch.undo()
    assert tune("gmm", qcd_ds, tmp_path / "parts", 3, space=space, progress=False).n_complete == whole.n_complete == 3
    assert [t.params for t in _study(tmp_path / "parts").trials] == [t.params for t in _study(tmp_path / "whole").trials]


def test_a_continued_trial_the_pruner_already_stopped_is_not_trained_again(tmp_path):
    """Killed after the median rule stopped it but before the study was told: the retry replays its epochs, sees
    that the pruner stops it and does not train (it is told pruned, not complete with a truncated value)."""
    from darkshower.train.tune import _Report, _train_trial

    (tmp_path / "metrics.json").write_text(json.dumps([{"epoch": 1, "selection_value": 9.0}]))

    def train(*a, **k):
        raise AssertionError("a pruned trial must not train")

    trial = FakeTrial(5, prune_after=0)  # the pruner stops it
    report = _Report(trial)
    _train_trial(train, "ae-hlf", [], None, tmp_path, {}, True, report, tmp_path, False, [])
    assert report.pruned and trial.reports == [(0, 9.0)]
