"""``darkshower export RUN --out OUT [--format onnx|triton|hls4ml]``: the run's model for deployment.

onnx: one self-contained .onnx (inputs x [+ mask], output score; dynamic batch), checked against torch with
onnxruntime; with --quantize int8, an int8 model (ONNX Runtime quantization), compared with the float model
(AUC on --signal/--background, speed-up) in RUN/export_int8.json.
triton: a Triton model repository (OUT/NAME/config.pbtxt, OUT/NAME/<version>/model.onnx, OUT/NAME/darkshower.json),
loadable unchanged by a Triton server and by ``darkshower serve --model-repository``.
hls4ml: an HLS project (Vitis backend) of an MLP student, its bit-accurate C++ emulation compiled and compared
with the float model; synthesis with Vitis: cd OUT && vitis-run --tcl build_prj.tcl --mode hls.
"""

from __future__ import annotations

from darkshower.cli.options import nonnegative_float, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a trained run's model (ONNX file or Triton model repository)",
                              description=__doc__)
    p.add_argument("run", metavar="RUN", help="run directory written by darkshower train")
    p.add_argument("--out", required=True, metavar="OUT",
                   help="output: the .onnx file (onnx) or the model repository directory (triton)")
    p.add_argument("--format", choices=["onnx", "triton", "hls4ml"], default="onnx",
                   help="what to write (default onnx)")
    p.add_argument("--model", choices=["best", "last"], default="best", help="which model of the run (default best)")
    p.add_argument("--opset", type=positive_int, default=18, metavar="N", help="ONNX opset version (default 18)")
    p.add_argument("--rtol", type=positive_float, default=1e-4, metavar="R",
                   help="relative tolerance of the check of the ONNX model against torch (default 1e-4; deep "
                        "convolutional nets may need 1e-3: float32 results differ with the accumulation order)")
    p.add_argument("--atol", type=nonnegative_float, default=1e-5, metavar="A",
                   help="absolute tolerance of that check (default 1e-5)")
    q = p.add_argument_group("int8 (with --format onnx)")
    q.add_argument("--quantize", choices=["int8"], default=None,
                   help="write an int8 model (ONNX Runtime quantization); the AUC change and speed-up are printed "
                        "and kept in RUN/export_int8.json")
    q.add_argument("--quantize-mode", choices=["static", "dynamic"], default="static",
                   help="static: weights and activations, calibrated on the run's training data (default); "
                        "dynamic: weights only")
    q.add_argument("--calibration", metavar="DS", default=None,
                   help="calibration dataset (default: the run's training data)")
    q.add_argument("--signal", metavar="DS", default=None, help="signal dataset for the AUC change (int8, hls4ml)")
    q.add_argument("--background", metavar="DS", default=None,
                   help="background dataset for the AUC change (int8, hls4ml)")
    h = p.add_argument_group("hls4ml (FPGA; MLP students)")
    h.add_argument("--precision", default=None, metavar="TYPE",
                   help="default fixed-point type (default ap_fixed<16,6>)")
    h.add_argument("--reuse-factor", type=positive_int, default=None, metavar="R",
                   help="hls4ml reuse factor (default 1)")
    h.add_argument("--overrides", default=None, metavar="YAML",
                   help="per-layer hls4ml settings (Precision, ReuseFactor)")
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
    if args.quantize is not None and args.format != "onnx":
        raise ExportError("--quantize int8 applies to --format onnx")
    if args.format != "hls4ml":
        for opt, val in (("--precision", args.precision), ("--reuse-factor", args.reuse_factor),
                         ("--overrides", args.overrides)):
            if val is not None:
                raise ExportError(f"{opt} applies to --format hls4ml")
    if args.format == "hls4ml":
        from darkshower.export.hls4ml import export_hls4ml

        r = export_hls4ml(args.run, args.out, precision=args.precision or "ap_fixed<16,6>",
                          reuse_factor=args.reuse_factor or 1, overrides=args.overrides, signal=args.signal,
                          background=args.background, which=args.model)
        auc = (f"AUC {r['auc_float']:.4f} -> {r['auc_emulated']:.4f} (change {r['delta_auc']:+.4f}); "
               if "auc_float" in r else "")
        print(f"wrote HLS project {r['out']} ({r['precision']}, reuse {r['reuse_factor']}; C++ emulation compiled); "
              f"{auc}max |emulated - float| {r['max_abs_diff']:.3g} (mean {r['mean_abs_diff']:.3g}) on "
              f"{r['samples']} samples; synthesis: {r['synthesis']}")
        return 0
    if args.quantize is None:
        for opt, val in (("--calibration", args.calibration), ("--signal", args.signal),
                         ("--background", args.background)):
            if val is not None:
                raise ExportError(f"{opt} applies to --quantize int8")
    elif args.format != "onnx":
        raise ExportError("--quantize int8 applies to --format onnx")
    if args.quantize == "int8":
        from darkshower.export.quantize import export_int8

        r = export_int8(args.run, args.out, signal=args.signal, background=args.background,
                        calibration=args.calibration, mode=args.quantize_mode, which=args.model,
                        rtol=args.rtol, atol=args.atol)
        auc = (f"AUC {r['auc_float']:.4f} -> {r['auc_int8']:.4f} (change {r['delta_auc']:+.4f}); "
               if "auc_float" in r else "")
        print(f"wrote {r['out']} (int8, {r['mode']}; {r['int8_bytes']} bytes vs {r['float_bytes']} float); {auc}"
              f"max |score diff| {r['max_abs_score_diff']:.3g}; speed-up {r['speedup']:.2f}x on one core "
              f"({r['float_us_per_sample']:.2f} -> {r['int8_us_per_sample']:.2f} us/sample); report {r['report']}")
        return 0
    if args.format == "triton":
        from darkshower.export.triton import export_triton

        info = export_triton(args.run, args.out, args.name, which=args.model, version=args.model_version,
                             max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, instances=args.instances,
                             opset=args.opset, rtol=args.rtol, atol=args.atol)
        print(f"wrote model {info['name']} version {info['version']} to {info['model_dir']} (config.pbtxt, "
              f"{info['version']}/model.onnx, darkshower.json; inputs "
              f"{[(t['name'], t['dtype'], t['shape']) for t in info['inputs']]}, max_batch_size "
              f"{info['max_batch_size']}; max |onnxruntime - torch| = {info['export']['max_abs_diff']:.2g})")
        return 0
    from darkshower.export.onnx import export_onnx

    info = export_onnx(args.run, args.out, which=args.model, opset=args.opset, rtol=args.rtol, atol=args.atol)
    print(f"wrote {info['path']} ({info['bytes']} bytes, {info['exporter']} exporter, inputs {info['inputs']}, "
          f"dynamic batch; max |onnxruntime - torch| = {info['max_abs_diff']:.2g})")
    return 0
