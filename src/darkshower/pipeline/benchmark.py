"""``darkshower benchmark CONFIG.yaml``: generate (or reuse) the datasets of a signal grid,
train the listed methods on QCD, score, evaluate and report — resumable at every stage.

BENCH/
  benchmark.yaml        resolved config
  status.json           per stage: done/failed, seconds, message
  data/<sample>/        datasets (generate resumes incomplete ones, skips complete ones); data/minbias: the
                        pileup library when samples overlay pileup (``minbias:``, ``pileup:`` per sample)
  runs/<method>/        training runs (complete runs are skipped, interrupted ones resumed; a method with
                        ``run:`` scores with that existing run instead; one with ``score_of:`` scores an earlier
                        entry's run by another of its scores, ``score_kind:``, and trains nothing)
  scores/<method>.parquet (+ .events.parquet)
  evaluation/           metrics.json, data/, search/ (darkshower.evaluate), report.html
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr

from darkshower.config import StrictModel, load_yaml, validate
from darkshower.data.dataset import atomic_write_json, atomic_write_text
from darkshower.errors import ConfigError, DarkshowerError

#: methods that can train on the frozen representation of another run (``model.embedding_run``)
EMBEDDING_METHODS = ("nae", "wnae")

log = logging.getLogger(__name__)


class PileupSpec(StrictModel):
    """Pileup of one generated sample (docs/pileup.md); other keys of the generate config's ``pileup`` section
    (beam_spot_z_mm, puppi, ...) go under the sample's ``generate: {pileup: {...}}``."""

    mu: float = Field(0.0, ge=0.0, le=1000.0, description="mean number of overlaid minimum-bias interactions")
    mitigation: str = Field("none", description="none, chs, puppi (or what `darkshower generate --pu-mitigation` takes)")
    library: str | None = Field(None, description="minimum-bias library dataset; default: the benchmark's `minbias` library")


class MinbiasSpec(StrictModel):
    """The minimum-bias library of the benchmark's pileup samples: generated into BENCH/data/minbias, or ``path``."""

    events: int = Field(500, ge=1, description="interactions in the library (drawn with replacement)")
    seed: int | None = Field(None, ge=0, description="default: benchmark seed * 1000 + 999")
    path: str | None = Field(None, description="use this existing library (darkshower generate minbias) instead")


class SampleSpec(StrictModel):
    name: str
    process: str | None = Field(None, description="generator process (qcd, svj, emj, suep, ttbar)")
    events: int = Field(1000, ge=1)
    seed: int | None = Field(None, ge=0, description="default: benchmark seed + sample index")
    params: dict = Field(default_factory=dict)
    generate: dict = Field(default_factory=dict, description="other `darkshower generate` config keys (jets, detector, ...)")
    path: str | None = Field(None, description="use this existing dataset (generated or imported) instead of generating")
    pileup: PileupSpec | None = Field(None, description="overlay pileup on this sample (train and test may differ)")


class MethodSpec(StrictModel):
    method: str
    name: str | None = None
    config: dict = Field(default_factory=dict, description="training config (docs/training.md)")
    epochs: int | None = Field(None, ge=1)
    run: str | None = Field(None, description="score with this existing training run of `method` instead of training")
    embedding_of: str | None = Field(None, description="train on the frozen representation of this benchmark method's "
                                     "run (the name of an earlier entry, e.g. a clr/aclr run; sets model.embedding_run "
                                     "of nae/wnae); trained after it")
    score_kind: str | None = Field(None, description="score by this kind of the method's scores instead of its "
                                   "model.score (clr/aclr/rs3l: norm, knn, maha; `score --score-kind`)")
    score_of: str | None = Field(None, description="train nothing: score the run of this earlier entry (same method) "
                                 "by score_kind, e.g. {method: rs3l, name: rs3l-norm, score_of: rs3l, score_kind: norm}")

    _source_run: str | None = PrivateAttr(None)  # score_of: the source entry's ``run:`` (set on loading)

    @property
    def label(self) -> str:
        return self.name or self.method


