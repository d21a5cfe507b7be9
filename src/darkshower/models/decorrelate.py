"""Label-free decorrelation of any anomaly score from jet mass and pT: a conditional quantile map.

The background of a run's validation set (``RUN/val_decor.npz``: per validation row the score and
the decorrelation variables, written at the end of training) defines, in bins of the variables,
the *conditional* background efficiency of a score: the fraction of validation background in the
same bin scored above it. Cutting on that efficiency keeps the same fraction of background in every
bin, so the background distribution of the variables is (up to the bin width and the statistics of
a bin) the same before and after the cut: the cut does not sculpt them. No signal is used.

Binning (:class:`QuantileMap`): equal-population bins, built one variable after the other: the
first variable (``pt`` for jet-level runs) is cut into ``n`` quantile bins, then *inside each of
those* the second (``mass``) into ``n`` quantile bins of its own, and so on. Binning mass inside
pT bins is binning in mass/pT at fixed pT, and quantile edges do not depend on a monotone
transform of a variable, so the bins are those of (log pT, mass/pT). ``n`` per variable is
``floor((N / min_rows) ** (1 / d))`` capped at ``max_bins``, so every bin holds at least
``min_rows`` validation rows (default 200) — the *statistical floor*: a conditional efficiency
below about ``1 / rows_in_bin`` is not measured but extrapolated (see below), and at ε_B the cut of
a bin rests on about ``ε_B · rows_in_bin`` validation rows.

Inside a bin (``detrend``, default) the score is first made standard normal over the whole
validation set (z = Φ⁻¹ of its global efficiency: monotone) and its linear trend in the variables
is removed by least squares on the bin's rows (slopes kept per bin, the variables clipped to the
bin's range when applied), so that a score that keeps rising with mass *inside* a bin is flat after
the map too; the bin then ranks the residuals. The survival function of a bin is interpolated
linearly between its distinct reference values (mid-rank: at a value held by ``c`` of the ``n``
rows with ``a`` rows above it, ``(a + c/2) / n``), is 1 below the lowest and falls exponentially
above the highest (scale: the mean excess of the bin's top values), so the map is continuous and
strictly increasing in the score above the bin's lowest value and ranks even the most anomalous
jets without ties. Between bins, ``-log10`` of the efficiency is interpolated linearly from bin
median to bin median along each variable (weights sum to one: the map stays monotone in the score).
Outputs: ``eff_b_decor`` (the conditional efficiency, in (0, 1]) and ``score_decor =
-log10(eff_b_decor)`` (higher = more anomalous; computed in log space in the tail, so always finite).

Variables (:func:`decor_table`): per jet ``pt``, ``mass``; per event (event-level runs: the leading
jet's) ``pt``, ``mass`` and the event's ``mt`` (MT of the two leading jets and the MET) and ``mjj``.
Defaults: ``(pt, mass)`` for jet-level runs, ``(mt, mass)`` (MT and the leading-jet mass) for
event-level runs.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_VARIABLES", "VARIABLES", "QuantileMap", "decor_table", "MIN_ROWS", "MAX_BINS"]

#: decorrelation variables a run stores (per validation row) and score can use
VARIABLES = ("pt", "mass", "mt", "mjj")
#: the variables of the map by run level
DEFAULT_VARIABLES = {"jet": ("pt", "mass"), "event": ("mt", "mass")}
MIN_ROWS = 200
MAX_BINS = 20


def _bins_per_variable(n: int, d: int, min_rows: int, max_bins: int) -> int:
    if n < min_rows:
        return 1
    return max(1, min(max_bins, int(math.floor((n / min_rows) ** (1.0 / d) + 1e-9))))


def _columns(X, n: int, d: int) -> np.ndarray:
    """X as [n, columns] (no rows: [0, d], which ``reshape(0, -1)`` cannot infer)."""
    X = np.asarray(X, np.float64)
    return X.reshape(n, -1) if X.size else X.reshape(n, d)


def _quantile_edges(x: np.ndarray, k: int) -> np.ndarray:
    """The k-1 interior edges of k equal-population bins of x (ties may make some bins empty)."""
    if k <= 1 or not len(x):
        return np.empty(0)
    return np.quantile(x, np.arange(1, k) / k)


class QuantileMap:
    """Conditional background efficiency of a score in equal-population bins of ``variables``.

    ``fit(scores, X)`` with X of shape [N, d] (the validation background), then
    ``transform(scores, X) -> (eff_b_decor, score_decor)``. Rows with a non-finite score or
    variable are left out of the fit and give NaN.
    """

    def __init__(self, variables=DEFAULT_VARIABLES["jet"], min_rows: int = MIN_ROWS, max_bins: int = MAX_BINS,
                 detrend: bool = True):
        self.variables = tuple(variables)
        if not self.variables:
            raise ValueError("at least one decorrelation variable is needed")
        if isinstance(min_rows, bool) or int(min_rows) < 2:
            raise ValueError(f"min_rows={min_rows!r}: must be an integer >= 2")
        if isinstance(max_bins, bool) or int(max_bins) < 1:
            raise ValueError(f"max_bins={max_bins!r}: must be an integer >= 1")
        self.min_rows = int(min_rows)
        self.max_bins = int(max_bins)
        self.detrend = bool(detrend)
        self.global_scores = np.empty(0)  # ascending validation scores (the Gaussianization of the trend)
        self.trend: np.ndarray = np.zeros((0, 0))  # per bin: slope of the Gaussianized score on each variable
        self.mean: np.ndarray = np.zeros((0, 0))  # per bin: mean of each variable
        self.lo: np.ndarray = np.zeros((0, 0))  # per bin: range of each variable (the trend is not extrapolated)
        self.hi: np.ndarray = np.zeros((0, 0))
        self.n_per_var = 1
        self.edges: list[np.ndarray] = []  # level l: shape (k,)*l + (k-1,)
        self.centres: list[np.ndarray] = []  # level l: shape (k ** l, k), median of the variable in each bin
        self.bin_scores: list[np.ndarray] = []  # per bin: ascending finite scores
        self.n_fit = 0

    # -- binning -------------------------------------------------------------------------------------
    def _level_index(self, level: int, prefix: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Bin of each row along variable ``level``, given its (flattened) bin index of the levels before."""
        if self.n_per_var <= 1:
            return np.zeros(len(x), np.int64)
        e = self.edges[level].reshape(-1, self.n_per_var - 1)
        return (x[:, None] >= e[prefix]).sum(axis=1).astype(np.int64)

    def bin_index(self, X: np.ndarray) -> np.ndarray:
        """Flat bin index of each row of X [N, d] (values beyond the outer edges go to the edge bins)."""
        X = _columns(X, len(X), len(self.variables))
        idx = np.zeros(len(X), np.int64)
        for lv in range(len(self.variables)):
            idx = idx * self.n_per_var + self._level_index(lv, idx, X[:, lv])
        return idx

    @property
    def n_bins(self) -> int:
        return self.n_per_var ** len(self.variables)

    # -- fit / transform -----------------------------------------------------------------------------
    def fit(self, scores, X) -> QuantileMap:
        s = np.asarray(scores, np.float64)
        X = _columns(X, len(s), len(self.variables))
        if X.shape[1] != len(self.variables):
            raise ValueError(f"{X.shape[1]} variable columns for variables {self.variables}")
        ok = np.isfinite(s) & np.isfinite(X).all(axis=1)
        s, X = s[ok], X[ok]
        n, d = len(s), len(self.variables)
        if n < 2:
            raise ValueError(f"{n} usable validation rows: too few to fit the decorrelation map")
        k = self.n_per_var = _bins_per_variable(n, d, self.min_rows, self.max_bins)
        self.edges, self.centres = [], []
        idx = np.zeros(n, np.int64)
        for lv in range(d):
            e = np.zeros((k ** lv, max(k - 1, 0)))
            if k > 1:
                for b in range(k ** lv):  # at most max_bins ** (d - 1) groups: a loop over bins, not rows
                    rows = idx == b
                    if rows.any():
                        e[b] = _quantile_edges(X[rows, lv], k)
                    elif b:
                        e[b] = e[b - 1]
            self.edges.append(e.reshape((k,) * lv + (max(k - 1, 0),)))
            j = self._level_index(lv, idx, X[:, lv])
            flat = idx * k + j
            c = np.full(k ** (lv + 1), np.nan)
            for b in np.unique(flat):  # a loop over bins
                c[b] = np.median(X[flat == b, lv])
            self.centres.append(c.reshape(k ** lv, k))
            idx = flat
        self.global_scores = np.sort(s)
        resid = self._reference(s, X, idx)
        order = np.lexsort((resid, idx))
        counts = np.bincount(idx, minlength=self.n_bins)
        splits = np.cumsum(counts)[:-1]
        self.bin_scores = np.split(resid[order], splits)
        self.n_fit = n
        return self

    def _gauss(self, s: np.ndarray) -> np.ndarray:
        """The score as a standard-normal quantile of the whole validation set (monotone; -inf below it)."""
        from scipy.special import ndtri

        q = 10.0 ** -np.minimum(_neglog_survival(self.global_scores, s), 300.0)
        return -ndtri(q)

    def _reference(self, s: np.ndarray, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """What the bins rank: the score, or (``detrend``) the Gaussianized score minus its linear trend in
        the variables inside the bin (least squares on the bin's rows), so that a score that keeps varying
        with mass inside a bin is still flat after the map."""
        nb, d = self.n_bins, X.shape[1]
        self.trend, self.mean = np.zeros((nb, d)), np.zeros((nb, d))
        self.lo, self.hi = np.zeros((nb, d)), np.zeros((nb, d))
        if not self.detrend:
            return s
        z = self._gauss(s)
        out = z.copy()
        for b in np.unique(idx):  # a loop over bins
            rows = idx == b
            xb, zb = X[rows], z[rows]
            mu, sd = xb.mean(axis=0), xb.std(axis=0)
            self.mean[b], self.lo[b], self.hi[b] = mu, xb.min(axis=0), xb.max(axis=0)
            use = sd > 0
            if rows.sum() >= 10 * d and use.any():
                a = (xb[:, use] - mu[use]) / sd[use]
                coef, *_ = np.linalg.lstsq(a, zb - zb.mean(), rcond=None)
                self.trend[b, use] = coef / sd[use]
            out[rows] = zb - (xb - mu) @ self.trend[b]
        return out

    def _query(self, b: int, z: np.ndarray, s: np.ndarray, X: np.ndarray) -> np.ndarray:
        if not self.detrend:
            return s
        xb = np.clip(X, self.lo[b], self.hi[b])
        return z - (xb - self.mean[b]) @ self.trend[b]

    def transform(self, scores, X) -> tuple[np.ndarray, np.ndarray]:
        """(eff_b_decor, score_decor) of each row; NaN where the score or a variable is not finite."""
        if not self.bin_scores:
            raise RuntimeError("QuantileMap.transform before fit")
        s = np.asarray(scores, np.float64)
        X = _columns(X, len(s), len(self.variables))
        eff = np.full(len(s), np.nan)
        neglog = np.full(len(s), np.nan)
        ok = np.isfinite(s) & np.isfinite(X).all(axis=1)
        rows = np.flatnonzero(ok)
        acc = np.zeros(len(rows))
        z = self._gauss(s[rows]) if self.detrend else s[rows]
        for idx, w in self._neighbours(X[rows]):
            for b in np.unique(idx[w > 0]):  # a loop over bins
                r = np.flatnonzero((idx == b) & (w > 0))
                q = self._query(b, z[r], s[rows[r]], X[rows[r]])
                acc[r] += w[r] * _neglog_survival(self._scores_of(b), q)
        neglog[rows] = acc
        eff[ok] = 10.0 ** -neglog[ok]
        return eff, neglog

    def _scores_of(self, b: int) -> np.ndarray:
        v = self.bin_scores[b]
        if not len(v):  # an empty bin (ties at an edge): the whole validation set
            v = np.sort(np.concatenate(self.bin_scores))
        return v

    def _neighbours(self, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Multilinear interpolation between bin centres: (flat bin, weight) pairs whose weights sum to 1
        per row. Along each variable a row mixes its bin with the neighbour on its side of the bin's
        median (weight growing linearly to 1/2 at the bin edge... and beyond, up to the neighbour's
        median); rows beyond the outermost medians use their bin alone."""
        k = self.n_per_var
        combos = [(np.zeros(len(X), np.int64), np.ones(len(X)))]
        for lv in range(len(self.variables)):
            x = X[:, lv]
            new = []
            for pref, w in combos:
                j = self._level_index(lv, pref, x)
                if k <= 1:
                    new.append((pref * k + j, w))
                    continue
                c = self.centres[lv][pref, j]
                jn = np.clip(np.where(x > c, j + 1, j - 1), 0, k - 1)
                cn = self.centres[lv][pref, jn]
                with np.errstate(invalid="ignore", divide="ignore"):
                    t = np.where((jn != j) & np.isfinite(cn) & np.isfinite(c) & (cn != c), (x - c) / (cn - c), 0.0)
                t = np.clip(t, 0.0, 1.0)
                new.append((pref * k + j, w * (1 - t)))
                new.append((pref * k + jn, w * t))
            combos = new
        return combos

    def describe(self) -> dict:
        sizes = [len(v) for v in self.bin_scores]
        return {"variables": list(self.variables), "bins_per_variable": self.n_per_var, "n_bins": self.n_bins,
                "n_val": self.n_fit, "min_rows": self.min_rows, "rows_per_bin_min": int(min(sizes)) if sizes else 0,
                "statistical_floor": 1.0 / max(min(sizes), 1) if sizes else None}


def _neglog_survival(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """-log10 of the interpolated survival function of the ascending sample ``v`` at ``s``."""
    n = len(v)
    u, first = np.unique(v, return_index=True)
    cnt = np.diff(np.append(first, n))
    above = n - (first + cnt)
    y = (above + 0.5 * cnt) / n  # mid-rank survival at each distinct value, strictly decreasing
    out = -np.log10(np.interp(s, u, y, left=1.0, right=y[-1]))
    hi = s > u[-1]
    if hi.any():
        m = max(1, min(20, n // 10))
        top = v[-m:]
        ref = v[-m - 1] if n > m else v[0]
        tau = float(np.mean(top - ref))
        if not tau > 0:
            tau = max(abs(float(u[-1])), 1.0) * 1e-6
        out[hi] = -np.log10(y[-1]) + (s[hi] - u[-1]) / (tau * np.log(10.0))
    return out


# -- the variables ---------------------------------------------------------------------------------------
def decor_table(events, level: str = "jet") -> dict[str, np.ndarray]:
    """The decorrelation variables of a batch of events (awkward records with ``jets``: pt, eta, phi,
    mass; ``met_pt``/``met_phi`` when present, else MET 0), keyed by ``event_id`` and ``jet_idx``
    (the rank of the jet in ``events.jets``; -1 for ``level="event"``): ``pt``, ``mass`` (the jet's;
    for events the leading jet's, NaN without jets), ``mt`` (MT of the two leading jets and the MET),
    ``mjj`` (their invariant mass)."""
    import awkward as ak

    from darkshower.represent.common import dijet_met_mass

    fields = ak.fields(events)
    n = len(events)
    ev_id = ak.to_numpy(events["event_id"]).astype(np.int64) if "event_id" in fields else np.arange(n, dtype=np.int64)
    jets = events["jets"]
    mt, mjj = dijet_met_mass(events)
    if level == "event":
        lead = ak.firsts(jets)
        return {"event_id": ev_id, "jet_idx": np.full(n, -1, np.int64),
                "pt": ak.to_numpy(ak.fill_none(lead["pt"], np.nan)).astype(np.float64),
                "mass": ak.to_numpy(ak.fill_none(lead["mass"], np.nan)).astype(np.float64), "mt": mt, "mjj": mjj}
    njet = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
    return {"event_id": np.repeat(ev_id, njet),
            "jet_idx": ak.to_numpy(ak.flatten(ak.local_index(jets["pt"], axis=1))).astype(np.int64),
            "pt": ak.to_numpy(ak.flatten(jets["pt"])).astype(np.float64),
            "mass": ak.to_numpy(ak.flatten(jets["mass"])).astype(np.float64),
            "mt": np.repeat(mt, njet), "mjj": np.repeat(mjj, njet)}
