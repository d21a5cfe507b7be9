"""A failed `generate` leaves nothing that blocks a corrected rerun with the same --out."""

from __future__ import annotations

import json

import pytest

import darkshower.simulate.run as run_mod
from darkshower import open_dataset
from darkshower.cli.main import main
from darkshower.errors import DarkshowerError, DatasetError
from darkshower.simulate.run import generate

TINY = {"process": "qcd", "events": 10, "seed": 2, "chunk_size": 10, "params": {"pthat_min": 300}}
CLI = ["generate", "qcd", "--events", "10", "--chunk-size", "10", "--seed", "2", "--set", "pthat_min=300",
       "--no-progress", "--jobs", "1"]


def test_rejected_pythia_setting_leaves_nothing_and_corrected_rerun_works(tmp_path, capsys):
    out = tmp_path / "d"
    assert main([*CLI, "--out", str(out), "--pythia", "PartonLevel:MPI = maybe"]) == 2
    assert "Pythia rejected the setting 'PartonLevel:MPI = maybe'" in capsys.readouterr().err
    assert not out.exists()
    assert main([*CLI, "--out", str(out), "--pythia", "PartonLevel:MPI = off"]) == 0
    assert open_dataset(out).n_events == 10


def test_rejected_setting_in_existing_empty_directory(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    assert main([*CLI, "--out", str(out), "--pythia", "NoSuch:key = 1"]) == 2
    assert list(out.iterdir()) == []  # the directory the user made is kept, empty
    assert main([*CLI, "--out", str(out)]) == 0


def test_leftover_dataset_without_chunks_does_not_block(tmp_path):
    """Datasets left by older versions after a rejected setting: a manifest and no chunk."""
    out = tmp_path / "d"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({
        "format": "darkshower-dataset", "schema_version": "1.0", "status": "incomplete", "process": "qcd",
        "config": {"process": "qcd", "pythia": ["NoSuch:key = 1"]}, "n_events": 0, "n_chunks": 0, "chunks": []}))
    ds = generate(TINY, out, jobs=1, progress=False)
    assert ds.n_events == 10 and ds.manifest["config"]["pythia"] == []


def test_different_settings_with_chunks_still_refused(tmp_path):
    out = tmp_path / "d"
    generate(TINY, out, jobs=1, progress=False)
    with pytest.raises(DatasetError, match="different settings"):
        generate({**TINY, "seed": 3}, out, jobs=1, progress=False)


def broken(task):
    raise DarkshowerError(f"chunk {task.index}: all events failed")


@pytest.mark.parametrize("jobs", [1, 2])
def test_failure_before_any_chunk_leaves_no_directory(tmp_path, monkeypatch, jobs):
    monkeypatch.setattr(run_mod, "run_chunk", broken)
    out = tmp_path / "d"
    with pytest.raises(DarkshowerError, match="all events failed"):
        generate({**TINY, "events": 20}, out, jobs=jobs, progress=False)
    assert not out.exists()
    monkeypatch.undo()
    assert generate(TINY, out, jobs=1, progress=False).n_events == 10


def test_failure_after_a_chunk_keeps_it_for_resuming(tmp_path, monkeypatch):
    real = run_mod.run_chunk

    def second_fails(task):
        if task.index == 1:
            raise DarkshowerError("chunk 1: boom")
        return real(task)

    monkeypatch.setattr(run_mod, "run_chunk", second_fails)
    out = tmp_path / "d"
    cfg = {**TINY, "events": 20}
    with pytest.raises(DarkshowerError, match="boom"):
        generate(cfg, out, jobs=1, progress=False)
    assert (out / "chunk-00000.json").exists() and not (out / "chunk-00001.json").exists()
    monkeypatch.undo()
    assert generate(cfg, out, jobs=1, progress=False).n_events == 20