class BenchmarkConfig(StrictModel):
    name: str = "benchmark"
    seed: int = Field(1, ge=0)
    jobs: int | None = Field(None, ge=1, description="generation worker processes (default: all cores)")
    threads: int | None = Field(None, ge=1, description="torch threads for training/scoring")
    train: SampleSpec = Field(description="background (QCD) sample the methods train on")
    background: SampleSpec = Field(description="independent background sample used for evaluation")
    signals: list[SampleSpec] = Field(min_length=1)
    minbias: MinbiasSpec | None = Field(None, description="minimum-bias library for samples with pileup.mu > 0")
    methods: list[MethodSpec] = Field(min_length=1)
    supervised_reference: bool = Field(True, description="gradient-boosted classifier on observables as upper bound")
    evaluation: dict = Field(default_factory=dict, description="options of darkshower.evaluate.evaluate")
    search: dict | None = Field(None, description="options of darkshower.evaluate.search (signal: sample name, ...)")
    report: bool = True


def load_benchmark_config(source) -> BenchmarkConfig:
    if isinstance(source, BenchmarkConfig):
        cfg = source
    else:
        data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
        cfg = validate(BenchmarkConfig, data, f"benchmark config {source if isinstance(source, (str, Path)) else ''}".strip())
    from darkshower.models import METHODS, available_methods, get_method

    unknown = [m.method for m in cfg.methods if m.method not in METHODS and m.method != "auto"]
    if unknown:
        raise ConfigError(f"benchmark config: unknown method(s) {unknown} in 'methods'; choose from "
                          f"{', '.join(available_methods())}, or auto (darkshower train auto)")
    labels = [m.label for m in cfg.methods]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"benchmark config: method names must be unique, got {labels} (set 'name:' to tell them apart)")
    names = [s.name for s in [cfg.train, cfg.background, *cfg.signals]]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmark config: sample names must be unique, got {names}")
    if "minbias" in names and cfg.minbias is not None:
        raise ConfigError("benchmark config: 'minbias' is the name of the pileup library (BENCH/data/minbias); "
                          "rename that sample")
    for s in [cfg.train, cfg.background, *cfg.signals]:
        if s.process is None and s.path is None:
            raise ConfigError(f"benchmark config: sample {s.name!r} needs 'process' (to generate) or 'path'")
        if s.pileup is not None:
            _check_pileup(cfg, s)
    for i, m in enumerate(cfg.methods):
        if m.embedding_of is not None:
            if m.method not in EMBEDDING_METHODS:
                raise ConfigError(f"benchmark config: method {m.label!r}: embedding_of is for "
                                  f"{', '.join(EMBEDDING_METHODS)} (model.embedding_run), not {m.method!r}")
            if m.embedding_of not in labels[:i]:
                raise ConfigError(f"benchmark config: method {m.label!r}: embedding_of {m.embedding_of!r} is not an "
                                  f"earlier method of the config (earlier: {', '.join(labels[:i]) or 'none'}); list the "
                                  "run that provides the representation before it")
    for i, m in enumerate(cfg.methods):
        where = f"benchmark config: method {m.label!r}"
        if m.score_kind is not None:
            kinds = () if m.method == "auto" else get_method(m.method).score_kinds
            if m.score_kind not in kinds:
                raise ConfigError(f"{where}: score_kind {m.score_kind!r} is not a score of {m.method!r} (offered: "
                                  f"{', '.join(kinds) or 'none besides its model.score'})")
        if m.score_of is not None:
            src = next((x for x in cfg.methods[:i] if x.label == m.score_of), None)
            if src is None or src.method != m.method:
                raise ConfigError(f"{where}: score_of {m.score_of!r} must name an earlier {m.method} entry of the "
                                  f"config (earlier: {', '.join(labels[:i]) or 'none'})")
            if src.score_of is not None:
                raise ConfigError(f"{where}: score_of {m.score_of!r} names an entry that trains nothing itself; "
                                  f"name the entry that trains the run ({src.score_of!r})")
            if m.score_kind is None or m.run is not None or m.config or m.epochs or m.embedding_of:
                raise ConfigError(f"{where}: score_of scores another entry's run, so it needs score_kind and takes "
                                  "no run, config, epochs or embedding_of")
            m._source_run = src.run
    for m in cfg.methods:
        if m.run is None:
            continue
        if not (Path(m.run) / "run.json").exists():
            raise ConfigError(f"benchmark config: method {m.label!r}: run {m.run} is not a training run (no run.json); "
                              "train it first or leave out 'run:' to train here")
        from darkshower.models.runs import read_run_json  # (one clear error on a corrupt or foreign run.json)

        trained = read_run_json(Path(m.run)).get("method")
        if trained != m.method:
            raise ConfigError(f"benchmark config: method {m.label!r}: run {m.run} was trained with {trained!r}, not "
                              f"{m.method!r}; set 'method: {trained}' or point 'run:' at a {m.method} run")
    return cfg


