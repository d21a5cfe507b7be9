"""int8 ONNX of a trained run: ``export_int8(run, out, signal=..., background=...)`` /
``darkshower export RUN --format onnx --quantize int8 --out F [--signal DS --background DS]``.

The float model is exported (:func:`darkshower.export.onnx.export_onnx`) and quantized with ONNX Runtime:
static QDQ quantization (int8 weights per channel, uint8 activations) of MatMul/Gemm/Conv, calibrated on a
sample of the run's own training data (``--calibration DS`` to choose another dataset); ``mode="dynamic"``
quantizes weights only (no calibration). The score arithmetic after the last layer (differences, squares,
sums) stays in float. The report — AUC of the float and int8 models on the given signal/background pair, the
largest score difference, and the single-thread speed-up on the same samples — is returned, printed and kept
in the run as ``RUN/export_int8.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from darkshower.errors import ExportError

log = logging.getLogger(__name__)

__all__ = ["export_int8"]

REPORT = "export_int8.json"


def _samples(rep, datasets, limit: int, window=None) -> dict:
    """Model inputs (numpy, by input name) of up to ``limit`` samples of the datasets, plus ``nonfinite``;
    ``window``: the run's data config, whose jet window is applied as in training."""
    from darkshower.data.dataset import open_dataset
    from darkshower.represent.build import build
    from darkshower.represent.store import concat, nonfinite_rows, store_from_rep, store_len, take, to_torch
    from darkshower.train.data import select_jets

    parts, n = [], 0
    for d in datasets:
        ds = d if hasattr(d, "read_chunk") else open_dataset(d)
        for i in range(len(ds.chunks)):
            events = ds.read_chunk(i) if window is None else select_jets(ds.read_chunk(i), window)
            s = store_from_rep(build(rep, events, f"{ds.path} (chunk {i})"), 0.0)
            if "graphs" in s:
                raise ExportError("int8 export of graph models (Lund graphs) is not supported")
            parts.append(s)
            n += store_len(s)
            if n >= limit:
                break
        if n >= limit:
            break
    if not parts or n == 0:
        raise ExportError(f"no samples in {[str(getattr(d, 'path', d)) for d in datasets]}")
    store = concat(parts)
    store = take(store, np.arange(min(n, limit)))
    good = ~nonfinite_rows(store)
    batch = to_torch(take(store, np.flatnonzero(good)))
    return {k: v.numpy() for k, v in batch.items()}


def _feeds(sess, samples: dict) -> dict:
    out = {}
    for i in sess.get_inputs():
        if i.name not in samples:
            raise ExportError(f"the model's input {i.name!r} is not produced by the run's representation")
        a = samples[i.name]
        out[i.name] = a.astype(bool) if i.type == "tensor(bool)" else a.astype(np.float32, copy=False)
    return out


def _time_per_row(sess, feeds: dict, min_seconds: float = 0.3) -> float:
    sess.run(None, feeds)  # warm-up
    n_rows = len(next(iter(feeds.values())))
    reps, t0 = 0, time.perf_counter()
    while True:
        sess.run(None, feeds)
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and reps >= 3:
            return dt / (reps * n_rows)


