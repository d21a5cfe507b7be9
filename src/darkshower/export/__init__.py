"""Export of trained runs for deployment: ONNX today (``export_onnx``); serving and FPGA formats build
on it. A stage above the trainer: it reads run directories (:mod:`darkshower.models.runs`) and never
trains."""

from __future__ import annotations

__all__ = ["export_onnx", "ExportError"]


def __getattr__(name: str):
    if name == "export_onnx":
        from darkshower.export.onnx import export_onnx

        return export_onnx
    if name == "ExportError":
        from darkshower.errors import ExportError

        return ExportError
    raise AttributeError(f"module 'darkshower.export' has no attribute {name!r}")
