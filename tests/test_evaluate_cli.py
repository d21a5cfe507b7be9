"""End to end: darkshower evaluate / search / report on generated fixtures, page rendered in Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from darkshower.cli.main import main
from darkshower.evaluate.htmlreport import SECTIONS
from evaluate_util import write_scores

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def evaldir(tmp_path_factory, qcd_ds, svj_ds, svj_high_rinv_ds):
    """An evaluation directory made with the CLI: two methods, two signals (r_inv 0.3, 0.7), a search."""
    d = tmp_path_factory.mktemp("eval")
    sets = [qcd_ds, svj_ds, svj_high_rinv_ds]
    met = write_scores(d / "met.parquet", sets, "met", method="met-toy")
    rnd = write_scores(d / "rnd.parquet", sets, "random", method="random-toy", level="event", seed=5)
    out = d / "ev"
    rc = main(["evaluate", "--scores", str(met), str(rnd), "--background", str(qcd_ds.path),
               "--signal", str(svj_ds.path), str(svj_high_rinv_ds.path), "--out", str(out), "--bootstrap", "30"])
    assert rc == 0
    rc = main(["search", "--scores", str(met), "--background", str(qcd_ds.path), "--signal", str(svj_ds.path),
               "--n-signal", "2000", "--cut-eff", "0.5,0.1", "--bins", "12", "--out", str(out)])
    assert rc == 0
    assert main(["report", str(out)]) == 0
    return {"dir": out, "met": met, "rnd": rnd, "datasets": sets}


def test_metrics_json(evaldir):
    m = json.loads((evaldir["dir"] / "metrics.json").read_text())
    assert m["format"] == "darkshower-evaluation" and m["schema_version"] == "1.0"
    assert [x["name"] for x in m["methods"]] == ["met-toy", "random-toy"]
    assert [x["level"] for x in m["methods"]] == ["jet", "event"]
    ev = {(r["method"], r["signal"]): r for r in m["results"] if r["level"] == "event"}
    assert set(ev) == {(a, b) for a in ("met-toy", "random-toy", "supervised BDT") for b in ("svj", "svj_r07")}
    good, rand = ev[("met-toy", "svj_r07")], ev[("random-toy", "svj_r07")]
    assert good["auc"]["value"] > 0.85 and 0.3 < rand["auc"]["value"] < 0.7
    assert good["auc"]["ci95"][0] <= good["auc"]["value"] <= good["auc"]["ci95"][1]
    sup = ev[("supervised BDT", "svj_r07")]["auc"]["value"]
    assert sup > 0.8
    assert good["ratio_to_supervised"]["value"] == pytest.approx(good["auc"]["value"] / sup)
    assert good["supervised_auc"]["value"] == sup
    jets = [r for r in m["results"] if r["level"] == "jet"]
    assert {r["method"] for r in jets} == {"met-toy"} and jets[0]["signal_jets"] == "dark jets (is_dark)"
    assert m["generalization"] == [{"process": "svj", "axes": ["r_inv"], "other_varying": [],
                                    "signals": [{"name": "svj", "r_inv": 0.3}, {"name": "svj_r07", "r_inv": 0.7}]}]
    sc = m["sculpting"]["met-toy"]
    assert set(sc) == {"lead_jet_mass", "mt"} and set(sc["mt"]["cuts"]) == {"0.5", "0.1", "0.01"}
    assert 0 <= sc["mt"]["cuts"]["0.5"]["jsd"] <= 1
    assert m["supervised"]["svj"]["n_train"] == 120  # half of 120 background + 120 signal events
    d = evaldir["dir"] / "data"
    import pandas as pd

    events = pd.read_parquet(d / "events.parquet")
    assert len(events) == 360 and {"score:met-toy", "score:random-toy", "mt", "lead_jet_mass"} <= set(events.columns)
    assert len(pd.read_parquet(d / "supervised.parquet")) == 2 * (60 + 60)


def test_search_outputs(evaldir):
    s = json.loads((evaldir["dir"] / "search" / "search.json").read_text())
    (one,) = s["searches"]
    assert one["method"] == "met-toy" and one["signal"] == "svj" and one["n_signal_ref"] == pytest.approx(2000)
    assert [lv["cut"] for lv in one["levels"]] == ["none", "0.5", "0.1"]
    none = one["levels"][0]
    assert none["z"] >= 0 and none["expected_limit"]["median"] > 0 and len(none["data"]) == 12
    assert one["levels"][1]["bkg_eff"] == pytest.approx(0.5, abs=0.02)
    assert (evaldir["dir"] / "search" / "met-toy__svj.png").stat().st_size > 5000


def test_cli_errors(tmp_path, evaldir, capsys):
    qcd = str(evaldir["datasets"][0].path)
    rc = main(["evaluate", "--scores", str(evaldir["met"]), "--background", qcd, "--signal",
               str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "darkshower: error:" in capsys.readouterr().err
    rc = main(["evaluate", "--scores", str(evaldir["met"]), "--background", qcd, "--signal", qcd, "--out",
               str(tmp_path / "o"), "--eff-s", "0.1,2"])
    assert rc == 2 and "efficiencies must lie in (0, 1]" in capsys.readouterr().err
    rc = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no metrics.json" in err and f"--out {tmp_path}` first" in err


def test_report_only_renders(tmp_path, evaldir, capsys):
    """A directory of score files is not evaluated behind the user's back: one error naming the command."""
    from darkshower.errors import EvaluationError
    from darkshower.evaluate import report

    d = tmp_path / "scores_only"
    d.mkdir()
    for f in ("met.parquet", "met.events.parquet", "rnd.parquet", "rnd.events.parquet"):
        shutil.copy(evaldir["met"].parent / f, d / f)
    with pytest.raises(EvaluationError) as ei:
        report(d)
    msg = str(ei.value)
    assert "no metrics.json" in msg and "darkshower evaluate --scores" in msg and f"--out {d}` first" in msg
    assert "met.parquet, rnd.parquet" in msg  # the score files found, not their .events companions
    assert sorted(p.name for p in d.iterdir()) == ["met.events.parquet", "met.parquet", "rnd.events.parquet",
                                                   "rnd.parquet"]  # nothing evaluated, nothing written
    assert main(["report", str(d)]) == 2 and "darkshower evaluate" in capsys.readouterr().err
    # a damaged events table is named; the metrics.json path is accepted for DIR
    ev = tmp_path / "copy"
    shutil.copytree(evaldir["dir"], ev)
    assert report(ev / "metrics.json") == ev / "report.html"
    (ev / "data" / "events.parquet").write_bytes(b"not parquet")
    with pytest.raises(EvaluationError, match=r"events.parquet: cannot read .*rerun `darkshower evaluate`"):
        report(ev)
    (ev / "metrics.json").write_text('{"format": "darkshower-evaluation", "schema_version": "9.0"}')
    with pytest.raises(EvaluationError, match=r"schema_version '9.0'"):
        report(ev)


