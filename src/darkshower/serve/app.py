"""The KServe v2 / Triton HTTP/REST inference protocol over :class:`~darkshower.serve.models.ServedModel`\\ s
(Starlette application, run by uvicorn).

Endpoints: ``GET /v2/health/live``, ``GET /v2/health/ready`` (ready when every model loaded, as Triton's
strict readiness), ``GET /v2`` (server metadata), ``GET /v2/models/{name}[/versions/{v}]`` (model metadata),
``GET .../ready``, ``GET .../config`` (Triton's configuration extension), ``POST .../infer`` (JSON tensors and
the binary-tensor-data extension), ``POST /v2/repository/index`` (Triton's repository extension;
load/unload are refused: models are loaded at start), ``GET /metrics`` (Prometheus).

Errors are ``{"error": "<one line>"}`` with 400 (bad JSON, tensor names, shapes, datatypes), 404 (unknown
model or version), 413 (body over the limit), 503 (model not ready), 500 (inference failed).
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from contextlib import asynccontextmanager

import numpy as np

from darkshower.serve.batching import Batcher, QueueFull

log = logging.getLogger(__name__)

__all__ = ["create_app", "V2_DTYPES"]

#: KServe v2 datatype -> numpy dtype
V2_DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
             "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
             "FP32": np.float32, "FP64": np.float64}
HEADER_LEN = "inference-header-content-length"


class RequestError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Metrics:
    """Prometheus metrics of one server (its own registry)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        lat = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
        self.requests = Counter("darkshower_inference_requests", "inference requests received",
                                ["model", "version"], registry=self.registry)
        self.failures = Counter("darkshower_inference_failures", "inference requests answered with an error",
                                ["model", "version", "code"], registry=self.registry)
        self.rows = Counter("darkshower_inference_rows", "rows (samples) inferred", ["model", "version"],
                            registry=self.registry)
        self.queue = Histogram("darkshower_queue_seconds", "time a request waited in the batch queue",
                               ["model", "version"], buckets=lat, registry=self.registry)
        self.infer = Histogram("darkshower_inference_seconds", "ONNX Runtime time per executed batch",
                               ["model", "version"], buckets=lat, registry=self.registry)
        self.request = Histogram("darkshower_request_seconds", "server time per inference request (parse to reply)",
                                 ["model", "version"], buckets=lat, registry=self.registry)
        self.batch_size = Histogram("darkshower_batch_size", "rows per executed batch", ["model", "version"],
                                    buckets=tuple(2.0 ** k for k in range(14)), registry=self.registry)

    def batch(self, labels, rows: int, seconds: float, waits: list[float]) -> None:
        self.infer.labels(*labels).observe(seconds)
        self.batch_size.labels(*labels).observe(rows)
        self.rows.labels(*labels).inc(rows)
        q = self.queue.labels(*labels)
        for w in waits:
            q.observe(w)


