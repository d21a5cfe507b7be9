"""The import driver: inputs → checked readers → chunks written atomically → manifest.

Failure policy (documented in docs/importers.md): every input is opened and checked before
anything is written. If reading fails later (NaN/inf, truncated data, ...), the chunks written
*by this run* are deleted and the manifest is left ``incomplete`` (a directory this run created
is removed entirely), so a failed import never looks like a dataset; with
``skip_bad_files=True`` only the bad file's chunks of this run are dropped and the import goes
on. Reruns with the same inputs and options resume: complete chunks are kept, a complete
dataset is returned as is.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from darkshower.data.dataset import (
    Dataset,
    DatasetWriter,
    chunk_name,
    open_dataset,
    remove_dataset_dir,
    sha256_file,
    sidecar_name,
    write_chunk,
)
from darkshower.errors import ConfigError, DarkshowerError, InputFormatError
from darkshower.io.common import Reader, check_chunk_finite, finish_chunk

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 5000


def _formats() -> dict[str, type[Reader]]:
    from darkshower.io.delphes import DelphesReader
    from darkshower.io.h5_4vec import H54VecReader
    from darkshower.io.h5_constituents import H5ConstituentsReader
    from darkshower.io.lhco import LHCOReader
    from darkshower.io.pfnano import PFNanoReader
    from darkshower.io.treemaker import TreeMakerReader

    return {
        r.format_name: r
        for r in (PFNanoReader, TreeMakerReader, DelphesReader, H54VecReader, LHCOReader, H5ConstituentsReader)
    }


FORMAT_NAMES = ("pfnano", "treemaker", "delphes", "h5-4vec", "lhco", "h5-constituents")


def get_format(fmt: str) -> type[Reader]:
    formats = _formats()
    key = str(fmt).strip().lower().replace("_", "-")
    if key not in formats:
        raise InputFormatError(f"unknown import format {fmt!r}; valid formats: {', '.join(formats)}")
    return formats[key]


def resolve_options(cls: type[Reader], options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(k for k, v in options.items() if k not in cls.options and v is not None)
    if unknown:
        raise ConfigError(
            f"option(s) {', '.join('--' + k.replace('_', '-') for k in unknown)} do not apply to format "
            f"'{cls.format_name}'; its options: {', '.join('--' + k.replace('_', '-') for k in cls.options) or '(none)'}"
        )
    out = dict(cls.options)
    for k, v in options.items():
        if v is None:
            continue
        default = cls.options[k]
        try:
            if isinstance(default, bool):
                v = bool(v)
            elif isinstance(default, float):
                v = float(v)
            elif isinstance(default, str) and isinstance(v, (list, tuple)):
                v = ",".join(str(x) for x in v)
        except (TypeError, ValueError):
            raise ConfigError(f"--{k.replace('_', '-')}: {v!r} is not a valid value") from None
        out[k] = v
    for k in ("radius", "jet_pt_min", "eta_max"):
        if k in out and not (np.isfinite(out[k]) and out[k] >= 0 and (k != "radius" or out[k] > 0)):
            raise ConfigError(f"--{k.replace('_', '-')} must be a positive number, not {out[k]}")
    return out


class _Writer(DatasetWriter):
    """DatasetWriter that can also drop chunks it wrote (failure clean-up)."""

    def forget(self, index: int) -> None:
        self._entries.pop(int(index), None)
        for name in (chunk_name(index), sidecar_name(index)):
            p = self.path / name
            if p.exists():
                p.unlink()

    def abort(self, reason: str) -> None:
        self._write_manifest(status="incomplete", summary={"last_error": reason})


def _open_reader(cls: type[Reader], path: Path, opts: dict[str, Any]) -> Reader:
    if not path.exists():
        raise InputFormatError(f"{path}: no such input file")
    if path.is_dir():
        raise InputFormatError(f"{path}: is a directory; pass the input files themselves")
    if path.stat().st_size == 0:
        raise InputFormatError(f"{path}: file is empty (0 bytes)")
    reader = cls(path, opts)
    try:
        reader.open()
    except InputFormatError:
        reader.close()
        raise
    except Exception as exc:  # library errors on damaged files
        reader.close()
        raise InputFormatError(
            f"{path}: cannot read it as '{cls.format_name}' ({type(exc).__name__}: {exc}); truncated or corrupt?"
        ) from None
    return reader


def _versions() -> dict[str, str | None]:
    from darkshower.versions import package_versions

    return package_versions("awkward", "uproot", "h5py", "numpy", "fastjet")


def import_dataset(
    fmt: str,
    inputs,
    out: str | os.PathLike,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    skip_bad_files: bool = False,
    progress: bool | None = None,
    executor=None,
    jobs: int | None = 1,
    **options: Any,
) -> Dataset:
    """Import ``inputs`` (files of format ``fmt``) into the dataset directory ``out``.

    ``options`` are the format's options (see docs/importers.md), e.g. ``jets="a,b"``,
    ``extra="ae_loss1"``, ``radius=1.0``. Returns the opened :class:`Dataset`. The result's
    manifest lists skipped files under ``skipped_files`` (only with ``skip_bad_files``).
    Each chunk (rows of one input file) is one task of ``executor`` (darkshower.execute: ``Local()``,
    ``Processes(n)``, ``Dask(...)``; default: ``jobs`` processes, 1 = in process); the dataset does
    not depend on it.
    """
    cls = get_format(fmt)
    opts = resolve_options(cls, options)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputFormatError("no input files given")
    try:
        chunk_size = int(chunk_size)
    except (TypeError, ValueError):
        raise ConfigError(f"--chunk-size must be a positive integer, not {chunk_size!r}") from None
    if chunk_size <= 0:
        raise ConfigError(f"--chunk-size must be a positive integer, not {chunk_size}")
    out = Path(out)

    # 1. check every input before writing anything
    good: list[tuple[Path, int, dict]] = []
    skipped: list[dict] = []
    extra_ev: list[str] = []
    extra_jet: list[str] = []
    extra_con: list[str] = []
    for path in inputs:
        try:
            reader = _open_reader(cls, path, opts)
        except InputFormatError as exc:
            if not skip_bad_files:
                raise
            log.warning("skipping %s", exc)
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        try:
            for lst, new in ((extra_ev, reader.extra_event_fields), (extra_jet, reader.extra_jet_fields), (extra_con, reader.extra_constituent_fields)):
                lst.extend(x for x in new if x not in lst)
            good.append((path, reader.n_events, dict(reader.file_meta)))
        finally:
            reader.close()
    if not good:
        reasons = "; ".join(s["reason"] for s in skipped)
        raise InputFormatError(f"no usable input file among {len(inputs)}: {reasons}")

    # 2. identity: format, options, chunking and the exact input files
    input_info = []
    for path, n, meta in good:
        input_info.append(
            {
                "path": str(path.resolve()),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "n_events": n,
                **({"meta": meta} if meta else {}),
            }
        )
    identity = {
        "importer": cls.format_name,
        "options": opts,
        "chunk_size": chunk_size,
        "inputs": [{k: v for k, v in i.items() if k in ("path", "bytes", "sha256")} for i in input_info],
    }
    header: dict[str, Any] = {
        "kind": "imported",
        "process": cls.format_name,
        "parameters": {
            **opts,
            "extra_event_fields": extra_ev,
            "extra_jet_fields": extra_jet,
            "extra_constituent_fields": extra_con,
        },
        "provenance": {
            "versions": _versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command_line": list(sys.argv),
            "importer": cls.format_name,
            "options": {**opts, "chunk_size": chunk_size, "skip_bad_files": bool(skip_bad_files)},
            "inputs": input_info,
            "skipped_files": skipped,
        },
        "jets": cls.jet_definition(opts),
        "notes": cls.notes(opts),
    }

    # 3. plan: chunk indices are fixed by (file order, rows), so reruns resume exactly
    plan: list[tuple[int, Path, int, int, int]] = []  # (chunk, path, file_index, start, stop)
    index = 0
    for fi, (path, n, _) in enumerate(good):
        for s in range(0, n, chunk_size):
            plan.append((index, path, fi, s, min(s + chunk_size, n)))
            index += 1

    created_dir = not out.exists()
    writer = _Writer(out, identity, header)
    done = writer.open()
    written_now: list[int] = []
    from darkshower.execute import using

    todo = [p for p in plan if p[0] not in done]
    bad: dict[Path, str] = {}  # input file -> reason (skip_bad_files)

    def drop_file(path: Path) -> None:
        """Forget every chunk of a bad file: written by this run or (the file is bad) by an earlier one."""
        for ci, p, *_ in plan:
            if p == path and ci in writer.entries:
                writer.forget(ci)
                if ci in written_now:
                    written_now.remove(ci)

    def fold(res) -> None:
        ci, path, value = res
        path = Path(path)
        if isinstance(value, InputFormatError):
            if not skip_bad_files:
                raise value
            if path not in bad:
                log.warning("skipping %s", value)
                bad[path] = str(value)
                drop_file(path)
            return
        if path in bad:  # a chunk of a file found bad meanwhile (parallel executors)
            writer.forget(ci)
            return
        writer.record(value)
        written_now.append(ci)

    ex = None
    try:
        with using(executor, jobs=jobs) as ex:
            keep_open = ex.in_process  # in process: one open reader per file, as the chunks come in order
            if todo:
                ex.check_output_dir(out)
            every = ((ci, cls.format_name, str(path), fi, s, e, opts, str(out), keep_open)
                     for ci, path, fi, s, e in todo)
            # in process, lazily: the chunks of a file found bad are not read
            tasks: Iterable = (t for t in every if Path(t[2]) not in bad) if keep_open else list(every)
            ex.run(_import_chunk, tasks, fold, desc=f"import {cls.format_name}", unit="chunk",
                   progress=progress if todo else False, size=lambda r: 0 if isinstance(r[2], Exception) else r[2]["n_events"],
                   name=lambda t: f"{t[2]} rows {t[4]}-{t[5]}", total=len(todo))
        for path, reason in bad.items():
            skipped.append({"path": str(path), "reason": reason})
        if skipped and len(skipped) == len(inputs):
            raise InputFormatError("every input file was bad: " + "; ".join(s["reason"] for s in skipped))
    except BaseException as exc:
        _close_cached_reader()
        if writer.restore_complete():  # a complete dataset whose rerun stopped stays complete (nothing was written)
            raise
        if isinstance(exc, InputFormatError):  # bad data: nothing of this run stays (other failures: resumable)
            if ex is not None and not ex.in_process:
                # chunks a worker wrote whose result never came back (the stage stopped first)
                for ci, *_ in todo:
                    if ci not in writer.entries and ci not in done:
                        for name in (sidecar_name(ci), chunk_name(ci)):
                            (out / name).unlink(missing_ok=True)
            for ci in written_now:
                writer.forget(ci)
            if created_dir and not writer.entries:
                remove_dataset_dir(out)
            else:
                writer.abort(str(exc))
        writer.release()
        raise
    _close_cached_reader()
    entries = writer.entries
    summary = {
        "n_jets": int(sum(int(e.get("n_jets", 0)) for e in entries.values())),
        "skipped_files": skipped,
    }
    header["provenance"]["skipped_files"] = skipped
    try:
        if todo or not writer.restore_complete():  # a rerun that imported nothing keeps the manifest (provenance)
            writer.finalize(summary)
    finally:
        writer.release()
    return open_dataset(out)


_READER: dict = {}  # the reader kept open between the chunks of one file (in-process imports)


def _close_cached_reader() -> None:
    reader = _READER.pop("reader", None)
    _READER.clear()
    if reader is not None:
        reader.close()


def _import_chunk(task) -> tuple[int, str, Any]:
    """One chunk (rows [start, stop) of one input file) read, checked and written atomically (runs where the
    executor runs it). Returns (chunk, path, manifest entry), or (chunk, path, InputFormatError) for a bad file."""
    ci, fmt, path, fi, start, stop, opts, out, keep_open = task
    cls = get_format(fmt)
    path = Path(path)
    key = (fmt, str(path), repr(sorted(opts.items())))
    try:
        if _READER.get("key") == key:
            reader = _READER["reader"]
        else:
            _close_cached_reader()
            reader = _open_reader(cls, path, opts)
            if keep_open:
                _READER.update(key=key, reader=reader)
        try:
            events = _read_chunk(reader, cls, path, ci, start, stop)
        finally:
            if not keep_open:
                reader.close()
    except InputFormatError as exc:
        _close_cached_reader()
        return ci, str(path), exc
    n_jets = int(np.sum(np.asarray(_num(events["jets"]))))
    entry = write_chunk(out, ci, events,
                        {"input_file": str(path), "input_index": fi, "row_start": start, "row_stop": stop, "n_jets": n_jets})
    return ci, str(path), entry


def _read_chunk(reader: Reader, cls: type[Reader], path: Path, ci: int, start: int, stop: int):
    """Rows [start, stop) of ``path`` as chunk ``ci``, checked; any failure of the reader on this
    file's contents is an InputFormatError naming the file (so --skip-bad-files can skip it)."""
    try:
        events = finish_chunk(reader.read(start, stop), ci, start)
    except (DarkshowerError, MemoryError):
        raise
    except Exception as exc:
        log.debug("reading %s rows %d-%d failed", path, start, stop, exc_info=True)
        raise InputFormatError(
            f"{path}: cannot import rows {start}-{stop} as '{cls.format_name}' ({type(exc).__name__}: {exc}); "
            "the file holds data this format does not expect (pass --skip-bad-files to skip it)"
        ) from None
    check_chunk_finite(path, events, start)
    return events


def _num(jets):
    import awkward as ak

    return ak.num(jets, axis=1)


__all__ = ["import_dataset", "get_format", "FORMAT_NAMES", "DEFAULT_CHUNK_SIZE"]
