"""Executors as objects: Local(), Processes(2) and Dask(scheduler="local:2") give bit-identical outputs for
generate, import, observables, score (and the representation cache, evaluation tables); a Dask worker killed
mid-run still gives the complete dataset; faults are named; the output-directory probe; the [dask] extra.

One LocalCluster (2 worker processes on 127.0.0.1) is shared by the whole module."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.errors import ClusterError, ConfigError, DarkshowerError
from darkshower.execute import Local, Processes, resolve_executor
from darkshower.execute.dask import Dask

pytest.importorskip("distributed")
# (the test's own functions reach the LocalCluster's workers: spawned workers inherit this sys.path)

GEN = {"process": "qcd", "events": 80, "seed": 5, "chunk_size": 20, "params": {"pthat_min": 300}}


@pytest.fixture(scope="module")
def dask_ex():
    ex = Dask(scheduler="local:2")
    assert ex.workers == 2
    yield ex
    ex.close()


def _executors(dask_ex):
    return {"local": Local(), "processes": Processes(2), "dask": dask_ex}


def _chunk_digests(ds) -> list[tuple[int, str]]:
    return [(c["index"], c["sha256"]) for c in ds.chunks]


# -- the executor objects -------------------------------------------------------------------------------
def square(x):
    return x * x


def user_error(x):
    Path(x).with_suffix(f".{os.getpid()}.{time.monotonic_ns()}").write_text("ran")
    raise ConfigError(f"bad setting in {Path(x).name}")


def flaky(x):
    raise RuntimeError(f"disk hiccup on {x}")


def test_dask_runs_all_items_and_pickles_without_its_client(dask_ex):
    got = []
    dask_ex.run(square, range(9), got.append, desc="squares", progress=False)
    assert sorted(got) == [i * i for i in range(9)]
    copy = pickle.loads(pickle.dumps(dask_ex))
    assert copy._client is None and copy.scheduler == "local:2" and copy.retries == dask_ex.retries
    # a user's client: the pickled copy keeps the scheduler's address instead
    user = Dask(client=dask_ex.client, retries=1)
    state = user.__getstate__()
    assert state["scheduler"].startswith("tcp://127.0.0.1:") and "client" not in json.dumps(state)


def test_user_error_is_raised_once_not_retried(dask_ex, tmp_path):
    with pytest.raises(ConfigError, match="bad setting in x"):
        dask_ex.run(user_error, [str(tmp_path / "x")], lambda r: None)
    assert len(list(tmp_path.glob("x.*"))) == 1  # not retried (retries are for crashes)


def test_a_task_that_keeps_failing_is_named_with_its_error(dask_ex):
    ex = Dask(client=dask_ex.client, retries=1)
    with pytest.raises(ClusterError, match=r"chunk 7: failed 2 times on the Dask workers; last error: "
                                           r"RuntimeError: disk hiccup on 7"):
        ex.run(flaky, [7], lambda r: None, name=lambda i: f"chunk {i}")


def test_local_and_processes_name_the_failing_item():
    for ex in (Local(), Processes(2)):
        with pytest.raises(RuntimeError, match="disk hiccup on 3") as info:
            ex.run(flaky, [3], lambda r: None, name=lambda i: f"chunk {i}")
        assert "(while running chunk 3)" in "".join(getattr(info.value, "__notes__", []))


def test_resolve_executor_options():
    assert isinstance(resolve_executor(None, None, 1), Local)
    assert isinstance(resolve_executor("processes", None, 3), Processes)
    assert resolve_executor("processes", None, 3).workers == 3
    with pytest.raises(ConfigError, match="--scheduler local:2: applies to --executor dask only"):
        resolve_executor("local", "local:2", 1)
    with pytest.raises(ConfigError, match="local:N needs a number of workers"):
        Dask(scheduler="local:zero")
    with pytest.raises(ConfigError, match="--executor 'spark'"):
        resolve_executor("spark")
    assert main(["generate", "qcd", "--events", "10", "--out", "/nonexistent/x", "--executor", "local",
                 "--scheduler", "local:2"]) == 2


class _OtherMountClient:
    """A client whose second worker mounts the shared filesystem elsewhere (a different directory there)."""

    def __init__(self, elsewhere: Path):
        self.elsewhere = elsewhere

    def run(self, fn, directory, token):
        return {"tcp://10.0.0.1:1": fn(directory, token), "tcp://10.0.0.2:1": fn(str(self.elsewhere), token)}


def test_output_dir_probe(dask_ex, tmp_path):
    dask_ex.check_output_dir(tmp_path)  # the real workers see it
    assert not list(tmp_path.iterdir()), "probe files left behind"
    (tmp_path / "other").mkdir()
    ex = Dask(client=_OtherMountClient(tmp_path / "other"))
    with pytest.raises(ClusterError, match=rf"output directory {tmp_path}: Dask worker tcp://10.0.0.2:1 cannot use "
                                           r"it: cannot read .darkshower-probe-\w+ written by the caller.*filesystem"):
        ex.check_output_dir(tmp_path)
    assert not list(tmp_path.glob(".darkshower-probe-*"))


def test_missing_extra_is_one_line_naming_it(tmp_path):
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from darkshower.cli.main import main\n"
            f"sys.exit(main(['observables', {str(tmp_path / 'nods')!r}, '--out', {str(tmp_path / 't.parquet')!r}, "
            "'--executor', 'dask']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "[dask] extra" in lines[0] and "pip install 'darkshower[dask]'" in lines[0], r.stderr


# -- stages: bit-identical outputs ---------------------------------------------------------------------
def test_generate_identical_with_every_executor(dask_ex, tmp_path):
    from darkshower.simulate.run import generate

    digests = {}
    for name, ex in _executors(dask_ex).items():
        ds = generate(GEN, tmp_path / name, progress=False, command=["pytest"], executor=ex)
        digests[name] = _chunk_digests(ds)
        assert ds.n_events == GEN["events"]
    assert digests["local"] == digests["processes"] == digests["dask"] and len(digests["local"]) == 4


@pytest.mark.slow
def test_generate_cli_on_a_running_scheduler(dask_ex, tmp_path, capsys):
    from darkshower.data.dataset import open_dataset
    from darkshower.simulate.run import generate

    ref = generate(GEN, tmp_path / "ref", progress=False, command=["pytest"], executor=Local())
    address = dask_ex.client.scheduler.address
    rc = main(["generate", "qcd", "--events", "80", "--seed", "5", "--chunk-size", "20", "--set", "pthat_min=300",
               "--out", str(tmp_path / "cli"), "--executor", "dask", "--scheduler", address, "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert _chunk_digests(open_dataset(tmp_path / "cli")) == _chunk_digests(ref)
    assert dask_ex.workers == 2  # the CLI closed its client only, not the cluster it connected to


def _make_4vec(path, n=250, p=12, seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h:
        for j, name in enumerate(("jet1_PFCands", "jet2_PFCands")):
            pt = rng.exponential(20, (n, p)) + 1
            eta = rng.normal(0.5 - j, 0.2, (n, p))
            phi = rng.normal(3.0 * j, 0.2, (n, p))
            v = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=-1)
            v[np.arange(p)[None, :] >= rng.integers(3, p, n)[:, None]] = 0
            h.create_dataset(name, data=v.astype(np.float32))
    return path


def test_import_identical_with_every_executor(dask_ex, tmp_path):
    from darkshower.io import import_dataset

    files = [_make_4vec(tmp_path / "a.h5", seed=1), _make_4vec(tmp_path / "b.h5", n=120, seed=2)]
    digests = {}
    for name, ex in _executors(dask_ex).items():
        ds = import_dataset("h5-4vec", files, tmp_path / name, chunk_size=100, progress=False, executor=ex)
        digests[name] = _chunk_digests(ds)
        ids = np.concatenate([np.asarray(c["event_id"]) for c in ds.iter_chunks(["event_id"])])
        assert len(ids) == 370 and len(np.unique(ids)) == len(ids)
    assert digests["local"] == digests["processes"] == digests["dask"] and len(digests["local"]) == 5


def test_import_skip_bad_files_with_dask(dask_ex, tmp_path):
    from darkshower.io import import_dataset

    good = _make_4vec(tmp_path / "good.h5", seed=3)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 10)
    ds = import_dataset("h5-4vec", [good, bad], tmp_path / "ds", chunk_size=100, skip_bad_files=True,
                        progress=False, executor=dask_ex)
    assert ds.n_events == 250 and [s["path"] for s in ds.manifest["skipped_files"]] == [str(bad)]


def test_observables_identical_with_every_executor(dask_ex, qcd_ds):
    from darkshower.represent.observables import observables

    tables = {name: observables(qcd_ds, progress=False, executor=ex) for name, ex in _executors(dask_ex).items()}
    for name in ("processes", "dask"):
        pd.testing.assert_frame_equal(tables[name][0], tables["local"][0], check_exact=True)
        pd.testing.assert_frame_equal(tables[name][1], tables["local"][1], check_exact=True)
    assert len(tables["local"][1]) == qcd_ds.n_events


@pytest.fixture(scope="module")
def ae_run(qcd_ds, tmp_path_factory):
    from darkshower.train import train

    return train("ae-hlf", qcd_ds, tmp_path_factory.mktemp("run") / "run",
                 config={"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}, epochs=1,
                 progress=False)


def test_score_identical_with_every_executor(dask_ex, ae_run, qcd_ds, svj_ds, tmp_path):
    from darkshower.train import score

    tables = {}
    for name, ex in _executors(dask_ex).items():
        jets, events = score(ae_run, [qcd_ds, svj_ds], tmp_path / f"{name}.parquet", progress=False, threads=1,
                             executor=ex)
        tables[name] = (pd.read_parquet(jets), pd.read_parquet(events))
    for name in ("processes", "dask"):
        pd.testing.assert_frame_equal(tables[name][0], tables["local"][0], check_exact=True)
        pd.testing.assert_frame_equal(tables[name][1], tables["local"][1], check_exact=True)
    assert tables["local"][0]["dataset"].nunique() == 2


def test_representation_cache_identical_with_dask(dask_ex, qcd_ds, tmp_path):
    from darkshower.models.runconfig import DataConfig
    from darkshower.represent.config import parse_representation
    from darkshower.train.data import build_cache, load_store

    rep = parse_representation({"kind": "observables"})
    data_cfg = DataConfig()
    assert build_cache(qcd_ds.path, rep, data_cfg, tmp_path / "dask", executor=dask_ex) == len(qcd_ds.chunks)
    assert build_cache(qcd_ds.path, rep, data_cfg, tmp_path / "dask", executor=dask_ex) == 0  # all cached
    a, _ = load_store(qcd_ds.path, rep, data_cfg, cache_dir=tmp_path / "local")
    b, _ = load_store(qcd_ds.path, rep, data_cfg, cache_dir=tmp_path / "dask")
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == sorted(p.name for p in (tmp_path / "dask").iterdir())
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_evaluation_tables_identical_with_dask(dask_ex, svj_ds):
    from darkshower.evaluate.tables import load_dataset

    a = load_dataset(svj_ds.path, "signal", features=True, executor=Local())
    b = load_dataset(svj_ds.path, "signal", features=True, executor=dask_ex)
    for x, y in ((a.events, b.events), (a.jets, b.jets), (a.features, b.features)):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


# -- a worker killed mid-run -------------------------------------------------------------------------------
def _kill_a_worker_when_chunks_appear(client, out: Path, killed: list):
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if any(out.glob("chunk-*.json")):  # the run is under way: the other tasks are running or queued
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_dask_worker_still_gives_the_complete_identical_dataset(tmp_path):
    from darkshower.simulate.run import generate

    cfg = {**GEN, "events": 160}  # 8 chunks on 2 workers
    ref = generate(cfg, tmp_path / "ref", progress=False, command=["pytest"], executor=Local())
    with Dask(scheduler="local:2", retries=3) as ex:
        killed: list = []
        t = threading.Thread(target=_kill_a_worker_when_chunks_appear, args=(ex.client, tmp_path / "dask", killed))
        t.start()
        ds = generate(cfg, tmp_path / "dask", progress=False, command=["pytest"], executor=ex)
        t.join()
    assert killed, "no worker was killed (the run ended before the first chunk was seen?)"
    assert _chunk_digests(ds) == _chunk_digests(ref)
    ids = np.concatenate([np.asarray(c["event_id"]) for c in ds.iter_chunks(["event_id"])])
    assert len(ids) == cfg["events"] and len(np.unique(ids)) == len(ids)
    assert ds.manifest["status"] == "complete"


# -- cluster recipes ------------------------------------------------------------------------------------
def test_cluster_yaml_to_kwargs(tmp_path):
    from darkshower.execute.cluster import cluster_kwargs, load_cluster_config

    f = tmp_path / "slurm.yaml"
    f.write_text('type: slurm\njobs: 3\ncores: 4\nprocesses: 2\nmemory: 16GB\nwalltime: "04:00:00"\nqueue: std\n'
                 'account: acct\njob_extra: ["--constraint=cpu"]\nvenv: /shared/venv\nlog_directory: /shared/logs\n')
    name, kw = cluster_kwargs(load_cluster_config(f))
    assert name == "SLURMCluster"
    assert kw == {"cores": 4, "processes": 2, "memory": "16GB", "job_script_prologue": [],
                  "scheduler_options": {"port": 8786, "dashboard_address": ":8787"}, "log_directory": "/shared/logs",
                  "job_extra_directives": ["--constraint=cpu"], "walltime": "04:00:00", "queue": "std",
                  "account": "acct", "python": "/shared/venv/bin/python"}
    name, kw = cluster_kwargs(load_cluster_config({
        "type": "htcondor", "cores": 2, "memory": "8GB", "walltime": "02:00:00", "container": "/cvmfs/img",
        "job_extra": {"+JobFlavour": '"workday"'}}))
    assert name == "HTCondorCluster" and kw["disk"] == "4GB"
    assert kw["job_extra_directives"] == {"+JobFlavour": '"workday"', "+MaxRuntime": "7200",
                                          "MY.SingularityImage": '"/cvmfs/img"'}
    name, kw = cluster_kwargs(load_cluster_config({"type": "local", "jobs": 2, "cores": 2, "processes": 2}))
    assert name == "LocalCluster" and kw["n_workers"] == 4 and kw["threads_per_worker"] == 1
    assert kw["host"] == "127.0.0.1"


@pytest.mark.parametrize("bad, match", [
    ({"type": "pbs"}, "type"),
    ({"type": "slurm", "walltime": "4h"}, r"walltime '4h': write it as HH:MM:SS"),
    ({"type": "slurm", "cores": 1, "processes": 2}, "processes=2 > cores=1"),
    ({"type": "local", "venv": "/x"}, "venv: apply to batch clusters"),
    ({"type": "slurm", "cors": 4}, "cors"),
])
def test_bad_cluster_configs_are_named(bad, match, tmp_path):
    from darkshower.execute.cluster import load_cluster_config

    with pytest.raises(ConfigError, match=match):
        load_cluster_config(bad)
    f = tmp_path / "c.yaml"
    f.write_text(json.dumps(bad))
    assert main(["cluster", "--config", str(f), "--dry-run"]) == 2


def test_cluster_dry_run_prints_the_slurm_job_script(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text('type: slurm\ncores: 4\nprocesses: 2\nmemory: 8GB\nwalltime: "01:00:00"\nvenv: /shared/venv\n')
    assert main(["cluster", "--config", str(f), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "SLURMCluster(" in out and "#SBATCH -t 01:00:00" in out and "#SBATCH --cpus-per-task=4" in out
    assert "/shared/venv/bin/python -m distributed.cli.dask_worker" in out and "--nworkers 2" in out


def test_cluster_command_local_serves_the_stages(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("type: local\njobs: 1\ncores: 1\nmemory: 1GB\nscheduler_port: 0\ndashboard_port: null\n")
    proc = subprocess.Popen([sys.executable, "-m", "darkshower.cli.main", "cluster", "--config", str(f)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in proc.stdout:
            if line.startswith("scheduler: "):
                address = line.split()[1]
            if line.startswith("ready"):
                break
        assert address and address.startswith("tcp://127.0.0.1:"), proc.stderr.read() if proc.poll() else address
        with Dask(scheduler=address) as ex:
            got = []  # (a builtin: that scheduler, in another process, cannot import this test module)
            ex.run(abs, [-2, 3], got.append)
            assert sorted(got) == [2, 3] and ex.workers == 1
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "cluster stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_unreachable_scheduler_is_named():
    ex = Dask(scheduler="tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(ClusterError, match=r"--scheduler tcp://127.0.0.1:9: cannot connect"):
        ex.run(square, [1], print)


def test_cluster_error_is_a_darkshower_error():
    assert issubclass(ClusterError, DarkshowerError) and ClusterError.exit_code == 2


def test_cli_observables_and_score_on_the_cluster(dask_ex, ae_run, qcd_ds, tmp_path, capsys):
    from darkshower.represent.observables import observables
    from darkshower.train import score

    address = dask_ex.client.scheduler.address
    assert main(["observables", str(qcd_ds.path), "--out", str(tmp_path / "obs.parquet"), "--scheduler", address,
                 "--no-progress"]) == 0, capsys.readouterr().err
    jets, _ = observables(qcd_ds, progress=False, executor=Local())
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "obs.parquet"), jets, check_exact=True)
    assert main(["score", str(ae_run), str(qcd_ds.path), "--out", str(tmp_path / "s.parquet"), "--threads", "1",
                 "--executor", "dask", "--scheduler", address, "--no-progress"]) == 0, capsys.readouterr().err
    ref, _ = score(ae_run, [qcd_ds], tmp_path / "ref.parquet", progress=False, threads=1, executor=Local())
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), pd.read_parquet(ref), check_exact=True)
    assert dask_ex.workers == 2