def export_int8(run, out, signal=None, background=None, calibration=None, mode: str = "static",
                which: str = "best", n_calibration: int = 512, n_eval: int = 20000, rtol: float = 1e-4,
                atol: float = 1e-5) -> dict:
    """Write the int8 model to ``out``; return (and keep in ``RUN/export_int8.json``) the comparison with the
    float model: AUC on ``signal`` vs ``background`` (when both given), max |Δscore|, speed-up."""
    import onnxruntime as ort

    from darkshower.export.onnx import export_onnx
    from darkshower.models.runs import read_run_json
    from darkshower.represent.config import parse_representation

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
    except ImportError as exc:
        raise ExportError(f"int8 export needs onnxruntime's quantization tools ({exc}); pip install -e \".[onnx]\"") \
            from None
    if mode not in ("static", "dynamic"):
        raise ExportError(f"quantization mode {mode!r}: choose static or dynamic")
    if (signal is None) != (background is None):
        raise ExportError("--signal and --background go together (the AUC change is measured on that pair)")
    run = Path(run)
    info = read_run_json(run)
    from darkshower.models.runs import require_model

    require_model(run, info, "quantized")
    rep = parse_representation(info["representation"])
    from darkshower.models.runs import read_run_config

    window = read_run_config(run).data
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--out {out}: is a directory; give a file name such as {out / 'model.int8.onnx'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fp = out.with_name(f".{out.name}.{os.getpid()}.float.onnx")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.onnx")
    try:
        exp = export_onnx(run, fp, which=which, rtol=rtol, atol=atol)
        if mode == "static":
            calib_ds = [calibration] if calibration is not None else [d["path"] for d in info.get("data", [])]
            if not calib_ds:
                raise ExportError(f"{run}/run.json names no training data; pass --calibration DATASET")
            calib = _samples(rep, calib_ds, n_calibration, window)
            fsess = ort.InferenceSession(str(fp), providers=["CPUExecutionProvider"])
            feeds = _feeds(fsess, calib)
            n = len(next(iter(feeds.values())))

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.it = iter([{k: v[a:a + 64] for k, v in feeds.items()} for a in range(0, n, 64)])

                def get_next(self):
                    return next(self.it, None)

            quantize_static(str(fp), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["MatMul", "Gemm", "Conv"])
        else:
            n = 0
            quantize_dynamic(str(fp), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        fsess = ort.InferenceSession(str(fp), so, providers=["CPUExecutionProvider"])
        qsess = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
        report = {"out": str(out), "mode": mode, "run": str(run.resolve()), "model": which,
                  "calibration_samples": n, "float_export": {k: exp[k] for k in ("exporter", "opset")},
                  "float_bytes": fp.stat().st_size, "int8_bytes": tmp.stat().st_size}
        eval_sets = {"background": background, "signal": signal} if background is not None else \
            {"calibration": calibration if calibration is not None else info["data"][0]["path"]}
        scores = {}
        for key, ds in eval_sets.items():
            s = _samples(rep, [ds], n_eval, window)
            f_feeds = _feeds(fsess, s)
            f = fsess.run(None, f_feeds)[0].reshape(-1).astype(np.float64)
            q = qsess.run(None, _feeds(qsess, s))[0].reshape(-1).astype(np.float64)
            scores[key] = (f, q)
            if key in ("background", "calibration"):
                t_f, t_q = _time_per_row(fsess, f_feeds), _time_per_row(qsess, f_feeds)
                report.update(timed_rows=len(f), float_us_per_sample=t_f * 1e6, int8_us_per_sample=t_q * 1e6,
                              speedup=t_f / t_q)
        allf = np.concatenate([v[0] for v in scores.values()])
        allq = np.concatenate([v[1] for v in scores.values()])
        report["max_abs_score_diff"] = float(np.max(np.abs(allf - allq)))
        report["score_corr"] = float(np.corrcoef(allf, allq)[0, 1]) if len(allf) > 1 else 1.0
        if background is not None:
            from sklearn.metrics import roc_auc_score

            y = np.r_[np.zeros(len(scores["background"][0])), np.ones(len(scores["signal"][0]))]
            auc_f = roc_auc_score(y, np.r_[scores["background"][0], scores["signal"][0]])
            auc_q = roc_auc_score(y, np.r_[scores["background"][1], scores["signal"][1]])
            report.update(signal=str(signal), background=str(background), auc_float=float(auc_f),
                          auc_int8=float(auc_q), delta_auc=float(auc_q - auc_f))
        os.replace(tmp, out)
    finally:
        for p in (fp, tmp):
            p.unlink(missing_ok=True)
    rp = run / REPORT
    rtmp = rp.with_name(f".{rp.name}.{os.getpid()}.tmp")
    rtmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(rtmp, rp)
    report["report"] = str(rp)
    return report
