"""``report()``: render an evaluation directory into one self-contained HTML page.

The page (``DIR/report.html``) embeds every figure as a base64 PNG, so it can be mailed or
archived alone. Sections (HTML ids): ``summary``, ``metrics``, ``roc``, ``scores``,
``generalization``, ``sculpting``, ``supervised``, ``search``. The report only renders what
``evaluate`` (``metrics.json``, ``data/``) and ``search`` (``search/``) wrote; it never evaluates.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower import __version__
from darkshower.errors import EvaluationError
from darkshower.evaluate import io as eio
from darkshower.evaluate import plots as P
from darkshower.evaluate.metrics import roc_curve

log = logging.getLogger(__name__)

SECTIONS = ("summary", "metrics", "roc", "scores", "generalization", "sculpting", "supervised", "search")
_MAX_CURVE_POINTS = 2000

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #5790fc;padding-bottom:4px;margin-top:2em}
h3{margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:0.86em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eef3ff}
td.l,th.l{text-align:left}td.head{background:#fff4d6;font-weight:bold}
.flags{color:#a33;font-size:0.85em;text-align:left}.warn{background:#fff0f0;border-left:4px solid #e42536;padding:6px 10px}
.note{color:#555;font-size:0.9em}.figs{display:flex;flex-wrap:wrap;gap:10px}.figs img{border:1px solid #ddd;max-width:100%}
code{background:#f4f4f4;padding:1px 3px}nav a{margin-right:12px}
"""

