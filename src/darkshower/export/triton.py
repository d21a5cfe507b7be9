"""A Triton model repository from a trained run: ``export_triton(run, repo, name)`` /
``darkshower export RUN --format triton --out REPO [--name NAME]``.

Layout (what the Triton Inference Server loads unchanged, and ``darkshower serve --model-repository``
serves)::

    REPO/NAME/config.pbtxt        platform onnxruntime_onnx, inputs/outputs (names, dtypes, dims without
                                  the batch axis), max_batch_size, dynamic_batching, instance_group KIND_CPU
    REPO/NAME/<version>/model.onnx  the self-contained ONNX model (output ``score``)
    REPO/NAME/darkshower.json     what a client needs to build the inputs: method, representation spec
                                  (with fitted statistics), level, source run

The model's output ``score`` has shape [batch] in ONNX; Triton requires a non-empty ``dims`` for a batched
output, so the config declares ``dims: [1]`` with ``reshape: { shape: [] }`` and clients see [batch, 1].
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from darkshower.errors import ExportError

__all__ = ["export_triton", "model_config_text", "parse_model_config", "onnx_io", "DTYPES", "MODEL_INFO",
           "check_model_name"]

#: numpy dtype name -> (Triton config TYPE_*, KServe v2 datatype)
DTYPES = {"float32": ("TYPE_FP32", "FP32"), "float64": ("TYPE_FP64", "FP64"), "float16": ("TYPE_FP16", "FP16"),
          "int64": ("TYPE_INT64", "INT64"), "int32": ("TYPE_INT32", "INT32"), "int16": ("TYPE_INT16", "INT16"),
          "int8": ("TYPE_INT8", "INT8"), "uint8": ("TYPE_UINT8", "UINT8"), "bool": ("TYPE_BOOL", "BOOL")}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
MODEL_INFO = "darkshower.json"
MODEL_INFO_FORMAT = "darkshower-triton-model"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_model_name(name: str, what: str = "--name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 128:
        raise ExportError(f"{what} {name!r}: a model name is 1-128 letters, digits, '_', '.', '-' (not starting with "
                          "'.' or '-'); choose another name")
    return name


def onnx_io(path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX model as [{name, dtype (numpy name), shape (None: dynamic)}]."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def desc(args):
        out = []
        for a in args:
            if a.type not in _ORT_TYPES:
                raise ExportError(f"{path}: tensor {a.name!r} has type {a.type}, which darkshower cannot serve")
            out.append({"name": a.name, "dtype": _ORT_TYPES[a.type],
                        "shape": [d if isinstance(d, int) else None for d in a.shape]})
        return out

    return desc(sess.get_inputs()), desc(sess.get_outputs())


def _dims(shape) -> str:
    return "[ " + ", ".join(str(-1 if d is None else d) for d in shape) + " ]"


def model_config_text(name: str, inputs: list[dict], outputs: list[dict], max_batch: int = 4096,
                      max_delay_ms: float = 5.0, instances: int = 1) -> str:
    """config.pbtxt of a model whose every tensor has a dynamic batch axis first (``max_batch`` > 0), or of a
    fixed-shape model (``max_batch`` = 0: dims are the full shapes, no dynamic batching)."""
    batched = max_batch > 0
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch if batched else 0}"]
    for key, tensors in (("input", inputs), ("output", outputs)):
        items = []
        for t in tensors:
            shape = t["shape"][1:] if batched else t["shape"]
            if any(d is None for d in shape):
                raise ExportError(f"{name}: {key} {t['name']!r} has a dynamic axis other than the batch axis "
                                  f"(shape {t['shape']}); only the batch axis may be dynamic for Triton")
            item = f'    name: "{t["name"]}"\n    data_type: {DTYPES[t["dtype"]][0]}\n'
            if shape:
                item += f"    dims: {_dims(shape)}"
            else:  # a per-sample scalar: Triton wants dims [1] and a reshape to []
                item += "    dims: [ 1 ]\n    reshape: { shape: [ ] }"
            items.append("  {\n" + item + "\n  }")
        lines.append(f"{key} [\n" + ",\n".join(items) + "\n]")
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(round(max_delay_ms * 1000))}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]")
    return "\n".join(lines) + "\n"


def _model_config_pb2():
    """Triton's ModelConfig protobuf (shipped inside tritonclient; loaded without grpc) or None."""
    import importlib.util

    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.exists():
        return None
    import sys

    if "darkshower_triton_model_config_pb2" in sys.modules:
        return sys.modules["darkshower_triton_model_config_pb2"]
    mspec = importlib.util.spec_from_file_location("darkshower_triton_model_config_pb2", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    sys.modules["darkshower_triton_model_config_pb2"] = mod
    return mod


def parse_model_config(path) -> dict:
    """A config.pbtxt parsed with Triton's own ModelConfig schema (needs tritonclient, extra ``serve``) into
    {name, platform, max_batch_size, inputs, outputs ([{name, dtype, dims, reshape}]), version_policy,
    max_queue_delay_us, instances}."""
    path = Path(path)
    pb2 = _model_config_pb2()
    if pb2 is None:
        raise ExportError(f"reading {path} needs tritonclient: pip install -e \".[serve]\"")
    from google.protobuf import text_format
    from google.protobuf.json_format import MessageToDict

    try:
        cfg = text_format.Parse(path.read_text(), pb2.ModelConfig())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing; a Triton model directory holds config.pbtxt") from None
    except text_format.ParseError as exc:
        raise ExportError(f"{path}: not a valid Triton model config ({exc})") from None
    names = {v: k for k, (v, _) in DTYPES.items()}

    def tensors(ts, key):
        out = []
        for t in ts:
            dtype = names.get(pb2.DataType.Name(t.data_type))
            if dtype is None:
                raise ExportError(f"{path}: {key} {t.name!r} has data_type {pb2.DataType.Name(t.data_type)}, "
                                  "which darkshower cannot serve")
            out.append({"name": t.name, "dtype": dtype, "dims": list(t.dims),
                        "reshape": list(t.reshape.shape) if t.HasField("reshape") else None})
        return out

    d = MessageToDict(cfg, preserving_proto_field_name=True)
    return {"name": cfg.name, "platform": cfg.platform or cfg.backend, "max_batch_size": cfg.max_batch_size,
            "inputs": tensors(cfg.input, "input"), "outputs": tensors(cfg.output, "output"),
            "version_policy": d.get("version_policy", {"latest": {"num_versions": 1}}),
            "max_queue_delay_us": cfg.dynamic_batching.max_queue_delay_microseconds
            if cfg.HasField("dynamic_batching") else None,
            "instances": sum(g.count or 1 for g in cfg.instance_group) or 1}


def export_triton(run, repo, name: str | None = None, which: str = "best", version: int = 1, max_batch: int = 4096,
                  max_delay_ms: float = 5.0, instances: int = 1, opset: int = 18, rtol: float = 1e-4,
                  atol: float = 1e-5) -> dict:
    """Write (or add a version to) ``repo/name`` in the Triton model-repository layout; returns a dict with the
    paths and the ONNX export check. An existing version directory is an error (pick another ``version``);
    a new version must have the same inputs and outputs as the model's config.pbtxt."""
    from darkshower.export.onnx import export_onnx
    from darkshower.models.runs import read_run_json

    run = Path(run)
    info = read_run_json(run)
    name = check_model_name(name if name is not None else run.resolve().name)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version {version!r}: a Triton model version is an integer >= 1")
    for what, v, lo in (("max_batch", max_batch, 1), ("instances", instances, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ExportError(f"{what}={v!r}: must be an integer >= {lo}")
    if not (max_delay_ms >= 0):
        raise ExportError(f"max_delay_ms={max_delay_ms!r}: must be >= 0")
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"--out {repo}: is a file; a model repository is a directory")
    model_dir = repo / name
    vdir = model_dir / str(version)
    if vdir.exists():
        raise ExportError(f"{vdir}: version {version} of model {name!r} exists; pass another version "
                          "(--model-version) or remove that directory")
    new_model = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    done = False
    tmp = model_dir / f".{version}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        exp = export_onnx(run, tmp / "model.onnx", which=which, opset=opset, rtol=rtol, atol=atol)
        inputs, outputs = onnx_io(tmp / "model.onnx")
        batched = bool(exp["dynamic_batch"]) and all(t["shape"] and t["shape"][0] is None for t in inputs + outputs)
        text = model_config_text(name, inputs, outputs, max_batch if batched else 0, max_delay_ms, instances)
        cfg_path = model_dir / "config.pbtxt"
        if cfg_path.exists():  # another version is there: one config serves all versions
            old = cfg_path.read_text()
            if _io_lines(old) != _io_lines(text):
                raise ExportError(f"{cfg_path}: the existing versions of {name!r} have other inputs/outputs than "
                                  f"this run's model; export under another --name")
        pb2 = _model_config_pb2()
        if pb2 is not None:  # the file must parse with Triton's own schema
            from google.protobuf import text_format

            text_format.Parse(text, pb2.ModelConfig())
        spec = {"format": MODEL_INFO_FORMAT, "format_version": "1.0", "name": name, "method": info["method"],
                "representation": info["representation"], "level": info.get("level", "jet"),
                "supervised": info.get("supervised", False), "spec": info.get("spec"),
                "run": str(run.resolve()), "model": which, "inputs": [t["name"] for t in inputs],
                "output": outputs[0]["name"], "onnx": {k: exp[k] for k in ("exporter", "opset", "max_abs_diff")}}
        _write_atomic(model_dir / MODEL_INFO, json.dumps(spec, indent=1, default=str) + "\n")
        if not cfg_path.exists() or cfg_path.read_text() != text:
            _write_atomic(cfg_path, text)
        os.replace(tmp, vdir)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if new_model and not done:  # no half-written model directory
            shutil.rmtree(model_dir, ignore_errors=True)
    return {"repository": str(repo), "name": name, "version": version, "model_dir": str(model_dir),
            "onnx": str(vdir / "model.onnx"), "config": str(model_dir / "config.pbtxt"), "inputs": inputs,
            "outputs": outputs, "max_batch_size": max_batch if batched else 0, "export": exp}


def _io_lines(text: str) -> str:
    return text.split("input [", 1)[-1].split("dynamic_batching")[0].split("instance_group")[0]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
