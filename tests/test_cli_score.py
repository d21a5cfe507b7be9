"""`darkshower score` / darkshower.train.score: argument checks before any work, output checks before
any work, one writer per output (lock file), never one table without the other."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.errors import ConfigError
from darkshower.train import score as score_fn
from darkshower.train import train

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


@pytest.fixture(scope="module")
def run(qcd_ds, tmp_path_factory):
    return train("ae-hlf", qcd_ds, tmp_path_factory.mktemp("run") / "run", config=FAST, epochs=1, progress=False)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if scoring starts."""
    mod = importlib.import_module("darkshower.train.score")

    def boom(*a, **k):
        raise AssertionError("scoring started although the arguments were bad")

    monkeypatch.setattr(mod, "_score", boom)


def test_out_is_a_directory_fails_before_work(run, qcd_ds, tmp_path, capsys, no_work):
    (tmp_path / "d").mkdir()
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darkshower: error: --out") and "is a directory" in err and "Traceback" not in err
    # the per-event companion as a directory is caught too
    (tmp_path / "s.events.parquet").mkdir()
    with pytest.raises(ConfigError, match=r"s.events.parquet is a directory"):
        score_fn(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        score_fn(run, [qcd_ds], tmp_path / "f" / "s.parquet", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f", "s.events.parquet"]  # no lock left


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": -1}, "batch_size=-1"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 2.5}, "batch_size=2.5"),
    ({"threads": 0}, "threads=0"),
    ({"jobs": -1}, "jobs=-1"),
    ({"which": "middle"}, "choose best or last"),
])
def test_library_rejects_bad_numbers(run, qcd_ds, tmp_path, kw, match, no_work):
    with pytest.raises(ConfigError, match=match):
        score_fn(run, [qcd_ds], tmp_path / "s.parquet", progress=False, **kw)
    assert list(tmp_path.iterdir()) == []


def test_cli_negative_batch_size_exits_2_and_writes_nothing(run, qcd_ds, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["score", str(run), str(qcd_ds.path), "--out", str(out), "--batch-size", "-1"])
    assert exc.value.code == 2
    assert "argument --batch-size: -1: must be a positive integer" in capsys.readouterr().err
    assert not out.exists()


def test_failed_run_leaves_no_directories_or_lock(run, tmp_path):
    out = tmp_path / "new" / "sub" / "s.parquet"
    with pytest.raises(Exception, match=r"not a darkshower dataset|does not exist|no such|not found"):
        score_fn(run, [tmp_path / "missing"], out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_live_lock_blocks_a_second_writer_and_stale_lock_is_taken_over(run, qcd_ds, tmp_path, no_work):
    out = tmp_path / "s.parquet"
    lock = tmp_path / ".s.parquet.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(str(sleeper.pid))
        with pytest.raises(ConfigError, match=f"another darkshower process \\(pid {sleeper.pid}\\)"):
            score_fn(run, [qcd_ds], out, progress=False)
        assert lock.read_text() == str(sleeper.pid)  # not ours: left alone
        assert not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_is_taken_over_and_removed(run, qcd_ds, tmp_path):
    out = tmp_path / "s.parquet"
    lock = tmp_path / ".s.parquet.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))
    jets, events = score_fn(run, [qcd_ds], out, progress=False)
    assert len(pd.read_parquet(jets)) > 0 and events.exists()
    assert not lock.exists()


def test_two_concurrent_scores_of_one_output(run, qcd_ds, tmp_path, monkeypatch):
    """While one score works on OUT, a second process scoring into OUT fails at once with a clear error;
    the first finishes and writes complete tables."""
    mod = importlib.import_module("darkshower.train.score")

    out = tmp_path / "s.parquet"
    real = mod._score_chunk
    second = {}

    def chunk_then_race(task):
        if not second:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            second["proc"] = subprocess.run(
                [sys.executable, "-m", "darkshower.cli.main", "score", str(run), str(qcd_ds.path), "--out", str(out),
                 "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
        return real(task)

    monkeypatch.setattr(mod, "_score_chunk", chunk_then_race)
    jets, _ = score_fn(run, [qcd_ds], out, progress=False, jobs=1)
    proc = second["proc"]
    assert proc.returncode == 2, proc.stderr
    assert "another darkshower process" in proc.stderr and "Traceback" not in proc.stderr
    assert len(pd.read_parquet(jets)) > 0
    assert not (tmp_path / ".s.parquet.lock").exists()


def test_events_write_failure_leaves_no_half_output(run, qcd_ds, tmp_path, monkeypatch):
    mod = importlib.import_module("darkshower.train.scorefiles")  # where the score files are written

    real = mod.atomic_write_parquet
    calls = []

    def fail_second(df, path, meta=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(df, path, meta)

    monkeypatch.setattr(mod, "atomic_write_parquet", fail_second)
    with pytest.raises(OSError, match="disk full"):
        score_fn(run, [qcd_ds], tmp_path / "s.parquet", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == []
