"""FPGA path for trigger students: ``export_hls4ml(run, out)`` /
``darkshower export STUDENT_RUN --format hls4ml --out DIR [--precision ap_fixed<16,6>] [--reuse-factor R]``.

The run's network is converted with hls4ml's PyTorch front-end into an HLS project for the Vitis backend
(io_parallel, Latency strategy), hls4ml's bit-accurate C++ emulation is compiled (g++ only) and compared with
the float model on samples of the given signal/background datasets (default: the run's training data):
largest and mean |Δscore|, correlation, and the AUC of both. For an MLP student (distill, ``--student mlp``)
the network after the feature preprocessing goes to the FPGA; the preprocessing (log of selected features,
standardization, clipping) is a per-feature transform done before, in float, on the host — the project's
input is the preprocessed feature vector. Models hls4ml cannot convert give one error with hls4ml's reason.

Per-layer overrides: a YAML mapping of hls4ml layer names to hls4ml settings (``Precision``, ``ReuseFactor``),
e.g. ``{_0: {Precision: {weight: "ap_fixed<8,3>"}}}``; the layer names are listed in the report.

Synthesis needs Vitis HLS (not installed here); the project is written ready for it, one command::

    cd DIR && vitis-run --tcl build_prj.tcl --mode hls     # (build_opt.tcl: synth=1, csim/cosim/export 0)

The report is ``DIR/darkshower_hls4ml.json`` and ``RUN/export_hls4ml.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from darkshower.errors import ExportError

log = logging.getLogger(__name__)

__all__ = ["export_hls4ml", "SYNTH_COMMAND"]

SYNTH_COMMAND = "vitis-run --tcl build_prj.tcl --mode hls"
REPORT = "export_hls4ml.json"
_BUILD_OPT = ("array set opt {\n    reset      1\n    csim       0\n    synth      1\n    cosim      0\n"
              "    validation 0\n    export     0\n    vsynth     0\n    fifo_opt   0\n}\n")


def _require():
    try:
        import hls4ml  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"hls4ml export needs the optional package {exc.name!r}: pip install -e \".[fpga]\"") \
            from None
    if shutil.which("g++") is None:
        raise ExportError("hls4ml's C++ emulation needs g++ on PATH (apt-get install g++)")


def _split(method):
    """(host-side float preprocessing or None, network for the FPGA, n input features)."""
    module, inputs = method.export()
    if len(inputs) != 1 or inputs[0].dim() != 2:
        raise ExportError(f"{method.name}: hls4ml export takes models with one flat input [batch, features] (MLP "
                          f"students); this one has inputs {[tuple(t.shape) for t in inputs]}")
    pre, net = getattr(module, "pre", None), getattr(module, "net", None)
    if pre is not None and net is not None:
        return pre, net, inputs[0].shape[1]
    return None, module, inputs[0].shape[1]


def _pileup_student(run, which: str, signal):
    """For a DistillNet per-particle student run (``distill --student per-particle``): (name holder, None, run.json,
    host standardization, the MLP, n features, sampler of (features, truth from_pv) of a dataset); else None."""
    from types import SimpleNamespace

    import torch

    try:
        kind = json.loads((Path(run) / "run.json").read_text()).get("method")
    except (OSError, ValueError):
        return None
    if kind != "pu-student":
        return None
    if signal is not None:
        raise ExportError("--signal/--background: a per-particle student is compared on the truth from_pv of its "
                          "training data; leave them out")
    from darkshower.models.pileup_gnn import load_pu_run
    from darkshower.train.pileup import load_particles

    _, module, cfg, info = load_pu_run(run, which)

    class Standardize(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.mean, self.std = mean, std

        def forward(self, x):
            return (x - self.mean) / self.std

    def sample(ds, n: int = 5000):
        d = load_particles([ds], max_events=1, student_radii=tuple(cfg.radii), show_progress=False)
        return d.x[:n], d.y[:n] > 0.5

    return (SimpleNamespace(name="pu-student"), None, info, Standardize(module.mean, module.std), module.net,
            int(module.mean.shape[0]), sample)


def export_hls4ml(run, out, precision: str = "ap_fixed<16,6>", reuse_factor: int = 1, overrides=None,
                  signal=None, background=None, which: str = "best", part: str = "xcvu13p-flga2577-2-e",
                  clock_period: float = 5.0, n_eval: int = 5000) -> dict:
    """Write the HLS project to ``out``, compile its C++ emulation and compare it with the float model."""
    import torch
    import yaml

    from darkshower.export.quantize import _samples
    from darkshower.models.runs import load_run

    _require()
    import hls4ml

    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise ExportError(f"--reuse-factor {reuse_factor!r}: must be an integer >= 1")
    if (signal is None) != (background is None):
        raise ExportError("--signal and --background go together (the AUC change is measured on that pair)")
    run, out = Path(run), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty directory; choose a new directory")
    student = _pileup_student(run, which, signal)
    if student is not None:  # the DistillNet per-particle student: standardization on the host, the MLP on the FPGA
        method, rep, info, pre, net, n_feat, sample = student
    else:
        method, rep, _, info = load_run(run, which)
        pre, net, n_feat = _split(method)

        def sample(ds):
            return _samples(rep, [ds], n_eval)["x"], None
    net = net.eval().float()
    try:
        cfg = hls4ml.utils.config_from_pytorch_model(net, (n_feat,), granularity="name", default_precision=precision,
                                                     default_reuse_factor=reuse_factor, backend="Vitis")
    except Exception as exc:
        raise ExportError(f"hls4ml cannot convert {method.name}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    layers = [k for k in cfg.get("LayerName", {}) if k != "input_1"]
    if overrides is not None:
        try:
            ov = yaml.safe_load(Path(overrides).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ExportError(f"--overrides {overrides}: cannot read ({exc})") from None
        if not isinstance(ov, dict):
            raise ExportError(f"--overrides {overrides}: must map hls4ml layer names to settings, e.g. "
                              "{_0: {Precision: {weight: 'ap_fixed<8,3>'}}}")
        for name, settings in ov.items():
            if name not in cfg["LayerName"] or not isinstance(settings, dict):
                raise ExportError(f"--overrides {overrides}: unknown layer {name!r} (layers: {layers}) or settings "
                                  "that are not a mapping")
            for k, v in settings.items():
                if k == "Precision" and isinstance(v, dict):
                    cfg["LayerName"][name].setdefault("Precision", {}).update(v)
                else:
                    cfg["LayerName"][name][k] = v
    created = not out.exists()
    ok = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            hls = hls4ml.converters.convert_from_pytorch_model(
                net, hls_config=cfg, output_dir=str(out), backend="Vitis", io_type="io_parallel", part=part,
                clock_period=clock_period)
            hls.compile()
        except Exception as exc:
            raise ExportError(f"hls4ml could not convert/compile {method.name}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        (out / "build_opt.tcl").write_text(_BUILD_OPT)
        sets = {"background": background, "signal": signal} if background is not None else \
            {"training": info["data"][0]["path"]}
        res = {}
        truth = None
        for key, ds in sets.items():
            xs, truth = sample(ds)
            x = torch.from_numpy(xs).float()
            with torch.no_grad():
                xp = pre(x) if pre is not None else x
                f = net(xp).reshape(-1).double().numpy()
            e = np.asarray(hls.predict(np.ascontiguousarray(xp.numpy(), dtype=np.float32)),
                           np.float64).reshape(-1)
            res[key] = (f, e)
        f = np.concatenate([v[0] for v in res.values()])
        e = np.concatenate([v[1] for v in res.values()])
        report = {"out": str(out), "run": str(run.resolve()), "method": info["method"], "model": which,
                  "precision": precision, "reuse_factor": reuse_factor,
                  "overrides": str(overrides) if overrides else None,
                  "part": part, "clock_period_ns": clock_period, "io_type": "io_parallel", "backend": "Vitis",
                  "layers": layers, "n_features": int(n_feat), "host_preprocessing": pre is not None,
                  "samples": int(len(f)), "max_abs_diff": float(np.max(np.abs(f - e))),
                  "mean_abs_diff": float(np.mean(np.abs(f - e))), "score_range": [float(f.min()), float(f.max())],
                  "corr": float(np.corrcoef(f, e)[0, 1]) if len(f) > 1 and np.std(e) > 0 else float("nan"),
                  "synthesis": f"cd {out} && {SYNTH_COMMAND}", "hls4ml": hls4ml.__version__}
        if truth is not None and 0 < truth.sum() < len(truth):  # per-particle student: AUC for truth from_pv
            from sklearn.metrics import roc_auc_score

            report.update(auc_truth="from_pv", auc_float=float(roc_auc_score(truth, f)),
                          auc_emulated=float(roc_auc_score(truth, e)))
            report["delta_auc"] = report["auc_emulated"] - report["auc_float"]
        if background is not None:
            from sklearn.metrics import roc_auc_score

            y = np.r_[np.zeros(len(res["background"][0])), np.ones(len(res["signal"][0]))]
            auc_f = roc_auc_score(y, np.r_[res["background"][0], res["signal"][0]])
            auc_e = roc_auc_score(y, np.r_[res["background"][1], res["signal"][1]])
            report.update(signal=str(signal), background=str(background), auc_float=float(auc_f),
                          auc_emulated=float(auc_e), delta_auc=float(auc_e - auc_f))
        text = json.dumps(report, indent=1) + "\n"
        (out / "darkshower_hls4ml.json").write_text(text)
        rp = run / REPORT
        tmp = rp.with_name(f".{rp.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, rp)
        ok = True
    finally:
        if not ok and created:
            shutil.rmtree(out, ignore_errors=True)
    report["report"] = str(rp)
    return report
