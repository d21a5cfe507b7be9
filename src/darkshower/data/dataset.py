"""Chunked Parquet datasets with a JSON manifest: writing (atomic, resumable) and reading (lazy).

Layout of a dataset directory::

    DIR/manifest.json          schema version, process, parameters, provenance, chunk list
    DIR/chunk-00000.parquet    events of chunk 0 (awkward records, see darkshower.data.schema)
    DIR/chunk-00000.json       sidecar written after the chunk: its checksum and metadata

A chunk counts as complete only when its sidecar exists and the Parquet checksum matches;
files are written to a temporary name and renamed, so a killed run never leaves half files.
Readers check each chunk's SHA-256 against the manifest before using it (once per process
while the file is unchanged), so a damaged chunk is an error, never silently wrong numbers.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak

from darkshower.data.schema import FORMAT_NAME, SCHEMA_VERSION, validate_events
from darkshower.errors import DatasetError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def acquire_lock(lock: Path, subject, what: str, error: type[Exception] = DatasetError) -> Path:
    """Take the lock file ``lock`` (created with O_EXCL, holding this process's pid) or raise ``error``
    naming ``subject`` when a live process holds it; a lock whose process is gone is taken over.
    Release it with ``lock.unlink(missing_ok=True)``."""
    import time

    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = 0
            for _wait in range(20):  # its owner may not have written its pid yet
                try:
                    pid = int(lock.read_text().strip() or 0)
                except FileNotFoundError:
                    break
                except (OSError, ValueError):
                    pid = 0
                if pid:
                    break
                time.sleep(0.05)
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise error(
                    f"{subject}: another darkshower process (pid {pid}) is writing {what}; "
                    f"wait for it to finish (or delete {lock} if that process is gone)"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its writer is gone
            continue
        except OSError as exc:
            raise error(f"{subject}: cannot create the lock file {lock} ({exc.strerror}); "
                        "check that the directory exists and is writable") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise error(f"{lock}: could not take the lock; delete it and rerun")


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.parquet"


def sidecar_name(index: int) -> str:
    return f"chunk-{index:05d}.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = _tmp_path(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_parquet(df, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write a pandas DataFrame as Parquet atomically (temp file + rename); ``metadata`` is stored
    as JSON under the schema metadata key ``darkshower``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"darkshower": json.dumps(metadata, default=_json_default).encode()})
    tmp = _tmp_path(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def write_chunk(directory: str | os.PathLike, index: int, events: ak.Array, meta: dict | None = None) -> dict:
    """Write one chunk atomically (Parquet, then its sidecar) and return its manifest entry."""
    directory = Path(directory)
    target = directory / chunk_name(index)
    tmp = _tmp_path(target)
    try:
        ak.to_parquet(events, tmp, compression="zstd", row_group_size=None)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    entry = {
        "index": index,
        "file": target.name,
        "n_events": len(events),
        "bytes": target.stat().st_size,
        "sha256": sha256_file(target),
        **(meta or {}),
    }
    atomic_write_json(directory / sidecar_name(index), entry)
    return entry


def _cleanup_temp_files(directory: Path) -> None:
    for p in directory.glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:  # pragma: no cover
            pass


class DatasetWriter:
    """Create or resume a dataset directory.

    ``identity`` is the full resolved configuration: resuming with a different one is an error,
    so two different runs can never mix chunks.
    """

    def __init__(self, path: str | os.PathLike, identity: dict, header: dict):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity, default=_json_default))
        self.header = header
        self._entries: dict[int, dict] = {}

    # -- setup ---------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the target directory without creating or changing anything (so that slow
        set-up such as Pythia's initialization can run before anything is written)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise DatasetError(f"--out {p}: exists and is a file, not a dataset directory; choose another path")
        manifest_path = p / MANIFEST
        if p.is_dir() and not manifest_path.exists():
            stray = [x.name for x in p.iterdir() if not x.name.startswith(".")]
            if stray:
                raise DatasetError(
                    f"--out {p}: directory exists, is not empty and is not a darkshower dataset "
                    f"(no {MANIFEST}; found e.g. {stray[:3]}); choose a new or empty directory"
                )
        if manifest_path.exists():
            self._check_resumable(_load_manifest(p))

    def _check_resumable(self, old: dict) -> bool:
        """True when ``old`` (the manifest in --out) was made with this identity; False when it
        differs but holds no chunk at all (e.g. left by a run whose settings were rejected), so it
        can be started afresh; DatasetError otherwise."""
        if old.get("config") == self.identity:
            return True
        if not old.get("chunks") and not any(self.path.glob("chunk-*")):
            return False
        raise DatasetError(
            f"--out {self.path}: holds a dataset made with different settings; resuming would mix them. "
            "Use a new --out directory (or delete this one)"
        )

    def open(self) -> dict[int, dict]:
        """Prepare the directory; return the already complete chunks {index: entry}."""
        p = self.path
        self.check()
        self.created = not p.exists()
        p.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        _cleanup_temp_files(p)
        manifest_path = p / MANIFEST
        self._before: str | None = None
        if manifest_path.exists() and self._check_resumable(_load_manifest(p)):
            self._before = manifest_path.read_text()
            self._entries = self._scan_complete()
        self._write_manifest(status="incomplete")
        return dict(self._entries)

    def restore_complete(self) -> bool:
        """After a rerun that wrote no chunk: when the dataset was complete before :meth:`open` with the same
        chunks, put its manifest back unchanged (its provenance: the command and time that made the data) and
        release the lock; True then. False (nothing done) otherwise: :meth:`finalize` writes a new one."""
        before = getattr(self, "_before", None)
        if not before:
            return False
        old = json.loads(before)
        if old.get("status") != "complete" or old.get("chunks") != json.loads(json.dumps(
                [self._entries[i] for i in sorted(self._entries)], default=_json_default)):
            return False
        atomic_write_text(self.path / MANIFEST, before)
        self.release()
        return True

    def discard_if_empty(self) -> bool:
        """After a failed run: remove the directory if this writer created it and no chunk is
        complete (so a corrected rerun with the same --out starts afresh); release the lock.
        Returns True when the directory was removed."""
        removed = False
        if getattr(self, "created", False) and not self._entries and not any(self.path.glob("chunk-*.json")):
            remove_dataset_dir(self.path)
            removed = not self.path.exists()
        self.release()
        return removed

    def _acquire_lock(self) -> None:
        """One writer per dataset: a lock file with the writer's pid (stale locks are taken over)."""
        self._lock: Path | None = acquire_lock(self.path / LOCK, self.path, "this dataset")

    def release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.unlink(missing_ok=True)
            self._lock = None

    def _scan_complete(self) -> dict[int, dict]:
        entries: dict[int, dict] = {}
        for side in sorted(self.path.glob("chunk-*.json")):
            try:
                entry = json.loads(side.read_text())
            except (json.JSONDecodeError, OSError) as exc:
                raise DatasetError(f"{side}: unreadable chunk sidecar ({exc}); delete it to regenerate the chunk") from None
            target = self.path / entry["file"]
            if not target.exists():
                raise DatasetError(
                    f"{target}: chunk file listed in {side.name} is missing; delete {side.name} to regenerate it"
                )
            if target.stat().st_size != entry["bytes"] or sha256_file(target) != entry["sha256"]:
                raise DatasetError(
                    f"{target}: chunk is truncated or corrupt (checksum mismatch with {side.name}); "
                    f"delete {target.name} and {side.name} and rerun the same command to regenerate it"
                )
            entries[int(entry["index"])] = entry
        return entries

    @property
    def entries(self) -> dict[int, dict]:
        """The complete chunks registered so far, {index: manifest entry}."""
        return dict(self._entries)

    # -- writing -------------------------------------------------------------------------
    def record(self, entry: dict) -> None:
        """Register a chunk written (by this or another process) with :func:`write_chunk`."""
        self._entries[int(entry["index"])] = entry
        self._write_manifest(status="incomplete")

    def write(self, index: int, events: ak.Array, meta: dict | None = None) -> dict:
        entry = write_chunk(self.path, index, events, meta)
        self.record(entry)
        return entry

    def finalize(self, summary: dict | None = None) -> dict:
        manifest = self._write_manifest(status="complete", summary=summary)
        self.release()
        return manifest

    def _write_manifest(self, status: str, summary: dict | None = None) -> dict:
        chunks = [self._entries[i] for i in sorted(self._entries)]
        manifest = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "status": status,
            **self.header,
            "config": self.identity,
            "n_events": int(sum(c["n_events"] for c in chunks)),
            "n_chunks": len(chunks),
            "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **(summary or {}),
            "chunks": chunks,
        }
        atomic_write_json(self.path / MANIFEST, manifest)
        return manifest


