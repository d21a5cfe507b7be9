"""``darkshower generate``: chunked, parallel, deterministic and resumable event generation.

Each chunk is an independent task with its own seed derived from the run seed and the chunk
index, so the data do not depend on the number of processes. A chunk generates events until
it holds its target number of *selected* events, then writes one Parquet file atomically.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darkshower.data.dataset import Dataset, DatasetWriter, open_dataset, write_chunk
from darkshower.errors import DarkshowerError, DatasetError
from darkshower.execute import Executor, using
from darkshower.simulate.config import GenerateConfig, resolve_config
from darkshower.simulate.processes import PROCESSES

log = logging.getLogger(__name__)

MB_TO_PB = 1e9


def derive_seed(run_seed: int, index: int, stream: int = 0) -> int:
    """A Pythia seed (1..900000000) for chunk ``index`` of run ``run_seed``."""
    state = np.random.SeedSequence([run_seed, index, stream]).generate_state(1, dtype=np.uint32)[0]
    return int(state % 900_000_000) + 1


def pileup_seed(run_seed: int, index: int) -> int:
    """The seed of chunk ``index``'s pileup overlay (Poisson counts, library picks, vertices, dz)."""
    return derive_seed(run_seed, index, 2)


def process_settings(cfg: GenerateConfig) -> list[str]:
    proc = PROCESSES[cfg.process]
    params = proc.Params.model_validate(cfg.params)
    return [f"Beams:eCM = {cfg.ecm:g}"] + proc.settings(params) + list(cfg.pythia)


@dataclass
class ChunkTask:
    out: str
    index: int
    n_target: int
    seed: int
    config: dict


def plan_chunks(cfg: GenerateConfig, out: str | Path) -> list[ChunkTask]:
    n_chunks = math.ceil(cfg.events / cfg.chunk_size)
    cfg_dict = cfg.model_dump(mode="json")
    return [
        ChunkTask(str(out), i, min(cfg.chunk_size, cfg.events - i * cfg.chunk_size), derive_seed(cfg.seed, i), cfg_dict)
        for i in range(n_chunks)
    ]


class PythiaSource:
    """Events straight from one Pythia instance (``nextBatch``)."""

    def __init__(self, cfg: GenerateConfig, seed: int):
        from darkshower.simulate.events import ChargeTable
        from darkshower.simulate.pythia import make_pythia

        self.pythia = make_pythia(process_settings(cfg), seed)
        self.charges = ChargeTable(self.pythia)

    def next_batch(self, n: int):
        return self.pythia.nextBatch(n)

    def sigma(self) -> tuple[float, float]:
        info = self.pythia.infoPython()
        return float(info.sigmaGen()), float(info.sigmaErr())


