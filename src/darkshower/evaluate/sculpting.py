"""Mass sculpting: how much an anomaly cut changes the background jet-mass and MT distributions.

For each cut (a threshold chosen on background so that a fraction ε_B passes) the
Jensen-Shannon divergence between the normalized background histogram before and after the
cut is computed, in bits (base 2): 0 for identical distributions, 1 for disjoint ones
(``base=np.e`` gives nats, maximum ln 2). A cut that keeps only a few background events
produces a non-zero JSD from statistical fluctuations alone, so each entry also carries
``jsd_random``: the mean JSD of random subsets with the same number of events (the value a
score that is independent of the variable would give). The random subsets have a spread of their own
(large at ε_B = 0.01, where a cut keeps a few hundred events), so each entry also carries
``jsd_random_q95`` (their 95th percentile) and ``jsd_random_p``, the fraction of random subsets at least
as far from the full distribution as the cut, (1 + k) / (1 + n_random): a p-value for "the cut sculpts no
more than chance". A cut is *within the random-subset level* when ``jsd <= jsd_random_q95``
(equivalently ``jsd_random_p > 0.05``, up to the resolution 1 / n_random).
"""

from __future__ import annotations

import numpy as np

from darkshower.evaluate.metrics import threshold_at_bkg_eff

VARIABLES = {"lead_jet_mass": "leading jet mass [GeV]", "mt": "$M_T$(jj, MET) [GeV]"}
SCULPT_EFFS = (0.5, 0.1, 0.01)


def jensen_shannon(p, q, base: float = 2.0) -> float:
    """Jensen-Shannon divergence of two histograms (normalized here; empty bins allowed)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms of different shapes {p.shape} and {q.shape}")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        return float("nan")
    p, q = p / sp, q / sq
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return max(0.0, 0.5 * (kl(p) + kl(q))) / np.log(base)


def binning(values, weights=None, n_bins: int = 30, lo_q: float = 0.005, hi_q: float = 0.995) -> np.ndarray:
    """Bin edges between the lo/hi quantiles of ``values`` (finite ones)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return np.linspace(0.0, 1.0, n_bins + 1)
    lo, hi = np.quantile(v, [lo_q, hi_q])
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


def histogram(values, edges, weights=None) -> np.ndarray:
    """Weighted histogram with under/overflow folded into the first/last bin (NaN dropped)."""
    v = np.asarray(values, np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(v)
    v = np.clip(v[ok], edges[0], edges[-1])
    h, _ = np.histogram(v, bins=edges, weights=w[ok])
    return h


def _random_level(rand: list[float], jsd: float, keeps_all: bool) -> dict[str, float]:
    """``jsd_random`` (mean), ``jsd_random_q95`` and ``jsd_random_p`` of a cut from the JSDs of its random subsets;
    a cut that keeps every event is its own random subset (0, 0, p = 1); none drawn otherwise: NaN."""
    if not rand:
        return ({"jsd_random": 0.0, "jsd_random_q95": 0.0, "jsd_random_p": 1.0} if keeps_all else
                dict.fromkeys(("jsd_random", "jsd_random_q95", "jsd_random_p"), float("nan")))
    r = np.asarray(rand, np.float64)
    return {"jsd_random": float(r.mean()), "jsd_random_q95": float(np.quantile(r, 0.95)),
            "jsd_random_p": float((1 + np.sum(r >= jsd)) / (1 + len(r))) if np.isfinite(jsd) else float("nan")}


def sculpting(score, variables: dict[str, np.ndarray], weight=None, effs=SCULPT_EFFS, n_bins: int = 30,
              n_random: int = 100, seed: int = 0) -> dict:
    """Sculpting study of one score on background events.

    ``variables`` maps a name (e.g. ``lead_jet_mass``, ``mt``) to per-event values aligned with
    ``score``. Returns ``{var: {"edges", "before", "cuts": {eff: {"threshold", "eff_b", "n_pass",
    "after", "jsd", "jsd_random", "jsd_random_q95", "jsd_random_p"}}}}`` (histograms as lists, JSON-ready);
    ``n_random`` random subsets of each cut's size give the random-subset level and its spread.
    """
    score = np.asarray(score, np.float64)
    w = np.ones_like(score) if weight is None else np.asarray(weight, np.float64)
    ok = np.isfinite(score)
    rng = np.random.default_rng(seed)
    out = {}
    for var, values in variables.items():
        values = np.asarray(values, np.float64)
        sel = ok & np.isfinite(values)
        v, s, ww = values[sel], score[sel], w[sel]
        edges = binning(v, ww, n_bins)
        before = histogram(v, edges, ww)
        entry = {"edges": edges.tolist(), "before": before.tolist(), "cuts": {}}
        for eff in effs:
            thr = threshold_at_bkg_eff(s, eff, ww)
            passed = s >= thr
            after = histogram(v[passed], edges, ww[passed])
            n_pass = int(passed.sum())
            jsd = jensen_shannon(before, after) if n_pass else float("nan")
            rand = []
            if 0 < n_pass < len(v):
                for _ in range(n_random):
                    pick = rng.choice(len(v), n_pass, replace=False)
                    rand.append(jensen_shannon(before, histogram(v[pick], edges, ww[pick])))
            entry["cuts"][f"{eff:g}"] = {
                "threshold": float(thr),
                "eff_b": float(ww[passed].sum() / ww.sum()) if ww.sum() > 0 else float("nan"),
                "n_pass": n_pass,
                "after": after.tolist(),
                "jsd": jsd,
                **_random_level(rand, jsd, keeps_all=0 < n_pass == len(v)),
            }
        out[var] = entry
    return out
