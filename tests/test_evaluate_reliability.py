"""Reliability of evaluate/search: replaced datasets, unscored events, nonsense options, datasets without jets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from darkshower.cli.main import main
from darkshower.data.dataset import open_dataset
from darkshower.errors import ConfigError, EvaluationError
from darkshower.evaluate import evaluate, search
from evaluate_util import no_jet_dataset, write_scores

SEARCH = dict(n_signal=2000, cut_effs=(0.5, 0.1), n_bins=12, plots=False)


def _keep_events(path, dataset, ids) -> None:
    """Keep only these event ids of ``dataset`` in a score file (both tables), metadata unchanged."""
    import pyarrow.parquet as pq

    for f in (path, path.with_name(path.stem + ".events.parquet")):
        t = pq.read_table(f)
        df = t.to_pandas()
        keep = (df["dataset"] != str(dataset.resolve())) | df["event_id"].isin(ids)
        pq.write_table(t.filter(keep.to_numpy()), f)


def test_dataset_replaced_at_the_same_path_is_refused(tmp_path, qcd_ds, svj_ds, svj_high_rinv_ds):
    sig = tmp_path / "signal"
    shutil.copytree(svj_ds.path, sig)
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, open_dataset(sig)], level="event")
    old = write_scores(tmp_path / "old.parquet", [qcd_ds, open_dataset(sig)], identity=False)
    m = evaluate([p], [qcd_ds.path], [sig], supervised=False, n_bootstrap=0)  # the scored version: fine
    assert not any("fingerprint" in w for w in m["warnings"])
    assert m["signals"][0]["fingerprint"].startswith("sha256:")
    # a score file from before fingerprints were recorded: accepted, with a warning
    m = evaluate([old], [qcd_ds.path], [sig], supervised=False, n_bootstrap=0)
    assert any("old.parquet" in w and "no dataset fingerprints" in w for w in m["warnings"])
    r = search([old], [qcd_ds.path], [sig], **SEARCH)
    assert any("no dataset fingerprints" in w for w in r["warnings"])
    # the signal is regenerated (another r_inv) at the same path after scoring; the (event-level) scores of
    # the event ids both versions have would join silently
    common = np.intersect1d(open_dataset(sig).arrays(["event_id"]).event_id.to_numpy(),
                            svj_high_rinv_ds.arrays(["event_id"]).event_id.to_numpy())
    assert len(common) > 20
    _keep_events(p, sig, common)
    shutil.rmtree(sig)
    shutil.copytree(svj_high_rinv_ds.path, sig)
    for call in (lambda: evaluate([p], [qcd_ds.path], [sig], supervised=False, n_bootstrap=0),
                 lambda: search([p], [qcd_ds.path], [sig], **SEARCH)):
        with pytest.raises(EvaluationError) as ei:
            call()
        msg = str(ei.value)
        assert str(sig.resolve()) in msg and "is not the one that was scored" in msg and "darkshower score" in msg
    out = tmp_path / "ev"
    assert main(["evaluate", "--scores", str(p), "--background", str(qcd_ds.path), "--signal", str(sig), "--out",
                 str(out), "--bootstrap", "0", "--no-supervised"]) == 2
    assert not out.exists()  # nothing written


def test_search_drops_and_flags_unscored_events(tmp_path, qcd_ds, svj_ds):
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    ev_file = tmp_path / "s.events.parquet"
    ev = pd.read_parquet(ev_file)
    sig_rows = np.flatnonzero((ev["dataset"] == str(svj_ds.path.resolve())).to_numpy())[:30]
    ev.loc[sig_rows, ["score_lead", "score_max2"]] = np.nan
    ev.to_parquet(ev_file)
    r = search([p], [qcd_ds.path], [svj_ds.path], **SEARCH)
    (s,) = r["searches"]
    assert "nonfinite_scores_dropped" in s["flags"] and s["n_unscored"] == {"background": 0, "signal": 30}
    assert any("30 events of svj have no (finite) score" in n for n in r["notes"])
    # the unscored events are left out, not counted as failing every cut: the signal efficiency of a cut is
    # the weighted fraction of the *scored* signal events above the threshold
    m = evaluate([p], [qcd_ds.path], [svj_ds.path], supervised=False, n_bootstrap=0)
    assert any("30 events of svj" in n for n in m["notes"])
    scored = ev[ev["dataset"] == str(svj_ds.path.resolve())].dropna()
    lv = s["levels"][1]
    assert s["levels"][0]["sig_eff"] == 1.0
    assert lv["sig_eff"] == pytest.approx((scored["score_max2"] >= lv["threshold"]).mean())
    assert s["n_signal_ref"] == pytest.approx(2000)


@pytest.mark.parametrize("kwargs, match", [
    ({"xsec_pb": -3.0}, r"xsec_pb \(--xsec\) -3.0: must be a number > 0"),
    ({"n_signal": -100.0}, r"n_signal \(--n-signal\) -100.0: must be a number > 0"),
    ({"mu": -1.0}, r"mu \(--mu\) -1.0: must be a number >= 0"),
    ({"mu": float("nan")}, r"mu \(--mu\) nan"),
    ({"n_bins": 3}, r"--bins\) 3: need an integer >= 5"),
    ({"cl": 1.5}, r"cl \(--cl\) 1.5: must be a number in \(0, 1\)"),
    ({"cut_effs": (0.1, 1.0)}, r"--cut-eff\) 0.1,1: background efficiencies must lie in \(0, 1\)"),
    ({"lumi_fb": 0.0}, r"lumi_fb \(--lumi\) 0.0"),
    ({"mt_range": (3000, 1000)}, r"--mt-range\) 3000 1000: need 0 < LO < HI"),
    ({"xsec_pb": 1.0, "n_signal": 5.0}, "not both"),
])
def test_search_rejects_nonsense_options(tmp_path, kwargs, match):
    # options are checked first: the (missing) inputs are never read
    with pytest.raises(ConfigError, match=match):
        search([tmp_path / "missing.parquet"], [tmp_path / "b"], [tmp_path / "s"], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_search_cli_rejects_nonsense(tmp_path, qcd_ds, svj_ds, capsys):
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    base = ["search", "--scores", str(p), "--background", str(qcd_ds.path), "--out", str(tmp_path / "o")]
    for extra, texts in ((["--signal", str(svj_ds.path), "--xsec", "-3"], ("--xsec", "-3")),
                         (["--signal", str(svj_ds.path), "--n-signal", "-100"], ("--n-signal", "-100")),
                         (["--signal", str(qcd_ds.path), "--n-signal", "100"], ("given twice", str(qcd_ds.path)))):
        try:
            rc = main(base + extra)
        except SystemExit as exc:  # rejected while the command line is parsed
            rc = exc.code
        assert rc == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error:" in last and all(t in last for t in texts), last
    assert not (tmp_path / "o").exists()


def test_evaluate_library_checks_options(tmp_path):
    for kwargs, match in (({"n_bootstrap": -1}, r"n_bootstrap \(--bootstrap\) -1: must be an integer >= 0"),
                          ({"eff_s_points": [0.1, 2]}, r"--eff-s\) 0.1,2: efficiencies must lie in \(0, 1\]"),
                          ({"eff_b_points": []}, r"--eff-b\) \(empty\)"),
                          ({"sculpt_effs": [float("nan")]}, r"--sculpt-eff\) nan"),
                          ({"min_bkg": -1.0}, r"min_bkg \(--min-bkg\) -1.0")):
        with pytest.raises(ConfigError, match=match):
            evaluate([tmp_path / "missing.parquet"], [tmp_path / "b"], [tmp_path / "s"], tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_signal_without_jets_is_named(tmp_path, qcd_ds, svj_ds, capsys):
    nojets = no_jet_dataset(svj_ds, tmp_path / "svj_nojets")
    ds = open_dataset(nojets)
    assert ds.n_events == svj_ds.n_events
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds, ds])  # no rows for the jet-less dataset
    m = evaluate([p], [qcd_ds.path], [svj_ds.path, nojets], supervised=False, n_bootstrap=0)
    by_sig = {r["signal"]: r for r in m["results"] if r["level"] == "event"}
    assert "no_jets" in by_sig["svj_nojets"]["flags"] and by_sig["svj_nojets"]["auc"]["value"] is None
    assert by_sig["svj"]["auc"]["value"] > 0.8
    (w,) = [w for w in m["warnings"] if "svj_nojets" in w]
    assert f"has {ds.n_events} events but no jets" in w
    assert not any("has no scores" in w for w in m["warnings"])
    r = search([p], [qcd_ds.path], [svj_ds.path, nojets], **SEARCH)
    assert [s["flags"] for s in r["searches"] if s["signal"] == "svj_nojets"] == [["no_jets"]]
    # as the only background: nothing to compare with, said so
    with pytest.raises(EvaluationError, match=r"svj_nojets .*have no jets"):
        evaluate([p], [nojets], [svj_ds.path], supervised=False, n_bootstrap=0)


def test_search_json_and_metrics_stay_strict_json(tmp_path, qcd_ds, svj_ds):
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    search([p], [qcd_ds.path], [svj_ds.path], tmp_path / "ev", **SEARCH)
    s = json.loads((tmp_path / "ev" / "search" / "search.json").read_text())
    assert s["searches"][0]["flags"] == [] and s["searches"][0]["n_unscored"] == {"background": 0, "signal": 0}


def test_score_records_dataset_fingerprints(tmp_path, qcd_ds, svj_ds):
    """`darkshower score` writes each dataset's fingerprint; evaluate checks it without a warning."""
    from darkshower.data.fingerprint import dataset_fingerprint
    from darkshower.evaluate.scores import read_scores
    from darkshower.train import score, train

    run = train("ae-hlf", qcd_ds, tmp_path / "run", config={"batch_size": 32, "threads": 1,
                                                             "early_stopping": {"patience": None}},
                epochs=1, progress=False)
    p, _ = score(run, [qcd_ds, svj_ds.path], tmp_path / "s.parquet", progress=False)
    meta = read_scores(p).meta
    assert meta["datasets"] == {str(d.path.resolve()): dataset_fingerprint(d) for d in (qcd_ds, svj_ds)}
    m = evaluate([p], [qcd_ds.path], [svj_ds.path], supervised=False, n_bootstrap=0)
    assert not any("fingerprint" in w for w in m["warnings"])
    assert m["signals"][0]["fingerprint"] == dataset_fingerprint(svj_ds)


