"""ROOT file access through uproot with clear errors (wrong format, missing tree, truncation)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak

from darkshower.errors import InputFormatError
from darkshower.io.common import list_some


def open_tree(path: Path, tree: str, fmt: str):
    import uproot

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"root":
        kind = "an HDF5 file" if magic == b"\x89HDF" else f"not a ROOT file (starts with {magic!r})"
        raise InputFormatError(f"{path}: format '{fmt}' reads ROOT files, but this is {kind}")
    try:
        f = uproot.open(path)
    except Exception as exc:
        raise InputFormatError(
            f"{path}: unreadable ROOT file, probably truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
    try:
        names = {k.split(";")[0] for k in f.keys(recursive=False)}
    except Exception as exc:
        raise InputFormatError(f"{path}: cannot list the ROOT file's contents ({type(exc).__name__}: {exc}); truncated?") from None
    if tree not in names:
        raise InputFormatError(
            f"{path}: no tree '{tree}' (format '{fmt}'); the file has: {list_some(names)}"
            + ("; pass --tree NAME" if names else "")
        )
    try:
        t = f[tree]
        t.num_entries  # noqa: B018 - touch
        t.keys()
    except Exception as exc:
        raise InputFormatError(f"{path}: cannot read tree '{tree}' ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    if not hasattr(t, "num_entries"):
        raise InputFormatError(f"{path}: '{tree}' is a {type(t).__name__}, not a TTree")
    return t


def read_tree(tree, branches: list[str], start: int, stop: int, path: Path) -> dict[str, ak.Array]:
    """Read ``branches`` for entries [start, stop) → {name: array}; errors name the file."""
    try:
        plain = [b for b in branches if "." not in b and "/" not in b]
        arrs = tree.arrays(plain, entry_start=start, entry_stop=stop, library="ak", how=dict) if plain else {}
        # names with '.' or '/' (Delphes "EFlowTrack.PT") are not valid uproot expressions: read them one by one
        for b in branches:
            if b not in arrs:
                arrs[b] = tree[b].array(entry_start=start, entry_stop=stop, library="ak")
    except InputFormatError:
        raise
    except Exception as exc:
        raise InputFormatError(
            f"{path}: cannot read entries {start}-{stop} of tree '{tree.name}' "
            f"({type(exc).__name__}: {exc}); the file is probably truncated or corrupt"
        ) from None
    return arrs
