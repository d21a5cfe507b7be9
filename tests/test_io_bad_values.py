"""Inputs with strings, float32-overflowing values or empty tables: one clear error naming the
file and the field, --skip-bad-files skips them, and no half-written dataset is left."""

from __future__ import annotations

import warnings

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest

from darkshower import open_dataset
from darkshower.cli.main import main
from darkshower.errors import InputFormatError
from darkshower.io import import_dataset
from darkshower.io.h5_4vec import H54VecReader
from test_io_errors import make_4vec


def _copy_with(src, dst, name, fn):
    with h5py.File(src) as g, h5py.File(dst, "w") as h:
        for k in g:
            v = g[k][()]
            h[k] = fn(v) if k == name else v
    return dst


def _huge(v):
    v = v.copy()
    v[250, 0, :2] = 3.2e38  # finite float32, but pT = hypot(px, py) overflows
    return v


@pytest.fixture()
def files(tmp_path):
    good = make_4vec(tmp_path / "good.h5", n=300)
    return {
        "good": good,
        "strings": _copy_with(good, tmp_path / "strings.h5", "jet2_PFCands", lambda v: v.astype("S12")),
        "vlen": _copy_with(good, tmp_path / "vlen.h5", "score",
                           lambda v: np.array([str(x) for x in v], dtype=h5py.string_dtype())),
        "huge": _copy_with(good, tmp_path / "huge.h5", "jet1_PFCands", _huge),
    }


def test_string_jets_one_clear_error_nothing_written(files, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(InputFormatError, match=r"strings\.h5: dataset 'jet2_PFCands' holds byte strings \(dtype \|S12\); "
                                               r"format 'h5-4vec' needs numbers"):
        import_dataset("h5-4vec", [files["strings"]], out, chunk_size=100)
    assert not out.exists()
    with pytest.raises(InputFormatError, match=r"vlen\.h5: dataset 'score' holds strings or objects.*--extra"):
        import_dataset("h5-4vec", [files["vlen"]], out, chunk_size=100, extra="score")
    assert not out.exists()


def test_overflowing_values_are_an_error_not_inf(files, tmp_path):
    out = tmp_path / "ds"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way either
        with pytest.raises(InputFormatError, match=r"huge\.h5: dataset 'jet1_PFCands' holds values too large for "
                                                   r"float32 .*3\.2e\+38.* event row 250"):
            import_dataset("h5-4vec", [files["huge"]], out, chunk_size=100)
    assert not out.exists()


def test_skip_bad_files_skips_and_lists_them(files, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["import", "h5-4vec", str(files["strings"]), str(files["good"]), str(files["huge"]), "--out", str(out),
               "--chunk-size", "100", "--skip-bad-files", "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    tail = stdout[stdout.index("skipped 2 bad file(s):"):]
    assert "strings.h5: dataset 'jet2_PFCands' holds byte strings" in tail
    assert "huge.h5: dataset 'jet1_PFCands' holds values too large" in tail
    ds = open_dataset(out, verify=True)
    assert ds.n_events == 300 and len(ds.chunks) == 3
    assert {s["path"] for s in ds.manifest["skipped_files"]} == {str(files["strings"]), str(files["huge"])}
    pt = ak.to_numpy(ak.flatten(ds.arrays(columns=["jets.pt"]).jets.pt, axis=None))
    assert len(pt) == 600 and np.isfinite(pt).all()


def test_unexpected_reader_failure_is_a_file_error(files, tmp_path, monkeypatch):
    """Any exception of a reader on a file's contents names the file and can be skipped; the chunks
    this run wrote for that file are removed."""
    real = H54VecReader.read

    def flaky(self, start, stop):
        if self.path.name == "bad.h5" and start >= 100:
            raise TypeError("ufunc 'hypot' not supported for the input types")
        return real(self, start, stop)

    monkeypatch.setattr(H54VecReader, "read", flaky)
    bad = make_4vec(files["good"].with_name("bad.h5"), n=300, seed=1)
    out = tmp_path / "ds"
    with pytest.raises(InputFormatError, match=r"bad\.h5: cannot import rows 100-200 as 'h5-4vec' \(TypeError: ufunc"):
        import_dataset("h5-4vec", [bad], out, chunk_size=100)
    assert not out.exists()  # the chunk 0 written before the failure is gone too
    ds = import_dataset("h5-4vec", [files["good"], bad], out, chunk_size=100, skip_bad_files=True)
    assert ds.n_events == 300 and [s["path"] for s in ds.manifest["skipped_files"]] == [str(bad)]
    assert sorted(p.name for p in out.glob("chunk-*.parquet")) == [f"chunk-0000{i}.parquet" for i in range(3)]


def test_chunk_level_finite_check_names_field(tmp_path):
    """The driver's last check on the finished chunk (any format): NaN/inf in a schema field."""
    from darkshower.io.common import check_chunk_finite

    ev = ak.Array([{"weight": 1.0, "met_pt": 0.0, "met_phi": 0.0,
                    "jets": [{"pt": 1.0, "eta": 0.0, "phi": 0.0, "mass": 1.0,
                              "constituents": [{"pt": 1.0, "eta": 0.0, "phi": 0.0, "e": 1.0}]}]}] * 3)
    check_chunk_finite(tmp_path / "x.h5", ev, 10)
    bad = ak.to_list(ev)
    bad[2]["jets"][0]["constituents"][0]["e"] = float("inf")
    with pytest.raises(InputFormatError, match=r"x\.h5: field 'jets\.constituents\.e' is NaN/inf in 1 event\(s\), "
                                               r"first in event row 12"):
        check_chunk_finite(tmp_path / "x.h5", ak.Array(bad), 10)


# ------------------------------------------------------------------------------------------------ lhco
def _lhco(path, df, fmt="fixed"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(path, key="df", format=fmt)
    return path


def test_lhco_empty_table(tmp_path):
    # pandas stores an empty block as a (1, 1) placeholder of uninitialized memory: it used to be
    # read as one event whose "truth label" was whatever the memory held (e.g. 5e-324)
    f = _lhco(tmp_path / "empty.h5", pd.DataFrame(np.zeros((0, 2101))))
    with pytest.raises(InputFormatError, match=r"empty\.h5: pandas table 'df' is empty \(shape \(0, 2101\)\)"):
        import_dataset("lhco", [f], tmp_path / "ds")
    f = _lhco(tmp_path / "nocols.h5", pd.DataFrame(index=range(4)))
    with pytest.raises(InputFormatError, match=r"nocols\.h5: pandas table 'df' is empty \(no columns\)"):
        import_dataset("lhco", [f], tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_lhco_bad_label_still_named(tmp_path):
    x = np.zeros((3, 7))
    x[:, 0] = 500.0
    x[1, -1] = 0.5
    f = _lhco(tmp_path / "label.h5", pd.DataFrame(x))
    with pytest.raises(InputFormatError, match=r"truth label \(last column\) is 0\.5 in row 1"):
        import_dataset("lhco", [f], tmp_path / "ds")


def test_lhco_string_columns(tmp_path):
    df = pd.DataFrame(np.array([["a"] * 7] * 3, dtype=object))
    f = _lhco(tmp_path / "strs.h5", df, fmt="table")
    with pytest.raises(InputFormatError, match=r"strs\.h5: pandas table 'df' has non-numeric columns \(0, 1, 2, 3, 4\)"):
        import_dataset("lhco", [f], tmp_path / "ds")
    f = _lhco(tmp_path / "strs_fixed.h5", df)
    with pytest.raises(InputFormatError, match=r"strs_fixed\.h5: pandas table 'df'"):
        import_dataset("lhco", [f], tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
