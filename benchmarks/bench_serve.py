"""Serving benchmark (loopback only, bounded): throughput and p50/p99 latency of ``darkshower serve``, next to
in-process inference of the same model.

    python benchmarks/bench_serve.py [--model student] [--seconds 4] [--max-requests 3000] [--threads 1]
    python benchmarks/bench_serve.py --model suep [--run RUN --data DATASET] [--seconds 4] [--max-requests 3000]
    ... [--compare-src OTHER_CHECKOUT]   # the same points against servers run from another source tree

``--model student`` (default): a distilled MLP student (15 inputs; the inputs are built here: QCD events, an
ae-hlf teacher and the student, a minute on one core); concurrency 1, 8, 64 with batch-1 and batch-256 requests,
batching on / off; in-process ONNX Runtime at batch 1, 256, 4096. JSON: OUT/serve.json.

``--model suep``: the SUEP image autoencoder (suep-ae, 3 x 32 x 32 event images) timed per event on one core,
as the CMS HLT autoencoder (~20 ms per event): in-process torch (1 thread) and ONNX Runtime (intra_op 1), one
event per call, p50/p99; through the server (``--threads 1``) with batch-1 requests at concurrency 1 (p50/p99),
and at concurrency 64 with batching on / off (the dynamic-batching gain for a model whose inference is not
negligible). ``--run`` is a trained suep-ae run and ``--data`` a dataset whose event images are sent (QCD, e.g.
the training data); without them the inputs are built here (600 QCD events with store_particles, 2 epochs).
JSON: OUT/serve_suep.json.

Servers run as subprocesses on 127.0.0.1 and are always stopped; the load comes from ``tritonclient.http.aio``
in this process. Each point stops after --max-requests requests or --seconds seconds, whichever comes first.
``--compare-src DIR`` also starts the servers from DIR/src (e.g. ``git worktree add DIR <commit>``) and runs
every point against them, alternating with the current ones, so "before" and "after" are measured side by side
under the same machine load (labelled ``baseline`` in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(repo, extra, threads, src=None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ)
    if src is not None:  # another checkout's package first on the path
        env["PYTHONPATH"] = str(Path(src).resolve() / "src") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-c", "import sys; from darkshower.cli.main import main; sys.exit(main())",
                          "serve", "--model-repository", str(repo), "--host", "127.0.0.1", "--port", str(port),
                          "--threads", str(threads), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env)
    url = f"127.0.0.1:{port}"
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if p.poll() is not None:
            raise RuntimeError(f"server exited: {p.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return p, url
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError("server did not become ready in 120 s")


async def _load(url, model, x, concurrency, seconds, max_requests) -> dict:
    """Closed-loop load: ``concurrency`` clients, each sending ``x`` (binary tensors) as soon as its last answer came."""
    import tritonclient.http.aio as tha

    client = tha.InferenceServerClient(url, conn_limit=concurrency + 4)
    lat, errors, sent = [], [0], [0]
    shape = list(x.shape)

    async def worker():
        while sent[0] < max_requests and time.perf_counter() < t_end:
            sent[0] += 1
            i = tha.InferInput("x", shape, "FP32")
            i.set_data_from_numpy(x, binary_data=True)
            t0 = time.perf_counter()
            try:
                await client.infer(model, [i], outputs=[tha.InferRequestedOutput("score", binary_data=True)])
                lat.append(time.perf_counter() - t0)
            except Exception:  # counted, reported
                errors[0] += 1

    # warm-up (connections, first-call costs), not counted
    i = tha.InferInput("x", shape, "FP32")
    i.set_data_from_numpy(x, binary_data=True)
    await client.infer(model, [i])
    t_end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    lat_ms = np.array(lat) * 1e3
    return {"requests": len(lat), "errors": errors[0], "wall_s": wall, "req_per_s": len(lat) / wall,
            "jets_per_s": len(lat) * len(x) / wall, "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat) else None}


def _per_call(fn, seconds: float, max_calls: int = 100000) -> dict:
    """Latency of ``fn()`` call by call (after 3 warm-up calls): p50/p99/mean in ms."""
    for _ in range(3):
        fn()
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end and len(lat) < max_calls:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1e3
    return {"calls": len(lat), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min())}


def _ort_session(onnx_path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def _inprocess(onnx_path, n_feat, threads) -> dict:
    sess = _ort_session(onnx_path, threads)
    out = {}
    for b in (1, 256, 4096):
        x = np.random.default_rng(0).normal(size=(b, n_feat)).astype(np.float32)
        sess.run(None, {"x": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            sess.run(None, {"x": x})
            n += 1
        dt = time.perf_counter() - t0
        out[f"batch_{b}"] = {"jets_per_s": n * b / dt, "us_per_call": dt / n * 1e6}
    return out


class _Servers:
    """Subprocess servers, always stopped."""

    def __init__(self):
        self.procs = []

    def start(self, *a, **kw) -> str:
        p, url = _start(*a, **kw)
        self.procs.append(p)
        return url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _variants(args) -> list[tuple[str, str | None]]:
    return [("current", None)] + ([("baseline", args.compare_src)] if args.compare_src else [])


def _point(url, model, x, conc, args, **labels) -> dict:
    r = asyncio.run(_load(url, model, x, conc, args.seconds, args.max_requests))
    r.update(labels, request_batch=len(x), concurrency=conc)
    print(json.dumps(r), flush=True)
    return r


def _student(args, work: Path) -> dict:
    from darkshower.export.triton import export_triton
    from darkshower.simulate.run import generate
    from darkshower.train import train

    ds = generate({"process": "qcd", "events": 300, "seed": 5, "chunk_size": 150, "params": {"pthat_min": 300}},
                  work / "qcd", jobs=1, progress=False, command=["bench_serve"])
    fast = {"threads": 1, "early_stopping": {"patience": None}, "batch_size": 64}
    teacher = train("ae-hlf", ds, work / "teacher", config=fast, epochs=2, progress=False)
    student = train("distill", ds, work / "student", config={**fast, "model": {"teacher_run": str(teacher)}},
                    epochs=3, progress=False)
    info = export_triton(student, work / "repo", "student")
    n_feat = info["inputs"][0]["shape"][1]
    result = {"model": "distill MLP student", "n_features": n_feat,
              "inprocess_onnxruntime": _inprocess(info["onnx"], n_feat, args.threads), "points": []}
    with _Servers() as servers:
        urls = {}
        for variant, src in _variants(args):
            urls[(variant, "batching")] = servers.start(work / "repo", ["--max-delay-ms", str(args.max_delay_ms)],
                                                        args.threads, src)
            urls[(variant, "no_batching")] = servers.start(work / "repo", ["--no-batching"], args.threads, src)
        rng = np.random.default_rng(1)
        xs = {batch: rng.normal(size=(batch, n_feat)).astype(np.float32) for batch in (1, 256)}
        for _ in range(args.repeats):
            for batch in (1, 256):
                for conc in (1, 8, 64):
                    for mode in ("batching", "no_batching"):
                        for variant, _src in _variants(args):
                            result["points"].append(_point(urls[(variant, mode)], "student", xs[batch], conc, args,
                                                           mode=mode, variant=variant))
    return result


def _best(points: list[dict]) -> list[dict]:
    """Per (variant, mode, request batch, concurrency): the best of the repeats (highest jets/s, lowest p50 and
    p99, each on its own), with the errors summed."""
    out: dict[tuple, dict] = {}
    for p in points:
        k = (p.get("variant"), p["mode"], p["request_batch"], p["concurrency"])
        b = out.setdefault(k, {"variant": k[0], "mode": k[1], "request_batch": k[2], "concurrency": k[3],
                               "repeats": 0, "errors": 0, "jets_per_s": 0.0, "p50_ms": None, "p99_ms": None})
        b["repeats"] += 1
        b["errors"] += p["errors"]
        b["jets_per_s"] = max(b["jets_per_s"], p["jets_per_s"])
        for q in ("p50_ms", "p99_ms"):
            if p[q] is not None:
                b[q] = p[q] if b[q] is None else min(b[q], p[q])
    return list(out.values())


def _suep_inputs(args, work: Path):
    """(suep-ae run, dense event images [n, C, H, W] float32 of the data)."""
    from darkshower.data.dataset import open_dataset
    from darkshower.models.runs import read_run_json
    from darkshower.represent.build import build
    from darkshower.represent.config import parse_representation
    from darkshower.represent.store import store_from_rep, take, to_torch

    if args.run is not None and args.data is None:
        raise SystemExit("--run needs --data (a dataset whose event images are sent)")
    if args.run is None:
        from darkshower.simulate.run import generate
        from darkshower.train import train

        ds = generate({"process": "qcd", "events": 600, "seed": 6, "chunk_size": 300, "store_particles": True,
                       "params": {"pthat_min": 300}}, work / "qcd", jobs=1, progress=False, command=["bench_serve"])
        run = train("suep-ae", ds, work / "suep_run", config={"threads": 1}, epochs=2, progress=False)
    else:
        run, ds = Path(args.run), open_dataset(args.data)
    info = read_run_json(run)
    if info["method"] != "suep-ae":
        raise SystemExit(f"{run}: method {info['method']}, --model suep needs a suep-ae run")
    rep = parse_representation(info["representation"])
    store = store_from_rep(build(rep, ds.read_chunk(0), str(ds.path)), 0.0)
    n = len(store["event_id"])
    x = to_torch(take(store, np.arange(min(n, 256))))["x"].numpy().astype(np.float32)
    return run, x


def _suep(args, work: Path) -> dict:
    import torch

    from darkshower.export.triton import export_triton
    from darkshower.models.runs import load_run

    run, images = _suep_inputs(args, work)
    from darkshower.errors import ExportError
    from darkshower.export.onnx import export_onnx

    served, skipped = True, None
    b = max(1, min(64, len(images), (8 << 20) // images[0].nbytes))  # batched timing: <= 8 MB of input (paper size: 6)
    try:  # the server merges at most b events (a batch of 48 paper-size events needs ~24 GB in ONNX Runtime)
        info = export_triton(run, work / "repo", "suep", max_batch=b, rtol=args.export_rtol)
    except ExportError as exc:  # e.g. the paper-size model: ONNX Runtime and torch differ beyond export's check
        skipped = f"export --format triton failed ({exc}); in-process timing only, ONNX checked at rtol 1e-2"
        print(skipped, flush=True)
        served = False
        info = {"onnx": str(work / "model.onnx"),
                "check": export_onnx(run, work / "model.onnx", rtol=1e-2, atol=1e-3)}
    torch.set_num_threads(1)
    module = load_run(run)[0].export()[0].eval()
    sess = _ort_session(info["onnx"], 1)
    one = images[:1]
    k = [0]

    def torch_one():  # a different event each call
        k[0] = (k[0] + 1) % len(images)
        with torch.inference_mode():
            module(torch.from_numpy(images[k[0]:k[0] + 1]))

    def ort_one():
        k[0] = (k[0] + 1) % len(images)
        sess.run(None, {"x": images[k[0]:k[0] + 1]})


    def torch_batch():
        with torch.inference_mode():
            module(torch.from_numpy(images[:b]))

    inproc = {}
    for _ in range(args.repeats):  # best of repeats (shared machine)
        for name, fn in (("torch_batch1", torch_one), ("onnxruntime_batch1", ort_one),
                         (f"torch_batch{b}", torch_batch),
                         (f"onnxruntime_batch{b}", lambda: sess.run(None, {"x": images[:b]}))):
            r = _per_call(fn, min(args.seconds, 3.0))
            if not name.endswith("batch1"):
                r["us_per_event"] = r["p50_ms"] * 1e3 / b
            if name not in inproc or r["p50_ms"] < inproc[name]["p50_ms"]:
                inproc[name] = r
    print(json.dumps(inproc), flush=True)
    result = {"model": "suep-ae (event images)", "input_shape": list(images.shape[1:]), "run": str(run),
              "torch_threads": torch.get_num_threads(), "onnxruntime_intra_op_threads": 1, "inprocess": inproc,
              "points": [], "server_skipped": skipped, "onnx_check": info.get("check") or info.get("export"),
              "server_max_batch": b}
    if not served:
        return result
    with _Servers() as servers:
        urls = {}
        for variant, src in _variants(args):
            urls[(variant, "batching")] = servers.start(work / "repo", ["--max-delay-ms", str(args.max_delay_ms)], 1, src)
            urls[(variant, "no_batching")] = servers.start(work / "repo", ["--no-batching"], 1, src)
        for _ in range(args.repeats):
            for conc in args.concurrency or (1, 64):
                for mode in ("batching", "no_batching"):
                    for variant, _src in _variants(args):
                        result["points"].append(_point(urls[(variant, mode)], "suep", one, conc, args, mode=mode,
                                                       variant=variant))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("student", "suep"), default="student")
    ap.add_argument("--run", help="--model suep: a trained suep-ae run (default: train a small one here)")
    ap.add_argument("--data", help="--model suep: dataset whose event images are sent (with --run)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--max-requests", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the server (and in-process)")
    ap.add_argument("--max-delay-ms", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=1, help="repeat every measurement; 'best' holds the best of them")
    ap.add_argument("--compare-src", help="also run every point against servers from this checkout's src/")
    ap.add_argument("--export-rtol", type=float, default=1e-4,
                    help="--model suep: rtol of the export check (the paper-size network needs 1e-3: ONNX Runtime and "
                         "torch differ by 2e-4 in float32)")
    ap.add_argument("--concurrency", type=lambda t: tuple(int(v) for v in t.split(",")), default=None,
                    help="--model suep: comma-separated concurrencies (default 1,64)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.compare_src and not (Path(args.compare_src) / "src" / "darkshower").is_dir():
        raise SystemExit(f"--compare-src {args.compare_src}: no src/darkshower there")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    t0 = time.time()
    load0 = os.getloadavg()
    result = (_suep if args.model == "suep" else _student)(args, work)
    result["best"] = _best(result["points"])
    for b in result["best"]:
        print(json.dumps(b), flush=True)
    result.update(threads=args.threads, max_delay_ms=args.max_delay_ms, seconds_per_point=args.seconds,
                  max_requests_per_point=args.max_requests, cpu_count=os.cpu_count(),
                  loadavg_start=load0, loadavg_end=os.getloadavg(), wall_s=time.time() - t0,
                  compare_src=args.compare_src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / ("serve_suep.json" if args.model == "suep" else "serve.json")
    f.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