def test_careless_paths_fail_before_work(tmp_path, qcd_ds, svj_ds, monkeypatch):
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    f = tmp_path / "afile"
    f.write_text("x")
    for out, text in ((f, "--out .*afile: is a file, not a directory"), (f / "x", "afile is a file, not a directory")):
        with pytest.raises(ConfigError, match=text):
            evaluate([p], [qcd_ds.path], [svj_ds.path], out, supervised=False, n_bootstrap=0)
        with pytest.raises(ConfigError, match=text):
            search([p], [qcd_ds.path], [svj_ds.path], out, **SEARCH)
    with pytest.raises(EvaluationError, match="is a directory; give a score file"):
        evaluate([tmp_path], [qcd_ds.path], [svj_ds.path], supervised=False, n_bootstrap=0)
    # a rewrite that fails half-way leaves no metrics.json describing the old tables
    out = tmp_path / "ev"
    evaluate([p], [qcd_ds.path], [svj_ds.path], out, supervised=False, n_bootstrap=0)
    assert (out / "metrics.json").exists()
    import darkshower.evaluate.evaluation as ev_mod

    def disk_full(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(ev_mod, "atomic_write_parquet", disk_full)
    with pytest.raises(OSError):
        evaluate([p], [qcd_ds.path], [svj_ds.path], out, supervised=False, n_bootstrap=0)
    assert not (out / "metrics.json").exists()
