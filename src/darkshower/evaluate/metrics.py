"""Classifier metrics of anomaly scores: ROC, AUC, rejection, efficiency, SIC, with bootstrap errors.

Conventions (see docs/evaluation.md):

- A higher score is more anomalous; an event *passes* a threshold t when ``score >= t``.
- ε_S / ε_B are the weighted fractions of signal / background events that pass. Ties are
  one ROC point (trapezoidal AUC = probability that signal scores higher, ties counting 1/2).
- ``1/ε_B at ε_S = x`` and ``ε_S at ε_B = y`` interpolate the ROC linearly between its points.
- SIC = ε_S / sqrt(ε_B). Its maximum is taken only over thresholds where at least ``min_bkg``
  *effective* background events pass (n_eff = (Σw)² / Σw²): with fewer, ε_B is dominated by
  fluctuations and the SIC diverges as ε_B → 0.
- Uncertainties: Poisson bootstrap (each event gets a Poisson(1) multiplicity in each replica,
  signal and background independently). ``err`` is half the central 68% interval of the
  replicas; ``ci68`` and ``ci95`` are percentile intervals.

Everything is vectorized: the events are sorted once and all thresholds and all bootstrap
replicas are handled with cumulative sums on (replicas × events) arrays, in batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from darkshower.errors import EvaluationError

log = logging.getLogger(__name__)

EFF_S_POINTS = (0.1, 0.3, 0.5)
EFF_B_POINTS = (1e-2, 1e-3)
MIN_BKG = 10.0
#: bootstrap replicas × events handled at once (memory ~ 3 × 8 bytes × this)
_BATCH_CELLS = 4_000_000


@dataclass
class Curve:
    """A ROC curve: ``eff_s[k]``, ``eff_b[k]`` pass ``score >= thresholds[k]`` (point 0 is (0, 0))."""

    eff_s: np.ndarray
    eff_b: np.ndarray
    thresholds: np.ndarray
    n_eff_b: np.ndarray  # effective number of background events passing each threshold

    @property
    def rejection(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 1.0 / self.eff_b


def _as_1d(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def _prepare(score_sig, score_bkg, weight_sig=None, weight_bkg=None):
    s = _as_1d(score_sig)
    b = _as_1d(score_bkg)
    ws = np.ones_like(s) if weight_sig is None else _as_1d(weight_sig)
    wb = np.ones_like(b) if weight_bkg is None else _as_1d(weight_bkg)
    if ws.shape != s.shape or wb.shape != b.shape:
        raise ValueError("scores and weights must have the same length")
    n_nan = int(np.isnan(s).sum()), int(np.isnan(b).sum())
    if any(n_nan):
        # a NaN has no rank: sorted as it comes, it would put unscored signal above unscored background
        raise EvaluationError(f"{n_nan[0]} signal and {n_nan[1]} background scores are NaN (unscored samples); "
                              "drop them first (darkshower evaluate counts them as unscored)")
    scores = np.concatenate([s, b])
    is_sig = np.concatenate([np.ones(len(s), bool), np.zeros(len(b), bool)])
    w = np.concatenate([ws, wb])
    order = np.argsort(-scores, kind="mergesort")
    ss = scores[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), len(ss) - 1] if len(ss) else np.zeros(0, np.int64)
    return ss[last], last, is_sig[order], w[order]


def _cum(wmat: np.ndarray, mask: np.ndarray, last: np.ndarray):
    """Cumulative (Σw, Σw²) of the masked columns at the group ends; a leading zero column."""
    m = np.where(mask, wmat, 0.0)
    c1 = np.cumsum(m, axis=-1)[..., last]
    c2 = np.cumsum(m * m, axis=-1)[..., last]
    z = np.zeros(c1.shape[:-1] + (1,))
    return np.concatenate([z, c1], axis=-1), np.concatenate([z, c2], axis=-1)


def _rates(ws_cum, wb_cum, wb2_cum):
    tot_s = ws_cum[..., -1:]
    tot_b = wb_cum[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(tot_s > 0, ws_cum / tot_s, np.nan)
        fpr = np.where(tot_b > 0, wb_cum / tot_b, np.nan)
        neff = np.where(wb2_cum > 0, wb_cum**2 / wb2_cum, 0.0)
    return tpr, fpr, neff


def roc_curve(score_sig, score_bkg, weight_sig=None, weight_bkg=None) -> Curve:
    """Weighted ROC curve (one point per distinct score value, plus the origin)."""
    thr, last, is_sig, w = _prepare(score_sig, score_bkg, weight_sig, weight_bkg)
    ws, ws2 = _cum(w, is_sig, last)
    wb, wb2 = _cum(w, ~is_sig, last)
    tpr, fpr, neff = _rates(ws, wb, wb2)
    return Curve(tpr, fpr, np.r_[np.inf, thr], neff)


def _auc_rows(tpr: np.ndarray, fpr: np.ndarray) -> np.ndarray:
    return np.sum(np.diff(fpr, axis=-1) * (tpr[..., 1:] + tpr[..., :-1]) * 0.5, axis=-1)


def auc(score_sig, score_bkg, weight_sig=None, weight_bkg=None) -> float:
    """Area under the ROC curve (= P(score_S > score_B) + P(equal)/2, weighted)."""
    c = roc_curve(score_sig, score_bkg, weight_sig, weight_bkg)
    return float(_auc_rows(c.eff_s, c.eff_b))


def _interp_rows(x: np.ndarray, y: np.ndarray, x0: float) -> np.ndarray:
    """For each row of monotone ``x`` in [0, 1] (starting at 0): ``y`` at the first crossing of ``x0``.

    Linear interpolation between the last point with x < x0 and the first with x >= x0; NaN
    where a row never reaches x0. Vectorized over rows (row offsets make one sorted array).
    """
    x = np.atleast_2d(x)
    y = np.atleast_2d(y)
    nrow, k = x.shape
    off = 2.0 * np.arange(nrow)[:, None]
    flat = np.nan_to_num(x, nan=-1.0) + off  # NaN rows never cross
    idx = np.searchsorted(flat.ravel(), x0 + off.ravel()) - np.arange(nrow) * k
    ok = (idx >= 1) & (idx < k)
    i1 = np.clip(idx, 1, k - 1)
    r = np.arange(nrow)
    xa, xb = x[r, i1 - 1], x[r, i1]
    ya, yb = y[r, i1 - 1], y[r, i1]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(xb > xa, (x0 - xa) / (xb - xa), 1.0)
    out = ya + frac * (yb - ya)
    return np.where(ok, out, np.nan)


def eff_b_at_eff_s(curve: Curve, eff_s: float) -> float:
    """Background efficiency at signal efficiency ``eff_s`` (1/ε_B is the rejection)."""
    return float(_interp_rows(curve.eff_s, curve.eff_b, eff_s)[0])


def eff_s_at_eff_b(curve: Curve, eff_b: float) -> float:
    """Signal efficiency at background efficiency ``eff_b``."""
    return float(_interp_rows(curve.eff_b, curve.eff_s, eff_b)[0])


def _max_sic_rows(tpr, fpr, neff, min_bkg):
    with np.errstate(invalid="ignore", divide="ignore"):
        sic = np.where((neff >= min_bkg) & (fpr > 0), tpr / np.sqrt(fpr), -np.inf)
    k = np.argmax(sic, axis=-1)
    r = np.arange(sic.shape[0])
    best = sic[r, k]
    return np.where(np.isfinite(best), best, np.nan), k


def max_sic(curve: Curve, min_bkg: float = MIN_BKG) -> tuple[float, float, float]:
    """(max SIC, ε_S, ε_B there), over thresholds with >= ``min_bkg`` effective background events."""
    best, k = _max_sic_rows(curve.eff_s[None], curve.eff_b[None], curve.n_eff_b[None], min_bkg)
    if not np.isfinite(best[0]):
        return float("nan"), float("nan"), float("nan")
    return float(best[0]), float(curve.eff_s[k[0]]), float(curve.eff_b[k[0]])


def _stats(nominal: float, reps: np.ndarray) -> dict:
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(nominal):
        return {"value": None, "err": None, "ci68": None, "ci95": None}
    if len(reps) < 2:
        return {"value": float(nominal), "err": None, "ci68": None, "ci95": None}
    q = np.quantile(reps, [0.025, 0.16, 0.84, 0.975])
    return {
        "value": float(nominal),
        "err": float(0.5 * (q[2] - q[1])),
        "ci68": [float(q[1]), float(q[2])],
        "ci95": [float(q[0]), float(q[3])],
    }


def _inverse_stats(st: dict) -> dict:
    """Statistics of 1/x from those of x (monotone: intervals map to intervals)."""

    def inv(v):
        return None if v is None or v <= 0 else 1.0 / v

    out = {"value": inv(st["value"])}
    for key in ("ci68", "ci95"):
        out[key] = None if st[key] is None else [inv(st[key][1]), inv(st[key][0])]
    lo_hi = out["ci68"]
    out["err"] = (
        None if lo_hi is None or lo_hi[0] is None or lo_hi[1] is None else 0.5 * (lo_hi[1] - lo_hi[0])
    )
    return out


def _key(x: float) -> str:
    return f"{x:g}"


def binary_metrics(
    score_sig,
    score_bkg,
    weight_sig=None,
    weight_bkg=None,
    *,
    n_bootstrap: int = 200,
    seed: int | np.random.Generator | None = 0,
    eff_s_points=EFF_S_POINTS,
    eff_b_points=EFF_B_POINTS,
    min_bkg: float = MIN_BKG,
) -> dict:
    """All metrics of one signal/background comparison, with bootstrap uncertainties.

    Returns a JSON-ready dict: ``auc``, ``rejection`` (1/ε_B at each ε_S point), ``eff_b``,
    ``eff_s`` (at each ε_B point), ``max_sic`` (+ ``max_sic_eff_s``, ``max_sic_eff_b``), event
    counts, and ``flags`` (a list of strings: ``degenerate_scores``, ``empty_signal``,
    ``empty_background``, ``nonfinite_scores_dropped``, ``low_bkg_stats@eff_s=...``,
    ``no_bkg_passes@eff_s=...`` (then ``rejection`` holds no value and ``rejection_lower_bound``
    the bound N_eff,B), ``too_few_bkg@eff_b=...``, ``no_sic_point``). Each metric is
    ``{"value", "err", "ci68", "ci95"}`` (None where undefined).
    """
    s = _as_1d(score_sig)
    b = _as_1d(score_bkg)
    ws = np.ones_like(s) if weight_sig is None else _as_1d(weight_sig)
    wb = np.ones_like(b) if weight_bkg is None else _as_1d(weight_bkg)
    if (ws < 0).any() or (wb < 0).any():
        raise EvaluationError("negative event weights: the ROC metrics need non-negative weights")
    flags: list[str] = []
    fs, fb = np.isfinite(s), np.isfinite(b)
    if not (fs.all() and fb.all()):
        flags.append("nonfinite_scores_dropped")
        s, ws, b, wb = s[fs], ws[fs], b[fb], wb[fb]
    out: dict = {
        "n_sig": int(len(s)),
        "n_bkg": int(len(b)),
        "n_eff_bkg": float(wb.sum() ** 2 / (wb**2).sum()) if len(b) and (wb**2).sum() > 0 else 0.0,
        "n_eff_sig": float(ws.sum() ** 2 / (ws**2).sum()) if len(s) and (ws**2).sum() > 0 else 0.0,
    }
    empty = {"value": None, "err": None, "ci68": None, "ci95": None}
    out.update(
        auc=dict(empty),
        rejection={_key(p): dict(empty) for p in eff_s_points},
        eff_b={_key(p): dict(empty) for p in eff_s_points},
        eff_s={_key(p): dict(empty) for p in eff_b_points},
        max_sic=dict(empty),
        max_sic_eff_s=None,
        max_sic_eff_b=None,
        flags=flags,
    )
    if not len(s) or ws.sum() <= 0:
        flags.append("empty_signal")
        return out
    if not len(b) or wb.sum() <= 0:
        flags.append("empty_background")
        return out
    allsc = np.concatenate([s, b])
    if allsc.min() == allsc.max():
        flags.append("degenerate_scores")
        log.warning("all scores are equal (%g): AUC 0.5 by construction, other metrics undefined", allsc[0])
        out["auc"] = {"value": 0.5, "err": 0.0, "ci68": [0.5, 0.5], "ci95": [0.5, 0.5]}
        return out

    thr, last, is_sig, w = _prepare(s, b, ws, wb)
    n = len(w)
    n_sig_sorted = np.flatnonzero(is_sig)
    n_bkg_sorted = np.flatnonzero(~is_sig)

    def metrics_of(wmat):
        cs, _ = _cum(wmat, is_sig, last)
        cb, cb2 = _cum(wmat, ~is_sig, last)
        tpr, fpr, neff = _rates(cs, cb, cb2)
        res = {"auc": _auc_rows(tpr, fpr)}
        for p in eff_s_points:
            res[("eb", p)] = _interp_rows(tpr, fpr, p)
        for p in eff_b_points:
            res[("es", p)] = _interp_rows(fpr, tpr, p)
        res["sic"], k = _max_sic_rows(tpr, fpr, neff, min_bkg)
        r = np.arange(tpr.shape[0])
        res["sic_es"], res["sic_eb"] = tpr[r, k], fpr[r, k]
        return res

    nominal = {k: v[0] for k, v in metrics_of(w[None, :]).items()}
    reps: dict = {k: [] for k in nominal}
    if n_bootstrap > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        batch = max(1, min(n_bootstrap, _BATCH_CELLS // max(n, 1)))
        done = 0
        while done < n_bootstrap:
            m = min(batch, n_bootstrap - done)
            mult = np.empty((m, n))
            mult[:, n_sig_sorted] = rng.poisson(1.0, (m, len(n_sig_sorted)))
            mult[:, n_bkg_sorted] = rng.poisson(1.0, (m, len(n_bkg_sorted)))
            for k, v in metrics_of(mult * w[None, :]).items():
                reps[k].append(v)
            done += m
    reps = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in reps.items()}

    out["auc"] = _stats(nominal["auc"], reps["auc"])
    n_eff_b = out["n_eff_bkg"]
    for p in eff_s_points:
        eb = _stats(nominal[("eb", p)], reps[("eb", p)])
        out["eff_b"][_key(p)] = eb
        out["rejection"][_key(p)] = _inverse_stats(eb)
        if eb["value"] is not None:
            if eb["value"] <= 0:
                flags.append(f"no_bkg_passes@eff_s={_key(p)}")
                out.setdefault("rejection_lower_bound", {})[_key(p)] = n_eff_b
            elif eb["value"] * n_eff_b < min_bkg:
                flags.append(f"low_bkg_stats@eff_s={_key(p)}")
    for p in eff_b_points:
        if p * n_eff_b < 1.0:
            flags.append(f"too_few_bkg@eff_b={_key(p)}")
            continue
        out["eff_s"][_key(p)] = _stats(nominal[("es", p)], reps[("es", p)])
        if p * n_eff_b < min_bkg:
            flags.append(f"low_bkg_stats@eff_b={_key(p)}")
    out["max_sic"] = _stats(nominal["sic"], reps["sic"])
    if out["max_sic"]["value"] is None:
        flags.append("no_sic_point")
    else:
        out["max_sic_eff_s"] = float(nominal["sic_es"])
        out["max_sic_eff_b"] = float(nominal["sic_eb"])
    return out


def threshold_at_bkg_eff(score_bkg, eff: float, weight_bkg=None) -> float:
    """Score threshold at which a weighted fraction ``eff`` of the background passes (``score >= t``).

    The smallest distinct score value whose passing fraction is still <= ``eff`` (so the
    realised background efficiency never exceeds the target; ties can make it lower).
    """
    b = _as_1d(score_bkg)
    w = np.ones_like(b) if weight_bkg is None else _as_1d(weight_bkg)
    ok = np.isfinite(b)
    b, w = b[ok], w[ok]
    if not len(b):
        return float("nan")
    order = np.argsort(-b, kind="mergesort")
    sb, sw = b[order], w[order]
    last = np.r_[np.flatnonzero(sb[1:] != sb[:-1]), len(sb) - 1]
    frac = np.cumsum(sw)[last] / sw.sum()
    k = np.searchsorted(frac, eff * (1 + 1e-12), side="right") - 1
    if k < 0:
        return float(np.inf)  # even the highest score has more than eff: nothing passes
    return float(sb[last[k]])
