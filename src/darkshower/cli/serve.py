"""``darkshower serve RUN [RUN ...] | --model-repository DIR``: a KServe v2 / Triton-protocol inference server.

Runs are exported to ONNX at start (checked against torch) and served under their directory names (or
``--name``, one per RUN); a repository written by ``darkshower export --format triton`` (or any Triton
repository of ONNX models) is served as laid out. Requests queued per model are merged up to --max-batch rows
or --max-delay-ms (dynamic batching). Prometheus metrics at /metrics. Listens on 127.0.0.1 unless --host
says otherwise; the server has no authentication, so bind other addresses only on trusted networks.
Stop it with Ctrl-C.
"""

from __future__ import annotations

from darkshower.cli.options import nonnegative_float, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve trained runs over the KServe v2 / Triton HTTP protocol",
                              description=__doc__)
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories written by darkshower train")
    p.add_argument("--model-repository", metavar="DIR", default=None,
                   help="serve a Triton model repository (REPO/NAME/config.pbtxt, REPO/NAME/<v>/model.onnx) instead")
    p.add_argument("--name", action="append", default=None, metavar="NAME",
                   help="served model name, once per RUN in order (default: the run's directory name)")
    p.add_argument("--model", choices=["best", "last"], default="best", help="which model of each run (default best)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, metavar="P", help="port (default 8000; 0: any free port)")
    p.add_argument("--max-batch", type=positive_int, default=4096, metavar="N",
                   help="rows per merged batch (default 4096)")
    p.add_argument("--max-delay-ms", type=nonnegative_float, default=5.0, metavar="MS",
                   help="longest wait for more requests to merge, after the oldest queued one (default 5)")
    p.add_argument("--no-batching", action="store_true", help="run each request on its own (no dynamic batching)")
    p.add_argument("--instances", type=positive_int, default=1, metavar="N",
                   help="model instances (ONNX Runtime sessions) per model running batches at once (default 1)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="T",
                   help="ONNX Runtime threads per instance (default: ONNX Runtime's, one per core)")
    p.add_argument("--max-body-mb", type=positive_float, default=64.0, metavar="MB",
                   help="largest request body; larger ones get 413 (default 64)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where ONNX Runtime runs the models (cuda: needs the onnxruntime-gpu package; default cpu)")
    p.add_argument("--max-queue-mb", type=positive_float, default=1024.0, metavar="MB",
                   help="inputs queued per model (waiting for a batch) at most; a request that would pass it gets "
                        "503, retry later (default 1024)")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.errors import ServeError
    from darkshower.serve.server import serve

    if args.port > 65535:
        raise ServeError(f"--port {args.port}: must be 0..65535")
    serve(args.runs or None, args.model_repository, args.name, args.host, args.port, args.max_batch,
          args.max_delay_ms, args.instances, args.threads, not args.no_batching, args.max_body_mb, args.model,
          args.max_queue_mb, args.device)
    return 0