_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, bad = 0;
  for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad++; }
  var el = document.getElementById('image-check');
  el.textContent = (imgs.length - bad) + ' of ' + imgs.length + ' figures loaded';
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-broken', bad);
});
"""


def _e(x) -> str:
    return html.escape(str(x))


def _img(fig, alt: str, dpi: int = 80) -> str:
    data = base64.b64encode(P.to_png_bytes(fig, dpi)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v, digits=3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return _e(v)


Cell = str | tuple[str, str]  # a table cell: html, or (html, extra css class)


def _table(header: list[str], rows: Sequence[Sequence[Cell]], left: int = 2) -> str:
    h = "".join(f'<th class="{"l" if i < left else ""}">{c}</th>' for i, c in enumerate(header))
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            cls = "l" if i < left else ""
            if isinstance(c, tuple):  # (html, class)
                c, extra = c
                cls = f"{cls} {extra}".strip()
            cells.append(f'<td class="{cls}">{c}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flags(fl) -> tuple[str, str]:
    return (_e(", ".join(fl)) if fl else "", "flags")


# -- sections ------------------------------------------------------------------------------------------
def _summary(m: dict, search: dict | None) -> str:
    out = ['<section id="summary"><h2>Summary</h2>']
    for w in m.get("warnings", []):
        out.append(f'<p class="warn">⚠ {_e(w)}</p>')
    st = m["settings"]
    out.append(f'<p class="note">created {_e(m.get("created", "?"))}; event score <code>{_e(st["event_score"])}</code>; '
               f'{st["n_bootstrap"]} bootstrap replicas (seed {st["seed"]}); SIC and working points need at least '
               f'{st["min_bkg"]:g} effective background events; supervised reference: '
               f'{_e(st.get("supervised_reference") or "none")}.</p>')
    rows = [[_e(x["name"]), _e(x["method"]), _e(x.get("run") or ""), _e(x["level"]), "yes" if x["supervised"] else "no",
             f'<code>{_e(x["file"])}</code>'] for x in m["methods"]]
    out.append("<h3>Methods</h3>" + _table(["name", "method", "run", "level", "supervised", "file"], rows, left=6))
    rows = [[_e(d["role"]), _e(d["name"]), _e(d["process"]), str(d["n_events"]),
             _fmt(d.get("cross_section_pb")),
             _e(", ".join(f"{k}={v}" for k, v in d["parameters"].items() if isinstance(v, (int, float, str)))[:160]),
             f'<code>{_e(d["path"])}</code>'] for d in m["background"] + m["signals"]]
    out.append("<h3>Datasets</h3>" + _table(["role", "name", "process", "events", "σ_sel [pb]", "parameters", "path"],
                                            rows, left=7))
    for n in m.get("notes", []):
        out.append(f'<p class="note">{_e(n)}</p>')
    out.append("</section>")
    return "\n".join(out)


def _metric_rows(m: dict, level: str) -> list[list[Cell]]:
    st = m["settings"]
    rows = []
    for r in m["results"]:
        if r["level"] != level:
            continue
        row: list[Cell] = [_e(r["method"]) + (" <i>(sup.)</i>" if r.get("supervised") else ""), _e(r["signal"]),
               P.fmt_pm(r["auc"])]
        if level == "event":
            row += [P.fmt_pm(r.get("supervised_auc")), (P.fmt_pm(r.get("ratio_to_supervised")), "head")]
        for p in st["eff_s_points"]:
            k = f"{p:g}"
            v = r["rejection"].get(k)
            if (not v or v.get("value") is None) and r.get("rejection_lower_bound", {}).get(k):
                row.append(f'&gt; {r["rejection_lower_bound"][k]:.3g}')
            else:
                row.append(P.fmt_pm(v))
        for p in st["eff_b_points"]:
            row.append(P.fmt_pm(r["eff_s"].get(f"{p:g}")))
        sic = P.fmt_pm(r["max_sic"])
        if r.get("max_sic_eff_s") is not None:
            sic += f' <span class="note">(ε_S={r["max_sic_eff_s"]:.2f})</span>'
        row += [sic, str(r["n_sig"]), str(r["n_bkg"]), _flags(r["flags"])]
        rows.append(row)
    return rows


def _metrics(m: dict) -> str:
    st = m["settings"]
    head = ["method", "signal", "AUC"]
    ev_head = head + ["supervised AUC", "AUC / supervised"]
    tail = [f"1/ε_B @ ε_S={p:g}" for p in st["eff_s_points"]] + [f"ε_S @ ε_B={p:g}" for p in st["eff_b_points"]] + \
        ["max SIC", "n_S", "n_B", "flags"]
    out = ['<section id="metrics"><h2>Metrics</h2>',
           '<p class="note">Event level. Uncertainties: half the central 68% interval of the bootstrap replicas. '
           'The highlighted column is the headline: unsupervised AUC divided by the supervised reference AUC on the '
           'same signal. “—” marks an undefined value (see flags).</p>',
           _table(ev_head + tail, _metric_rows(m, "event"))]
    jet = _metric_rows(m, "jet")
    if jet:
        out.append('<h3>Jet level</h3><p class="note">Background jets against the signal datasets\' dark jets '
                   '(<code>is_dark</code> truth; all jets where the dataset has none).</p>')
        out.append(_table(head + tail, jet))
    out.append("</section>")
    return "\n".join(out)


def _thin(c):
    n = len(c.eff_s)
    if n <= _MAX_CURVE_POINTS:
        return c.eff_s, c.eff_b
    idx = np.unique(np.r_[np.linspace(0, n - 1, _MAX_CURVE_POINTS).astype(int), n - 1])
    return c.eff_s[idx], c.eff_b[idx]


def _roc(m: dict, events: pd.DataFrame | None, sup: pd.DataFrame | None) -> str:
    out = ['<section id="roc"><h2>ROC curves</h2>',
           '<p class="note">Signal efficiency against background rejection (log scale); dashed: supervised.</p>',
           '<div class="figs">']
    if events is None:
        out.append('<p class="note">no per-event table (data/events.parquet) in this evaluation.</p>')
    else:
        bkg = events[events["role"] == "background"]
        for s in m["signals"]:
            sig = events[events["name"] == s["name"]]
            if not len(sig):
                out.append(f'<p class="note">{_e(s["name"])}: no events.</p>')
                continue
            curves = {}
            for meth in m["methods"]:
                col = f"score:{meth['name']}"
                a, b = sig[col].to_numpy(), bkg[col].to_numpy()
                fa, fb = np.isfinite(a), np.isfinite(b)
                if fa.any() and fb.any():
                    curves[meth["name"] + (" (supervised)" if meth["supervised"] else "")] = _thin(roc_curve(
                        a[fa], b[fb], sig["weight"].to_numpy()[fa], bkg["weight"].to_numpy()[fb]))
            if sup is not None:
                ss = sup[sup["signal"] == s["name"]]
                if len(ss):
                    w = events.set_index(["dataset", "event_id"])["weight"]
                    ww = w.reindex(pd.MultiIndex.from_frame(ss[["dataset", "event_id"]])).to_numpy()
                    isg = (ss["role"] == "signal").to_numpy()
                    from darkshower.evaluate.supervised import NAME

                    curves[NAME] = _thin(roc_curve(ss["score"].to_numpy()[isg], ss["score"].to_numpy()[~isg],
                                                   ww[isg], ww[~isg]))
            fig, axes = P.figure()
            P.roc_plot(curves, ax=axes[0, 0], title=s["name"])
            out.append(_img(fig, f"ROC {s['name']}"))
    out.append("</div></section>")
    return "\n".join(out)


def _scores(m: dict, events: pd.DataFrame | None) -> str:
    out = ['<section id="scores"><h2>Score distributions</h2><div class="figs">']
    if events is not None:
        bkg = events[events["role"] == "background"]
        for meth in m["methods"]:
            col = f"score:{meth['name']}"
            vals = {"background": bkg[col].to_numpy()}
            wts = {"background": bkg["weight"].to_numpy()}
            for s in m["signals"][:6]:
                sig = events[events["name"] == s["name"]]
                if len(sig):
                    vals[s["name"]] = sig[col].to_numpy()
                    wts[s["name"]] = sig["weight"].to_numpy()
            fig, axes = P.figure()
            P.score_plot(vals, wts, ax=axes[0, 0], title=meth["name"])
            out.append(_img(fig, f"scores {meth['name']}"))
        if len(m["signals"]) > 6:
            out.append('<p class="note">(first six signals shown)</p>')
    out.append("</div></section>")
    return "\n".join(out)


def _grid_value(m, method, signal, key):
    r = next((r for r in m["results"] if r["method"] == method and r["signal"] == signal and r["level"] == "event"),
             None)
    if r is None:
        return None, None
    st = r["auc"] if key == "auc" else r["rejection"].get(f"{m['settings']['heatmap_eff_s']:g}")
    return (None, None) if not st else (st.get("value"), st.get("err"))


def _generalization(m: dict) -> str:
    eff = m["settings"]["heatmap_eff_s"]
    out = ['<section id="generalization"><h2>Generalization over the signal grid</h2>',
           f'<p class="note">Each model evaluated on every signal dataset; heatmaps of AUC and 1/ε_B at ε_S={eff:g} '
           'over the grid parameters read from the datasets\' manifests.</p>']
    names = [x["name"] for x in m["methods"]]
    if any(r["method"] not in names for r in m["results"]):
        names += sorted({r["method"] for r in m["results"]} - set(names))
    for g in m.get("generalization", []):
        axes, sigs = g["axes"], g["signals"]
        out.append(f"<h3>{_e(g['process'])}: {len(sigs)} signal(s); varying: {_e(', '.join(axes) or 'nothing')}</h3>")
        out.append('<div class="figs">')
        if len(axes) == 0:
            out.append('<p class="note">only one grid point: see the metrics table.</p>')
        elif len(axes) == 1:
            k = axes[0]
            xs = sorted({s[k] for s in sigs}, key=lambda v: (isinstance(v, str), v))
            order = [next(s["name"] for s in sigs if s[k] == x) for x in xs]
            for key, label in (("auc", "AUC"), ("rej", f"1/ε_B at ε_S={eff:g}")):
                series = {}
                for meth in names:
                    vals = [_grid_value(m, meth, n, key) for n in order]
                    series[meth] = ([v for v, _ in vals], [e for _, e in vals])
                fig, ax = P.figure()
                P.line_plot(xs, series, ax=ax[0, 0], xlabel=k, ylabel=label.replace("ε", r"$\varepsilon$"),
                            title=g["process"], logy=key == "rej")
                out.append(_img(fig, f"{g['process']} {label} vs {k}"))
        else:
            kx, ky = axes[0], axes[1]
            xs = sorted({s[kx] for s in sigs}, key=lambda v: (isinstance(v, str), v))
            ys = sorted({s[ky] for s in sigs}, key=lambda v: (isinstance(v, str), v))
            for meth in names:
                fig, ax = P.figure(1, 2, figsize=(10.5, 4.2))
                for a, (key, label) in zip(ax[0], (("auc", "AUC"), ("rej", f"1/ε_B at ε_S={eff:g}"))):
                    z = np.full((len(ys), len(xs)), np.nan)
                    for s in sigs:
                        if np.isnan(z[ys.index(s[ky]), xs.index(s[kx])]):
                            v, _ = _grid_value(m, meth, s["name"], key)
                            z[ys.index(s[ky]), xs.index(s[kx])] = np.nan if v is None else v
                    P.heatmap_plot(xs, ys, z, ax=a, xlabel=kx, ylabel=ky,
                                   zlabel=label.replace("ε", r"$\varepsilon$"), title=meth, log=key == "rej")
                out.append(_img(fig, f"{g['process']} heatmap {meth}"))
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _sculpting(m: dict) -> str:
    effs = m["settings"]["sculpt_effs"]
    out = ['<section id="sculpting"><h2>Mass sculpting</h2>',
           '<p class="note">Jensen-Shannon divergence (bits: 0 identical, 1 disjoint) between the background '
           'leading-jet-mass / MT distributions before and after a score cut at background efficiency ε_B; in '
           'brackets the mean JSD of random subsets of the same size (statistical floor) and their 95th '
           'percentile; a cut above the 95th percentile sculpts more than chance.</p>']
    header = ["method"] + [f"JSD m_j1 @ ε_B={e:g}" for e in effs] + [f"JSD MT @ ε_B={e:g}" for e in effs]
    rows, figs = [], []
    for meth, sc in m.get("sculpting", {}).items():
        row = [_e(meth)]
        for var in ("lead_jet_mass", "mt"):
            for e in effs:
                c = sc.get(var, {}).get("cuts", {}).get(f"{e:g}", {})
                j, jr, jq = c.get("jsd"), c.get("jsd_random"), c.get("jsd_random_q95")
                row.append("—" if j is None else f"{j:.3f} ({_fmt(jr)}; 95 %: {_fmt(jq)})")
        rows.append(row)
        fig, ax = P.figure(1, 2, figsize=(10.5, 4.0))
        P.sculpting_plot(sc["lead_jet_mass"], ax=ax[0, 0], xlabel="leading jet mass [GeV]", title=meth)
        P.sculpting_plot(sc["mt"], ax=ax[0, 1], xlabel=r"$M_T$ [GeV]", title=meth)
        figs.append(_img(fig, f"sculpting {meth}"))
    out.append(_table(header, rows, left=1))
    out.append('<div class="figs">' + "".join(figs) + "</div>")
    out.append(_decorrelation(m))
    out.append("</section>")
    return "\n".join(out)


def _decorrelation(m: dict) -> str:
    """Raw vs decorrelated scores side by side (metrics.json ``decorrelation``), empty when none."""
    rows_in = m.get("decorrelation") or []
    if not rows_in:
        return ""
    effs = [f"{e:g}" for e in m["settings"]["sculpt_effs"] if e <= 0.1] or [f"{e:g}" for e in m["settings"]["sculpt_effs"]]
    header = ["method", "signal", "AUC raw", "AUC decor", "1/ε_B raw", "1/ε_B decor"]
    for label in ("m_j1", "MT"):
        header += [f"JSD {label} @ ε_B={e}: raw / decor (random)" for e in effs]
    rows = []
    for r in rows_in:
        row = [_e(r["method"]), _e(r["signal"]), _fmt(r.get("auc")), _fmt(r.get("auc_decor")),
               _fmt(r.get("rejection")), _fmt(r.get("rejection_decor"))]
        for var in ("lead_jet_mass", "mt"):
            for e in effs:
                c = (r.get("sculpting") or {}).get(var, {}).get(e) or {}
                row.append(f"{_fmt(c.get('jsd'))} / {_fmt(c.get('jsd_decor'))} ({_fmt(c.get('jsd_random'))}; "
                           f"95 %: {_fmt(c.get('jsd_random_q95'))})")
        rows.append(row)
    eff_s = rows_in[0].get("eff_s")
    return ("<h3>Decorrelated scores</h3><p class=\"note\">Each score next to its decorrelated version "
            "(<code>score_decor</code>: the conditional background efficiency in bins of jet pT and mass, "
            "see docs/evaluation.md): event-level AUC, 1/ε_B at ε_S = " + _fmt(eff_s) + ", and the sculpting JSD "
            "with, in brackets, the random-subset level of the decorrelated cut (mean; 95th percentile).</p>" + _table(header, rows))


def _supervised(m: dict) -> str:
    out = ['<section id="supervised"><h2>Supervised reference</h2>']
    ref = m["settings"].get("supervised_reference")
    if not ref:
        out.append('<p class="note">no supervised reference in this evaluation (evaluate with the built-in BDT or '
                   'give --supervised-scores).</p>')
    else:
        out.append(f'<p class="note">Reference: <b>{_e(ref)}</b>. The built-in reference is a '
                   'HistGradientBoostingClassifier on event and leading-jet observables, trained with labels on a '
                   'random half of the events and evaluated on the other half.</p>')
        rows = [[_e(s), str(i["n_train"]), str(i["n_test_bkg"]), str(i["n_test_sig"]), _e(", ".join(i["features"]))]
                for s, i in m.get("supervised", {}).items()]
        if rows:
            out.append(_table(["signal", "n train", "n test bkg", "n test sig", "features"], rows, left=5))
    out.append("</section>")
    return "\n".join(out)


def _search(search: dict | None, directory: Path) -> str:
    out = ['<section id="search"><h2>Search (bump hunt in MT)</h2>']
    if not search or not search.get("searches"):
        out.append(f'<p class="note">No search in this evaluation. Run <code>darkshower search --scores S.parquet '
                   f'--background DS --signal DS --out {_e(directory)}</code> and re-render.</p></section>')
        return "\n".join(out)
    s0 = search["searches"][0].get("settings", search.get("settings", {}))
    out.append(f'<p class="note">Background: dijet function fit (binned Poisson likelihood, {s0.get("n_params")} '
               f'parameters); signal: {_e(s0.get("signal_shape"))}; luminosity {s0.get("lumi_fb")} fb⁻¹; pseudo-data: '
               f'{_e(s0.get("pseudo_data"))} ({_e(s0.get("background_shape"))} background); injected signal strength '
               f'μ = {s0.get("mu_injected")}. Z: local significance √q0; limits: asymptotic CLs {s0.get("cl")}, '
               'on μ (and on σ where the reference cross-section is known).</p>')
    for w in search.get("warnings", []):
        out.append(f'<p class="warn">⚠ {_e(w)}</p>')
    for n in search.get("notes", []):
        out.append(f'<p class="note">{_e(n)}</p>')
    header = ["method", "signal", "cut ε_B", "ε_B", "ε_S", "B", "S inj.", "Z", "μ̂", "exp. limit μ [−1σ, +1σ]",
              "obs. limit μ", "exp. limit σ [pb]", "flags"]
    rows: list[list[Cell]] = []
    figs = []
    for s in search["searches"]:
        for lv in s.get("levels", []):
            el = lv.get("expected_limit")
            exp = "—" if not el else f'{el["median"]:.3g} [{el["minus1"]:.3g}, {el["plus1"]:.3g}]'
            xs = lv.get("expected_limit_xsec_pb")
            rows.append([_e(s["method"]), _e(s["signal"]), _e(lv["cut"]), _fmt(lv.get("bkg_eff")), _fmt(lv.get("sig_eff")),
                         _fmt(lv.get("bkg_expected")), _fmt(lv.get("sig_injected")),
                         (_fmt(lv.get("z")), "head"), _fmt(lv.get("mu_hat")), exp, _fmt(lv.get("observed_limit")),
                         "—" if not xs else _fmt(xs["median"]), _flags(s.get("flags", []) + lv.get("flags", []))])
        if not s.get("levels"):
            rows.append([_e(s["method"]), _e(s["signal"])] + ["—"] * 10 + [_flags(s.get("flags", []))])
            continue
        figs.append(_img(P.search_figure(s), f"search {s['method']} {s['signal']}"))
    out.append(_table(header, rows, left=3))
    out.append('<div class="figs">' + "".join(figs) + "</div></section>")
    return "\n".join(out)


def render(directory, metrics: dict, events=None, sup=None, search=None) -> str:
    """The HTML text of the report."""
    directory = Path(directory)
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>darkshower evaluation — {_e(directory.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>darkshower evaluation</h1><p class=\"note\">{_e(directory.resolve())} — darkshower {__version__}</p>",
        f"<nav>{nav}</nav>",
        _summary(metrics, search), _metrics(metrics), _roc(metrics, events, sup), _scores(metrics, events),
        _generalization(metrics), _sculpting(metrics), _supervised(metrics), _search(search, directory),
        '<footer><p class="note" id="image-check">(figure check runs on load)</p></footer>',
        f"<script>{_CHECK_JS}</script></body></html>",
    ]
    return "\n".join(parts)


_REQUIRED_KEYS = ("settings", "methods", "background", "signals", "results")


def _run_evaluate_first(directory: Path, problem: str) -> EvaluationError:
    """The error for a directory that holds no (complete) evaluation: what to run instead."""
    from darkshower.evaluate.scores import is_score_file

    found = sorted(p.name for p in directory.glob("*.parquet") if is_score_file(p)) if directory.is_dir() else []
    hint = f" (score files here: {', '.join(found)}: pass them to --scores)" if found else ""
    return EvaluationError(
        f"{directory}: {problem}; report only renders an evaluation: run `darkshower evaluate --scores S.parquet... "
        f"--background DS... --signal DS... --out {directory}` first{hint}"
    )


def _read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise EvaluationError(f"{path}: cannot read ({type(exc).__name__}: {exc}); rerun `darkshower evaluate` "
                              f"into {path.parent.parent}") from None


def load_evaluation(directory) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None, dict | None]:
    """(metrics, events table, supervised table, search results) of an evaluation directory.

    Raises :class:`~darkshower.errors.EvaluationError` telling the user to run ``darkshower
    evaluate`` when DIR holds no (readable) evaluation; the optional parts may be None.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise _run_evaluate_first(directory, "not a directory" if directory.exists() else "no such directory")
    mpath = directory / eio.METRICS
    if not mpath.exists():
        raise _run_evaluate_first(directory, f"no {eio.METRICS}")
    metrics = eio.load_json(mpath)
    if not isinstance(metrics, dict) or metrics.get("format") != eio.FORMAT:
        fmt = metrics.get("format") if isinstance(metrics, dict) else None
        raise _run_evaluate_first(directory, f"{eio.METRICS} is not a darkshower evaluation (format {fmt!r})")
    major = str(metrics.get("schema_version", "0")).split(".")[0]
    if major != eio.SCHEMA_VERSION.split(".")[0]:
        raise _run_evaluate_first(directory, f"{eio.METRICS} has schema_version {metrics.get('schema_version')!r}, "
                                             f"this darkshower renders {eio.SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED_KEYS if k not in metrics]
    if missing:
        raise _run_evaluate_first(directory, f"{eio.METRICS} misses {missing}")
    events = _read_parquet(directory / eio.DATA_DIR / eio.EVENTS)
    sup = _read_parquet(directory / eio.DATA_DIR / eio.SUPERVISED)
    srch = directory / "search" / "search.json"
    search = eio.load_json(srch) if srch.exists() else None
    return metrics, events, sup, search


def report(directory) -> Path:
    """Write ``DIR/report.html`` from what ``evaluate`` (and ``search``) wrote into DIR.

    Only renders: a directory without ``metrics.json`` raises an
    :class:`~darkshower.errors.EvaluationError` telling to run ``darkshower evaluate ... --out DIR``
    first. ``DIR`` may also be given as the path of its ``metrics.json``.
    """
    directory = Path(directory)
    if directory.name == eio.METRICS and directory.is_file():
        directory = directory.parent
    metrics, events, sup, search = load_evaluation(directory)
    text = render(directory, metrics, events, sup, search)
    out = directory / eio.REPORT
    from darkshower.data.dataset import atomic_write_text

    atomic_write_text(out, text)
    log.info("report written to %s", out)
    return out
