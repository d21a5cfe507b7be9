"""The models a server holds: trained runs (exported to ONNX at start) or a Triton model repository.

A :class:`ServedModel` is one (name, version): its ONNX Runtime sessions (one per instance), its input and
output tensors (KServe v2 datatypes, shapes with -1 for the batch axis), and its state: READY, or
UNAVAILABLE with the reason it failed to load (reported at start and by its ready endpoint).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from darkshower.errors import DarkshowerError, ServeError

log = logging.getLogger(__name__)

__all__ = ["ServedModel", "load_runs", "load_repository", "session_options"]


@dataclass
class ServedModel:
    name: str
    version: str
    inputs: list[dict] = field(default_factory=list)  # [{name, dtype (numpy), datatype (v2), shape}]
    outputs: list[dict] = field(default_factory=list)
    max_batch_size: int = 0  # 0: fixed shapes, no batch axis
    sessions: list = field(default_factory=list)
    state: str = "UNAVAILABLE"
    reason: str = ""
    source: str = ""
    info: dict = field(default_factory=dict)  # darkshower.json / run info (representation, method)

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    def metadata(self, versions: list[str]) -> dict:
        return {"name": self.name, "versions": versions, "platform": "onnxruntime_onnx",
                "inputs": [{"name": t["name"], "datatype": t["datatype"], "shape": t["shape"]} for t in self.inputs],
                "outputs": [{"name": t["name"], "datatype": t["datatype"], "shape": t["shape"]} for t in self.outputs]}

    def config(self, max_delay_ms: float, batching: bool) -> dict:
        """Triton's model-configuration extension (JSON form of config.pbtxt)."""
        from darkshower.export.triton import DTYPES

        def t(x):
            dims = x["shape"][1:] if self.max_batch_size else x["shape"]
            return {"name": x["name"], "data_type": DTYPES[x["dtype"]][0], "dims": dims or [1]}

        cfg = {"name": self.name, "platform": "onnxruntime_onnx", "max_batch_size": self.max_batch_size,
               "input": [t(x) for x in self.inputs], "output": [t(x) for x in self.outputs],
               "instance_group": [{"count": max(len(self.sessions), 1), "kind": "KIND_CPU"}]}
        if batching and self.max_batch_size:
            cfg["dynamic_batching"] = {"max_queue_delay_microseconds": int(max_delay_ms * 1000)}
        return cfg


def session_options(threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime execution providers for ``device`` (cpu, or cuda: needs the onnxruntime-gpu package)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise ServeError(f"--device {device!r}: choose cpu or cuda")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ServeError(f"--device cuda: this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider "
                         f"(available: {ort.get_available_providers()}); install onnxruntime-gpu in place of "
                         "onnxruntime, or serve with --device cpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _open(model: ServedModel, path: Path, instances: int, threads: int | None,
          declared: tuple[list[dict], list[dict], int] | None = None, max_batch: int = 4096,
          device: str = "cpu") -> ServedModel:
    """Sessions and tensor descriptions of ``path`` into ``model`` (READY), checked against ``declared``
    (a config.pbtxt's tensors) when given."""
    import onnxruntime as ort

    from darkshower.export.triton import DTYPES, onnx_io

    inputs, outputs = onnx_io(path)
    batched = all(t["shape"] and t["shape"][0] is None for t in inputs + outputs)
    if declared is not None:
        cfg_in, cfg_out, cfg_max = declared
        for kind, have, want in (("input", inputs, cfg_in), ("output", outputs, cfg_out)):
            h = {t["name"]: t for t in have}
            for w in want:
                if w["name"] not in h:
                    raise ServeError(f"config.pbtxt declares {kind} {w['name']!r}, the ONNX model has "
                                     f"{sorted(h)}")
                if h[w["name"]]["dtype"] != w["dtype"]:
                    raise ServeError(f"config.pbtxt: {kind} {w['name']!r} is {w['dtype']}, the ONNX model's is "
                                     f"{h[w['name']]['dtype']}")
            if len(want) != len(have) and kind == "input":
                raise ServeError(f"config.pbtxt declares inputs {[w['name'] for w in want]}, the ONNX model "
                                 f"has {[t['name'] for t in have]}")
        if cfg_max and not batched:
            raise ServeError(f"config.pbtxt has max_batch_size {cfg_max} but the ONNX model has no dynamic batch axis")
        batched = batched and cfg_max > 0
        max_batch = min(max_batch, cfg_max) if cfg_max else 0
    if any(d is None for t in inputs + outputs for d in (t["shape"][1:] if batched else t["shape"])):
        raise ServeError("only the batch axis may be dynamic (inputs "
                         f"{[(t['name'], t['shape']) for t in inputs]})")
    for t in inputs + outputs:
        t["datatype"] = DTYPES[t["dtype"]][1]
        t["shape"] = [-1 if d is None else d for d in t["shape"]]
    if batched:  # as Triton shows a batched per-sample scalar (dims [1], reshape []): [batch, 1]
        for t in outputs:
            if len(t["shape"]) == 1:
                t["shape"] = [-1, 1]
                t["reshape"] = True
    so = session_options(threads)
    model.sessions = [ort.InferenceSession(str(path), so, providers=providers(device))
                      for _ in range(instances)]
    model.inputs, model.outputs = inputs, outputs
    model.max_batch_size = max_batch if batched else 0
    model.state, model.reason = "READY", ""
    return model


def _fail(model: ServedModel, exc: BaseException) -> ServedModel:
    model.state = "UNAVAILABLE"
    model.reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("model %s version %s failed to load: %s", model.name, model.version, model.reason)
    return model


def load_runs(runs: list, names: list[str] | None, workdir: str | os.PathLike | None = None, which: str = "best",
              instances: int = 1, threads: int | None = None, max_batch: int = 4096,
              device: str = "cpu") -> list[ServedModel]:
    """Each run exported to ONNX (checked against torch) in ``workdir`` and opened; served under its directory
    name (or ``names``), version 1. A run that fails to export is UNAVAILABLE with the reason."""
    from darkshower.export.onnx import export_onnx
    from darkshower.export.triton import check_model_name
    from darkshower.models.runs import read_run_json

    names = list(names or [])
    if names and len(names) != len(runs):
        raise ServeError(f"--name given {len(names)} times for {len(runs)} runs: give one name per RUN, in order")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="darkshower-serve-"))
    out, seen = [], set()
    for i, run in enumerate(runs):
        run = Path(run)
        name = names[i] if names else run.resolve().name
        try:
            check_model_name(name, "model name")
        except DarkshowerError as exc:
            raise ServeError(f"{run}: {exc}") from None
        if name in seen:
            raise ServeError(f"two runs would be served as {name!r}: give each RUN its own --name")
        seen.add(name)
        m = ServedModel(name, "1", source=str(run))
        try:
            info = read_run_json(run)
            m.info = {"method": info["method"], "representation": info["representation"],
                      "level": info.get("level", "jet"), "run": str(run.resolve())}
            f = workdir / name / "1" / "model.onnx"
            export_onnx(run, f, which=which)
            _open(m, f, instances, threads, max_batch=max_batch, device=device)
        except Exception as exc:  # reported at start and by the ready endpoint
            _fail(m, exc)
        out.append(m)
    return out


