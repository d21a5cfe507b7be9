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


def _float64_reference(module, inputs: tuple) -> np.ndarray | None:
    """The module evaluated in float64 on a copy (None when it cannot run in float64, e.g. integer-only ops)."""
    import copy

    import torch

    try:
        m64 = copy.deepcopy(module).double()
        inp = tuple(t.double() if t.is_floating_point() else t for t in inputs)
        with torch.no_grad():
            return m64(*inp).detach().double().numpy()
    except Exception:  # some modules (ONNX-only ops, fixed float32 buffers) do not run in float64: rtol alone
        return None


def tolerance(ref32: np.ndarray, ref64: np.ndarray | None, rtol: float, atol: float,
              noise_factor: float = 10.0) -> float:
    """Relative tolerance of the export check: ``rtol``, or ``noise_factor`` × the float32 rounding noise of
    the model (max over elements of |ref32 − ref64| / (|ref64| + atol)) when that is larger."""
    if ref64 is None or ref64.shape != ref32.shape or not ref32.size:
        return rtol
    noise = np.abs(ref32.astype(np.float64) - ref64) / (np.abs(ref64) + atol)
    noise = noise[np.isfinite(noise)]
    return max(rtol, noise_factor * float(noise.max())) if noise.size else rtol


def _pileup_kind(run) -> str | None:
    """"pu-gnn" / "pu-student" when ``run`` is a DistillNet run directory, else None."""
    import json

    try:
        kind = json.loads((Path(run) / "run.json").read_text()).get("method")
    except (TypeError, OSError, ValueError, AttributeError):
        return None
    return kind if kind in ("pu-gnn", "pu-student") else None


def export_onnx(run, out, which: str = "best", opset: int = 18, rtol: float = 1e-4, atol: float = 1e-5,
                noise_factor: float = 10.0) -> dict:
    """Export the run's model to ONNX at ``out``; returns a dict describing the export and its check.

    The check runs the ONNX model with ONNX Runtime on the example batch (and on another batch size when the
    batch is dynamic) and compares it with torch: it must agree within ``rtol``·|ref| + ``atol``, widened to
    ``noise_factor`` times float32's own rounding noise on this model (the largest relative difference between
    the float32 and a float64 torch evaluation; see :func:`tolerance`). Small networks stay at rtol; a large
    convolutional net whose float32 result is itself uncertain at 1e-3 is not refused for it, while a real
    mismatch (a wrong weight, a dropped op: percent-level) still is.
    """
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
    if exporter is None:
        _remove_external(tmp)
        raise ExportError(f"could not export {method_name} to ONNX: " + " | ".join(attempts))
    try:
        _embed_external_data(tmp)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diffs: list[float] = []
        tols: list[float] = []
        same_batch = resizable and len({t.shape[0] for t in inputs}) == 1  # graphs: no resize
        for b in ((inputs[0].shape[0], 7) if dynamic and same_batch else (inputs[0].shape[0],)):
            inp = inputs if b == inputs[0].shape[0] else _resize(inputs, b)
            with torch.no_grad():
                ref = module(*inp).detach().float().numpy()
            ref64 = _float64_reference(module, inp)
            got = sess.run(None, {n: t.numpy() for n, t in zip(names, inp)})[0]
            tol_rel = tolerance(ref, ref64, rtol, atol, noise_factor)
            if got.shape != ref.shape or not np.all(np.abs(got - ref) <= tol_rel * np.abs(ref) + atol):
                err = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf")
                raise ExportError(f"ONNX model disagrees with torch at batch {b} (max |diff| {err:.3g}; allowed "
                                  f"{tol_rel:.2g} relative + {atol:.2g}, float32 noise included)")
            diffs.append(float(np.max(np.abs(got - ref))) if ref.size else 0.0)
            tols.append(tol_rel)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
        _remove_external(tmp)
    info = {"path": str(out), "exporter": exporter, "opset": opset, "inputs": names, "dynamic_batch": dynamic,
            "max_abs_diff": max(diffs), "check_rtol": max(tols), "bytes": out.stat().st_size}
    log.info("exported %s with the %s exporter to %s (max |diff| %.2g)", method_name, exporter, out, max(diffs))
    return info