class ResimulationSource(PythiaSource):
    """K parton-shower + hadronization realizations of each hard process (RS3L positive pairs).

    Before event n the generator is reseeded with the seed of hard process n // K, and a
    user hook reseeds it again right after the process level with a seed unique to event n:
    the K realizations share the hard scattering and differ downstream (shower, MPI,
    hadronization, decays; the detector's randomness differs too).
    """

    def __init__(self, cfg: GenerateConfig, seed: int):
        from darkshower.simulate.events import ChargeTable
        from darkshower.simulate.pythia import make_pythia, make_reseed_hook

        self.k = cfg.resimulate
        self.seed = seed
        self.hook: Any = None  # set by attach() while Pythia initializes

        def attach(py):
            self.hook = make_reseed_hook(py)
            py.setUserHooksPtr(self.hook)

        self.pythia = make_pythia(process_settings(cfg), seed, before_init=attach)
        self.charges = ChargeTable(self.pythia)
        self.n = 0

    def _seed(self, index: int, stream: int) -> int:
        return derive_seed(self.seed, index, stream)

    def next_batch(self, n: int):
        import awkward as ak

        parts = []
        for _ in range(n):
            for attempt in range(10):  # a failed shower is retried with another downstream seed
                self.pythia.rndm.init(self._seed(self.n // self.k, 3))
                self.hook.seed = self._seed(self.n, 4 + attempt)
                one = self.pythia.nextBatch(1)
                if len(one):
                    break
            else:
                raise DarkshowerError(f"re-simulation: event {self.n} failed 10 times; check the settings")
            parts.append(one)
            self.n += 1
        return ak.concatenate(parts)


def open_source(cfg: GenerateConfig, seed: int):
    """The event source of a process: plain Pythia, or the process's own (e.g. SUEP)."""
    proc = PROCESSES[cfg.process]
    if cfg.resimulate > 1:
        if hasattr(proc, "Source"):
            raise DarkshowerError(f"--resimulate is not available for process {cfg.process!r}")
        return ResimulationSource(cfg, seed)
    if hasattr(proc, "Source"):
        return proc.Source(cfg, proc.Params.model_validate(cfg.params), seed, process_settings(cfg))
    return PythiaSource(cfg, seed)


def generate_chunk_events(cfg: GenerateConfig, index: int, n_target: int, seed: int):
    """Generate one chunk in this process; return (events, metadata)."""
    import awkward as ak

    from darkshower.simulate.events import PileupSource, build_events

    t_init = time.perf_counter()
    source = open_source(cfg, seed)
    charges = source.charges
    pileup = None
    if cfg.pileup.active:  # its own random stream: the hard events and mu = 0 are untouched
        from darkshower.simulate.pileup import open_library

        library = open_library(cfg.pileup.library, cfg.ecm) if cfg.pileup.mu > 0 and cfg.pileup.library else None
        pileup = PileupSource(library, np.random.default_rng(pileup_seed(cfg.seed, index)))
    t_loop = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, 1]))
    parts, n_sel, n_gen = [], 0, 0
    w_gen = w_sel = 0.0
    max_gen = max(int(cfg.max_generated_factor * n_target), 1000)
    eff = 0.5
    while n_sel < n_target:
        want = n_target - n_sel
        bs = int(min(max(math.ceil(1.2 * want / max(eff, 1e-3)), 10), cfg.batch_size))
        batch = source.next_batch(bs)
        if len(batch) == 0:
            raise DarkshowerError(
                f"chunk {index}: Pythia produced no events in a batch of {bs} (all failed); check the settings"
            )
        recs, selected, w = build_events(batch, charges, cfg, rng, index, n_gen, pileup)
        if n_sel + len(recs) > n_target:  # keep exactly n_target; later events count as not generated
            cut = n_target - n_sel
            last = np.flatnonzero(selected)[cut - 1]
            recs = recs[:cut]
            selected = selected[: last + 1]
            w = w[: last + 1]
        n_gen += len(selected)
        w_gen += float(w.sum())
        w_sel += float(w[selected].sum())
        n_sel += len(recs)
        parts.append(recs)
        eff = max(n_sel / n_gen, 1e-3)
        if n_sel < n_target and n_gen >= max_gen:
            raise DarkshowerError(
                f"chunk {index}: only {n_sel} of {n_gen} generated events passed the jet selection "
                f"(jets.pt_min={cfg.jets.pt_min}, jets.eta_max={cfg.jets.eta_max}, jets.min_jets={cfg.jets.min_jets}); "
                "loosen the selection or raise the process's pT scale (e.g. --set pthat_min=...)"
            )
    sigma_mb, sigma_err_mb = source.sigma()
    events = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    meta = {
        "seed": seed,
        "n_generated": n_gen,
        "sum_weights_generated": w_gen,
        "sum_weights_selected": w_sel,
        "sigma_gen_pb": sigma_mb * MB_TO_PB,
        "sigma_err_pb": sigma_err_mb * MB_TO_PB,
        "init_seconds": round(t_loop - t_init, 3),
        "event_seconds": round(time.perf_counter() - t_loop, 3),
    }
    if pileup is not None:
        meta["pileup_seed"] = pileup_seed(cfg.seed, index)
    return events, meta


def run_chunk(task: ChunkTask) -> dict:
    """Worker entry point: generate and atomically write one chunk; return its manifest entry."""
    cfg = GenerateConfig.model_validate(task.config)
    t0 = time.perf_counter()
    events, meta = generate_chunk_events(cfg, task.index, task.n_target, task.seed)
    meta["cpu_seconds"] = round(time.perf_counter() - t0, 3)
    return write_chunk(task.out, task.index, events, meta)


def versions() -> dict:
    from darkshower.versions import package_versions

    return package_versions("pythia8mc", "fastjet", "awkward", "numpy", "pyarrow")


def _precheck(cfg: GenerateConfig) -> dict:
    """Initialize Pythia once in the main process: settings errors surface at once, and the
    effective values (after Pythia's own resets) are recorded."""
    from darkshower.simulate.pythia import effective_values, make_pythia

    settings = process_settings(cfg)
    proc = PROCESSES[cfg.process]
    if hasattr(proc, "Source"):
        src = open_source(cfg, derive_seed(cfg.seed, 0))
        return effective_values(src.pythia, settings)
    py = make_pythia(settings, derive_seed(cfg.seed, 0))
    return effective_values(py, settings)


def _pileup_header(cfg: GenerateConfig, out: Path) -> dict:
    """The manifest's ``pileup`` section; the library is opened (and checked) here, before anything
    is written. Resuming with a library whose content changed is an error."""
    import json

    from darkshower.simulate.pileup import library_header

    head = library_header(cfg.pileup, cfg.ecm)
    assert head is not None
    old_sha, old = None, {}
    try:
        old = json.loads((out / "manifest.json").read_text())
        old_sha = ((old.get("pileup") or {}).get("library") or {}).get("content_sha256")
    except (OSError, ValueError):
        pass
    new_sha = (head.get("library") or {}).get("content_sha256")
    if old_sha and new_sha and old_sha != new_sha:
        raise DatasetError(
            f"{out}: its chunks were made with another version of the pileup library {cfg.pileup.library} "
            f"(content checksum {old_sha[:12]}..., now {new_sha[:12]}...); use a new --out, or the original library"
        )
    old_st = ((old.get("pileup") or {}).get("distillnet") or {}).get("student_sha256") if isinstance(old, dict) else None
    new_st = (head.get("distillnet") or {}).get("student_sha256")
    if old_st and new_st and old_st != new_st:
        raise DatasetError(f"{out}: its chunks were weighted by another student.npz of {cfg.pileup.mitigation} "
                           f"(sha256 {old_st[:12]}..., now {new_st[:12]}...); use a new --out, or the original student")
    return head


