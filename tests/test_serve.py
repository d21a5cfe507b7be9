"""Inference as a service: the KServe v2 / Triton server (darkshower serve), the Triton model repository
(export --format triton) and scoring through a server (score --server), exercised with the official
tritonclient.http client and with plain HTTP for malformed requests. Servers listen on 127.0.0.1 on a free
port and are always stopped."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
th = pytest.importorskip("tritonclient.http")

from darkshower.cli.main import main  # noqa: E402
from darkshower.errors import ExportError, ServeError  # noqa: E402
from darkshower.export.triton import export_triton, parse_model_config  # noqa: E402
from darkshower.serve.server import ServerThread, load_models  # noqa: E402
from darkshower.train import train  # noqa: E402

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


@pytest.fixture(scope="module")
def runs(qcd_ds, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve_runs")
    a = train("ae-hlf", qcd_ds, d / "hlf_a", config=FAST, epochs=1, seed=1, progress=False)
    b = train("ae-hlf", qcd_ds, d / "hlf_b", config=FAST, epochs=1, seed=2, progress=False)
    return a, b


@pytest.fixture(scope="module")
def repo(runs, tmp_path_factory):
    """hlf: versions 1 (run a) and 2 (run b), all served; other: run b; broken: a config that does not parse."""
    r = tmp_path_factory.mktemp("repo") / "models"
    export_triton(runs[0], r, "hlf", version=1)
    export_triton(runs[1], r, "hlf", version=2)
    export_triton(runs[1], r, "other")
    cfg = r / "hlf" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "version_policy: { all { } }\n")
    (r / "broken" / "1").mkdir(parents=True)
    (r / "broken" / "config.pbtxt").write_text("name: \"broken\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: x\n")
    return r


@pytest.fixture(scope="module")
def server(repo):
    with ServerThread(load_models(model_repository=repo), max_delay_ms=20, max_body_mb=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def unbatched(repo):
    with ServerThread(load_models(model_repository=repo), batching=False) as srv:
        yield srv


def _client(srv, concurrency=1):
    return th.InferenceServerClient(srv.url[len("http://"):], concurrency=concurrency, network_timeout=30)


def _local(srv, name, version, x):
    m = next(m for m in srv.models if m.name == name and m.version == version)
    return m.sessions[0].run(None, {"x": x})[0]


def _infer(c, name, x, version="", binary=True):
    i = th.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    r = c.infer(name, [i], model_version=version, outputs=[th.InferRequestedOutput("score", binary_data=binary)])
    return r.as_numpy("score")


def _http(srv, path, body=None, headers=None, method=None):
    req = urllib.request.Request(srv.url + path, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_protocol_through_tritonclient(server):
    c = _client(server)
    assert c.is_server_live()
    assert not c.is_server_ready()  # strict readiness: the broken model is not ready
    meta = c.get_server_metadata()
    assert meta["name"] == "darkshower" and "binary_tensor_data" in meta["extensions"]
    index = {(e["name"], e["version"]): e for e in c.get_model_repository_index()}
    assert {k: e["state"] for k, e in index.items()} == {("hlf", "1"): "READY", ("hlf", "2"): "READY",
                                                         ("other", "1"): "READY", ("broken", "1"): "UNAVAILABLE"}
    assert "config.pbtxt" in index[("broken", "1")]["reason"]
    assert c.is_model_ready("hlf") and c.is_model_ready("hlf", "1") and c.is_model_ready("other")
    assert not c.is_model_ready("broken") and not c.is_model_ready("nope") and not c.is_model_ready("hlf", "3")
    md = c.get_model_metadata("hlf")
    assert md["versions"] == ["1", "2"] and md["platform"] == "onnxruntime_onnx"
    n_feat = md["inputs"][0]["shape"][1]
    assert md["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, n_feat]}]
    assert md["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]
    assert c.get_model_config("hlf")["max_batch_size"] == 4096

    x = np.random.default_rng(0).normal(size=(7, n_feat)).astype(np.float32)
    v1, v2 = _local(server, "hlf", "1", x), _local(server, "hlf", "2", x)
    assert not np.allclose(v1, v2)  # two different models: routing by version is visible
    for binary in (False, True):
        np.testing.assert_array_equal(_infer(c, "hlf", x, "1", binary).reshape(-1), v1)
        np.testing.assert_array_equal(_infer(c, "hlf", x, "2", binary).reshape(-1), v2)
    assert _infer(c, "hlf", x).shape == (7, 1)
    np.testing.assert_array_equal(_infer(c, "hlf", x).reshape(-1), v2)  # no version: the latest
    np.testing.assert_array_equal(_infer(c, "other", x).reshape(-1), v2)  # same run b under another name
    with pytest.raises(th.InferenceServerException, match="unknown model 'nope'"):
        _infer(c, "nope", x)
    c.close()


def test_dynamic_batching_merges_and_matches_unbatched(server, unbatched):
    c, cu = _client(server, 32), _client(unbatched, 1)
    n_feat = c.get_model_metadata("hlf")["inputs"][0]["shape"][1]
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(int(rng.integers(1, 9)), n_feat)).astype(np.float32) for _ in range(48)]

    def batches():
        text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
        line = [ln for ln in text.splitlines()
                if ln.startswith('darkshower_batch_size_count{model="hlf",version="2"}')]
        return float(line[0].split()[-1]) if line else 0.0

    before = batches()
    # stall the server's event loop while the requests go out, so that they arrive together (a lone request is
    # dispatched at once; in this process the client and the server thread would otherwise take turns)
    server.app.state.loop.call_soon_threadsafe(time.sleep, 0.5)
    reqs = []
    for x in xs:
        i = th.InferInput("x", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=True)
        reqs.append(c.async_infer("hlf", [i], outputs=[th.InferRequestedOutput("score", binary_data=True)]))
    got = [r.get_result().as_numpy("score") for r in reqs]
    merged_batches = batches() - before
    assert 0 < merged_batches < len(xs)  # requests were merged
    for x, g in zip(xs, got):
        assert g.shape == (len(x), 1)
        # the same numbers as unbatched inference, up to float32 rounding: ONNX Runtime's GEMM kernels differ
        # by the batch's row count (a few ulp; measured ~1e-7 relative)
        np.testing.assert_allclose(g, _infer(cu, "hlf", x), rtol=1e-6, atol=0)
    metrics = urllib.request.urlopen(unbatched.url + "/metrics", timeout=10).read().decode()
    line = next(ln for ln in metrics.splitlines()
                if ln.startswith('darkshower_batch_size_count{model="hlf",version="2"}'))
    assert float(line.split()[-1]) == len(xs)  # batching off: one batch per request
    c.close()
    cu.close()


def test_lone_request_is_not_held_for_the_batch_delay(repo):
    """A request alone in the server is dispatched at once; --max-delay-ms only applies when another request is
    in flight (before: every request waited the full delay)."""
    with ServerThread(load_models(model_repository=repo), max_delay_ms=3000) as srv:
        c = _client(srv)
        n_feat = c.get_model_metadata("other")["inputs"][0]["shape"][1]
        x = np.random.default_rng(3).normal(size=(2, n_feat)).astype(np.float32)
        lat = []
        for _ in range(3):
            t0 = time.perf_counter()
            got = _infer(c, "other", x)
            lat.append(time.perf_counter() - t0)
            np.testing.assert_allclose(got.reshape(-1), _local(srv, "other", "1", x), rtol=1e-6)
        assert max(lat) < 1.5, lat  # far below the 3 s delay even on a loaded machine
        text = urllib.request.urlopen(srv.url + "/metrics", timeout=10).read().decode()
        q = [ln for ln in text.splitlines() if ln.startswith('darkshower_queue_seconds_sum{model="other"')]
        assert q and float(q[0].split()[-1]) < 1.5
        c.close()


def test_batcher_waits_only_while_another_request_is_in_flight():
    """Batcher alone: a lone request runs at once; with a second request announced it waits for it (and they are
    merged); if the other request leaves without being queued (a bad request), the waiting one runs at once."""
    import asyncio
    from types import SimpleNamespace

    from darkshower.serve.batching import Batcher

    runs = []

    class Session:
        def run(self, _, feeds):
            runs.append(len(feeds["x"]))
            return [feeds["x"] * 2]

    model = SimpleNamespace(name="m", version="1", max_batch_size=64, sessions=[Session()],
                            outputs=[{"name": "y"}])

    async def scenario():
        b = Batcher(model, 2, 5000.0, True)  # 5 s delay: any wait for it fails the time bounds below
        b.start()
        try:
            x = np.ones((1, 2), np.float32)
            b.arrive()
            t0 = time.perf_counter()
            out = await asyncio.wait_for(b.infer({"x": x}, 1), 2.0)  # alone: no wait
            b.leave()
            assert time.perf_counter() - t0 < 2.0 and out["y"].tolist() == [[2.0, 2.0]]
            assert runs == [1]
            # two requests in flight: the first waits for the second; they fill max_batch (2) and run as one batch
            b.arrive()
            b.arrive()
            first = asyncio.ensure_future(b.infer({"x": x}, 1))
            await asyncio.sleep(0.2)
            assert not first.done()  # waiting for the announced request
            second = await asyncio.wait_for(b.infer({"x": 3 * x}, 1), 2.0)
            assert (await first)["y"].tolist() == [[2.0, 2.0]] and second["y"].tolist() == [[6.0, 6.0]]
            b.leave()
            b.leave()
            assert runs == [1, 2]
            # the announced request fails before it is queued (e.g. a 400): the waiting one goes at once
            b.arrive()
            b.arrive()
            first = asyncio.ensure_future(b.infer({"x": x}, 1))
            await asyncio.sleep(0.2)
            assert not first.done()
            b.leave()
            await asyncio.wait_for(first, 2.0)
            b.leave()
            assert runs == [1, 2, 1] and b.in_flight == 0
        finally:
            await b.stop()

    asyncio.run(scenario())



def test_queue_limit_refuses_with_503_and_keeps_serving(repo):
    """Inputs queued per model are bounded (--max-queue-mb): while the one model instance is busy, requests pile
    up; those that would pass the limit get 503 with a reason, the others are answered correctly, the queue's
    byte count returns to 0 and the server keeps serving."""
    models = load_models(model_repository=repo)
    m = next(m for m in models if m.name == "other")
    real = m.sessions[0]

    class Slow:  # ONNX Runtime session taking 0.3 s per batch: the queue fills meanwhile
        def run(self, names, feeds):
            time.sleep(0.3)
            return real.run(names, feeds)

        def __getattr__(self, k):
            return getattr(real, k)

    m.sessions[0] = Slow()
    n_feat = real.get_inputs()[0].shape[1]
    x = np.random.default_rng(5).normal(size=(64, n_feat)).astype(np.float32)  # 64 * n_feat * 4 bytes
    limit_mb = 2.5 * x.nbytes / (1 << 20)  # room for two queued requests, not three
    with ServerThread(models, max_delay_ms=0, max_batch=64, max_queue_mb=limit_mb) as srv:
        codes, bodies = [], []
        lock = threading.Lock()

        def send():
            body = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                           "data": x.reshape(-1).tolist()}]}).encode()
            try:
                r = urllib.request.urlopen(urllib.request.Request(srv.url + "/v2/models/other/infer", body),
                                           timeout=30)
                out, code = json.loads(r.read()), r.status
            except urllib.error.HTTPError as e:
                out, code = json.loads(e.read()), e.code
            with lock:
                codes.append(code)
                bodies.append(out)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(codes)) == [200, 503], codes
        refused = [b for c, b in zip(codes, bodies) if c == 503]
        assert all("--max-queue-mb" in b["error"] and "retry later" in b["error"] for b in refused)
        want = real.run(None, {"x": x})[0].reshape(-1)
        for c, b in zip(codes, bodies):
            if c == 200:
                np.testing.assert_allclose(np.asarray(b["outputs"][0]["data"], np.float32), want, rtol=1e-6)
        batcher = srv.app.state.batchers[("other", "1")]
        assert batcher.pending_bytes == 0 and not batcher.pending
        send()  # still serving
        assert codes[-1] == 200

def test_malformed_requests_answered_while_good_client_runs(server):
    c = _client(server)
    n_feat = c.get_model_metadata("hlf")["inputs"][0]["shape"][1]
    x = np.random.default_rng(2).normal(size=(3, n_feat)).astype(np.float32)
    want = _local(server, "hlf", "2", x)
    stop, errors, good = threading.Event(), [], [0]

    def good_client():
        gc = _client(server)
        try:
            while not stop.is_set():
                got = _infer(gc, "hlf", x).reshape(-1)
                if not np.allclose(got, want, rtol=1e-6, atol=0):
                    errors.append(got)
                good[0] += 1
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            gc.close()

    t = threading.Thread(target=good_client)
    t.start()
    try:
        def infer_json(name, inputs, **kw):
            return _http(server, f"/v2/models/{name}/infer", json.dumps({"inputs": inputs}).encode(), **kw)

        head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, n_feat],
                                       "parameters": {"binary_data_size": 8}}]}).encode()
        ok = {"name": "x", "datatype": "FP32", "shape": [1, n_feat], "data": [0.0] * n_feat}
        cases = {
            "unknown model": (infer_json("nope", [ok]), 404, "unknown model"),
            "unknown version": (infer_json("hlf/versions/9", [ok]), 404, "no version '9'"),
            "broken model": (infer_json("broken", [ok]), 503, "not ready"),
            "input name": (infer_json("hlf", [{**ok, "name": "y"}]), 400, "unknown input 'y'"),
            "missing input": (infer_json("hlf", []), 400, "no 'inputs'"),
            "datatype": (infer_json("hlf", [{**ok, "datatype": "FP64"}]), 400, "expects FP32"),
            "shape": (infer_json("hlf", [{**ok, "shape": [1, n_feat + 1]}]), 400, "expects ['batch', "),
            "data count": (infer_json("hlf", [{**ok, "data": [0.0]}]), 400, "1 values for shape"),
            "data type": (infer_json("hlf", [{**ok, "data": ["a"] * n_feat}]), 400, "is not FP32"),
            "bad json": (_http(server, "/v2/models/hlf/infer", b"{not json"), 400, "not valid JSON"),
            "binary size": (_http(server, "/v2/models/hlf/infer", head + b"\0" * 8,
                                  headers={"Inference-Header-Content-Length": str(len(head))}), 400,
                            f"binary_data_size 8 bytes, shape [1, {n_feat}] of FP32 needs {4 * n_feat}"),
            "binary past end": (_http(server, "/v2/models/hlf/infer", head + b"\0" * 4,
                                      headers={"Inference-Header-Content-Length": str(len(head))}), 400,
                                "runs past the binary data"),
            "too large": (_http(server, "/v2/models/hlf/infer", b"{" + b" " * (1 << 20) + b"}"), 413, "over the limit"),
            "unknown output": (_http(server, "/v2/models/hlf/infer",
                                     json.dumps({"inputs": [ok], "outputs": [{"name": "z"}]}).encode()), 400,
                               "unknown output 'z'"),
            "load": (_http(server, "/v2/repository/models/hlf/load", b"", method="POST"), 400, "not supported"),
            "no route": (_http(server, "/v3/nothing"), 404, None),
        }
        for what, ((status, body), want_status, reason) in cases.items():
            assert status == want_status, (what, status, body)
            msg = json.loads(body)["error"]
            assert "\n" not in msg and msg, what
            if reason:
                assert reason in msg, (what, msg)
        status, body = infer_json("hlf", [ok])  # a good JSON request after all that
        assert status == 200 and json.loads(body)["outputs"][0]["shape"] == [1, 1]
    finally:
        stop.set()
        t.join(30)
    assert not errors and good[0] > 0
    metrics = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    assert 'darkshower_inference_failures_total{code="400",model="hlf",version="2"}' in metrics
    assert 'darkshower_inference_failures_total{code="404",model="",version=""}' in metrics
    for name in ("darkshower_queue_seconds_bucket", "darkshower_inference_seconds_bucket",
                 "darkshower_batch_size_bucket", "darkshower_inference_requests_total"):
        assert name in metrics


def test_repository_files_parse_and_match_onnx(repo, runs):
    onnx = pytest.importorskip("onnx")
    cfg = parse_model_config(repo / "other" / "config.pbtxt")
    model = onnx.load(str(repo / "other" / "1" / "model.onnx"))
    elem = {1: "float32", 9: "bool", 7: "int64"}
    ins = [(i.name, elem[i.type.tensor_type.elem_type], [d.dim_value or None for d in i.type.tensor_type.shape.dim])
           for i in model.graph.input]
    outs = [(o.name, elem[o.type.tensor_type.elem_type], [d.dim_value or None for d in o.type.tensor_type.shape.dim])
            for o in model.graph.output]
    assert [(t["name"], t["dtype"], [None] + t["dims"]) for t in cfg["inputs"]] == ins
    assert [(t["name"], t["dtype"], t["reshape"]) for t in cfg["outputs"]] == [(outs[0][0], outs[0][1], [])]
    assert len(outs[0][2]) == 1 and outs[0][2][0] is None  # [batch]
    assert cfg["max_batch_size"] == 4096 and cfg["max_queue_delay_us"] == 5000 and cfg["instances"] == 1
    assert cfg["platform"] == "onnxruntime_onnx" and cfg["name"] == "other"
    spec = json.loads((repo / "other" / "darkshower.json").read_text())
    assert spec["method"] == "ae-hlf" and spec["representation"]["kind"] and spec["inputs"] == ["x"]
    with pytest.raises(ExportError, match="version 1 of model 'other' exists"):
        export_triton(runs[0], repo, "other")
    with pytest.raises(ExportError, match="model name"):
        export_triton(runs[0], repo, "../x")


def test_export_triton_cli_and_serve_errors(runs, tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["export", str(runs[0]), "--format", "triton", "--out", str(out), "--name", "m",
                 "--max-delay-ms", "2"]) == 0
    assert "max_batch_size 4096" in capsys.readouterr().out
    assert parse_model_config(out / "m" / "config.pbtxt")["max_queue_delay_us"] == 2000
    assert sorted(p.name for p in (out / "m").iterdir()) == ["1", "config.pbtxt", "darkshower.json"]
    assert main(["export", str(runs[0]), "--format", "triton", "--out", str(out), "--name", "m"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "triton", "--out", str(out), "--name", "z"]) == 2
    assert not (out / "z").exists()  # no half-written model
    assert main(["serve"]) == 2
    assert "one of the two" in capsys.readouterr().err
    assert main(["serve", "--model-repository", str(tmp_path / "none")]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(ServeError, match="no model could be loaded"):
        load_models([tmp_path])  # not a run
    with pytest.raises(ServeError, match="one name per RUN"):
        load_models([runs[0], runs[1]], names=["a"])


def test_serve_runs_by_directory_name(runs):
    models = load_models([runs[0]])
    assert [(m.name, m.version, m.state) for m in models] == [(runs[0].name, "1", "READY")]
    with ServerThread(models) as srv:
        c = _client(srv)
        assert c.is_server_ready() and c.is_model_ready(runs[0].name)
        c.close()


def test_score_through_server_equals_local(runs, repo, server, qcd_ds, tmp_path):
    local = tmp_path / "local.parquet"
    remote = tmp_path / "remote.parquet"
    assert main(["score", str(runs[1]), str(qcd_ds.path), "--out", str(local), "--no-progress"]) == 0
    assert main(["score", str(runs[1]), str(qcd_ds.path), "--out", str(remote), "--server", server.url,
                 "--model", "other", "--no-progress"]) == 0
    a, b = pd.read_parquet(local), pd.read_parquet(remote)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a.drop(columns=["score", "eff_b"]), b.drop(columns=["score", "eff_b"]))
    # eff_b from the run's validation scores; ONNX and torch differ in the last float bits, so a sample next to
    # a validation score (here: its own, the validation jets are in qcd_ds) may flip by one of n_val
    n_val = len(np.load(runs[1] / "val_scores.npy"))
    assert a.eff_b.notna().all() and np.abs(a.eff_b - b.eff_b).max() <= 2 / n_val + 1e-12
    assert np.nanmax(np.abs(a.score.to_numpy() - b.score.to_numpy())) <= 1e-5
    ea, eb = pd.read_parquet(str(local).replace(".parquet", ".events.parquet")), \
        pd.read_parquet(str(remote).replace(".parquet", ".events.parquet"))
    assert len(ea) == len(eb) and np.nanmax(np.abs(ea.score_lead.to_numpy() - eb.score_lead.to_numpy())) <= 1e-5
    # the wrong model name / a dead server: one clear error, no file
    bad = tmp_path / "bad.parquet"
    assert main(["score", str(runs[1]), str(qcd_ds.path), "--out", str(bad), "--server", server.url,
                 "--model", "nope", "--no-progress"]) == 2
    assert main(["score", str(runs[1]), str(qcd_ds.path), "--out", str(bad), "--server", "http://127.0.0.1:9",
                 "--no-progress"]) == 2
    assert main(["score", str(runs[1]), str(qcd_ds.path), "--out", str(bad), "--model", "other",
                 "--no-progress"]) == 2
    assert not bad.exists()


def test_remote_scorer_library(runs, repo, server, qcd_ds):
    from darkshower.models.inference import score_arrays
    from darkshower.models.runs import load_run
    from darkshower.serve import RemoteScorer

    method, rep, _, _ = load_run(runs[1])
    events = qcd_ds.read_chunk(0)
    ref = score_arrays(method, rep, events)
    with RemoteScorer(server.url, "other", runs[1], batch_size=16, concurrency=4) as s:
        got = s.score(events)
    assert list(got.columns) == list(ref.columns) and len(got) == len(ref)
    np.testing.assert_array_equal(got.event_id, ref.event_id)
    assert np.nanmax(np.abs(got.score - ref.score)) <= 1e-5
    with RemoteScorer(server.url, "other", repo / "other") as s:  # repository dir spec
        assert s.rep.kind == rep.kind


def test_device_cuda_needs_the_cuda_provider(runs):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        models = load_models([runs[0]], device="cuda")
        assert models[0].ready and models[0].sessions[0].get_providers()[0] == "CUDAExecutionProvider"
        return
    with pytest.raises(ServeError, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
        load_models([runs[0]], device="cuda")
    with pytest.raises(ServeError, match="choose cpu or cuda"):
        load_models([runs[0]], device="tpu")


def test_score_through_server_applies_the_runs_jet_window(qcd_ds, tmp_path):
    """A run trained inside a jet pT window scores the same jets through a server as locally (the client applies
    the window and numbers the jets as the dataset does)."""
    import awkward as ak

    lead = ak.to_numpy(qcd_ds.read_chunk(0).jets.pt[:, 0])
    cut = float(np.median(lead))  # the leading jet of about half the events is outside the window
    run = train("ae-hlf", qcd_ds, tmp_path / "win", config={**FAST, "data": {"jet_pt_max": cut}}, epochs=1,
                progress=False)
    export_triton(run, tmp_path / "models", "win")
    local, remote = tmp_path / "local.parquet", tmp_path / "remote.parquet"
    assert main(["score", str(run), str(qcd_ds.path), "--out", str(local), "--no-progress"]) == 0
    with ServerThread(load_models(model_repository=tmp_path / "models")) as srv:
        assert main(["score", str(run), str(qcd_ds.path), "--out", str(remote), "--server", srv.url,
                     "--model", "win", "--no-progress"]) == 0
    a, b = pd.read_parquet(local), pd.read_parquet(remote)
    assert len(a) == len(b) > 0 and (a.groupby("event_id").jet_idx.min() > 0).any()
    pd.testing.assert_frame_equal(a[["dataset", "event_id", "jet_idx"]], b[["dataset", "event_id", "jet_idx"]])
    assert np.nanmax(np.abs(a.score.to_numpy() - b.score.to_numpy())) <= 1e-5
