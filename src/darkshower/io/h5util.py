"""HDF5 access through h5py with clear errors (wrong format, missing datasets, truncation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkshower.errors import InputFormatError
from darkshower.io.common import list_some

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_magic(path: Path, fmt: str) -> None:
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic != HDF5_MAGIC:
        kind = "a ROOT file" if magic[:4] == b"root" else f"not an HDF5 file (starts with {magic[:4]!r})"
        raise InputFormatError(f"{path}: format '{fmt}' reads HDF5 files, but this is {kind}")


def open_h5(path: Path, fmt: str):
    import h5py

    check_magic(path, fmt)
    try:
        return h5py.File(path, "r")
    except Exception as exc:
        raise InputFormatError(
            f"{path}: unreadable HDF5 file, probably truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None


def all_datasets(h) -> list[str]:
    import h5py

    out: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out.append(f"{name}{[int(x) for x in obj.shape]}")

    try:
        h.visititems(visit)
    except Exception:  # damaged tree: list what we can
        out.extend(list(h.keys()))
    return out


def get_dataset(h, name: str, path: Path, fmt: str, option: str | None = None):
    import h5py

    obj = h.get(name)
    if not isinstance(obj, h5py.Dataset):
        how = f" (named by {option})" if option else ""
        raise InputFormatError(
            f"{path}: no dataset '{name}'{how} for format '{fmt}'; the file has: {list_some(all_datasets(h))}"
        )
    return obj


def read_slice(ds, start: int, stop: int, path: Path) -> np.ndarray:
    try:
        return ds[start:stop]
    except Exception as exc:
        raise InputFormatError(
            f"{path}: cannot read rows {start}-{stop} of dataset '{ds.name}' ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or corrupt"
        ) from None