def _check_pileup(cfg: BenchmarkConfig, s: SampleSpec) -> None:
    """A sample's pileup, validated as the generate config's ``pileup`` section (with the library filled in)."""
    from darkshower.simulate.config import PileupConfig

    where = f"benchmark config: sample {s.name!r}"
    assert s.pileup is not None
    if s.path is not None:
        raise ConfigError(f"{where}: 'pileup' applies to generated samples, not to an existing dataset ('path'); "
                          "remove one of them")
    if s.pileup.mu > 0 and s.pileup.library is None and cfg.minbias is None:
        raise ConfigError(f"{where}: pileup.mu = {s.pileup.mu:g} needs a minimum-bias library: add "
                          "`minbias: {events: 500}` at the top level (generated once) or set pileup.library: DIR")
    extra = s.generate.get("pileup") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: generate.pileup must be a section")
    dup = sorted(set(extra) & {"mu", "mitigation", "library"})
    if dup:
        raise ConfigError(f"{where}: {dup} given both in 'pileup' and in 'generate.pileup'; keep them in 'pileup'")
    validate(PileupConfig, _pileup_section(cfg, s, Path("BENCH")), f"{where} pileup")


def _pileup_section(cfg: BenchmarkConfig, s: SampleSpec, bench: Path) -> dict:
    assert s.pileup is not None
    lib = s.pileup.library
    if lib is None and s.pileup.mu > 0 and cfg.minbias is not None:
        lib = cfg.minbias.path or str(bench / "data" / "minbias")
    out = {**(s.generate.get("pileup") or {}), "mu": s.pileup.mu, "mitigation": s.pileup.mitigation}
    if lib is not None:
        out["library"] = lib
    return out


def _generate_configs(cfg: BenchmarkConfig, bench: Path) -> list[tuple[str, dict, Path]]:
    """(name, generate config, output path) of every sample to generate, the pileup library first."""
    out = []
    uses_lib = any(s.pileup is not None and s.pileup.mu > 0 and s.pileup.library is None
                   for s in [cfg.train, cfg.background, *cfg.signals])
    if cfg.minbias is not None and cfg.minbias.path is None and uses_lib:
        seed = cfg.minbias.seed if cfg.minbias.seed is not None else cfg.seed * 1000 + 999
        out.append(("minbias", {"process": "minbias", "events": cfg.minbias.events, "seed": seed,
                                "chunk_size": max(cfg.minbias.events, 1)}, bench / "data" / "minbias"))
    for i, s in enumerate([cfg.train, cfg.background, *cfg.signals]):
        if s.path:
            continue
        gcfg = {**s.generate, "process": s.process, "events": s.events,
                "seed": s.seed if s.seed is not None else cfg.seed * 1000 + i, "params": s.params}
        if s.pileup is not None:
            gcfg["pileup"] = _pileup_section(cfg, s, bench)
        out.append((s.name, gcfg, sample_path(bench, s)))
    return out


