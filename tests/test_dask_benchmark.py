"""`run_benchmark(..., executor=)`: the grid's generate / train / score jobs as tasks of an executor give the
same datasets as the stages run one after the other, and a rerun skips what is done."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from darkshower.data.dataset import open_dataset
from darkshower.execute import Processes
from darkshower.pipeline import run_benchmark


def _config(qcd_ds, svj_ds):
    return {
        "name": "tiny", "seed": 3, "threads": 1,
        "train": {"name": "qcd_train", "path": str(qcd_ds.path)},
        "background": {"name": "qcd_test", "process": "qcd", "events": 60, "params": {"pthat_min": 300},
                       "generate": {"chunk_size": 30}},
        "signals": [{"name": "svj", "process": "svj", "events": 40, "params": {"r_inv": 0.3},
                     "generate": {"chunk_size": 20}}],
        "methods": [{"method": "ae-hlf", "epochs": 1, "config": {"batch_size": 32}}],
        "report": False,
    }


@pytest.mark.slow  # ~45 s on 2 cores: two generations, worker start-up, one training
def test_grid_as_tasks_matches_the_sequential_stages(qcd_ds, svj_ds, tmp_path):
    cfg = _config(qcd_ds, svj_ds)
    stages = ("generate", "train", "score")
    seq = run_benchmark(cfg, tmp_path / "seq", jobs=1, progress=False, stages=("generate",))
    par = run_benchmark(cfg, tmp_path / "par", progress=False, stages=stages, executor=Processes(2))
    assert not seq["failed"] and not par["failed"]
    status = json.loads((tmp_path / "par" / "status.json").read_text())
    assert {k for k, v in status.items() if v["status"] == "done"} == {
        "generate:qcd_test", "generate:svj", "train:ae-hlf", "score:ae-hlf"}
    for name in ("qcd_test", "svj"):  # the same data as the sequential generation
        a, b = open_dataset(tmp_path / "seq" / "data" / name), open_dataset(tmp_path / "par" / "data" / name)
        assert [c["sha256"] for c in a.chunks] == [c["sha256"] for c in b.chunks]
    scores = pd.read_parquet(par["scores"]["ae-hlf"])
    assert scores["dataset"].nunique() == 2 and scores["score"].notna().all()
    # rerun: every job is done, nothing runs again
    mtime = (tmp_path / "par" / "runs" / "ae-hlf" / "model_last.pt").stat().st_mtime_ns
    again = run_benchmark(cfg, tmp_path / "par", progress=False, stages=stages, executor=Processes(2))
    assert again["scores"] == par["scores"]
    assert (tmp_path / "par" / "runs" / "ae-hlf" / "model_last.pt").stat().st_mtime_ns == mtime
