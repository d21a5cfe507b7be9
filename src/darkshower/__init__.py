"""darkshower: model-agnostic searches for strongly coupled dark sectors at the LHC.

The library API, one verb per CLI command (``darkshower VERB ...`` calls the same function with the
same checks and errors)::

    import darkshower as ds

    qcd = ds.generate({"process": "qcd", "events": 5000, "params": {"pthat_min": 300}}, "data/qcd")
    ds.import_dataset("pfnano", ["nano.root"], "data/cms_qcd")
    jets, events = ds.observables("data/qcd", "qcd_obs.parquet")
    run = ds.train("nae", "data/qcd", "runs/nae", epochs=30)
    ds.score(run, ["data/qcd_test", "data/svj"], "scores.parquet")
    ds.evaluate("scores.parquet", background="data/qcd_test", signal="data/svj", out="eval")
    ds.search("scores.parquet", "data/qcd_test", "data/svj", out="eval", xsec_pb=0.5)
    ds.report("eval")
    ds.run_benchmark("configs/benchmark/default.yaml", "runs/grid")

``darkshower.train`` and ``darkshower.evaluate`` are also the sub-packages of those stages; calling
them calls their verb (they are callable modules), so both ``darkshower.train(...)`` and
``darkshower.train.load_run(...)`` work. Also :func:`open_dataset` (lazy, chunked reading), :func:`get_method` (a method class by name) and
:func:`export_onnx`. Everything is imported lazily: ``import darkshower`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:  # one version source: the installed distribution's metadata (pyproject.toml [project] version)
    __version__ = _dist_version("darkshower")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: public name -> "module:attribute"
_API = {
    "open_dataset": "darkshower.data.dataset:open_dataset",
    "Dataset": "darkshower.data.dataset:Dataset",
    "generate": "darkshower.simulate.run:generate",
    "import_dataset": "darkshower.io.importer:import_dataset",
    "observables": "darkshower.represent.observables:observables",
    "get_method": "darkshower.models:get_method",
    "register_method": "darkshower.models:register_method",
    "train": "darkshower.train",  # a callable package: darkshower.train(...) is darkshower.train.train(...)
    "score": "darkshower.train.score:score",
    "tune": "darkshower.train.tune:tune",
    "load_run": "darkshower.models.runs:load_run",
    "export_onnx": "darkshower.export.onnx:export_onnx",
    "evaluate": "darkshower.evaluate",  # callable package, as train
    "search": "darkshower.evaluate.bumphunt:search",
    "report": "darkshower.evaluate.htmlreport:report",
    "run_benchmark": "darkshower.pipeline.benchmark:run_benchmark",
    "DarkshowerError": "darkshower.errors:DarkshowerError",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'darkshower' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
