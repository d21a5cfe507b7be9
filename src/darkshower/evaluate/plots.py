"""Figures of the evaluation (matplotlib + mplhep CMS style, no pyplot state).

Each ``*_plot`` function draws on ``ax`` (a new figure when None) and returns the drawn
artists; ``figure()`` makes a styled Figure; ``to_png_bytes`` renders one for the report.
ROC curves follow the CMS convention: signal efficiency on x, background rejection 1/ε_B on
a logarithmic y axis.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

_RC = {
    "font.size": 11, "xtick.major.size": 6, "xtick.minor.size": 3, "ytick.major.size": 6, "ytick.minor.size": 3,
    "axes.linewidth": 1.2, "legend.fontsize": "small", "figure.dpi": 80, "mathtext.fontset": "dejavusans",
}


@contextlib.contextmanager
def style():
    """mplhep's CMS style with sizes suited to report thumbnails."""
    import matplotlib
    import mplhep

    with matplotlib.rc_context():
        matplotlib.style.use(mplhep.style.CMS)
        matplotlib.rcParams.update(_RC)
        yield


def figure(nrows: int = 1, ncols: int = 1, figsize=(5.5, 4.5), **kw):
    """A styled Figure (not registered with pyplot) and its axes."""
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _ax(ax, figsize=(5.5, 4.5)):
    if ax is None:
        _, axes = figure(figsize=figsize)
        return axes[0, 0]
    return ax


def to_png_bytes(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _label(ax, text="darkshower simulation"):
    return ax.text(0.0, 1.01, text, transform=ax.transAxes, ha="left", va="bottom", fontsize="small",
                   style="italic")


def roc_plot(curves: dict, ax=None, title: str | None = None):
    """ROC curves ``{label: (eff_s, eff_b)}``: ε_S on x, 1/ε_B (log) on y; random guessing dashed."""
    with style():
        ax = _ax(ax)
        arts = []
        ymax = 10.0
        for label, (es, eb) in curves.items():
            es, eb = np.asarray(es), np.asarray(eb)
            ok = (eb > 0) & (es > 0)
            ls = "--" if "supervised" in label.lower() else "-"
            arts += ax.plot(es[ok], 1.0 / eb[ok], ls=ls, lw=1.6, label=label)
            if ok.any():
                ymax = max(ymax, float(np.max(1.0 / eb[ok])))
        x = np.linspace(1e-3, 1, 200)
        arts += ax.plot(x, 1 / x, ":", color="grey", lw=1, label="random")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_ylim(1, ymax * 2)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        ax.legend(loc="upper right")
        _label(ax, title or "darkshower simulation")
    return arts


def score_plot(scores: dict, weights: dict | None = None, ax=None, title: str | None = None, bins: int = 40):
    """Normalized score distributions ``{label: scores}`` (log y)."""
    with style():
        ax = _ax(ax)
        allv = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in scores.values() if len(v)] or [np.zeros(1)])
        lo, hi = np.quantile(allv, [0.001, 0.999]) if len(allv) else (0, 1)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        arts = []
        for label, v in scores.items():
            v = np.asarray(v, float)
            w = None if weights is None or label not in weights else np.asarray(weights[label], float)
            ok = np.isfinite(v)
            if not ok.any():
                continue
            h, _ = np.histogram(np.clip(v[ok], lo, hi), edges, weights=None if w is None else w[ok])
            if h.sum() > 0:
                h = h / h.sum() / np.diff(edges)
            arts.append(ax.stairs(h, edges, lw=1.5, label=label, fill=label.startswith("background"),
                                  alpha=0.35 if label.startswith("background") else 1.0))
        ax.set_yscale("log")
        ax.set_xlabel("anomaly score")
        ax.set_ylabel("normalized")
        ax.legend(loc="upper right")
        _label(ax, title or "darkshower simulation")
    return arts


def heatmap_plot(xvals, yvals, z, ax=None, xlabel="", ylabel="", zlabel="", title=None, fmt="{:.3g}", log=False):
    """Heatmap of ``z[iy, ix]`` over categorical grid values, each cell annotated."""
    from matplotlib.colors import LogNorm

    with style():
        ax = _ax(ax)
        z = np.asarray(z, float)
        finite = z[np.isfinite(z)]
        norm = None
        if log and len(finite) and finite.min() > 0:
            norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01))
        im = ax.imshow(np.ma.masked_invalid(z), origin="lower", aspect="auto", cmap="viridis", norm=norm)
        ax.set_xticks(range(len(xvals)), [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in xvals])
        ax.set_yticks(range(len(yvals)), [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in yvals])
        ax.minorticks_off()
        ax.tick_params(top=False, right=False)
        for iy in range(z.shape[0]):
            for ix in range(z.shape[1]):
                if np.isfinite(z[iy, ix]):
                    ax.text(ix, iy, fmt.format(z[iy, ix]), ha="center", va="center", color="white", fontsize="small",
                            fontweight="bold")
        cb = ax.figure.colorbar(im, ax=ax)
        cb.set_label(zlabel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _label(ax, title or "darkshower simulation")
    return [im, cb]


def line_plot(xvals, series: dict, ax=None, xlabel="", ylabel="", title=None, logy=False):
    """One-parameter scan: ``series = {label: (values, errors or None)}`` against ``xvals``."""
    with style():
        ax = _ax(ax)
        arts = []
        numeric = all(isinstance(v, (int, float)) for v in xvals)
        xs = np.asarray(xvals, float) if numeric else np.arange(len(xvals))
        for label, (vals, errs) in series.items():
            vals = np.asarray([np.nan if v is None else v for v in vals], float)
            e = None if errs is None else np.asarray([np.nan if v is None else v for v in errs], float)
            arts.append(ax.errorbar(xs, vals, yerr=e, marker="o", capsize=3, label=label,
                                    ls="--" if "supervised" in label.lower() else "-"))
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in xvals])
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
        _label(ax, title or "darkshower simulation")
    return arts


