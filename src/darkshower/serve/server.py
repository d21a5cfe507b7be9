"""Running the inference server: ``serve(...)`` (blocking, as ``darkshower serve``) and
:class:`ServerThread` (in-process, on a free port, for tests, benchmarks and notebooks)."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time

from darkshower.errors import ServeError

log = logging.getLogger(__name__)

__all__ = ["serve", "load_models", "ServerThread", "require_serve"]


def require_serve() -> None:
    try:
        import onnxruntime  # noqa: F401
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ServeError(f"darkshower serve needs the optional package {exc.name!r}: pip install -e \".[serve]\"") \
            from None


def _check(what: str, value, lo) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= lo:
        raise ServeError(f"{what}={value!r}: must be a number >= {lo}")


def load_models(runs=None, model_repository=None, names=None, which: str = "best", instances: int = 1,
                threads: int | None = None, max_batch: int = 4096, workdir=None, device: str = "cpu") -> list:
    """The ServedModels of ``runs`` (exported to ONNX in ``workdir``) or of a Triton ``model_repository``.
    Models that fail to load are logged and kept as UNAVAILABLE; none loading at all is an error."""
    from darkshower.serve.models import load_repository, load_runs, providers

    require_serve()
    providers(device)  # an unknown device or a missing CUDA provider fails before any export
    if bool(runs) == (model_repository is not None):
        raise ServeError("give run directories or --model-repository DIR (one of the two)")
    _check("instances", instances, 1)
    _check("max_batch", max_batch, 1)
    if threads is not None:
        _check("threads", threads, 1)
    if model_repository is not None:
        if names:
            raise ServeError("--name applies to runs; a repository's models are served under their directory names")
        models = load_repository(model_repository, instances, threads, max_batch, device)
    else:
        models = load_runs(list(runs), names, workdir, which, instances, threads, max_batch, device)
    for m in models:
        if m.ready:
            log.info("model %s version %s ready (%s; inputs %s)", m.name, m.version, m.source,
                     ", ".join(f"{t['name']} {t['datatype']}{t['shape']}" for t in m.inputs))
    if not any(m.ready for m in models):
        raise ServeError("no model could be loaded: " + "; ".join(f"{m.name}/{m.version}: {m.reason}" for m in models))
    return models


def _app(models, max_batch, max_delay_ms, batching, max_body_mb, max_queue_mb=1024.0):
    from darkshower.serve.app import create_app

    _check("max_delay_ms", max_delay_ms, 0)
    _check("max_body_mb", max_body_mb, 0.001)
    _check("max_queue_mb", max_queue_mb, 0.001)
    return create_app(models, max_batch, max_delay_ms, batching, int(max_body_mb * (1 << 20)),
                      max_queue_bytes=int(max_queue_mb * (1 << 20)))


def serve(runs=None, model_repository=None, names=None, host: str = "127.0.0.1", port: int = 8000,
          max_batch: int = 4096, max_delay_ms: float = 5.0, instances: int = 1, threads: int | None = None,
          batching: bool = True, max_body_mb: float = 64.0, which: str = "best", max_queue_mb: float = 1024.0,
          device: str = "cpu") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    workdir = tempfile.mkdtemp(prefix="darkshower-serve-")
    try:
        models = load_models(runs, model_repository, names, which, instances, threads, max_batch, workdir, device)
        app = _app(models, max_batch, max_delay_ms, batching, max_body_mb, max_queue_mb)
        sock = _bind(host, port)
        log.info("serving %d model(s) on http://%s:%d (KServe v2; metrics at /metrics)",
                 sum(m.ready for m in models), host, sock.getsockname()[1])
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _bind(host: str, port: int) -> socket.socket:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"--port {port!r}: must be 0..65535 (0: any free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no Nagle delay
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class ServerThread:
    """The server in a background thread on ``host`` and a free port; a context manager that always stops it.

    >>> with ServerThread(load_models(["runs/student"])) as srv:
    ...     print(srv.url)   # http://127.0.0.1:PORT
    """

    def __init__(self, models, host: str = "127.0.0.1", port: int = 0, max_batch: int = 4096,
                 max_delay_ms: float = 5.0, batching: bool = True, max_body_mb: float = 64.0,
                 start_timeout: float = 30.0, max_queue_mb: float = 1024.0):
        import uvicorn

        self.models = models
        self.app = _app(models, max_batch, max_delay_ms, batching, max_body_mb, max_queue_mb)
        self.sock = _bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"darkshower-serve-{self.port}")
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > self.start_timeout:
                self.stop()
                raise ServeError(f"server on {self.url} did not start within {self.start_timeout:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