def remove_dataset_dir(out: Path) -> None:
    """Remove a dataset directory (only darkshower's own files; a directory holding anything else
    is left in place with a warning)."""
    out = Path(out)
    if not out.is_dir():
        return
    for p in list(out.iterdir()):
        if p.name in (MANIFEST, LOCK) or p.name.startswith("chunk-") or p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:  # someone put other files there: leave it
        log.warning("left %s in place (it holds files darkshower did not write)", out)


def _load_manifest(path: Path) -> dict:
    mp = path / MANIFEST
    try:
        manifest = json.loads(mp.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: not a darkshower dataset (no {MANIFEST}); pass a dataset directory") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{mp}: manifest is not valid JSON ({exc}); the dataset is damaged, regenerate it") from None
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{mp}: field 'format' is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    major = str(manifest.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise DatasetError(
            f"{mp}: schema_version {manifest.get('schema_version')} is not readable by this darkshower "
            f"(reads {SCHEMA_VERSION}); upgrade darkshower or regenerate the dataset"
        )
    return manifest


#: chunks whose checksum this process has checked: resolved path -> (size, mtime, ctime, inode, device, sha256)
_VERIFIED: dict[str, tuple] = {}


class Dataset:
    """A dataset directory opened for reading; chunks are read on demand and each is checked
    against the manifest's SHA-256 before its first use in a process."""

    def __init__(self, path: str | os.PathLike, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    # -- metadata ------------------------------------------------------------------------
    @property
    def chunks(self) -> list[dict]:
        return self.manifest["chunks"]

    @property
    def n_events(self) -> int:
        return int(self.manifest["n_events"])

    @property
    def process(self) -> str:
        return self.manifest.get("process", "unknown")

    @property
    def parameters(self) -> dict:
        return self.manifest.get("parameters", {})

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, process={self.process!r}, n_events={self.n_events}, chunks={len(self.chunks)})"

    # -- reading -------------------------------------------------------------------------
    def read_chunk(self, i: int, columns: list[str] | None = None) -> ak.Array:
        """Chunk ``i`` (only ``columns`` if given), after checking its SHA-256 against the manifest
        (once per process while the file is unchanged): a damaged chunk is a DatasetError, never
        silently wrong numbers."""
        entry = self.chunks[i]
        f = self.path / entry["file"]
        self.check_chunk(entry)
        try:
            arr = ak.from_parquet(f, columns=columns)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise DatasetError(
                f"{f}: cannot read chunk ({type(exc).__name__}: {exc}); the file is damaged, regenerate it"
            ) from None
        if len(arr) != entry["n_events"]:
            raise DatasetError(f"{f}: has {len(arr)} events, manifest says {entry['n_events']}; regenerate it")
        return arr

    def iter_chunks(self, columns: list[str] | None = None) -> Iterator[ak.Array]:
        for i in range(len(self.chunks)):
            yield self.read_chunk(i, columns)

    __iter__ = iter_chunks

    def arrays(self, columns: list[str] | None = None, max_events: int | None = None) -> ak.Array:
        """All events (or the first ``max_events``) as one awkward array."""
        parts, n = [], 0
        for arr in self.iter_chunks(columns):
            parts.append(arr)
            n += len(arr)
            if max_events is not None and n >= max_events:
                break
        if not parts:
            return ak.Array([])
        out = ak.concatenate(parts) if len(parts) > 1 else parts[0]
        return out[:max_events] if max_events is not None else out

    def _rerun_hint(self) -> str:
        prov = self.manifest.get("provenance") or {}
        cmd = prov.get("command") or prov.get("command_line")
        if isinstance(cmd, list) and cmd:
            import shlex

            return f"rerun the command that made the dataset with the same --out ({shlex.join(str(c) for c in cmd)})"
        return "rerun the command that made the dataset with the same --out"

    def check_chunk(self, entry: dict, force: bool = False) -> None:
        """Check one chunk's size and SHA-256 against its manifest entry; raise DatasetError naming
        the file and the fix. A file already checked by this process and unchanged since (same
        size, mtime, ctime and inode) is not hashed again unless ``force``."""
        f = self.path / entry["file"]
        try:
            st = f.stat()
        except FileNotFoundError:
            raise DatasetError(
                f"{f}: chunk listed in the manifest is missing; delete its sidecar {Path(entry['file']).stem}.json "
                f"(if present) and {self._rerun_hint()}: missing chunks are regenerated"
            ) from None
        expected = entry.get("sha256")
        if not isinstance(expected, str):
            raise DatasetError(
                f"{self.path / MANIFEST}: the entry of {entry['file']} has no 'sha256'; the manifest is damaged: "
                f"{self._rerun_hint()} to rewrite it"
            )
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, expected)
        key = str(f.resolve())
        if not force and _VERIFIED.get(key) == stamp:
            return
        fix = (f"delete {f.name} and its sidecar {Path(entry['file']).stem}.json, then {self._rerun_hint()}: "
               "missing chunks are regenerated")
        if st.st_size != entry.get("bytes"):
            raise DatasetError(
                f"{f}: chunk is truncated or was modified ({st.st_size} bytes, manifest says {entry.get('bytes')}); {fix}"
            )
        actual = sha256_file(f)
        if actual != expected:
            side = f.with_suffix(".json")
            try:
                side_sha = json.loads(side.read_text()).get("sha256")
            except (OSError, ValueError, AttributeError):
                side_sha = None
            if side_sha == actual:  # the chunk is as written: the manifest's checksum was changed
                raise DatasetError(
                    f"{self.path / MANIFEST}: checksum of {f.name} ({expected[:12]}...) differs from the chunk and "
                    f"its sidecar {side.name} ({actual[:12]}...); the manifest was edited or damaged: "
                    f"{self._rerun_hint()} to rewrite it from the sidecars"
                )
            raise DatasetError(f"{f}: chunk is corrupt (its SHA-256 does not match the manifest); {fix}")
        _VERIFIED[key] = stamp

    def verify(self) -> None:
        """Check every chunk's size and SHA-256 against the manifest; raise DatasetError on mismatch."""
        for entry in self.chunks:
            self.check_chunk(entry, force=True)
        if self.chunks:
            validate_events(self.read_chunk(0)[:1], str(self.path / self.chunks[0]["file"]))


