"""Serving benchmark (loopback only, bounded): throughput and p50/p99 latency of ``darkshower serve`` for an MLP
student, for concurrency 1, 8, 64 with batch-1 and batch-256 requests, with and without dynamic batching, next to
in-process ONNX Runtime inference of the same model.

    python benchmarks/bench_serve.py [--seconds 4] [--max-requests 3000] [--threads 1] [--out benchmarks/results]

Builds its own small inputs: generates QCD events, trains an ae-hlf teacher and a distilled MLP student (a
minute on one core), exports the student as a Triton repository and starts two servers on 127.0.0.1 (batching
on / off) as subprocesses, which are always stopped. Each point stops after --max-requests requests or
--seconds seconds, whichever comes first. Writes JSON to OUT/serve.json.
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


def _start(repo, extra, threads) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    exe = Path(sys.executable).with_name("darkshower")
    p = subprocess.Popen([str(exe), "serve", "--model-repository", str(repo), "--host", "127.0.0.1", "--port",
                          str(port), "--threads", str(threads), *extra], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
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
    import tritonclient.http.aio as tha

    client = tha.InferenceServerClient(url, conn_limit=concurrency + 4)
    lat, errors, sent = [], [0], [0]
    t_end = time.perf_counter() + seconds

    async def worker():
        while sent[0] < max_requests and time.perf_counter() < t_end:
            sent[0] += 1
            i = tha.InferInput("x", list(x.shape), "FP32")
            i.set_data_from_numpy(x, binary_data=True)
            t0 = time.perf_counter()
            try:
                await client.infer(model, [i], outputs=[tha.InferRequestedOutput("score", binary_data=True)])
                lat.append(time.perf_counter() - t0)
            except Exception:  # counted, reported
                errors[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    lat_ms = np.array(lat) * 1e3
    return {"requests": len(lat), "errors": errors[0], "wall_s": wall, "req_per_s": len(lat) / wall,
            "jets_per_s": len(lat) * len(x) / wall, "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat) else None}


def _inprocess(onnx_path, n_feat, threads) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--max-requests", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the server (and in-process)")
    ap.add_argument("--max-delay-ms", type=float, default=2.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from darkshower.export.triton import export_triton
    from darkshower.simulate.run import generate
    from darkshower.train import train

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    ds = generate({"process": "qcd", "events": 300, "seed": 5, "chunk_size": 150, "params": {"pthat_min": 300}},
                  work / "qcd", jobs=1, progress=False, command=["bench_serve"])
    fast = {"threads": 1, "early_stopping": {"patience": None}, "batch_size": 64}
    teacher = train("ae-hlf", ds, work / "teacher", config=fast, epochs=2, progress=False)
    student = train("distill", ds, work / "student", config={**fast, "model": {"teacher_run": str(teacher)}},
                    epochs=3, progress=False)
    info = export_triton(student, work / "repo", "student")
    n_feat = info["inputs"][0]["shape"][1]
    result = {"model": "distill MLP student", "n_features": n_feat, "threads": args.threads,
              "max_delay_ms": args.max_delay_ms, "seconds_per_point": args.seconds,
              "max_requests_per_point": args.max_requests, "cpu_count": os.cpu_count(),
              "inprocess_onnxruntime": _inprocess(info["onnx"], n_feat, args.threads), "points": []}
    procs = []
    try:
        servers = {}
        for mode, extra in (("batching", ["--max-delay-ms", str(args.max_delay_ms)]), ("no_batching", ["--no-batching"])):
            p, url = _start(work / "repo", extra, args.threads)
            procs.append(p)
            servers[mode] = url
        rng = np.random.default_rng(1)
        for mode, url in servers.items():
            for batch in (1, 256):
                x = rng.normal(size=(batch, n_feat)).astype(np.float32)
                for conc in (1, 8, 64):
                    r = asyncio.run(_load(url, "student", x, conc, args.seconds, args.max_requests))
                    r.update(mode=mode, request_batch=batch, concurrency=conc)
                    print(json.dumps(r), flush=True)
                    result["points"].append(r)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'serve.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
