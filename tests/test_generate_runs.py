"""Determinism, resume, manifest round trip and bad input of `darkshower generate`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import awkward as ak
import pytest

from darkshower import open_dataset
from darkshower.cli.main import main
from darkshower.errors import DatasetError
from darkshower.simulate.run import generate

SMALL = {"process": "qcd", "events": 60, "seed": 7, "chunk_size": 20, "params": {"pthat_min": 300}}


def same_events(a, b) -> bool:
    return len(a) == len(b) and ak.to_list(a) == ak.to_list(b)


def test_same_seed_same_data_whatever_jobs(tmp_path):
    d1 = generate(SMALL, tmp_path / "j1", jobs=1, progress=False)
    d2 = generate(SMALL, tmp_path / "j2", jobs=2, progress=False)
    assert same_events(d1.arrays(), d2.arrays())
    assert [c["sha256"] for c in d1.chunks] == [c["sha256"] for c in d2.chunks]
    d3 = generate({**SMALL, "seed": 8}, tmp_path / "s8", jobs=1, progress=False)
    assert not same_events(d1.arrays(), d3.arrays())


def test_rerun_of_a_complete_dataset_keeps_its_manifest(tmp_path):
    """Rerunning the command on a complete dataset generates nothing and leaves the manifest (its provenance:
    the command and time that made the data) as it was."""
    d = generate(SMALL, tmp_path / "d", jobs=1, progress=False)
    before = (d.path / "manifest.json").read_bytes()
    again = generate(SMALL, tmp_path / "d", jobs=1, progress=False, command=["a", "later", "command"])
    assert (d.path / "manifest.json").read_bytes() == before and again.n_events == d.n_events
    import darkshower.simulate.run as run_mod

    def stop(*a, **k):
        raise KeyboardInterrupt

    real = run_mod.using
    run_mod.using = stop
    try:  # a rerun interrupted before it did anything: the dataset stays complete, the lock released
        with pytest.raises(KeyboardInterrupt):
            generate(SMALL, tmp_path / "d", jobs=1, progress=False)
    finally:
        run_mod.using = real
    assert (d.path / "manifest.json").read_bytes() == before and not (d.path / ".lock").exists()
    (d.path / "chunk-00001.parquet").unlink()  # a chunk lost: the rerun regenerates it and writes the manifest
    (d.path / "chunk-00001.json").unlink()
    fixed = generate(SMALL, tmp_path / "d", jobs=1, progress=False, command=["a", "later", "command"])
    assert fixed.manifest["provenance"]["command"] == ["a", "later", "command"]
    assert [c["sha256"] for c in fixed.chunks] == [c["sha256"] for c in d.chunks]


def test_event_ids_unique_and_joinable(tmp_path):
    ds = generate(SMALL, tmp_path / "d", jobs=1, progress=False)
    a = ds.arrays()
    ids = ak.to_numpy(a.event_id)
    assert len(set(ids.tolist())) == len(ids)
    assert ((ids >> 32) == ak.to_numpy(a.chunk)).all() and ((ids & 0xFFFFFFFF) == ak.to_numpy(a.event)).all()


def test_manifest_round_trip(tmp_path):
    cfg = {**SMALL, "pythia": ["PartonLevel:MPI = off"]}
    ds = generate(cfg, tmp_path / "d", jobs=1, progress=False, command=["test"])
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["schema_version"] == "1.0" and m["status"] == "complete" and m["process"] == "qcd"
    assert m["n_events"] == 60 and len(m["chunks"]) == 3
    assert "PartonLevel:MPI = off" in m["provenance"]["pythia_settings"]
    assert m["provenance"]["pythia_effective"]["PartonLevel:MPI"] is False
    assert m["provenance"]["versions"]["pythia8mc"] == "8.317.2"
    assert m["parameters"]["pthat_min"] == 300
    assert m["cross_section"]["sigma_gen_pb"] > 0 and 0 < m["cross_section"]["selection_efficiency"] <= 1
    assert len(m["provenance"]["chunk_seeds"]) == 3
    ds.verify()
    assert ds.manifest == m
    # reopening gives the same events as reading chunk by chunk
    assert sum(len(c) for c in ds) == ds.n_events


def test_rerun_completes_only_missing_chunks(tmp_path):
    full = generate(SMALL, tmp_path / "full", jobs=1, progress=False)
    out = tmp_path / "part"
    generate(SMALL, out, jobs=1, progress=False)
    # simulate a crash after chunk 0: later chunks and their sidecars are gone, manifest incomplete
    for i in (1, 2):
        (out / f"chunk-{i:05d}.parquet").unlink()
        (out / f"chunk-{i:05d}.json").unlink()
    m = json.loads((out / "manifest.json").read_text())
    m["status"] = "incomplete"
    (out / "manifest.json").write_text(json.dumps(m))
    mtime0 = (out / "chunk-00000.parquet").stat().st_mtime_ns
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(out)
    ds = generate(SMALL, out, jobs=1, progress=False)
    assert (out / "chunk-00000.parquet").stat().st_mtime_ns == mtime0  # not regenerated
    assert same_events(ds.arrays(), full.arrays())


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "darkshower.cli.main", "generate", "qcd", "--events", "200", "--chunk-size", "25",
           "--seed", "3", "--jobs", "1", "--out", str(out), "--set", "pthat_min=300", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 60 and not (out / "chunk-00001.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "chunk-00001.json").exists()
    # the kill really interrupted the run: chunks are missing and the dataset is not usable yet
    before = {f.name: f.stat().st_mtime_ns for f in out.glob("chunk-*.json")}
    assert 2 <= len(before) < 8, f"{len(before)} of 8 chunks complete when killed: nothing left to resume"
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(out)
    # never a half file under a final name: every parquet present is either complete or absent
    for f in out.glob("chunk-*.parquet"):
        side = f.with_suffix(".json")
        if side.exists():
            assert json.loads(side.read_text())["bytes"] == f.stat().st_size
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    # complete chunks were kept, only the missing ones were generated
    assert {n: (out / n).stat().st_mtime_ns for n in before} == before
    assert len(list(out.glob("chunk-*.json"))) == 8
    ds = open_dataset(out, verify=True)
    assert ds.n_events == 200 and not list(out.glob(".*.tmp"))
    ids = ak.to_numpy(ds.arrays(columns=["event_id"]).event_id)
    assert len(set(ids.tolist())) == 200
    ref = generate({"process": "qcd", "events": 200, "chunk_size": 25, "seed": 3, "params": {"pthat_min": 300}},
                   tmp_path / "ref", jobs=1, progress=False)
    assert same_events(ds.arrays(), ref.arrays())


# ---------------------------------------------------------------------------------------- bad input
def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["generate", "zprime", "--events", "5"], "unknown process 'zprime'"),
        (["generate", "svj", "--events", "5", "--set", "r_inv=1.5"], "r_inv"),
        (["generate", "svj", "--events", "5", "--set", "m_med=-5"], "m_med"),
        (["generate", "svj", "--events", "5", "--set", "r_invisible=0.3"], "unknown key"),
        (["generate", "qcd", "--events", "5", "--set", "jets.radius=7"], "jets.radius"),
        (["generate", "qcd", "--events", "5", "--pythia", "NoSuch:setting = 3"], "Pythia rejected the setting 'NoSuch:setting = 3'"),
        (["generate", "qcd", "--events", "5", "--set", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_input_one_clear_error(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    code, err = run_cli(capsys, *args, "--out", str(out))
    assert code != 0
    assert needle in err and err.count("error:") == 1
    assert not list(out.glob("chunk-*.parquet")) if out.exists() else True


def test_out_is_existing_non_dataset_directory(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my thesis")
    code, err = run_cli(capsys, "generate", "qcd", "--events", "5", "--out", str(tmp_path))
    assert code != 0 and "not a darkshower dataset" in err
    assert (tmp_path / "notes.txt").read_text() == "my thesis"


def test_different_settings_into_existing_dataset(tmp_path, capsys):
    generate(SMALL, tmp_path / "d", jobs=1, progress=False)
    code, err = run_cli(capsys, "generate", "qcd", "--events", "60", "--seed", "9", "--chunk-size", "20",
                        "--set", "pthat_min=300", "--out", str(tmp_path / "d"))
    assert code != 0 and "different settings" in err


def test_truncated_chunk_is_detected(tmp_path, capsys):
    out = tmp_path / "d"
    generate(SMALL, out, jobs=1, progress=False)
    f = out / "chunk-00001.parquet"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    code, err = run_cli(capsys, "info", str(out))
    assert code != 0 and "chunk-00001.parquet" in err and "truncated" in err
    code, err = run_cli(capsys, "generate", "qcd", "--events", "60", "--seed", "7", "--chunk-size", "20",
                        "--set", "pthat_min=300", "--out", str(out))
    assert code != 0 and "chunk-00001.parquet" in err and "corrupt" in err


def test_info_prints_summary(tmp_path, capsys):
    generate(SMALL, tmp_path / "d", jobs=1, progress=False)
    assert main(["info", str(tmp_path / "d"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "qcd" in out and "60 in 3 chunks" in out and "checksums verified" in out


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "darkshower" in capsys.readouterr().out


def test_yaml_config_and_extras(tmp_path, capsys):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(
        "process: qcd\nevents: 20\nseed: 5\nparams: {pthat_min: 300, bias_pow: 4.0}\n"
        "jets: {store_r04: true, min_jets: 1}\n"
    )
    assert main(["generate", "qcd", "--config", str(cfg), "--out", str(tmp_path / "d"), "--jobs", "1",
                 "--no-progress"]) == 0
    ds = open_dataset(tmp_path / "d")
    a = ds.arrays()
    w = ak.to_numpy(a.weight)
    assert len(w) == 20 and w.std() > 0  # biased generation carries weights
    assert "PhaseSpace:bias2Selection = on" in ds.manifest["provenance"]["pythia_settings"]
    assert ak.all(ak.num(a.jets_r04) >= 1) and ak.all(a.jets_r04.pt > 20)
    bad = tmp_path / "bad.yaml"
    bad.write_text("process: qcd\nevents: 20\njets: {radiuss: 0.4}\n")
    code, err = run_cli(capsys, "generate", "qcd", "--config", str(bad), "--out", str(tmp_path / "e"))
    assert code != 0 and "jets.radiuss" in err and "unknown key" in err


def test_second_writer_is_refused_while_first_runs(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / ".lock").write_text(str(sleeper.pid))
        code, err = run_cli(capsys, "generate", "qcd", "--events", "20", "--out", str(out))
        assert code != 0 and f"pid {sleeper.pid}" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: its stale lock is taken over and released at the end
    assert main(["generate", "qcd", "--events", "20", "--chunk-size", "20", "--set", "pthat_min=300",
                 "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    assert not (out / ".lock").exists()
