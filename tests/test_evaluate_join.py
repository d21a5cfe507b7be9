"""Score files and their join with datasets: metadata, derived event scores, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from darkshower.errors import DarkshowerError, EvaluationError
from darkshower.evaluate import evaluate
from darkshower.evaluate.scores import read_score_files, read_scores
from evaluate_util import empty_dataset, write_scores


def test_read_scores_metadata_and_event_scores(tmp_path, qcd_ds):
    p = write_scores(tmp_path / "a.parquet", [qcd_ds], method="ae", events_file=False)
    sf = read_scores(p)
    assert sf.method == "ae" and sf.run == "runs/toy" and sf.level == "jet"
    jets = pd.read_parquet(p)
    lead = jets[jets.jet_idx == 0].set_index("event_id")["score"]
    max2 = jets[jets.jet_idx < 2].groupby("event_id")["score"].max()
    ev = sf.events.set_index("event_id")
    np.testing.assert_allclose(ev["score_lead"].reindex(lead.index), lead)
    np.testing.assert_allclose(ev["score_max2"].reindex(max2.index), max2)
    # no metadata: the file stem names the method; event-level file works alone too
    q = write_scores(tmp_path / "plain_scores.parquet", [qcd_ds], method=None, level="event")
    sf2 = read_scores(q.with_name("plain_scores.events.parquet"))
    assert sf2.method == "plain_scores" and sf2.level == "event"
    # the same method twice gets distinguishable names
    names = [f.name for f in read_score_files([p, p])]
    assert len(set(names)) == 2 and all(n.startswith("ae") for n in names)


def test_not_a_score_file(tmp_path):
    p = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(p)
    with pytest.raises(EvaluationError, match=r"x.parquet: not a score file: missing column\(s\) \['dataset'"):
        read_scores(p)
    with pytest.raises(EvaluationError, match="not found"):
        read_scores(tmp_path / "missing.parquet")


def test_join_errors_name_the_files(tmp_path, qcd_ds, svj_ds):
    # scores with event ids the dataset does not have
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    for f in (p, p.with_name("s.events.parquet")):
        df = pd.read_parquet(f)
        df.loc[df["dataset"] == str(svj_ds.path.resolve()), "event_id"] += 10**12
        df.to_parquet(f)
    with pytest.raises(DarkshowerError) as ei:
        evaluate([p], [qcd_ds.path], [svj_ds.path], supervised=False, n_bootstrap=0)
    msg = str(ei.value)
    assert "s.parquet" in msg and str(svj_ds.path.resolve()) in msg and "do not join" in msg
    # a dataset the score file has never seen
    q = write_scores(tmp_path / "qcd_only.parquet", [qcd_ds])
    with pytest.raises(EvaluationError, match=r"qcd_only.parquet.*has no scores for dataset .*svj"):
        evaluate([q], [qcd_ds.path], [svj_ds.path], supervised=False, n_bootstrap=0)
    # duplicates
    d = write_scores(tmp_path / "dup.parquet", [qcd_ds], events_file=False)
    df = pd.read_parquet(d)
    pd.concat([df, df.iloc[:1]]).to_parquet(d)
    with pytest.raises(EvaluationError, match="duplicate"):
        read_scores(d)
    # the same dataset as background and signal
    with pytest.raises(EvaluationError, match="given twice"):
        evaluate([p], [qcd_ds.path], [qcd_ds.path], supervised=False)


def test_degenerate_scores_are_marked(tmp_path, qcd_ds, svj_ds):
    p = write_scores(tmp_path / "const.parquet", [qcd_ds, svj_ds], kind="constant", method="const")
    m = evaluate([p], [qcd_ds.path], [svj_ds.path], tmp_path / "ev", supervised=False, n_bootstrap=20)
    ev = next(r for r in m["results"] if r["level"] == "event")
    assert ev["auc"]["value"] == 0.5 and "degenerate_scores" in ev["flags"]
    assert ev["max_sic"]["value"] is None
    assert any("degenerate" in w for w in m["warnings"])
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())  # strict JSON (no NaN)
    assert on_disk["warnings"] == m["warnings"]


def test_empty_signal_is_marked(tmp_path, qcd_ds, svj_ds):
    empty = empty_dataset(svj_ds, tmp_path / "svj_empty")
    p = write_scores(tmp_path / "s.parquet", [qcd_ds, svj_ds])
    m = evaluate([p], [qcd_ds.path], [svj_ds.path, empty], supervised=False, n_bootstrap=10)
    by_sig = {r["signal"]: r for r in m["results"] if r["level"] == "event"}
    assert "empty_signal" in by_sig["svj_empty"]["flags"] and by_sig["svj_empty"]["auc"]["value"] is None
    assert by_sig["svj"]["auc"]["value"] > 0.8
    assert any("svj_empty" in w and "no events" in w for w in m["warnings"])
    with pytest.raises(EvaluationError, match=r"background dataset.*no events"):
        evaluate([p], [empty], [svj_ds.path], supervised=False)
