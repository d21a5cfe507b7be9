"""``darkshower export RUN --out MODEL.onnx``: the run's model as ONNX, checked with onnxruntime."""

from __future__ import annotations

from darkshower.cli.options import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a trained run's model to ONNX (checked with onnxruntime)",
                              description=__doc__)
    p.add_argument("run", metavar="RUN", help="run directory written by darkshower train")
    p.add_argument("--out", required=True, metavar="MODEL.onnx", help="output .onnx file")
    p.add_argument("--model", choices=["best", "last"], default="best", help="which model of the run (default best)")
    p.add_argument("--opset", type=positive_int, default=18, metavar="N", help="ONNX opset version (default 18)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.export.onnx import export_onnx

    info = export_onnx(args.run, args.out, which=args.model, opset=args.opset)
    print(f"wrote {info['path']} ({info['bytes']} bytes, {info['exporter']} exporter, inputs {info['inputs']}, "
          f"dynamic batch; max |onnxruntime - torch| = {info['max_abs_diff']:.2g})")
    return 0