def run_path(bench: Path, m: MethodSpec) -> Path:
    if m.score_of is not None:  # another entry's run (validated by load_benchmark_config)
        return Path(m._source_run) if m._source_run else bench / "runs" / m.score_of
    return Path(m.run) if m.run else bench / "runs" / m.label


def _borrow_run(status: _Status, m: MethodSpec, bench: Path, say: bool = True) -> bool:
    """For a ``score_of`` entry (it trains nothing): whether its source's run is there to score. Its training key
    mirrors the source's (done when the source is done or is an existing ``run:``; dropped when the source failed
    or was reset), with a message when it is not."""
    key, src = f"train:{m.label}", f"train:{m.score_of}"
    if m._source_run or status.done(src):
        if not status.done(key):
            status.set(key, status="done", seconds=0.0, run=str(run_path(bench, m)))
        return True
    status.drop(key)  # borrowed from a source that is no longer done
    if say:
        why = ("failed" if status.data.get(src, {}).get("status") == "failed" else
               "is not trained yet (run the train stage with it among --methods)")
        print(f"[benchmark] score:{m.label} skipped: the run of {m.score_of!r} {why}", flush=True)
    return False


def _run_state(run: Path) -> str | None:
    """What identifies the trained state of a run (run.json: status, finished, epochs, best epoch; a `train auto`
    run: its members' states and its calibration); None without one."""
    try:
        info = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("members"):
        parts = [str(_run_state(run / m["dir"])) for m in info["members"] if isinstance(m, dict) and "dir" in m]
        return f"{info.get('status')}|{info.get('n_val_scores')}|" + ";".join(parts)
    return f"{info.get('status')}|{info.get('finished')}|{info.get('epochs_done')}|{info.get('best_epoch')}"


def _stale(status: _Status, key: str, run: Path) -> bool:
    """Whether the scores of ``key`` were made with another state of ``run`` than it has now (retrained by an
    earlier call, e.g. ``--stages train`` or a ``score_of`` entry's source under another ``--methods``). Scores
    recorded before darkshower kept the state count as current."""
    rec = status.data.get(key, {})
    return "run_state" in rec and rec["run_state"] != _run_state(run)


def _method_config(cfg: BenchmarkConfig, bench: Path, m: MethodSpec) -> dict:
    """The training config of a benchmark method: its ``config`` with the benchmark's threads and seed
    filled in, and ``model.embedding_run`` pointing at the run named by ``embedding_of`` (looked up in ``cfg``:
    the whole config, not a ``--methods`` subset)."""
    mcfg = dict(m.config)
    if cfg.threads and "threads" not in mcfg:
        mcfg["threads"] = cfg.threads
    mcfg.setdefault("seed", cfg.seed)
    if m.embedding_of is not None:
        src = next(x for x in cfg.methods if x.label == m.embedding_of)
        mcfg["model"] = {**mcfg.get("model", {}), "embedding_run": str(run_path(bench, src))}
    return mcfg


def _representation_missing(status: _Status, m: MethodSpec) -> bool:
    """Whether ``m`` trains on another entry's representation (``embedding_of``) that is not trained; says so."""
    if m.embedding_of is None or status.done(f"train:{m.embedding_of}"):
        return False
    st = status.data.get(f"train:{m.embedding_of}", {}).get("status")
    why = "failed" if st == "failed" else "is not trained (add it to --methods)"
    print(f"[benchmark] train:{m.label} skipped: its representation's run {m.embedding_of!r} {why}", flush=True)
    return True