def _cross_section(entries: list[dict]) -> dict:
    n_gen = sum(e["n_generated"] for e in entries)
    n_sel = sum(e["n_events"] for e in entries)
    if not n_gen:
        return {}
    sigma = sum(e["sigma_gen_pb"] * e["n_generated"] for e in entries) / n_gen
    err = math.sqrt(sum((e["sigma_err_pb"] * e["n_generated"]) ** 2 for e in entries)) / n_gen
    w_gen = sum(e["sum_weights_generated"] for e in entries)
    w_sel = sum(e["sum_weights_selected"] for e in entries)
    eff = w_sel / w_gen if w_gen else 0.0
    return {
        "sigma_gen_pb": sigma,
        "sigma_err_pb": err,
        "n_generated": n_gen,
        "n_selected": n_sel,
        "selection_efficiency": eff,
        "sigma_selected_pb": sigma * eff,
    }


def generate(config: dict | GenerateConfig, out: str | Path, jobs: int | None = None, progress: bool | None = None,
             command: list[str] | None = None, executor: Executor | str | None = None) -> Dataset:
    """Generate a dataset (library entry point of ``darkshower generate``).

    ``config`` is a dict (validated) or a GenerateConfig. Rerunning with the same config and
    ``out`` completes missing chunks only. Chunks run on ``executor`` (``Local()``, ``Processes(n)``,
    ``Dask(...)``, see darkshower.execute; default: ``jobs`` processes); the data do not depend on it.
    """
    if isinstance(config, GenerateConfig):
        config = config.model_dump(mode="json")
    cfg, params = resolve_config(dict(config))
    proc = PROCESSES[cfg.process]
    out = Path(out)
    if cfg.pileup.library:  # workers and resumed runs find it from anywhere
        cfg.pileup.library = str(Path(cfg.pileup.library).resolve())
    tasks = plan_chunks(cfg, out)
    identity = cfg.identity()
    header = {
        "kind": "generated",
        "process": cfg.process,
        "description": proc.DESCRIPTION,
        "parameters": {**params.model_dump(mode="json"), **(proc.derived(params) if hasattr(proc, "derived") else {})},
        "jets": cfg.jets.model_dump(mode="json", exclude_none=True),
        "detector": cfg.detector.model_dump(mode="json"),
    }
    writer = DatasetWriter(out, identity, header)
    writer.check()  # --out errors first, before the slow Pythia initialization; nothing written yet
    if cfg.pileup.active:
        header["pileup"] = _pileup_header(cfg, out)
    effective = _precheck(cfg)  # rejected settings fail here and leave nothing behind
    done = writer.open()  # takes the lock, resumes, checks existing chunks
    header["provenance"] = {
        "versions": versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "host": platform.node(),
        "run_seed": cfg.seed,
        "chunk_seeds": [t.seed for t in tasks],
        "pythia_settings": process_settings(cfg),
        "pythia_effective": effective,
    }
    if cfg.pileup.active:
        header["provenance"]["pileup_chunk_seeds"] = [pileup_seed(cfg.seed, t.index) for t in tasks]
    todo = [t for t in tasks if t.index not in done]
    if done:
        log.info("resuming %s: %d of %d chunks already complete", out, len(done), len(tasks))
    try:
        with using(executor, jobs=jobs) as ex:
            if todo:
                ex.check_output_dir(out)  # workers elsewhere must see --out (one clear error if not)
            ex.run(run_chunk, todo, writer.record, desc=f"generate {cfg.process}", unit="chunk",
                   progress=progress if todo else False, size=lambda e: e["n_events"],
                   name=lambda t: f"{out} chunk {t.index}")
    except BaseException:
        if not writer.restore_complete():  # a complete dataset whose rerun stopped stays complete
            writer.discard_if_empty()  # a run that completed no chunk leaves no directory behind (lock released)
        raise
    try:
        entries = [e for _, e in sorted(writer.entries.items())]
        if todo or not writer.restore_complete():  # a rerun that generated nothing keeps the manifest (provenance)
            writer.finalize({"cross_section": _cross_section(entries)})
    finally:
        writer.release()
    return open_dataset(out)


__all__ = ["generate", "derive_seed", "plan_chunks", "run_chunk", "ChunkTask"]