def sculpting_plot(entry: dict, ax=None, xlabel="", title=None):
    """Background distribution before and after the cuts of one sculpting entry (normalized)."""
    with style():
        ax = _ax(ax)
        edges = np.asarray(entry["edges"])
        width = np.diff(edges)
        arts = []
        before = np.asarray(entry["before"], float)
        if before.sum() > 0:
            arts.append(ax.stairs(before / before.sum() / width, edges, fill=True, alpha=0.3, color="grey",
                                  label="no cut"))
        for eff, c in entry["cuts"].items():
            after = np.asarray(c["after"], float)
            if after.sum() <= 0:
                continue
            jsd = c.get("jsd")
            lab = rf"$\varepsilon_B$={float(eff):g}" + ("" if jsd is None else f", JSD={jsd:.3f}")
            arts.append(ax.stairs(after / after.sum() / width, edges, lw=1.5, label=lab))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("normalized")
        ax.legend(loc="upper right")
        _label(ax, title or "background")
    return arts


def search_figure(search: dict):
    """Data, background-only and signal+background fits and pulls for each cut of one search."""
    levels = [lv for lv in search["levels"] if lv.get("data") is not None and lv.get("b_only")]
    ncol = max(1, len(levels))
    fig, axes = figure(2, ncol, figsize=(4.6 * ncol, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    with style():
        if not levels:
            axes[0, 0].text(0.5, 0.5, "no fit (see flags)", ha="center", transform=axes[0, 0].transAxes)
        for i, lv in enumerate(levels):
            ax, axp = axes[0, i], axes[1, i]
            e = np.asarray(lv["edges"])
            c = 0.5 * (e[1:] + e[:-1])
            n = np.asarray(lv["data"], float)
            b = np.asarray(lv["b_only"]["expected"], float)
            sb = np.asarray(lv["s_plus_b"]["expected"], float)
            sig = np.asarray(lv.get("signal_template", np.zeros_like(n)), float) * search.get("settings", {}).get("mu_injected", 1.0)
            ax.errorbar(c, n, yerr=np.sqrt(np.maximum(n, 0)), fmt="o", color="k", ms=3, label="pseudo-data")
            ax.stairs(b, e, color="C0", lw=1.5, label="background fit")
            ax.stairs(sb, e, color="C2", lw=1.2, ls="--", label=rf"s+b fit ($\hat\mu$={lv['mu_hat']:.2g})")
            if sig.sum() > 0:
                ax.stairs(sig, e, color="C3", lw=1.2, label="injected signal")
            ax.set_yscale("log")
            pos = n[n > 0]
            ax.set_ylim(max(0.3, (pos.min() if len(pos) else 1) * 0.3), max(n.max(), b.max(), 1) * 5)
            cut = "no cut" if lv["cut"] == "none" else rf"$\varepsilon_B$ = {lv['cut']}"
            ax.set_title(f"{cut}: Z = {lv['z']:.2f}", fontsize="medium")
            ax.set_ylabel("events / bin")
            ax.legend(loc="upper right", fontsize="x-small")
            with np.errstate(divide="ignore", invalid="ignore"):
                pull = np.where(b > 0, (n - b) / np.sqrt(b), 0.0)
            axp.bar(c, pull, width=np.diff(e), color="grey")
            axp.axhline(0, color="k", lw=0.8)
            lim = max(3.0, float(np.nanmax(np.abs(pull))) * 1.1 if len(pull) else 3.0)
            axp.set_ylim(-lim, lim)
            axp.set_ylabel("pull")
            axp.set_xlabel(r"$M_T$ [GeV]")
        fig.suptitle(f"{search['method']} on {search['signal']}", fontsize="medium")
    return fig


def fmt_pm(st: dict | None, digits: int = 3) -> str:
    """'v ± e' of a metric dict (value/err), '—' when undefined."""
    if not st or st.get("value") is None:
        return "—"
    v, e = st["value"], st.get("err")
    if e is None or not math.isfinite(e):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g} ± {e:.2g}"