def test_heatmap_for_two_varying_parameters():
    from darkshower.evaluate.evaluation import grid_axes
    from darkshower.evaluate.htmlreport import _generalization

    class S:
        def __init__(self, **p):
            self.parameters = p

    sigs = [S(m_dark=md, r_inv=r, Lambda=2 * md, m_med=2000) for md in (10, 20) for r in (0.3, 0.7)]
    assert grid_axes(sigs) == ["r_inv", "m_dark"]  # Lambda follows m_dark; m_med is fixed
    signals = [{"name": f"s{i}", "r_inv": s.parameters["r_inv"], "m_dark": s.parameters["m_dark"]}
               for i, s in enumerate(sigs)]
    results = [{"method": "ae", "signal": f"s{i}", "level": "event", "auc": {"value": 0.6 + 0.1 * i, "err": 0.01},
                "rejection": {"0.3": {"value": 5.0 + i}}} for i in range(4)]
    m = {"settings": {"heatmap_eff_s": 0.3}, "methods": [{"name": "ae"}], "results": results,
         "generalization": [{"process": "svj", "axes": ["r_inv", "m_dark"], "signals": signals}]}
    html = _generalization(m)
    assert html.count("<img ") == 1 and "varying: r_inv, m_dark" in html


def _chromium():
    for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if p and Path(p).exists():
            return p
    return None


def test_report_renders_in_chromium(evaldir, tmp_path):
    from PIL import Image

    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    page = evaldir["dir"] / "report.html"
    text = page.read_text()
    # every embedded PNG decodes
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(pngs) >= 8
    for b64 in pngs:
        im = Image.open(BytesIO(base64.b64decode(b64)))
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100
    url = page.resolve().as_uri()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for sec in SECTIONS:
        assert f'id="{sec}"' in dom.stdout, f"section {sec} missing from the rendered page"
    total = re.search(r'data-images-total="(\d+)"', dom.stdout)
    broken = re.search(r'data-images-broken="(\d+)"', dom.stdout)
    assert total and broken, "the page's image check did not run"
    assert int(total.group(1)) == len(pngs) and int(broken.group(1)) == 0
    shot = tmp_path / "page.png"
    r = subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (3000, 1200, 3)
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 100  # text, tables and figures, not a blank page
    assert (img.mean(axis=2) < 250).mean() > 0.05
