"""Bump hunt in the MT spectrum: dijet-function background fit, local significance, CLs limits.

Statistical model (binned, see docs/evaluation.md):

- background ``b_i(θ) = N · g_i / Σ_j g_j`` with ``g_i = ∫_bin f(x) dx`` (3-point Gauss-Legendre
  per bin) of the standard dijet function ``f(x) = (1 − x)^p1 / x^(p2 + p3 ln x)``, ``x = MT/√s``
  (``n_params=3`` fixes p3 = 0). Parameters θ = (N, p1, p2[, p3]); N is the total background
  in the fit range (this parametrization is equivalent to the usual p0 and much better
  conditioned).
- signal ``s_i``: expected yield per bin at signal strength μ = 1 (Gaussian or template).
- likelihood: ``-ln L(μ, θ) = Σ_i [ν_i − n_i ln ν_i]``, ``ν_i = b_i(θ) + μ s_i`` (iminuit,
  errordef 0.5); μ ≥ 0.
- discovery: ``q0 = 2 [−ln L(0, θ̂̂) + ln L(μ̂, θ̂)]`` (0 if μ̂ = 0), local ``Z = √q0``.
- limits: asymptotic CLs with the q̃_μ test statistic (Cowan, Cranmer, Gross, Vitells 2011);
  expected limits from the Asimov background-only dataset (the background-only fit to the
  data), ``σ_A² = μ² / q_μ,A``, median ``μ_up = σ_A Φ⁻¹(1 − α/2)``, bands
  ``σ_A (Φ⁻¹(1 − α Φ(N)) + N)``, N = ±1, ±2.

:func:`search` applies this to datasets: signal injected at a chosen cross-section /
number of events / strength into the luminosity-weighted background, with and without
anomaly-score cuts placed at fixed background efficiencies.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from darkshower.errors import ConfigError, EvaluationError

log = logging.getLogger(__name__)

SQRT_S = 13000.0
LUMI_FB = 138.0
CUT_EFFS = (0.1, 0.01)
_GL_X = np.array([-math.sqrt(3 / 5), 0.0, math.sqrt(3 / 5)])
_GL_W = np.array([5 / 9, 8 / 9, 5 / 9])
_STARTS = ((10.0, 5.0), (5.0, 3.0), (20.0, 7.0), (2.0, 1.0))


# -- the background model ----------------------------------------------------------------------
class DijetModel:
    """Expected bin yields of the dijet function on fixed bin edges (in GeV of MT)."""

    def __init__(self, edges, sqrt_s: float = SQRT_S, n_params: int = 4):
        if n_params not in (3, 4):
            raise EvaluationError(f"n_params={n_params}: the dijet function has 3 or 4 parameters")
        e = np.asarray(edges, np.float64) / sqrt_s
        if e[0] <= 0 or e[-1] >= 1:
            raise EvaluationError(
                f"MT range [{edges[0]:g}, {edges[-1]:g}] GeV: x = MT/sqrt(s) must lie in (0, 1) (sqrt(s) = {sqrt_s:g} GeV)"
            )
        self.edges = np.asarray(edges, np.float64)
        self.sqrt_s = sqrt_s
        self.n_params = n_params
        mid, half = 0.5 * (e[1:] + e[:-1]), 0.5 * (e[1:] - e[:-1])
        x = mid[:, None] + half[:, None] * _GL_X[None, :]
        self._lnx = np.log(x)
        self._ln1mx = np.log1p(-x)
        self._w = half[:, None] * _GL_W[None, :]

    def shape(self, p1, p2, p3=0.0) -> np.ndarray:
        """Bin integrals of f normalized to sum 1."""
        lg = p1 * self._ln1mx - (p2 + p3 * self._lnx) * self._lnx
        lg = lg - lg.max()
        g = np.sum(self._w * np.exp(lg), axis=1)
        return g / g.sum()

    def expected(self, theta) -> np.ndarray:
        theta = list(theta)
        return theta[0] * self.shape(*theta[1:])

    def expected_and_jacobian(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """Expected yields and their derivatives (n_bins × n_params) with respect to θ."""
        big_n, p1, p2 = theta[0], theta[1], theta[2]
        p3 = theta[3] if self.n_params == 4 else 0.0
        lg = p1 * self._ln1mx - (p2 + p3 * self._lnx) * self._lnx
        lg = lg - lg.max()
        e = self._w * np.exp(lg)
        g = e.sum(axis=1)
        tot = g.sum()
        shape = g / tot
        jac = np.empty((len(g), self.n_params))
        jac[:, 0] = shape
        derivs = [self._ln1mx, -self._lnx] + ([-self._lnx**2] if self.n_params == 4 else [])
        for k, d in enumerate(derivs, start=1):
            dg = np.sum(e * d, axis=1)
            jac[:, k] = big_n * (dg / tot - g * dg.sum() / tot**2)
        return big_n * shape, jac


@dataclass
class Fit:
    """Result of one maximum-likelihood fit."""

    nll: float
    theta: list[float]
    errors: list[float]
    mu: float
    mu_err: float
    valid: bool
    background: np.ndarray  # fitted b_i
    signal: np.ndarray  # fitted mu * s_i

    def total(self) -> np.ndarray:
        return self.background + self.signal


def _nll(nu: np.ndarray, n: np.ndarray) -> float:
    """-ln L up to a constant, as half the Poisson deviance Σ[ν − n + n ln(n/ν)] (well scaled)."""
    if not nu.min() > 0:  # also catches NaN
        return 1e300
    nz = n > 0
    return float(np.sum(nu - n) + np.sum(n[nz] * np.log(n[nz] / nu[nz])))


def fit(counts, model: DijetModel, signal=None, mu: float | None = None, start: Fit | None = None) -> Fit:
    """Fit background (+ μ·signal) to ``counts``; ``mu`` fixes the signal strength (None: free, ≥ 0).

    With ``start`` the fit starts there (and falls back to a grid of starting points when that
    minimum is invalid); without, several starting points (p1, p2) are tried and the best
    minimum is kept. Analytic gradients.
    """
    from iminuit import Minuit

    n = np.asarray(counts, np.float64)
    s = np.zeros_like(n) if signal is None else np.asarray(signal, np.float64)
    use_sig = signal is not None and np.any(s > 0)
    total = max(float(n.sum()), 1e-3)
    npar = model.n_params

    def f(par):
        nu = model.expected(par[:npar])
        if use_sig:
            nu = nu + par[npar] * s
        return _nll(nu, n)

    def grad(par):
        nu, jac = model.expected_and_jacobian(par[:npar])
        if use_sig:
            nu = nu + par[npar] * s
        if not nu.min() > 0:
            return np.zeros(len(par))
        r = 1.0 - n / nu
        g = r @ jac
        return np.r_[g, r @ s] if use_sig else g

    names = ["N", "p1", "p2", "p3"][:npar] + (["mu"] if use_sig else [])
    s_sum = max(float(s.sum()), 1e-12)
    sigma_mu = 1.0 / math.sqrt(max(float(np.sum(s**2 / np.maximum(n, 1.0))), 1e-300)) if use_sig else 1.0
    mu_hi = max(10.0 * (total + 25.0 * math.sqrt(total) + 25.0) / s_sum, 1.0)
    grid = []
    for p1, p2 in _STARTS:
        th = [total, p1, p2] + ([0.0] if npar == 4 else [])
        if use_sig:
            th.append(0.0 if mu is None else mu)
        grid.append(th)
    first = None
    if start is not None:
        th = list(start.theta)[:npar]
        th += [0.0] * (npar - len(th))
        first = th + ([max(start.mu, 0.0) if mu is None else mu] if use_sig else [])

    def run(st):
        m = Minuit(f, np.asarray(st, np.float64), grad=grad, name=names)
        m.errordef = Minuit.LIKELIHOOD
        m.errors["N"] = math.sqrt(total) + 1.0
        m.limits["N"] = (1e-9, None)
        m.limits["p1"] = (-10.0, 200.0)
        m.limits["p2"] = (-30.0, 60.0)
        if npar == 4:
            m.limits["p3"] = (-15.0, 15.0)
        if use_sig:
            m.errors["mu"] = sigma_mu
            m.limits["mu"] = (0.0, mu_hi)
            if mu is not None:
                m.values["mu"] = mu
                m.fixed["mu"] = True
        m.strategy = 1
        try:
            m.migrad(ncall=20000)
        except (RuntimeError, ValueError):  # pragma: no cover - iminuit raises on NaN
            return None
        return m

    best = run(first) if first is not None else None
    if best is None or not best.valid:
        for st in grid:
            m = run(st)
            if m is None:
                continue
            if best is None or m.fval < best.fval - 1e-9 or (m.valid and not best.valid and m.fval < best.fval + 1e-6):
                best = m
    if best is None:
        raise EvaluationError("background fit failed from every starting point")
    vals = list(best.values)
    errs = list(best.errors)
    theta = vals[:npar]
    m_val = vals[npar] if use_sig else 0.0
    m_err = errs[npar] if use_sig else 0.0
    if use_sig and mu is not None:
        m_val, m_err = mu, 0.0
    return Fit(nll=float(best.fval), theta=[float(v) for v in theta], errors=[float(v) for v in errs[:npar]],
               mu=float(m_val), mu_err=float(m_err), valid=bool(best.valid),
               background=model.expected(theta), signal=m_val * s)


def fit_background(counts, model: DijetModel) -> Fit:
    """Background-only fit; the 4-parameter function starts from the 3-parameter solution."""
    if model.n_params == 3:
        return fit(counts, model)
    f3 = fit(counts, DijetModel(model.edges, model.sqrt_s, 3))
    f4 = fit(counts, model, start=f3)
    if not f4.valid:
        alt = fit(counts, model)
        if alt.nll < f4.nll or (alt.valid and alt.nll < f4.nll + 1e-6):
            f4 = alt
    return f4


def gaussian_signal(edges, mean: float, sigma: float, total: float) -> np.ndarray:
    """Expected yields of a Gaussian with ``total`` events (normalized inside the range)."""
    e = np.asarray(edges, np.float64)
    cdf = ndtr((e - mean) / max(sigma, 1e-9))
    p = np.diff(cdf)
    return total * p / p.sum() if p.sum() > 0 else np.zeros(len(p))


def _cls_limit_from_q(q_obs_fn, sigma_a: float, alpha: float, mu_max: float) -> float | None:
    """Observed CLs limit: root of CLs(μ) = α using q̃_μ(obs) and q_μ,A = (μ/σ_A)²."""

    def cls(mu):
        qt = max(q_obs_fn(mu), 0.0)
        qa = (mu / sigma_a) ** 2
        if qt <= qa:
            clsb = 1.0 - ndtr(math.sqrt(qt))
            clb = ndtr(math.sqrt(qa) - math.sqrt(qt))
        else:
            clsb = 1.0 - ndtr((qt + qa) / (2 * math.sqrt(qa)))
            clb = ndtr((qa - qt) / (2 * math.sqrt(qa)))
        return clsb / max(clb, 1e-300) - alpha

    lo, hi = 1e-6 * mu_max, mu_max
    try:
        if cls(lo) < 0 or cls(hi) > 0:
            return None
        return float(brentq(cls, lo, hi, xtol=1e-4 * sigma_a, rtol=1e-4, maxiter=60))
    except (ValueError, RuntimeError):  # pragma: no cover
        return None


def bump_hunt(counts, edges, signal, sqrt_s: float = SQRT_S, n_params: int = 4, cl: float = 0.95,
              limits: bool = True, observed_limit: bool = True) -> dict:
    """Local significance of ``signal`` (yields per bin at μ = 1) in ``counts``, and CLs limits on μ.

    Returns a JSON-ready dict: ``q0``, ``z`` (local significance), ``mu_hat`` (± ``mu_err``),
    the background-only and signal+background fits (``b_only``, ``s_plus_b``: parameters,
    expected yields, ``valid``), ``chi2``/``ndf`` of the background-only fit (deviance),
    ``expected_limit`` (``median``, ``minus2``, ``minus1``, ``plus1``, ``plus2``) and
    ``observed_limit`` on μ, and ``flags``.
    """
    n = np.asarray(counts, np.float64)
    s = np.asarray(signal, np.float64)
    model = DijetModel(edges, sqrt_s, n_params)
    flags: list[str] = []
    b0 = fit_background(n, model)
    sb = fit(n, model, signal=s, start=b0)
    if sb.nll > b0.nll:  # nested models: s+b can always reach the b-only minimum (mu = 0)
        sb = Fit(b0.nll, b0.theta, b0.errors, 0.0, sb.mu_err, b0.valid, b0.background, 0.0 * s)
    if not b0.valid:
        flags.append("b_only_fit_invalid")
    if not sb.valid:
        flags.append("s_plus_b_fit_invalid")
    q0 = max(0.0, 2.0 * (b0.nll - sb.nll)) if sb.mu > 0 else 0.0
    ndf = len(n) - n_params
    chi2 = 2.0 * b0.nll  # Poisson deviance of the background-only fit
    out = {
        "q0": q0,
        "z": math.sqrt(q0),
        "mu_hat": sb.mu,
        "mu_err": sb.mu_err,
        "chi2": chi2,
        "ndf": ndf,
        "n_params": n_params,
        "b_only": {"theta": b0.theta, "expected": b0.background.tolist(), "valid": b0.valid},
        "s_plus_b": {"theta": sb.theta, "mu": sb.mu, "expected": sb.total().tolist(), "valid": sb.valid},
        "expected_limit": None,
        "observed_limit": None,
        "flags": flags,
    }
    if not limits or s.sum() <= 0:
        if s.sum() <= 0:
            flags.append("no_signal_in_range")
        return out
    alpha = 1.0 - cl
    asimov = b0.background
    a0 = fit(asimov, model, start=b0)
    nll_a0 = min(a0.nll, _nll(asimov, asimov))
    sigma0 = 1.0 / math.sqrt(max(float(np.sum(s**2 / np.maximum(asimov, 1e-12))), 1e-300))

    def sigma_a(mu):
        q = 2.0 * (fit(asimov, model, signal=s, mu=mu, start=a0).nll - nll_a0)
        return mu / math.sqrt(q) if q > 1e-12 else float("inf")

    mu_up = ndtri(1 - alpha / 2) * sigma0
    sig = sigma0
    for _ in range(2):
        sig = sigma_a(mu_up)
        if not math.isfinite(sig):
            flags.append("asimov_fit_insensitive")
            return out
        mu_up = ndtri(1 - alpha / 2) * sig
    bands = {f: float(sig * (ndtri(1 - alpha * ndtr(k)) + k))
             for f, k in (("minus2", -2), ("minus1", -1), ("median", 0), ("plus1", 1), ("plus2", 2))}
    out["expected_limit"] = bands
    out["sigma_a"] = sig
    if observed_limit:
        def q_obs(mu):
            if mu <= sb.mu:
                return 0.0
            return 2.0 * (fit(n, model, signal=s, mu=mu, start=sb).nll - sb.nll)

        out["observed_limit"] = _cls_limit_from_q(q_obs, sig, alpha, mu_max=max(10 * bands["plus2"], 10 * sb.mu + 1e-9))
    return out


# -- searches on datasets ---------------------------------------------------------------------------
def weighted_quantile(values, q, weights=None):
    v = np.asarray(values, np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(v)
    v, w = v[ok], w[ok]
    if not len(v):
        return np.full(np.shape(q), np.nan)
    o = np.argsort(v)
    cw = np.cumsum(w[o])
    cw = (cw - 0.5 * w[o]) / cw[-1]
    return np.interp(q, cw, v[o])


def default_range(mt_bkg, w_bkg, mt_sig, w_sig, n_bins: int) -> tuple[float, float]:
    """From the peak of the background MT spectrum (the fit needs a falling spectrum) to the
    99.5% quantile of background and signal together."""
    lo_q, hi_q = weighted_quantile(mt_bkg, [0.005, 0.995], w_bkg)
    hi = max(hi_q, float(weighted_quantile(mt_sig, 0.995, w_sig)) if len(mt_sig) else hi_q)
    h, e = np.histogram(np.clip(mt_bkg, lo_q, hi_q), bins=max(n_bins, 10), range=(lo_q, hi_q), weights=w_bkg)
    k = int(np.argmax(h))
    return float(e[k]), float(hi)


@dataclass
class SearchInputs:
    """Per-event MT, weights, yields and scores of background and signal for one method."""

    mt_bkg: np.ndarray
    yield_bkg: np.ndarray
    score_bkg: np.ndarray
    mt_sig: np.ndarray
    yield_sig: np.ndarray  # at the reference signal strength (mu = 1)
    score_sig: np.ndarray
    xsec_ref_pb: float | None


def run_search(inp: SearchInputs, *, mu_inject: float = 1.0, cut_effs=CUT_EFFS, sqrt_s: float = SQRT_S,
               n_bins: int = 30, mt_range=None, signal_shape: str = "gauss", pseudo_data: str = "toy",
               background_shape: str = "smooth", n_params: int = 4, seed: int = 0, cl: float = 0.95,
               min_mc: int = 20) -> dict:
    """The search at each working point (no cut, then each background efficiency in ``cut_effs``)."""
    from darkshower.evaluate.metrics import threshold_at_bkg_eff

    if signal_shape not in ("gauss", "template"):
        raise EvaluationError(f"signal shape {signal_shape!r}: choose gauss or template")
    if pseudo_data not in ("toy", "asimov"):
        raise EvaluationError(f"pseudo-data {pseudo_data!r}: choose toy or asimov")
    if background_shape not in ("smooth", "mc"):
        raise EvaluationError(f"background shape {background_shape!r}: choose smooth or mc")
    if not len(inp.mt_bkg):
        raise EvaluationError("search: no background events")
    if mt_range is None:
        lo, hi = default_range(inp.mt_bkg, inp.yield_bkg, inp.mt_sig, inp.yield_sig, n_bins)
    else:
        lo, hi = map(float, mt_range)
    if not hi > lo:
        raise EvaluationError(f"MT range [{lo:g}, {hi:g}]: empty")
    edges = np.linspace(lo, hi, n_bins + 1)
    rng = np.random.default_rng(seed)
    levels = [("none", None)] + [(f"{e:g}", float(e)) for e in cut_effs]
    results = []
    for label, eff in levels:
        flags: list[str] = []
        if eff is None:
            thr = -np.inf
            pb = np.ones(len(inp.mt_bkg), bool)
            ps = np.ones(len(inp.mt_sig), bool)
        else:
            thr = threshold_at_bkg_eff(inp.score_bkg, eff, inp.yield_bkg)
            pb = inp.score_bkg >= thr
            ps = inp.score_sig >= thr
        inb = pb & (inp.mt_bkg >= lo) & (inp.mt_bkg < hi)
        ins = ps & (inp.mt_sig >= lo) & (inp.mt_sig < hi)
        b_mc, _ = np.histogram(inp.mt_bkg[inb], edges, weights=inp.yield_bkg[inb])
        b_w2, _ = np.histogram(inp.mt_bkg[inb], edges, weights=inp.yield_bkg[inb] ** 2)
        s_ref, _ = np.histogram(inp.mt_sig[ins], edges, weights=inp.yield_sig[ins])
        n_mc = int(inb.sum())
        entry = {
            "cut": label,
            "bkg_eff_target": eff,
            "threshold": None if not np.isfinite(thr) else float(thr),
            "bkg_eff": float(inp.yield_bkg[pb].sum() / inp.yield_bkg.sum()) if inp.yield_bkg.sum() > 0 else None,
            "sig_eff": float(inp.yield_sig[ps].sum() / inp.yield_sig.sum()) if inp.yield_sig.sum() > 0 else None,
            "n_bkg_mc": n_mc,
            "n_sig_mc": int(ins.sum()),
            "bkg_expected": float(b_mc.sum()),
            "sig_expected_ref": float(s_ref.sum()),
            "sig_injected": float(mu_inject * s_ref.sum()),
            "edges": edges.tolist(),
            "bkg_mc": b_mc.tolist(),
            "signal_template": s_ref.tolist(),
            "flags": flags,
        }
        results.append(entry)
        if n_mc < min_mc:
            flags.append("low_bkg_mc_stats")
            if n_mc < max(n_params + 2, 5) or b_mc.sum() <= 0:
                flags.append("skipped")
                continue
        model = DijetModel(edges, sqrt_s, n_params)
        if background_shape == "smooth":
            k = float(b_w2.sum() / b_mc.sum())  # mean weight: MC counts = b_mc / k are ~Poisson
            smooth = fit_background(b_mc / k, model)
            b_true = k * smooth.background
            if not smooth.valid:
                flags.append("smoothing_fit_invalid")
        else:
            b_true = b_mc
        expect = b_true + mu_inject * s_ref
        data = rng.poisson(expect).astype(np.float64) if pseudo_data == "toy" else expect
        ss = s_ref
        if signal_shape == "gauss" and ins.any():
            w = inp.yield_sig[ins]
            med, q16, q84 = weighted_quantile(inp.mt_sig[ins], [0.5, 0.16, 0.84], w)
            sigma = max(0.5 * (q84 - q16), 0.5 * (edges[1] - edges[0]))
            ss = gaussian_signal(edges, float(med), float(sigma), float(s_ref.sum()))
            entry["signal_gauss"] = {"mean": float(med), "sigma": float(sigma)}
        entry["signal_model"] = ss.tolist()
        entry["background_truth"] = b_true.tolist()
        entry["data"] = data.tolist()
        try:
            hunt = bump_hunt(data, edges, ss, sqrt_s, n_params, cl)
        except EvaluationError as exc:
            flags.append(f"fit_failed: {exc}")
            continue
        flags.extend(hunt.pop("flags"))
        entry.update(hunt)
        if inp.xsec_ref_pb:
            for key in ("expected_limit",):
                if entry.get(key):
                    entry[key + "_xsec_pb"] = {k: v * inp.xsec_ref_pb for k, v in entry[key].items()}
            if entry.get("observed_limit") is not None:
                entry["observed_limit_xsec_pb"] = entry["observed_limit"] * inp.xsec_ref_pb
    return {
        "edges": edges.tolist(),
        "mt_range": [lo, hi],
        "levels": results,
    }


def _finite(name: str, value, low: float, *, strict: bool = True, high: float | None = None,
            meaning: str = "") -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > low if strict else value >= low) and (high is None or value < high)
    if not ok:
        rng = (f"in ({low:g}, {high:g})" if high is not None else f"{'>' if strict else '>='} {low:g}")
        raise ConfigError(f"{name} {value!r}: must be a number {rng}" + (f" ({meaning})" if meaning else ""))


def check_search_options(*, event_score: str = "max2", xsec_pb: float | None = None, n_signal: float | None = None,
                         mu: float = 1.0, lumi_fb: float = LUMI_FB, cut_effs=CUT_EFFS, sqrt_s: float = SQRT_S,
                         n_bins: int = 30, mt_range=None, signal_shape: str = "gauss", pseudo_data: str = "toy",
                         background_shape: str = "smooth", n_params: int = 4, cl: float = 0.95) -> tuple[float, ...]:
    """Validate the options of :func:`search` before any file is read (ConfigError naming the option);
    returns the cut efficiencies as a tuple of floats."""
    from darkshower.evaluate.scores import EVENT_SCORES

    if event_score not in EVENT_SCORES:
        raise ConfigError(f"event_score (--event-score) {event_score!r}: choose one of {EVENT_SCORES}")
    if xsec_pb is not None and n_signal is not None:
        raise ConfigError("give either a signal cross-section (--xsec) or a number of signal events (--n-signal), "
                          "not both")
    if xsec_pb is not None:
        _finite("xsec_pb (--xsec)", xsec_pb, 0.0, meaning="signal cross-section after the selection, in pb")
    if n_signal is not None:
        _finite("n_signal (--n-signal)", n_signal, 0.0, meaning="signal events before the anomaly cut")
    _finite("mu (--mu)", mu, 0.0, strict=False, meaning="injected signal strength; 0 = background only")
    _finite("lumi_fb (--lumi)", lumi_fb, 0.0, meaning="integrated luminosity in fb^-1")
    _finite("sqrt_s (--sqrt-s)", sqrt_s, 0.0, meaning="centre-of-mass energy in GeV")
    _finite("cl (--cl)", cl, 0.0, high=1.0, meaning="confidence level of the limits, e.g. 0.95")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 5:
        raise ConfigError(f"n_bins (--bins) {n_bins!r}: need an integer >= 5 (MT bins)")
    if n_params not in (3, 4):
        raise ConfigError(f"n_params (--params) {n_params!r}: the dijet function has 3 or 4 parameters")
    for name, value, choices in (("signal_shape (--signal-shape)", signal_shape, ("gauss", "template")),
                                 ("pseudo_data (--pseudo-data)", pseudo_data, ("toy", "asimov")),
                                 ("background_shape (--background-shape)", background_shape, ("smooth", "mc"))):
        if value not in choices:
            raise ConfigError(f"{name} {value!r}: choose one of {choices}")
    if mt_range is not None:
        try:
            lo, hi = (float(x) for x in mt_range)
        except (TypeError, ValueError):
            raise ConfigError(f"mt_range (--mt-range) {mt_range!r}: give two numbers LO HI in GeV") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi < sqrt_s):
            raise ConfigError(f"mt_range (--mt-range) {lo:g} {hi:g}: need 0 < LO < HI < sqrt(s) = {sqrt_s:g} GeV")
    try:
        effs = tuple(float(e) for e in ([cut_effs] if isinstance(cut_effs, (int, float)) else cut_effs))
    except (TypeError, ValueError):
        raise ConfigError(f"cut_effs (--cut-eff) {cut_effs!r}: expected numbers, e.g. 0.1,0.01") from None
    if any(not 0 < e < 1 for e in effs):  # also NaN
        raise ConfigError(f"cut_effs (--cut-eff) {','.join(f'{e:g}' for e in effs)}: background efficiencies must "
                          "lie in (0, 1)")
    return effs


def _scored(sf, d, event_score: str, warnings: list[str]) -> np.ndarray | None:
    """Event scores of dataset ``d`` (NaN: no finite score); None when it has events but no jets and
    ``sf`` no scores for it (nothing could be scored)."""
    from darkshower.evaluate.scores import check_identity, has_scores, join_event_scores

    if d.n_events and not d.n_jets and not has_scores(sf, d.path):
        text = f"{d.role} dataset {d.name} ({d.path}) has {d.n_events} events but no jets: nothing to score"
        if text not in warnings:
            log.warning(text)
            warnings.append(text)
        return None
    if not d.n_events:
        return np.zeros(0)
    check_identity(sf, d.path, d.fingerprint)
    return join_event_scores(sf, d.events, d.path, event_score)


def search(scores, background, signal, out=None, *, event_score: str = "max2", xsec_pb: float | None = None,
           n_signal: float | None = None, mu: float = 1.0, lumi_fb: float = LUMI_FB, cut_effs=CUT_EFFS,
           sqrt_s: float = SQRT_S, n_bins: int = 30, mt_range=None, signal_shape: str = "gauss",
           pseudo_data: str = "toy", background_shape: str = "smooth", n_params: int = 4, seed: int = 0,
           cl: float = 0.95, plots: bool = True, decorrelated: bool = False) -> dict:
    """Bump hunts for each method of ``scores`` (paths) and each ``signal`` dataset.
    ``decorrelated``: cut on the decorrelated scores (``score_decor_*``, from ``darkshower score
    --decorrelate``; methods named ``<method> (decor)``) instead of the raw ones; a score file without
    them is an EvaluationError naming it and the fix.

    Normalization: each background event counts ``L · σ_sel · w / Σw`` expected events (σ_sel
    from the dataset manifest; datasets without a cross-section count ``w``). The signal
    reference (μ = 1) is ``n_signal`` events (before the anomaly cut), else ``L · xsec_pb``,
    else ``L · σ_sel`` of the signal manifest, spread over events by weight; ``mu`` scales the
    injected signal (0 = background only). Limits are on μ relative to that reference (and in pb
    where the reference cross-section is known). Events without a finite score are left out (as
    in :func:`~darkshower.evaluate.evaluate`; the sums Σw run over the scored events), counted in
    ``n_unscored`` and flagged ``nonfinite_scores_dropped``. Writes ``OUT/search/search.json`` and
    one PNG per (method, signal) when ``out`` is given; returns the JSON-ready dict.

    Invalid options raise :class:`~darkshower.errors.ConfigError`, inputs that do not fit
    together :class:`EvaluationError`, before anything is written.
    """
    from darkshower.evaluate.scores import decorrelated as decorrelated_view
    from darkshower.evaluate.scores import read_score_files, unchecked_warning
    from darkshower.evaluate.tables import load_dataset, short_names

    cut_effs = check_search_options(event_score=event_score, xsec_pb=xsec_pb, n_signal=n_signal, mu=mu,
                                    lumi_fb=lumi_fb, cut_effs=cut_effs, sqrt_s=sqrt_s, n_bins=n_bins,
                                    mt_range=mt_range, signal_shape=signal_shape, pseudo_data=pseudo_data,
                                    background_shape=background_shape, n_params=n_params, cl=cl)
    scores = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    background = [background] if isinstance(background, (str, os.PathLike)) else list(background)
    signal = [signal] if isinstance(signal, (str, os.PathLike)) else list(signal)
    if not scores or not background or not signal:
        raise EvaluationError("search needs score files (--scores), background datasets (--background) and signal "
                              "datasets (--signal)")
    resolved = [str(Path(p).resolve()) for p in background + signal]
    dup = sorted({p for p in resolved if resolved.count(p) > 1})
    if dup:
        raise EvaluationError(f"dataset(s) given twice (as background and/or signal): {', '.join(dup)}; a dataset "
                              "is either background or signal")
    if out is not None:
        from darkshower.evaluate.io import check_out_dir

        check_out_dir(out)
    files = read_score_files(scores)
    if decorrelated:  # before any dataset is read: a file without decorrelated scores fails at once
        files = [decorrelated_view(f) for f in files]
    names = short_names(background + signal)
    bkg = [load_dataset(p, "background", n) for p, n in zip(background, names[: len(background)])]
    sigs = [load_dataset(p, "signal", n) for p, n in zip(signal, names[len(background):])]
    if not sum(d.n_events for d in bkg):
        raise EvaluationError(f"background dataset(s) {', '.join(map(str, background))} have no events")
    lumi_pb = lumi_fb * 1000.0
    notes: list[str] = []
    warnings: list[str] = []
    for d in bkg:
        if d.cross_section_pb is None:
            notes.append(f"background {d.name}: no cross-section in the manifest; each event counts its weight")
    result: dict[str, Any] = {"settings": {
        "event_score": event_score, "lumi_fb": lumi_fb, "mu_injected": mu, "cut_effs": list(cut_effs),
        "sqrt_s": sqrt_s, "n_bins": n_bins, "signal_shape": signal_shape, "pseudo_data": pseudo_data,
        "background_shape": background_shape, "n_params": n_params, "seed": seed, "cl": cl,
        "xsec_pb": xsec_pb, "n_signal": n_signal, "decorrelated": decorrelated,
    }, "notes": notes, "warnings": warnings, "searches": []}
    for sf in files:
        if not isinstance(sf.meta.get("datasets"), dict):
            log.warning(unchecked_warning(sf))
            warnings.append(unchecked_warning(sf))
        yb, mb, sb, n_un_b = [], [], [], 0
        for d in bkg:
            sc = _scored(sf, d, event_score, warnings)
            if sc is None:
                continue
            keep = np.isfinite(sc)
            n_un_b += int((~keep).sum())
            w = d.events["weight"].to_numpy()[keep]
            if d.cross_section_pb is None:
                yb.append(w)
            else:
                yb.append(lumi_pb * d.cross_section_pb * w / w.sum() if w.sum() > 0 else w * 0)
            mb.append(d.events["mt"].to_numpy()[keep])
            sb.append(sc[keep])
        if not sum(len(x) for x in sb):
            raise EvaluationError(f"{sf.path} (method {sf.name!r}): no background event has a (finite) score; "
                                  "nothing to cut on (rescore the background datasets)")
        yield_bkg, mt_bkg, sc_b = np.concatenate(yb), np.concatenate(mb), np.concatenate(sb)
        if n_un_b:
            notes.append(f"{sf.name}: {n_un_b} background events have no (finite) score and are left out")
        for j, sd in enumerate(sigs):
            sc_s = _scored(sf, sd, event_score, warnings) if sd.n_events else np.zeros(0)
            if sc_s is None or not sd.n_events:
                flag = "empty_signal" if not sd.n_events else "no_jets"
                result["searches"].append({"method": sf.name, "signal": sd.name, "flags": [flag], "levels": []})
                continue
            keep = np.isfinite(sc_s)
            n_un_s = int((~keep).sum())
            flags = ["nonfinite_scores_dropped"] if n_un_s or n_un_b else []
            if n_un_s:
                notes.append(f"{sf.name}: {n_un_s} events of {sd.name} have no (finite) score and are left out")
            if not keep.any():
                result["searches"].append({"method": sf.name, "signal": sd.name, "flags": flags + ["empty_signal"],
                                           "n_unscored": {"background": n_un_b, "signal": n_un_s}, "levels": []})
                continue
            w = sd.events["weight"].to_numpy()[keep]
            wn = w / w.sum()
            if n_signal is not None:
                ref, xs_ref = n_signal * wn, None
            elif xsec_pb is not None:
                ref, xs_ref = lumi_pb * xsec_pb * wn, xsec_pb
            elif sd.cross_section_pb is not None:
                ref, xs_ref = lumi_pb * sd.cross_section_pb * wn, sd.cross_section_pb
            else:
                raise EvaluationError(
                    f"signal {sd.path}: no cross-section in its manifest; give --xsec PB or --n-signal N"
                )
            inp = SearchInputs(mt_bkg=mt_bkg, yield_bkg=yield_bkg, score_bkg=sc_b,
                               mt_sig=sd.events["mt"].to_numpy()[keep], yield_sig=ref,
                               score_sig=sc_s[keep], xsec_ref_pb=xs_ref)
            res = run_search(inp, mu_inject=mu, cut_effs=cut_effs, sqrt_s=sqrt_s, n_bins=n_bins, mt_range=mt_range,
                             signal_shape=signal_shape, pseudo_data=pseudo_data, background_shape=background_shape,
                             n_params=n_params, seed=seed + 1000 * j, cl=cl)
            res.update(settings=result["settings"], method=sf.name, signal=sd.name, signal_path=sd.path, signal_parameters=sd.parameters,
                       xsec_ref_pb=xs_ref, n_signal_ref=float(ref.sum()), flags=flags,
                       n_unscored={"background": n_un_b, "signal": n_un_s})
            result["searches"].append(res)
            log.info("search %s on %s: %s", sf.name, sd.name, ", ".join(
                f"cut {lv['cut']}: Z={lv.get('z', float('nan')):.2f}" for lv in res["levels"]))
    if out is not None:
        write_search(result, out, plots=plots)
    return result


def write_search(result: dict, out, plots: bool = True) -> Path:
    """Write ``OUT/search/search.json`` (+ PNGs of the fits); merges with searches already there."""
    from darkshower.evaluate.io import atomic_write_json, load_json, slug

    d = Path(out) / "search"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "search.json"
    old = load_json(path) if path.exists() else None
    if old and old.get("searches"):
        keep = {(s["method"], s["signal"]) for s in result["searches"]}
        result = dict(result)
        result["searches"] = [s for s in old["searches"] if (s["method"], s["signal"]) not in keep] + result["searches"]
    atomic_write_json(path, result)
    if plots:
        from darkshower.evaluate import plots as P

        for s in result["searches"]:
            if s.get("levels"):
                fig = P.search_figure(s)
                fig.savefig(d / f"{slug(s['method'])}__{slug(s['signal'])}.png", dpi=80)
    return path