def _versions(model_dir: Path, policy: dict) -> list[int]:
    have = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"[1-9][0-9]*", p.name))
    if "all" in policy:
        return have
    if "specific" in policy:
        return [v for v in have if str(v) in {str(x) for x in policy["specific"].get("versions", [])}]
    n = int(policy.get("latest", {}).get("num_versions", 1))
    return have[-n:]


def load_repository(repo, instances: int = 1, threads: int | None = None, max_batch: int = 4096,
                    device: str = "cpu") -> list[ServedModel]:
    """Every model of a Triton model repository (``REPO/NAME/config.pbtxt`` + ``REPO/NAME/<v>/model.onnx``), the
    versions its version_policy selects (default: the latest). Models that fail are UNAVAILABLE with the reason."""
    import json

    from darkshower.export.triton import MODEL_INFO, parse_model_config

    repo = Path(repo)
    if not repo.is_dir():
        raise ServeError(f"--model-repository {repo}: not a directory; write one with "
                         "`darkshower export RUN --format triton --out REPO`")
    out = []
    dirs = sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise ServeError(f"--model-repository {repo}: holds no model directory (REPO/NAME/config.pbtxt)")
    for d in dirs:
        try:
            cfg = parse_model_config(d / "config.pbtxt")
            if cfg["name"] and cfg["name"] != d.name:
                raise ServeError(f"{d / 'config.pbtxt'}: name {cfg['name']!r} differs from the directory name "
                                 f"{d.name!r}")
            if cfg["platform"] not in ("onnxruntime_onnx", "onnxruntime"):
                raise ServeError(f"{d / 'config.pbtxt'}: platform {cfg['platform']!r}; darkshower serves "
                                 "onnxruntime_onnx models only")
            versions = _versions(d, cfg["version_policy"])
            if not versions:
                raise ServeError(f"{d}: no version directory (REPO/NAME/1/model.onnx) selected by the version policy")
        except Exception as exc:
            out.append(_fail(ServedModel(d.name, "1", source=str(d)), exc))
            continue
        info = {}
        if (d / MODEL_INFO).exists():
            try:
                info = json.loads((d / MODEL_INFO).read_text())
            except ValueError as exc:
                log.warning("%s: unreadable (%s); serving without it", d / MODEL_INFO, exc)
        for v in versions:
            m = ServedModel(d.name, str(v), source=str(d / str(v)), info=info)
            try:
                f = d / str(v) / "model.onnx"
                if not f.is_file():
                    raise ServeError(f"{f}: missing")
                _open(m, f, instances, threads, (cfg["inputs"], cfg["outputs"], cfg["max_batch_size"]), max_batch,
                      device)
            except Exception as exc:
                _fail(m, exc)
            out.append(m)
    return out
