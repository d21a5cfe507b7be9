"""Every reader checks a chunk's SHA-256 before using it: a flipped bit or an edited manifest is a
DatasetError naming the file and the fix, never silently wrong numbers."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from darkshower.cli.main import main
from darkshower.data import dataset as D
from darkshower.errors import DatasetError
from test_io_errors import make_4vec


def _flip_to_valid_parquet(path, n_events):
    """Flip one bit of ``path`` so that it is still readable Parquet with other values; return the offset."""
    data = bytearray(path.read_bytes())
    before = ak.to_list(ak.from_parquet(path))
    for off in range(len(data) // 3, len(data) - 200):  # data pages, not the footer
        data[off] ^= 0x10
        path.write_bytes(data)
        try:
            arr = ak.from_parquet(path)
            if len(arr) == n_events and ak.to_list(arr) != before:
                return off
        except Exception:
            pass
        data[off] ^= 0x10
    path.write_bytes(data)
    raise AssertionError("no bit flip gave readable Parquet")


@pytest.fixture()
def imported(tmp_path):
    src = make_4vec(tmp_path / "a.h5", n=200)
    out = tmp_path / "ds"
    cmd = ["import", "h5-4vec", str(src), "--out", str(out), "--chunk-size", "100", "--no-progress"]
    assert main(cmd) == 0
    return out, cmd


def test_flipped_bit_is_caught_on_read(imported, capsys):
    out, cmd = imported
    ds = D.open_dataset(out)
    good = ak.to_list(ds.read_chunk(1))
    D._VERIFIED.clear()  # as in a fresh process
    _flip_to_valid_parquet(out / "chunk-00001.parquet", 100)
    ds = D.open_dataset(out)  # cheap checks only (size unchanged)
    ds.read_chunk(0)
    for read in (lambda: ds.read_chunk(1), lambda: ds.read_chunk(1, columns=["jets.pt"]), ds.arrays,
                 lambda: list(ds)):
        with pytest.raises(DatasetError, match=r"chunk-00001\.parquet: chunk is corrupt .*SHA-256.*delete "
                                               r"chunk-00001\.parquet and its sidecar chunk-00001\.json.*rerun"):
            read()
    # the CLI reports it once, exit code 2
    assert main(["info", str(out)]) == 0  # info without --verify reads chunk 0 only
    capsys.readouterr()
    assert main(["info", str(out), "--verify"]) == 2
    assert "chunk-00001.parquet: chunk is corrupt" in capsys.readouterr().err
    # the advertised fix works: delete chunk and sidecar, rerun the same command
    (out / "chunk-00001.parquet").unlink()
    (out / "chunk-00001.json").unlink()
    assert main(cmd) == 0
    assert ak.to_list(D.open_dataset(out).read_chunk(1)) == good


def test_modified_chunk_after_first_read_is_caught(imported):
    """The once-per-process memo is keyed on the file's stat: a rewrite is checked again."""
    out, _ = imported
    ds = D.open_dataset(out)
    ds.read_chunk(0)
    _flip_to_valid_parquet(out / "chunk-00000.parquet", 100)
    with pytest.raises(DatasetError, match=r"chunk-00000.parquet: chunk is corrupt"):
        ds.read_chunk(0)


def test_edited_manifest_checksum_is_caught(imported):
    out, cmd = imported
    D._VERIFIED.clear()
    m = json.loads((out / "manifest.json").read_text())
    m["chunks"][0]["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(m))
    ds = D.open_dataset(out)
    with pytest.raises(DatasetError, match=r"manifest\.json: checksum of chunk-00000\.parquet .* manifest was edited"):
        ds.read_chunk(0)
    # rerunning the command rewrites the manifest from the sidecars
    assert main(cmd) == 0
    assert len(D.open_dataset(out).read_chunk(0)) == 100


def test_missing_checksum_and_resized_chunk(imported):
    out, _ = imported
    D._VERIFIED.clear()
    m = json.loads((out / "manifest.json").read_text())
    del m["chunks"][1]["sha256"]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"entry of chunk-00001\.parquet has no 'sha256'"):
        D.open_dataset(out).read_chunk(1)
    with open(out / "chunk-00000.parquet", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DatasetError, match=r"chunk-00000\.parquet: chunk is truncated"):
        D.open_dataset(out)


def test_read_values_unchanged_by_the_check(imported):
    out, _ = imported
    ds = D.open_dataset(out)
    direct = ak.from_parquet(out / "chunk-00000.parquet", columns=["met_pt", "jets.pt"])
    via = ds.read_chunk(0, columns=["met_pt", "jets.pt"])
    assert ak.to_list(direct) == ak.to_list(via)
    assert np.isfinite(ak.to_numpy(ak.flatten(via.jets.pt))).all()


def test_missing_chunk_fix_in_the_message_works(imported):
    out, cmd = imported
    (out / "chunk-00001.parquet").unlink()
    with pytest.raises(DatasetError, match=r"chunk-00001\.parquet: chunk listed in the manifest is missing; "
                                           r"delete its sidecar chunk-00001\.json"):
        D.open_dataset(out)
    (out / "chunk-00001.json").unlink()
    assert main(cmd) == 0
    assert D.open_dataset(out, verify=True).n_events == 200
