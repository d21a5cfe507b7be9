"""`darkshower benchmark` with per-sample pileup: train at one mu, test at another (issue #15 part 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from darkshower.data.dataset import open_dataset
from darkshower.errors import ConfigError, RunError
from darkshower.pipeline import load_benchmark_config, run_benchmark

MU = 8


def _config(qcd_ds, **over):
    cfg = {
        "name": "pu", "seed": 5, "threads": 1,
        "minbias": {"events": 30},
        "train": {"name": "qcd_train", "path": str(qcd_ds.path)},  # mu = 0
        "background": {"name": "qcd_test", "process": "qcd", "events": 30, "params": {"pthat_min": 300},
                       "pileup": {"mu": MU, "mitigation": "puppi"}},
        "signals": [{"name": "svj", "process": "svj", "events": 30, "params": {"r_inv": 0.3},
                     "pileup": {"mu": MU, "mitigation": "puppi"}}],
        "methods": [{"method": "ae-hlf", "epochs": 1, "config": {"batch_size": 32}}],
        "supervised_reference": False, "evaluation": {"n_bootstrap": 5, "executor": "local"}, "report": False,
    }
    cfg.update(over)
    return cfg


def test_train_mu0_test_mu_pileup(qcd_ds, tmp_path):
    out = tmp_path / "bench"
    s = run_benchmark(_config(qcd_ds), out, jobs=1, progress=False)
    status = json.loads((out / "status.json").read_text())
    assert status["generate:minbias"]["status"] == "done"
    assert open_dataset(out / "data" / "minbias").manifest["process"] == "minbias"
    for name in ("qcd_test", "svj"):
        ds = open_dataset(out / "data" / name)
        assert ds.manifest["pileup"]["mu"] == MU and ds.manifest["pileup"]["mitigation"] == "puppi"
        assert ds.manifest["pileup"]["library"]["path"] == str((out / "data" / "minbias").resolve())
        n_pu = np.asarray(ds.arrays(columns=["n_pu"]).n_pu)
        assert len(n_pu) == 30 and 0.5 * MU < n_pu.mean() < 1.5 * MU
    assert "n_pu" not in open_dataset(qcd_ds.path).arrays(columns=None, max_events=1).fields  # trained at mu = 0
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert any(r["method"] == "ae-hlf" and 0 <= r["auc"]["value"] <= 1 for r in metrics["results"])

    # a second benchmark scores the same run on other test samples (no training): `run:`
    cfg2 = _config(qcd_ds, methods=[{"method": "ae-hlf", "run": s["runs"]["ae-hlf"]}])
    cfg2["background"] = {"name": "qcd_test", "path": str(out / "data" / "qcd_test")}
    cfg2["signals"] = [{"name": "svj", "path": str(out / "data" / "svj")}]
    out2 = tmp_path / "bench2"
    s2 = run_benchmark(cfg2, out2, jobs=1, progress=False)
    assert not (out2 / "runs").exists() and not (out2 / "data").exists()  # nothing trained or generated
    assert s2["runs"]["ae-hlf"] == s["runs"]["ae-hlf"] and s2["scores"]["ae-hlf"] == str(out2 / "scores" / "ae-hlf.parquet")
    with pytest.raises(ConfigError, match=r"run .* was trained with 'ae-hlf', not 'wnae'"):
        load_benchmark_config(_config(qcd_ds, methods=[{"method": "wnae", "run": s["runs"]["ae-hlf"]}]))
    m2 = json.loads((out2 / "evaluation" / "metrics.json").read_text())
    auc = {r["method"]: r["auc"]["value"] for r in metrics["results"] if r["method"] == "ae-hlf"}
    assert auc == {r["method"]: r["auc"]["value"] for r in m2["results"] if r["method"] == "ae-hlf"}


def test_bad_pileup_configs(qcd_ds, tmp_path):
    cfg = _config(qcd_ds, minbias=None)
    with pytest.raises(ConfigError, match=r"sample 'qcd_test': pileup.mu = 8 needs a minimum-bias library"):
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds)
    cfg["signals"][0]["pileup"]["mitigation"] = "magic"
    with pytest.raises(ConfigError, match=r"sample 'svj' pileup.*mitigation"):
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds)
    cfg["train"]["pileup"] = {"mu": 0, "mitigation": "chs"}
    with pytest.raises(ConfigError, match=r"sample 'qcd_train': 'pileup' applies to generated samples"):
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds)
    cfg["background"]["generate"] = {"pileup": {"mu": 3, "beam_spot_z_mm": 20}}
    with pytest.raises(ConfigError, match=r"\['mu'\] given both in 'pileup' and in 'generate.pileup'"):
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds)
    cfg["signals"][0]["pileup"]["mu"] = -1
    with pytest.raises(ConfigError, match="mu"):
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds, methods=[{"method": "ae-hlf", "run": str(tmp_path / "nope")}])
    with pytest.raises(ConfigError, match=r"method 'ae-hlf': run .*nope is not a training run"):
        load_benchmark_config(cfg)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    cfg = _config(qcd_ds, methods=[{"method": "ae-hlf", "run": str(bad)}])
    with pytest.raises(RunError, match=r"corrupt.*run.json"):  # was a bare JSONDecodeError
        load_benchmark_config(cfg)
    cfg = _config(qcd_ds)
    cfg["background"]["generate"] = {"pileup": {"beam_spot_z_mm": 20}}
    assert load_benchmark_config(cfg).background.pileup.mu == MU