def open_dataset(path: str | os.PathLike, verify: bool = False, allow_incomplete: bool = False) -> Dataset:
    """Open a dataset directory written by ``darkshower generate`` or ``darkshower import``.

    Chunks are read lazily (``ds.read_chunk(i)``, ``for chunk in ds``, ``ds.arrays()``), each
    checked against its SHA-256 before its first use; ``verify=True`` checks all of them first.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset directory")
    manifest = _load_manifest(path)
    if manifest.get("status") != "complete" and not allow_incomplete:
        raise DatasetError(
            f"{path}: dataset is incomplete (status {manifest.get('status')!r}); rerun the command that "
            "created it to finish the missing chunks"
        )
    for entry in manifest.get("chunks", []):
        f = path / entry["file"]
        if not f.exists():
            raise DatasetError(
                f"{f}: chunk listed in the manifest is missing; delete its sidecar {Path(entry['file']).stem}.json "
                "(if present) and rerun the command that made the dataset with the same --out: missing chunks "
                "are regenerated"
            )
        if f.stat().st_size != entry["bytes"]:
            raise DatasetError(
                f"{f}: chunk is truncated ({f.stat().st_size} bytes, manifest says {entry['bytes']}); "
                f"delete it and its sidecar {Path(entry['file']).stem}.json and rerun the command that made the "
                "dataset with the same --out: missing chunks are regenerated"
            )
    ds = Dataset(path, manifest)
    if verify:
        ds.verify()
    return ds