class _Status:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def set(self, key: str, **kw) -> None:
        self.data[key] = kw
        atomic_write_json(self.path, self.data)

    def drop(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            atomic_write_json(self.path, self.data)

    def done(self, key: str) -> bool:
        return self.data.get(key, {}).get("status") == "done"


def _stage(status: _Status, key: str, fn, *, critical: bool = True, force: bool = False, extra: dict | None = None):
    if status.done(key) and not force:
        log.info("[benchmark] %s: done before, skipped", key)
        return "skipped"
    t0 = time.perf_counter()
    print(f"[benchmark] {key} ...", flush=True)
    try:
        out = fn()
    except DarkshowerError as exc:
        status.set(key, status="failed", seconds=round(time.perf_counter() - t0, 2), message=str(exc))
        if critical:
            raise
        print(f"[benchmark] {key} FAILED: {exc}", flush=True)
        return None
    status.set(key, status="done", seconds=round(time.perf_counter() - t0, 2), **(extra or {}))
    return out


def _supervised(method: str) -> bool:
    from darkshower.models import get_method

    return method != "auto" and get_method(method).supervised


def _resumable(method: str, run: Path) -> bool:
    """Whether ``run`` holds a started run of ``method`` to continue (a `train auto` run: its run.json)."""
    return (run / ("run.json" if method == "auto" else "checkpoint.pt")).exists()


def _train_method(method: str, data, out, config, epochs, resume: bool, progress: bool):
    """``darkshower train METHOD`` (or ``train auto``, the recommended default) as a benchmark stage."""
    if method == "auto":
        from darkshower.train.auto import train_auto

        return train_auto(data, out, config=config, epochs=epochs, resume=resume, progress=progress,
                          command=["darkshower", "benchmark"], echo=log.info)[0]
    from darkshower.train import train

    return train(method, data, out, config=config, epochs=epochs, resume=resume, progress=progress,
                 command=["darkshower", "benchmark"])


def sample_path(bench: Path, s: SampleSpec) -> Path:
    return Path(s.path) if s.path else bench / "data" / s.name


def _grid_task(task) -> tuple[str, str, float, Exception | None]:
    """One independent job of a benchmark grid (runs where the executor runs it): generate a sample, train a
    method, or score with a run; the stage itself runs in that process. Returns (key, stage, seconds, error)."""
    key, stage, kw = task
    from darkshower.execute import Local

    t0 = time.perf_counter()
    try:
        if stage == "generate":
            from darkshower.simulate.run import generate

            generate(kw["config"], kw["out"], progress=False, command=["darkshower", "benchmark"], executor=Local())
        elif stage == "train":
            _train_method(kw["method"], kw["data"], kw["out"], kw["config"], kw["epochs"], kw["resume"], False)
        else:
            from darkshower.train import score

            score(kw["run"], kw["datasets"], kw["out"], progress=False, threads=kw["threads"], executor=Local(),
                  score_kind=kw.get("score_kind"))
    except DarkshowerError as exc:
        return key, stage, round(time.perf_counter() - t0, 2), exc
    return key, stage, round(time.perf_counter() - t0, 2), None


def _map_grid(executor, status: _Status, tasks: list, progress: bool,
              extra: dict[str, dict] | None = None) -> dict[str, Exception | None]:
    """Run independent grid jobs on ``executor``; the status of each is recorded here as it completes (with
    ``extra[key]``'s fields when done, e.g. the run state a score was made with)."""
    out: dict[str, Exception | None] = {}
    if not tasks:
        return out
    for key, _, _ in tasks:
        print(f"[benchmark] {key} ...", flush=True)

    def fold(res) -> None:
        key, _, seconds, exc = res
        out[key] = exc
        if exc is None:
            status.set(key, status="done", seconds=seconds, **(extra or {}).get(key, {}))
        else:
            status.set(key, status="failed", seconds=seconds, message=str(exc))
            print(f"[benchmark] {key} FAILED: {exc}", flush=True)

    executor.run(_grid_task, tasks, fold, desc=f"benchmark {tasks[0][1]}", unit="job", progress=progress,
                 name=lambda t: t[0])
    return out


def _run_grid(cfg: BenchmarkConfig, bench: Path, status: _Status, want: set, executor, progress: bool,
              full: BenchmarkConfig | None = None):
    """The grid as three maps of independent jobs on ``executor``: generate every sample, train every method,
    score with every run. Each job runs its stage in one worker; resumable like the sequential path."""

    tasks: list[tuple[str, str, dict[str, Any]]] = []
    if "generate" in want:
        gens = _generate_configs(cfg, bench)
        if gens and gens[0][0] == "minbias" and not status.done("generate:minbias"):  # the others read it
            failed = [exc for exc in _map_grid(executor, status, [("generate:minbias", "generate",
                      {"config": gens[0][1], "out": str(gens[0][2])})], progress).values() if exc is not None]
            if failed:
                raise failed[0]
        for name, gcfg, path in gens:
            if not status.done(f"generate:{name}"):
                tasks.append((f"generate:{name}", "generate", {"config": gcfg, "out": str(path)}))
        failed = [exc for exc in _map_grid(executor, status, tasks, progress).values() if exc is not None]
        if failed:  # every later stage needs the data
            raise failed[0]
    retrained = set()
    for m in cfg.methods:  # entries with an existing run: nothing to train, whichever stages run
        if m.run is not None and not status.done(f"train:{m.label}"):
            status.set(f"train:{m.label}", status="done", seconds=0.0, run=m.run)
    if "train" in want:
        # two waves: runs on a frozen representation (embedding_of) train after the runs that provide it
        for wave in (False, True):
            tasks = []
            for m in cfg.methods:
                key, run = f"train:{m.label}", bench / "runs" / m.label
                if (m.embedding_of is not None) != wave or m.score_of is not None:
                    continue
                if status.done(key):
                    continue
                if _representation_missing(status, m):
                    continue
                mcfg = _method_config(full or cfg, bench, m)
                if _supervised(m.method):  # references train on the first signal as label 1
                    mcfg["data"] = {**mcfg.get("data", {}), "signal": [str(sample_path(bench, cfg.signals[0]))]}
                resume = _resumable(m.method, run)
                tasks.append((key, "train", {"method": m.method, "data": str(sample_path(bench, cfg.train)),
                                             "out": str(run), "config": None if resume else mcfg, "epochs": m.epochs,
                                             "resume": resume}))
            retrained |= {k for k, exc in _map_grid(executor, status, tasks, progress).items() if exc is None}
    for m in cfg.methods:  # score_of entries train nothing: scored with their source's run, rescored with it
        if m.score_of is not None and _borrow_run(status, m, bench, "score" in want) and f"train:{m.score_of}" in retrained:
            retrained.add(f"train:{m.label}")
    runs, scores = {}, {}
    tasks = []
    datasets = [str(sample_path(bench, s)) for s in [cfg.background, *cfg.signals]]
    for m in cfg.methods:
        if not status.done(f"train:{m.label}"):
            continue
        runs[m.label] = run_path(bench, m)
        sfile = bench / "scores" / f"{m.label}.parquet"
        key = f"score:{m.label}"
        if "score" in want and (f"train:{m.label}" in retrained or not sfile.exists() or not status.done(key)
                                or _stale(status, key, runs[m.label])):
            tasks.append((key, "score", {"run": str(runs[m.label]), "datasets": datasets, "out": str(sfile),
                                         "threads": cfg.threads, "score_kind": m.score_kind}))
    # the state each score is made with, taken before scoring and recorded with its status
    _map_grid(executor, status, tasks, progress, extra={t[0]: {"run_state": _run_state(Path(t[2]["run"]))} for t in tasks})
    for m in cfg.methods:
        if m.label in runs and status.done(f"score:{m.label}"):
            scores[m.label] = bench / "scores" / f"{m.label}.parquet"
    return runs, scores


def run_benchmark(config, out, jobs: int | None = None, progress: bool = True, stages: tuple[str, ...] | None = None,
                  executor=None, methods: tuple[str, ...] | None = None) -> dict:
    """Run (or resume) a benchmark into ``out``; returns the summary dict (also BENCH/summary.json).
    With ``executor`` (darkshower.execute: ``Local()``, ``Processes(n)``, ``Dask(...)``) the independent jobs of
    the grid run as tasks: every sample's generation, then every method's training, then every run's scoring
    (each job runs its stage in one worker); without it, the stages run one after the other here, generation
    with ``jobs`` processes. ``methods`` (names as in the config) limits training and scoring to those methods
    (e.g. the quick ones of a large grid first); evaluation and the report include every method scored so far."""
    from darkshower.simulate.run import generate
    from darkshower.train import score

    cfg = load_benchmark_config(config)
    bench = Path(out)
    bench.mkdir(parents=True, exist_ok=True)
    atomic_write_text(bench / "benchmark.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    status = _Status(bench / "status.json")
    t_all = time.perf_counter()
    want = set(stages or ("generate", "train", "score", "evaluate", "report"))
    active = cfg
    if methods is not None:
        labels = [m.label for m in cfg.methods]
        unknown = [m for m in methods if m not in labels]
        if unknown:
            raise ConfigError(f"--methods {','.join(unknown)}: not in the benchmark config (its methods: "
                              f"{', '.join(labels)})")
        active = cfg.model_copy(update={"methods": [m for m in cfg.methods if m.label in methods]})

    if executor is not None:
        from darkshower.execute import using

        with using(executor) as ex:
            runs, scores = _run_grid(active, bench, status, want, ex, progress, full=cfg)
    if executor is None and "generate" in want:
        for name, gcfg, path in _generate_configs(cfg, bench):
            _stage(status, f"generate:{name}",
                   lambda gcfg=gcfg, path=path: generate(gcfg, path, jobs=jobs or cfg.jobs, progress=progress,
                                                         command=["darkshower", "benchmark"]))
    if executor is None:
        runs, scores = {}, {}
    retrained_labels: set[str] = set()
    for m in (active.methods if executor is None else []):
        run = run_path(bench, m)
        mcfg = _method_config(cfg, bench, m)
        key = f"train:{m.label}"

        def _train(m=m, run=run, mcfg=mcfg):
            resume = _resumable(m.method, run)
            if _supervised(m.method):  # references train on the first signal as label 1
                mcfg["data"] = {**mcfg.get("data", {}), "signal": [str(sample_path(bench, cfg.signals[0]))]}
            return _train_method(m.method, sample_path(bench, cfg.train), run, None if resume else mcfg, m.epochs,
                                 resume, progress)

        retrained = False
        if m.run is not None and not status.done(key):  # an existing run: nothing to train
            status.set(key, status="done", seconds=0.0, run=m.run)
        if m.score_of is not None:  # trains nothing: scored with its source's run, rescored when that retrains
            if not _borrow_run(status, m, bench, "score" in want):
                continue
            retrained = m.score_of in retrained_labels
        elif "train" in want and not status.done(key) and _representation_missing(status, m):
            continue
        elif "train" in want:
            ok = _stage(status, key, _train, critical=False)
            if ok is None:
                continue
            retrained = ok != "skipped"
            if retrained:
                retrained_labels.add(m.label)
        if not status.done(key):
            continue
        runs[m.label] = run
        sfile = bench / "scores" / f"{m.label}.parquet"
        datasets = [sample_path(bench, s) for s in [cfg.background, *cfg.signals]]
        if "score" in want:
            r = _stage(status, f"score:{m.label}",
                       lambda run=run, sfile=sfile, datasets=datasets, kind=m.score_kind: score(
                           run, datasets, sfile, progress=progress, threads=cfg.threads, score_kind=kind),
                       critical=False, force=retrained or not sfile.exists() or _stale(status, f"score:{m.label}", run),
                       extra={"run_state": _run_state(run)})
            if r is None:
                continue
        if status.done(f"score:{m.label}"):
            scores[m.label] = sfile
    failed = {k: v.get("message") for k, v in status.data.items() if v.get("status") == "failed"}
    left_out = {}
    for m in cfg.methods:  # methods left out by ``methods``: their earlier scores still count while they are
        # still those of the run as it is (not after a failed or another retrain of it, or of a score_of source)
        sfile = bench / "scores" / f"{m.label}.parquet"
        if m.label in scores or not status.done(f"score:{m.label}") or not sfile.exists():
            continue
        run, src = run_path(bench, m), f"train:{m.score_of or m.label}"
        if not (status.done(f"train:{m.label}") and (m._source_run or status.done(src))):
            if src not in failed:
                left_out[m.label] = f"the training of its run ({src}) is not done"
        elif _stale(status, f"score:{m.label}", run):
            left_out[m.label] = (f"its run {run} was retrained after it was scored; rescore it with --methods "
                                 f"{m.label} --stages score")
        else:
            runs.setdefault(m.label, run)
            scores[m.label] = sfile
    for label, why in left_out.items():
        print(f"[benchmark] score:{label} left out of the evaluation: {why}", flush=True)
    summary: dict[str, Any] = {"name": cfg.name, "runs": {k: str(v) for k, v in runs.items()},
               "scores": {k: str(v) for k, v in scores.items()}, "failed": failed, "left_out": left_out}
    if "evaluate" in want and scores:
        summary["evaluation"] = _stage(status, "evaluate", lambda: _evaluate(cfg, bench, scores, failed, left_out),
                                       force=True)
    if "report" in want and cfg.report and scores:
        summary["report"] = _stage(status, "report", lambda: _report(bench), force=True)
    summary["seconds"] = round(time.perf_counter() - t_all, 1)
    atomic_write_json(bench / "summary.json", summary)
    return summary


def _evaluate(cfg: BenchmarkConfig, bench: Path, scores: dict, failed: dict, left_out: dict | None = None):
    """evaluate (+ search) into BENCH/evaluation; failed stages and score files left out (no longer of their run)
    become warnings in metrics.json."""
    from darkshower.evaluate import evaluate, search
    from darkshower.evaluate import io as eio

    out = bench / "evaluation"
    unsup: list[Path] = []
    sup: list[Path] = []
    runs = {m.label: run_path(bench, m) for m in cfg.methods}
    for label, f in scores.items():
        info = json.loads((runs[label] / "run.json").read_text())
        (sup if info.get("supervised") else unsup).append(f)
    background = [sample_path(bench, cfg.background)]
    signals = [sample_path(bench, s) for s in cfg.signals]
    metrics = evaluate(unsup, background, signals, out, supervised_scores=sup, supervised=cfg.supervised_reference,
                       **cfg.evaluation)
    if cfg.search:
        opts = dict(cfg.search)
        name = opts.pop("signal", cfg.signals[0].name)
        match = [s for s in cfg.signals if s.name == name]
        if not match:
            raise ConfigError(f"benchmark config: search.signal {name!r} is not one of the signal samples "
                              f"{[s.name for s in cfg.signals]}")
        search(unsup, background, [sample_path(bench, match[0])], out, **opts)
    if failed or left_out:
        metrics.setdefault("warnings", [])
        metrics["warnings"] += [f"{k} FAILED — not in the tables: {v}" for k, v in failed.items()]
        metrics["warnings"] += [f"score:{k} — not in the tables: {v}" for k, v in (left_out or {}).items()]
        eio.atomic_write_json(out / eio.METRICS, metrics)
    return str(out / eio.METRICS)


def _report(bench: Path):
    from darkshower.evaluate import report

    return str(report(bench / "evaluation"))