def _error(status: int, reason: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": reason}, status_code=status)


def _json(obj, status: int = 200):
    from starlette.responses import JSONResponse

    return JSONResponse(obj, status_code=status)


async def _read_body(request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (413 otherwise). An oversized body up to 4x the limit is read and
    dropped before answering, so that the client, still sending, reads the 413 instead of a broken pipe."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            n_declared = int(cl)
        except ValueError:
            raise RequestError(400, f"bad Content-Length header {cl!r}") from None
        if n_declared > limit:
            if n_declared <= 4 * limit:
                async for _ in request.stream():
                    pass
            raise RequestError(413, f"request body of {n_declared} bytes is over the limit of {limit} bytes "
                                    "(--max-body-mb); send smaller batches")
    chunks: list[bytes] = []
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            if n > 4 * limit:
                raise RequestError(413, f"request body is over the limit of {limit} bytes (--max-body-mb); "
                                        "send smaller batches")
            chunks = []  # keep reading (and dropping) up to 4x the limit, then answer 413
            continue
        chunks.append(chunk)
    if n > limit:
        raise RequestError(413, f"request body of {n} bytes is over the limit of {limit} bytes (--max-body-mb); "
                                "send smaller batches")
    body = b"".join(chunks)
    enc = request.headers.get("content-encoding", "").lower()
    if enc in ("gzip", "deflate"):
        d = zlib.decompressobj(wbits=31 if enc == "gzip" else 15)
        try:
            body = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise RequestError(400, f"body is not valid {enc} data ({exc})") from None
        if len(body) > limit or d.unconsumed_tail:
            raise RequestError(413, f"decompressed request body is over the limit of {limit} bytes (--max-body-mb)")
    elif enc not in ("", "identity"):
        raise RequestError(400, f"Content-Encoding {enc!r} is not supported (use gzip, deflate or none)")
    return body


def _decode_inputs(req: dict, binary: bytes, model) -> tuple[dict, int]:
    """Request tensors as numpy arrays checked against the model: (feeds, rows)."""
    if not isinstance(req, dict):
        raise RequestError(400, "request body must be a JSON object with 'inputs'")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "request has no 'inputs' list")
    want = {t["name"]: t for t in model.inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(inputs):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise RequestError(400, f"inputs[{i}] must be an object with a 'name'")
        name = t["name"]
        if name not in want:
            raise RequestError(400, f"unknown input {name!r}; model {model.name} takes {sorted(want)}")
        if name in feeds:
            raise RequestError(400, f"input {name!r} given twice")
        spec = want[name]
        dt = t.get("datatype")
        if dt != spec["datatype"]:
            raise RequestError(400, f"input {name!r}: datatype {dt!r}, model {model.name} expects {spec['datatype']}")
        shape = t.get("shape")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            raise RequestError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
        exp = spec["shape"]
        if len(shape) != len(exp) or any(e != -1 and e != s for e, s in zip(exp, shape)):
            raise RequestError(400, f"input {name!r}: shape {shape}, model {model.name} expects "
                                    f"{['batch' if e == -1 else e for e in exp]}")
        dtype = np.dtype(V2_DTYPES[dt])
        count = int(np.prod(shape)) if shape else 1
        params = t.get("parameters") or {}
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError(400, f"input {name!r}: binary_data_size {size!r} runs past the binary data "
                                        f"({len(binary) - offset} bytes left)")
            if size != count * dtype.itemsize:
                raise RequestError(400, f"input {name!r}: binary_data_size {size} bytes, shape {shape} of {dt} "
                                        f"needs {count * dtype.itemsize}")
            arr = np.frombuffer(binary, dtype.newbyteorder("<"), count, offset).reshape(shape)
            offset += size
        else:
            if "data" not in t:
                raise RequestError(400, f"input {name!r}: no 'data' and no binary_data_size parameter")
            try:
                arr = np.asarray(t["data"], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise RequestError(400, f"input {name!r}: data is not {dt} ({exc})") from None
            if arr.size != count:
                raise RequestError(400, f"input {name!r}: {arr.size} values for shape {shape} ({count} values)")
            arr = arr.reshape(shape)
        feeds[name] = arr.astype(spec["dtype"], copy=False)
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    missing = sorted(set(want) - set(feeds))
    if missing:
        raise RequestError(400, f"missing input(s) {missing}; model {model.name} takes {sorted(want)}")
    if model.max_batch_size:
        rows = {a.shape[0] for a in feeds.values()}
        if len(rows) != 1:
            raise RequestError(400, f"inputs disagree on the batch size: {sorted(rows)}")
        n = rows.pop()
    else:
        n = 1
    return feeds, n


def _outputs_wanted(req: dict, model) -> list[tuple[str, bool]]:
    binary_all = bool((req.get("parameters") or {}).get("binary_data_output", False))
    names = [o["name"] for o in model.outputs]
    req_out = req.get("outputs")
    if req_out is None:
        return [(n, binary_all) for n in names]
    if not isinstance(req_out, list):
        raise RequestError(400, "'outputs' must be a list")
    out = []
    for o in req_out:
        if not isinstance(o, dict) or o.get("name") not in names:
            raise RequestError(400, f"unknown output {o.get('name') if isinstance(o, dict) else o!r}; "
                                    f"model {model.name} has {names}")
        out.append((o["name"], bool((o.get("parameters") or {}).get("binary_data", binary_all))))
    return out


def _encode(model, req: dict, result: dict, rows: int):
    from starlette.responses import Response

    spec = {o["name"]: o for o in model.outputs}
    outs, blobs = [], []
    for name, binary in _outputs_wanted(req, model):
        arr = np.asarray(result[name])
        if spec[name].get("reshape"):
            arr = arr.reshape(rows, 1)
        o = {"name": name, "datatype": spec[name]["datatype"], "shape": list(arr.shape)}
        if binary:
            b = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
            o["parameters"] = {"binary_data_size": len(b)}
            blobs.append(b)
        else:
            o["data"] = arr.reshape(-1).tolist()
        outs.append(o)
    head = {"model_name": model.name, "model_version": model.version, "outputs": outs}
    if "id" in req:
        head["id"] = req["id"]
    text = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(text + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(text))})


def create_app(models: list, max_batch: int = 4096, max_delay_ms: float = 5.0, batching: bool = True,
               max_body_bytes: int = 64 << 20, server_name: str = "darkshower", max_queue_bytes: int | None = 1 << 30):
    """The Starlette application serving ``models`` (a list of ServedModel)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from darkshower import __version__

    metrics = Metrics()
    table: dict[str, dict[str, object]] = {}
    for m in models:
        table.setdefault(m.name, {})[m.version] = m
    batchers = {(m.name, m.version): Batcher(m, max_batch, max_delay_ms, batching, metrics, max_queue_bytes)
                for m in models if m.ready}

    def versions(name: str) -> list[str]:
        return sorted(table[name], key=int)

    def lookup(request):
        name = request.path_params["name"]
        if name not in table:
            raise RequestError(404, f"unknown model {name!r}; served: {sorted(table)}")
        v = request.path_params.get("version")
        if v is None or v == "":
            ready = [x for x in versions(name) if table[name][x].ready]
            v = (ready or versions(name))[-1]  # the highest ready version
        elif v not in table[name]:
            raise RequestError(404, f"model {name!r} has no version {v!r}; versions: {versions(name)}")
        return table[name][v]

    def guarded(fn):
        async def endpoint(request):
            try:
                return await fn(request)
            except RequestError as exc:
                return _error(exc.status, exc.reason)
        return endpoint

    async def live(request):
        return Response(status_code=200)

    async def ready(request):
        bad = [f"{m.name}/{m.version}" for m in models if not m.ready]
        if bad:
            return _error(503, f"model(s) not ready: {bad}")
        return Response(status_code=200)

    async def server_meta(request):
        return _json({"name": server_name, "version": __version__,
                      "extensions": ["binary_tensor_data", "model_repository", "model_configuration"]})

    async def model_meta(request):
        m = lookup(request)
        if not m.ready:
            raise RequestError(503, f"model {m.name} version {m.version} is not ready: {m.reason}")
        return _json(m.metadata([v for v in versions(m.name) if table[m.name][v].ready]))

    async def model_ready(request):
        m = lookup(request)
        if not m.ready:
            raise RequestError(503, f"model {m.name} version {m.version} is not ready: {m.reason}")
        return Response(status_code=200)

    async def model_config(request):
        m = lookup(request)
        if not m.ready:
            raise RequestError(503, f"model {m.name} version {m.version} is not ready: {m.reason}")
        return _json(m.config(max_delay_ms, batching))

    async def index(request):
        body = await request.body()
        ready_only = False
        if body:
            try:
                ready_only = bool(json.loads(body).get("ready", False))
            except (ValueError, AttributeError):
                raise RequestError(400, "repository index body must be a JSON object such as {\"ready\": true}") \
                    from None
        out = []
        for m in models:
            if ready_only and not m.ready:
                continue
            e = {"name": m.name, "version": m.version, "state": m.state}
            if m.reason:
                e["reason"] = m.reason
            out.append(e)
        return _json(out)

    async def load_unload(request):
        raise RequestError(400, "explicit model load/unload is not supported: darkshower serve loads its models at "
                                "start; restart it with the models to serve")

    async def infer(request):
        t0 = time.perf_counter()
        name = request.path_params["name"]
        labels = (name, "") if name in table else ("", "")  # unknown names are not labels (bounded label sets)
        try:
            m = lookup(request)
            labels = (m.name, m.version)
            metrics.requests.labels(*labels).inc()
            if not m.ready:
                raise RequestError(503, f"model {m.name} version {m.version} is not ready: {m.reason}")
            batcher = batchers[labels]
            batcher.arrive()
            try:
                return await _infer(request, m, batcher, labels, t0)
            finally:
                batcher.leave()
        except RequestError as exc:
            metrics.failures.labels(*labels, str(exc.status)).inc()
            return _error(exc.status, exc.reason)

    async def _infer(request, m, batcher, labels, t0):
        """Body -> tensors -> (batched) inference -> response; RequestError on a bad request."""
        body = await _read_body(request, max_body_bytes)
        hl = request.headers.get(HEADER_LEN)
        if hl is not None:
            try:
                hl = int(hl)
                if not 0 <= hl <= len(body):
                    raise ValueError
            except ValueError:
                raise RequestError(400, f"Inference-Header-Content-Length {request.headers.get(HEADER_LEN)!r} "
                                        f"is not a length within the {len(body)}-byte body") from None
            head, binary = body[:hl], body[hl:]
        else:
            head, binary = body, b""
        try:
            req = json.loads(head)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"request is not valid JSON ({exc})") from None
        feeds, rows = _decode_inputs(req, binary, m)
        _outputs_wanted(req, m)  # unknown output names fail before inference
        if rows == 0:
            result = {o["name"]: np.zeros(0, V2_DTYPES[o["datatype"]]) for o in m.outputs}
        else:
            try:
                result = await batcher.infer(feeds, rows)
            except QueueFull as exc:
                raise RequestError(503, str(exc)) from None
            except Exception as exc:
                log.error("inference of %s/%s failed: %s", m.name, m.version, exc)
                raise RequestError(500, f"inference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
                    from None
        resp = _encode(m, req, result, rows)
        metrics.request.labels(*labels).observe(time.perf_counter() - t0)
        return resp

    async def prom(request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app):
        import asyncio

        app.state.loop = asyncio.get_running_loop()  # the server's event loop (tests stall it to form bursts)
        for b in batchers.values():
            b.start()
        try:
            yield
        finally:
            for b in batchers.values():
                await b.stop()

    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server_meta),
        Route("/v2/repository/index", guarded(index), methods=["POST"]),
        Route("/v2/repository/models/{name}/load", guarded(load_unload), methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", guarded(load_unload), methods=["POST"]),
        Route("/metrics", prom),
    ]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, guarded(model_meta)), Route(base + "/ready", guarded(model_ready)),
                   Route(base + "/config", guarded(model_config)),
                   Route(base + "/infer", infer, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.models = models
    app.state.batchers = batchers

    async def not_found(request, exc):
        return _error(getattr(exc, "status_code", 404), f"{request.method} {request.url.path}: "
                                                        f"{getattr(exc, 'detail', 'not found')}")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    return app
