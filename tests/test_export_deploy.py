"""Deployment exports of a small distilled MLP student, end to end: int8 ONNX (ONNX Runtime quantization, AUC
change and speed-up kept in the run) and hls4ml (HLS project + compiled bit-accurate C++ emulation)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from darkshower.cli.main import main
from darkshower.train import train

FAST = {"threads": 1, "early_stopping": {"patience": None}, "batch_size": 32}


@pytest.fixture(scope="module")
def student(qcd_ds, tmp_path_factory):
    d = tmp_path_factory.mktemp("deploy")
    teacher = train("ae-hlf", qcd_ds, d / "teacher", config=FAST, epochs=2, progress=False)
    return train("distill", qcd_ds, d / "student", config={**FAST, "model": {"teacher_run": str(teacher)}},
                 epochs=3, progress=False)


def test_int8_export(student, qcd_ds, svj_ds, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "s.int8.onnx"
    assert main(["export", str(student), "--quantize", "int8", "--out", str(out), "--signal", str(svj_ds.path),
                 "--background", str(qcd_ds.path)]) == 0
    assert "speed-up" in capsys.readouterr().out
    rep = json.loads((student / "export_int8.json").read_text())
    assert rep["mode"] == "static" and rep["calibration_samples"] > 0 and rep["speedup"] > 0
    assert 0 <= rep["auc_int8"] <= 1 and rep["delta_auc"] == pytest.approx(rep["auc_int8"] - rep["auc_float"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.int8.onnx"]  # no temporary file left
    sess = ort.InferenceSession(str(out))
    ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # really quantized
    n = sess.get_inputs()[0].shape[1]
    assert sess.run(None, {"x": np.zeros((3, n), np.float32)})[0].shape == (3,)
    # option checks: one clear error, exit 2
    assert main(["export", str(student), "--quantize", "int8", "--format", "triton", "--out", str(tmp_path / "r")]) == 2
    assert main(["export", str(student), "--out", str(tmp_path / "x.onnx"), "--signal", str(svj_ds.path)]) == 2
    assert main(["export", str(student), "--quantize", "int8", "--out", str(tmp_path / "y.onnx"),
                 "--signal", str(svj_ds.path)]) == 2
    assert not (tmp_path / "y.onnx").exists()


def test_hls4ml_export(student, qcd_ds, svj_ds, tmp_path, capsys):
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:
        pytest.skip("g++ not available for hls4ml's C++ emulation")
    out = tmp_path / "hls"
    ov = tmp_path / "ov.yaml"
    ov.write_text("_0:\n  Precision:\n    weight: ap_fixed<12,4>\n")
    assert main(["export", str(student), "--format", "hls4ml", "--out", str(out), "--precision", "ap_fixed<18,8>",
                 "--overrides", str(ov), "--signal", str(svj_ds.path), "--background", str(qcd_ds.path)]) == 0
    assert "vitis-run --tcl build_prj.tcl" in capsys.readouterr().out
    rep = json.loads((out / "darkshower_hls4ml.json").read_text())
    assert rep == json.loads((student / "export_hls4ml.json").read_text())
    assert rep["precision"] == "ap_fixed<18,8>" and rep["host_preprocessing"] and rep["samples"] > 0
    # the emulation follows the float model: fixed-point rounding only
    span = rep["score_range"][1] - rep["score_range"][0]
    assert rep["max_abs_diff"] < 0.1 * max(span, 1.0) and rep["corr"] > 0.95
    assert abs(rep["delta_auc"]) < 0.1
    cfg = (out / "hls4ml_config.yml").read_text()
    assert "ap_fixed<12,4>" in cfg and "ap_fixed<18,8>" in cfg  # override and default both in the project
    assert (out / "build_prj.tcl").exists() and "synth      1" in (out / "build_opt.tcl").read_text()
    assert list((out / "firmware").glob("myproject*.so"))  # the compiled emulation
    # errors: unknown layer in overrides; an existing non-empty directory; a model hls4ml export does not take
    ov.write_text("nope: {ReuseFactor: 2}\n")
    assert main(["export", str(student), "--format", "hls4ml", "--out", str(tmp_path / "h2"),
                 "--overrides", str(ov)]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err and not (tmp_path / "h2").exists()
    assert main(["export", str(student), "--format", "hls4ml", "--out", str(out)]) == 2
