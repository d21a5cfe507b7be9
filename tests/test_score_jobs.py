"""`score --jobs 2` gives the same scores as `--jobs 1` (worker processes, one model load each)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.train import score as score_fn
from darkshower.train import train

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


@pytest.fixture(scope="module")
def run(qcd_ds, tmp_path_factory):
    return train("ae-hlf", qcd_ds, tmp_path_factory.mktemp("run") / "run", config=FAST, epochs=1, progress=False)


def test_jobs_2_equals_jobs_1(run, qcd_ds, svj_ds, tmp_path, capsys):
    one, one_ev = score_fn(run, [qcd_ds, svj_ds], tmp_path / "one.parquet", progress=False, jobs=1, threads=1)
    rc = main(["score", str(run), str(qcd_ds.path), str(svj_ds.path), "--out", str(tmp_path / "two.parquet"),
               "--jobs", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    a, b = pd.read_parquet(one), pd.read_parquet(tmp_path / "two.parquet")
    assert len(a) == len(b) > 0 and a["dataset"].nunique() == 2
    assert (a[["dataset", "event_id", "jet_idx"]].values == b[["dataset", "event_id", "jet_idx"]].values).all()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6, atol=1e-9)
    ea, eb = pd.read_parquet(one_ev), pd.read_parquet(tmp_path / "two.events.parquet")
    np.testing.assert_allclose(ea["score_max2"], eb["score_max2"], rtol=1e-6, atol=1e-9)
