"""``darkshower export RUN --out OUT [--format onnx|triton]``: the run's model for deployment.

onnx: one self-contained .onnx (inputs x [+ mask], output score; dynamic batch), checked against torch with
onnxruntime. triton: a Triton model repository (OUT/NAME/config.pbtxt, OUT/NAME/<version>/model.onnx,
OUT/NAME/darkshower.json), loadable unchanged by a Triton server and by ``darkshower serve --model-repository``.
"""

from __future__ import annotations

from darkshower.cli.options import nonnegative_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a trained run's model (ONNX file or Triton model repository)",
                              description=__doc__)
    p.add_argument("run", metavar="RUN", help="run directory written by darkshower train")
    p.add_argument("--out", required=True, metavar="OUT",
                   help="output: the .onnx file (onnx) or the model repository directory (triton)")
    p.add_argument("--format", choices=["onnx", "triton"], default="onnx", help="what to write (default onnx)")
    p.add_argument("--model", choices=["best", "last"], default="best", help="which model of the run (default best)")
    p.add_argument("--opset", type=positive_int, default=18, metavar="N", help="ONNX opset version (default 18)")
    g = p.add_argument_group("triton")
    g.add_argument("--name", default=None, metavar="NAME", help="model name in the repository (default: the run's "
                                                                 "directory name)")
    g.add_argument("--model-version", type=positive_int, default=1, metavar="V", help="model version (default 1)")
    g.add_argument("--max-batch", type=positive_int, default=4096, metavar="N",
                   help="config.pbtxt max_batch_size (default 4096)")
    g.add_argument("--max-delay-ms", type=nonnegative_float, default=5.0, metavar="MS",
                   help="config.pbtxt dynamic_batching max queue delay (default 5)")
    g.add_argument("--instances", type=positive_int, default=1, metavar="N",
                   help="config.pbtxt instance_group count, KIND_CPU (default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.errors import ExportError

    if args.format != "triton":
        for opt, val, default in (("--name", args.name, None), ("--model-version", args.model_version, 1)):
            if val != default:
                raise ExportError(f"{opt} applies to --format triton")
    if args.format == "triton":
        from darkshower.export.triton import export_triton

        info = export_triton(args.run, args.out, args.name, which=args.model, version=args.model_version,
                             max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, instances=args.instances,
                             opset=args.opset)
        print(f"wrote model {info['name']} version {info['version']} to {info['model_dir']} (config.pbtxt, "
              f"{info['version']}/model.onnx, darkshower.json; inputs "
              f"{[(t['name'], t['dtype'], t['shape']) for t in info['inputs']]}, max_batch_size "
              f"{info['max_batch_size']}; max |onnxruntime - torch| = {info['export']['max_abs_diff']:.2g})")
        return 0
    from darkshower.export.onnx import export_onnx

    info = export_onnx(args.run, args.out, which=args.model, opset=args.opset)
    print(f"wrote {info['path']} ({info['bytes']} bytes, {info['exporter']} exporter, inputs {info['inputs']}, "
          f"dynamic batch; max |onnxruntime - torch| = {info['max_abs_diff']:.2g})")
    return 0
