"""ONNX export of a trained run: ``export_onnx(run, "model.onnx")`` / ``darkshower export RUN --out F``.

Every method's ``export()`` gives a module taking plain tensors (``x``; point clouds also
``mask``) and returning the anomaly score per sample. The module is exported with the
torch.export-based exporter (dynamic batch dimension), falling back to the TorchScript exporter;
the file is written atomically and checked with onnxruntime against torch on the example inputs
and on a batch of another size. The .onnx is self-contained (weights embedded, no side file; ONNX limits
one file to 2 GB, far above these models). Needs the optional packages onnx, onnxscript and onnxruntime
(`pip install -e ".[onnx]"`).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from darkshower.errors import ExportError

log = logging.getLogger(__name__)


def _require():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the optional package {exc.name!r}: pip install -e \".[onnx]\"") from None


def _names(n: int) -> list[str]:
    return ["x", "mask"][:n] if n <= 2 else [f"input{i}" for i in range(n)]


def _resize(inputs: tuple, batch: int) -> tuple:
    return tuple(t[:1].repeat(batch, *([1] * (t.dim() - 1))) if t.shape[0] else t for t in inputs)


def _external_files(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(f"{path.name}*") if p != path]


def _remove_external(path: Path) -> None:
    for p in _external_files(path):
        p.unlink(missing_ok=True)


def _embed_external_data(path: Path) -> None:
    """Make ``path`` self-contained: weights an exporter wrote to a side file go into the .onnx."""
    if not _external_files(path):
        return
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
    _remove_external(path)


def _pileup_kind(run) -> str | None:
    """"pu-gnn" / "pu-student" when ``run`` is a DistillNet run directory, else None."""
    import json

    try:
        kind = json.loads((Path(run) / "run.json").read_text()).get("method")
    except (TypeError, OSError, ValueError, AttributeError):
        return None
    return kind if kind in ("pu-gnn", "pu-student") else None


def export_onnx(run, out, which: str = "best", opset: int = 18, rtol: float = 1e-4, atol: float = 1e-5) -> dict:
    """Export the run's model to ONNX at ``out``; returns a dict describing the export and its check."""
    import torch

    from darkshower.models.runs import load_run

    _require()
    import onnxruntime as ort

    from darkshower.models.base import Method

    pu_kind = _pileup_kind(run)
    resizable = pu_kind != "pu-gnn"  # the GNN's neighbour indices do not survive repeating rows
    if pu_kind is not None:  # DistillNet teacher / per-particle student (models/pileup_gnn.py)
        from darkshower.models.pileup_gnn import export_module

        module, inputs = export_module(run, which)
        method_name = pu_kind
        names = ["x", "coords", "nbr"] if pu_kind == "pu-gnn" else ["x"]
    else:
        method: Method = run if isinstance(run, Method) else load_run(run, which)[0]
        module, inputs = method.export()
        method_name = type(method).__name__
        names = _names(len(inputs))
    module.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    exporter, dynamic = None, True
    attempts = []
    # torch's exporter logs that torchvision's ops are not registered when torchvision is absent (not needed
    # here); quiet for this export only
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        batch = torch.export.Dim("batch", min=1)
        for kind, dyn in (("dynamo", True), ("dynamo", False), ("torchscript", True)):
            try:
                if kind == "dynamo":
                    torch.onnx.export(module, inputs, str(tmp), dynamo=True, opset_version=opset, input_names=names,
                                      output_names=["score"],
                                      dynamic_shapes=tuple({0: batch} for _ in inputs) if dyn else None,
                                      verbose=False, external_data=False)
                else:
                    torch.onnx.export(module, inputs, str(tmp), dynamo=False, opset_version=opset, input_names=names,
                                      output_names=["score"], dynamic_axes={n: {0: "batch"} for n in names})
                exporter, dynamic = kind, dyn
                break
            except Exception as exc:  # exporter limitations differ; try the next way
                attempts.append(f"{kind}{'' if dyn else ' (static shapes)'}: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160]}")
    registration.setLevel(level)
    if exporter is None:
        _remove_external(tmp)
        raise ExportError(f"could not export {method_name} to ONNX: " + " | ".join(attempts))
    try:
        _embed_external_data(tmp)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diffs = []
        same_batch = resizable and len({t.shape[0] for t in inputs}) == 1  # graphs: no resize
        for b in ((inputs[0].shape[0], 7) if dynamic and same_batch else (inputs[0].shape[0],)):
            inp = inputs if b == inputs[0].shape[0] else _resize(inputs, b)
            with torch.no_grad():
                ref = module(*inp).detach().float().numpy()
            got = sess.run(None, {n: t.numpy() for n, t in zip(names, inp)})[0]
            if got.shape != ref.shape or not np.allclose(got, ref, rtol=rtol, atol=atol):
                err = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf")
                rel = float(np.max(np.abs(got - ref) / (np.abs(ref) + atol))) if got.shape == ref.shape else float("inf")
                hint = (f"; large networks in float32 can differ by this much between implementations (accumulation "
                        f"order): if that is acceptable, export with --rtol {10 ** np.ceil(np.log10(rel)):.0e}"
                        if rel < 1e-2 else "")
                raise ExportError(f"ONNX model disagrees with torch at batch {b} (max |diff| {err:.3g}, relative "
                                  f"{rel:.2g}; the check allows rtol {rtol:g}, atol {atol:g}){hint}")
            diffs.append(float(np.max(np.abs(got - ref))) if ref.size else 0.0)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
        _remove_external(tmp)
    info = {"path": str(out), "exporter": exporter, "opset": opset, "inputs": names, "dynamic_batch": dynamic,
            "max_abs_diff": max(diffs), "check_rtol": rtol, "check_atol": atol, "bytes": out.stat().st_size}
    log.info("exported %s with the %s exporter to %s (max |diff| %.2g)", method_name, exporter, out, max(diffs))
    return info
