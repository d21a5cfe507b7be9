"""The library API: the verbs exported by ``darkshower`` (lazily), and its checks for notebook callers."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import darkshower
from darkshower.errors import ConfigError

VERBS = ["generate", "import_dataset", "observables", "train", "score", "evaluate", "search", "report",
         "run_benchmark", "open_dataset", "get_method"]


def test_import_is_light():
    code = "import sys, darkshower; print(sorted(m for m in ('torch', 'numba', 'pandas', 'pythia8mc') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_verbs_are_exported_and_callable():
    assert set(VERBS) <= set(darkshower.__all__)
    assert set(VERBS) <= set(dir(darkshower))
    for verb in VERBS:
        assert callable(getattr(darkshower, verb)), verb
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        darkshower.nope  # noqa: B018


def test_train_and_evaluate_are_packages_and_verbs():
    import darkshower.evaluate.metrics
    import darkshower.train.score

    assert darkshower.train.train.__module__ == "darkshower.train.trainer"
    assert darkshower.train.load_run is darkshower.load_run
    assert darkshower.evaluate.evaluate.__module__ == "darkshower.evaluate.evaluation"
    with pytest.raises(ConfigError, match="unknown method 'no-such'"):
        darkshower.train("no-such", "x", "y")  # the call reaches darkshower.train.train


def test_one_version_source():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    from importlib.metadata import version

    assert darkshower.__version__ == version("darkshower") == pyproject["project"]["version"]


def test_library_checks_like_the_cli(qcd_ds, tmp_path):
    with pytest.raises(ConfigError, match="zcut"):
        darkshower.observables(qcd_ds, tmp_path / "t.parquet", zcut=1.5)
    with pytest.raises(ConfigError, match="max_jets"):
        darkshower.observables(qcd_ds, max_jets=-1)
    with pytest.raises(ConfigError, match="is a directory"):
        darkshower.observables(qcd_ds, tmp_path)
    jets, events = darkshower.observables(qcd_ds, tmp_path / "t.parquet", max_jets=1, progress=False)
    assert (tmp_path / "t.parquet").exists() and len(events) == qcd_ds.n_events
    assert (jets["jet_idx"] == 0).all() and len(jets) <= len(events)
