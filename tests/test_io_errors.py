"""Importer error paths, --skip-bad-files, resume and the CLI, on small files made here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest

from darkshower.cli.main import main
from darkshower.errors import ConfigError, DatasetError, InputFormatError
from darkshower.io import import_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NANO = SHARED / "cms_pfnano" / "nano106X_on_mini106X_2017_mc_NANO.root"
LHCO = SHARED / "lhco2020" / "events_anomalydetection_tiny.h5"


def make_4vec(path, n=300, p=20, nan_row=None, empty_row=None, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("jet1_PFCands", "jet2_PFCands"):
        k = rng.integers(3, p, n)
        pt = rng.exponential(20, (n, p)) + 1
        eta = rng.normal(0, 0.2, (n, p)) + (0.5 if name == "jet1_PFCands" else -0.5)
        phi = rng.normal(0, 0.2, (n, p)) + (0.0 if name == "jet1_PFCands" else 3.0)
        v = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=-1)
        v[np.arange(p)[None, :] >= k[:, None]] = 0
        if empty_row is not None:
            v[empty_row] = 0
        out[name] = v.astype(np.float32)
    if nan_row is not None:
        out["jet2_PFCands"][nan_row, 0, 2] = np.nan
    with h5py.File(path, "w") as h:
        for k, v in out.items():
            h.create_dataset(k, data=v, chunks=(50, p, 4), compression="gzip")
        h["score"] = rng.random(n).astype(np.float32)
        h["nProcessed"] = np.int64(12345)
    return path


def test_wrong_format_name_lists_valid(tmp_path):
    with pytest.raises(InputFormatError, match=r"unknown import format 'nanoaod'.*pfnano.*h5-4vec.*lhco.*h5-constituents"):
        import_dataset("nanoaod", [tmp_path / "x.root"], tmp_path / "ds")


def test_missing_dataset_is_named_and_contents_listed(tmp_path):
    src = make_4vec(tmp_path / "a.h5")
    with pytest.raises(InputFormatError, match=r"a\.h5: no dataset 'jetX' \(named by --jets\).*jet1_PFCands\[300, 20, 4\]"):
        import_dataset("h5-4vec", [src], tmp_path / "ds", jets="jet1_PFCands,jetX")
    with pytest.raises(InputFormatError, match=r"no dataset 'ae_loss1' \(named by --extra\)"):
        import_dataset("h5-4vec", [src], tmp_path / "ds", extra="ae_loss1")
    assert not (tmp_path / "ds").exists()


def test_file_of_another_format(tmp_path):
    src = make_4vec(tmp_path / "a.h5")
    with pytest.raises(InputFormatError, match=r"a\.h5: format 'pfnano' reads ROOT files, but this is an HDF5 file"):
        import_dataset("pfnano", [src], tmp_path / "ds")
    with pytest.raises(InputFormatError, match=r"no pandas table 'df'"):
        import_dataset("lhco", [src], tmp_path / "ds")
    with pytest.raises(InputFormatError, match=r"no dataset 'jet_constituent_data'"):
        import_dataset("h5-constituents", [src], tmp_path / "ds")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputFormatError, match=r"not an HDF5 file"):
        import_dataset("h5-4vec", [txt], tmp_path / "ds")


def test_treemaker_given_to_pfnano_gets_a_hint(tmp_path):
    tm = SHARED / "cms_pfnano" / "treemaker_svj_search.root"
    if not tm.exists():
        pytest.skip(f"shared sample {tm} is absent")
    with pytest.raises(InputFormatError, match=r"no tree 'Events'.*PreSelection"):
        import_dataset("pfnano", [tm], tmp_path / "ds")
    with pytest.raises(InputFormatError, match=r"TreeMaker.*use format 'treemaker'"):
        import_dataset("pfnano", [tm], tmp_path / "ds", tree="PreSelection")


def test_nan_mid_file_leaves_no_half_dataset(tmp_path):
    src = make_4vec(tmp_path / "nan.h5", nan_row=250)
    with pytest.raises(InputFormatError, match=r"nan\.h5: column 'jet2_PFCands' holds 1 NaN/inf value\(s\), first in event row 250"):
        import_dataset("h5-4vec", [src], tmp_path / "ds", chunk_size=100)
    assert not (tmp_path / "ds").exists()  # chunks 0 and 1 were written, then removed


def test_empty_events(tmp_path):
    src = make_4vec(tmp_path / "e.h5", empty_row=7)
    with pytest.raises(InputFormatError, match=r"1 event\(s\) have no constituents.*row 7.*--keep-empty-events"):
        import_dataset("h5-4vec", [src], tmp_path / "ds")
    ds = import_dataset("h5-4vec", [src], tmp_path / "ds2", keep_empty_events=True)
    ev = ds.arrays()
    assert len(ev) == 300 and ak.num(ev.jets)[7] == 0
    with h5py.File(tmp_path / "zero.h5", "w") as h:
        h["jet1_PFCands"] = np.zeros((0, 5, 4), np.float32)
        h["jet2_PFCands"] = np.zeros((0, 5, 4), np.float32)
    with pytest.raises(InputFormatError, match=r"zero\.h5: the jet datasets hold no events"):
        import_dataset("h5-4vec", [tmp_path / "zero.h5"], tmp_path / "ds3")


def _truncate(src: Path, dst: Path, frac: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def test_truncated_hdf5(tmp_path):
    src = make_4vec(tmp_path / "full.h5", n=2000)
    cut = _truncate(src, tmp_path / "cut.h5", 0.5)
    with pytest.raises(InputFormatError, match=r"cut\.h5: .*(truncated|corrupt)"):
        import_dataset("h5-4vec", [cut], tmp_path / "ds", chunk_size=500)
    assert not (tmp_path / "ds").exists()


def test_truncated_root(tmp_path):
    if not NANO.exists():
        pytest.skip(f"shared sample {NANO} is absent")
    for frac in (0.5, 0.97):
        cut = _truncate(NANO, tmp_path / f"cut{frac}.root", frac)
        with pytest.raises(InputFormatError, match=r"cut.*\.root: .*(truncated|corrupt)"):
            import_dataset("pfnano", [cut], tmp_path / "ds")
        assert not (tmp_path / "ds").exists()


def test_truncated_lhco(tmp_path):
    if not LHCO.exists():
        pytest.skip(f"shared sample {LHCO} is absent")
    cut = _truncate(LHCO, tmp_path / "cut.h5", 0.6)
    with pytest.raises(InputFormatError, match=r"cut\.h5: .*(truncated|corrupt)"):
        import_dataset("lhco", [cut], tmp_path / "ds")


def test_skip_bad_files(tmp_path, capsys):
    good = make_4vec(tmp_path / "good.h5")
    nan = make_4vec(tmp_path / "nan.h5", nan_row=120)
    cut = _truncate(make_4vec(tmp_path / "big.h5", n=2000), tmp_path / "cut.h5", 0.4)
    missing = tmp_path / "missing.h5"
    out = tmp_path / "ds"
    rc = main(["import", "h5-4vec", str(good), str(nan), str(cut), str(missing), "--out", str(out),
               "--chunk-size", "100", "--skip-bad-files", "--extra", "score"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "imported 300 events" in text and "skipped 3 bad file(s)" in text
    for name in ("nan.h5", "cut.h5", "missing.h5"):
        assert name in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["n_events"] == 300
    assert {Path(s["path"]).name for s in m["skipped_files"]} == {"nan.h5", "cut.h5", "missing.h5"}
    assert all(s["reason"] for s in m["skipped_files"])
    assert all(Path(c["input_file"]).name == "good.h5" for c in m["chunks"])
    assert len(list(out.glob("chunk-*.parquet"))) == 3  # nan.h5's chunk 0 (rows 0-99) was removed again


def test_cli_summary_errors_and_resume(tmp_path, capsys):
    src = make_4vec(tmp_path / "a.h5")
    out = tmp_path / "ds"
    assert main(["import", "h5-4vec", str(src), "--out", str(out), "--extra", "score", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "imported 300 events, 600 jets" in text and str(out) in text
    # same command again: no-op
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*")}
    manifest = (out / "manifest.json").read_bytes()
    assert main(["import", "h5-4vec", str(src), "--out", str(out), "--extra", "score"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*")} == before
    assert (out / "manifest.json").read_bytes() == manifest  # its provenance (command, time) kept
    # different options into the same directory: refused
    assert main(["import", "h5-4vec", str(src), "--out", str(out)]) == 2
    assert "different settings" in capsys.readouterr().err
    # option of another format
    assert main(["import", "h5-4vec", str(src), "--out", str(tmp_path / "x"), "--radius", "0.4"]) == 2
    assert "--radius do not apply to format 'h5-4vec'" in capsys.readouterr().err
    assert main(["import", "bogus", str(src), "--out", str(tmp_path / "x")]) == 2
    assert "valid formats" in capsys.readouterr().err


def test_library_errors_types(tmp_path):
    src = make_4vec(tmp_path / "a.h5")
    with pytest.raises(ConfigError):
        import_dataset("h5-4vec", [src], tmp_path / "ds", chunk_size=0)
    import_dataset("h5-4vec", [src], tmp_path / "ds")
    with pytest.raises(DatasetError):
        import_dataset("h5-4vec", [src], tmp_path / "ds", chunk_size=77)


def test_h5_4vec_provenance(tmp_path):
    src = make_4vec(tmp_path / "a.h5")
    ds = import_dataset("h5-4vec", [src], tmp_path / "ds", extra="score")
    prov = ds.manifest["provenance"]
    inp = prov["inputs"][0]
    assert inp["bytes"] == src.stat().st_size and len(inp["sha256"]) == 64
    assert inp["meta"]["scalars"]["nProcessed"] == 12345
    assert ds.manifest["parameters"]["extra_event_fields"] == ["score"]
    ev = ds.arrays()
    assert ak.all(ev.jets.slot == ak.local_index(ev.jets.slot))
    assert ak.all(ev.jets.constituents["type"] == -1)
    shutil.rmtree(tmp_path / "ds")
