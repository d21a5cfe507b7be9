"""A parametric CMS-like detector in numpy, from the Delphes 3.5 CMS card numbers.

Input and output are *flat* particle arrays of many events at once with an event index
``ev``, so a batch of events is simulated with a handful of vectorized numpy calls.

Model (see docs/detector.md):
- tracking for charged particles in |η| ≤ 2.5 with the card's efficiencies (hadrons, electrons,
  muons) and log-normal pT smearing; tracks produced at a transverse radius r lose efficiency
  linearly up to ``track_r_max_mm`` (displaced-track reconstruction), and carry a smeared
  straight-line impact parameter d0;
- ECAL (0.0174 × 1°) and HCAL (0.087 × 5°, coarser forward) towers up to |η| = 5: e/γ deposit
  in the ECAL, K0S/Λ 30 % ECAL + 70 % HCAL, other hadrons in the HCAL, muons and invisibles
  nothing; charged particles too soft to reach the calorimeter (pT < 0.74 GeV in 3.8 T at
  R = 1.29 m) deposit nothing; tower energies are log-normally smeared with the card's
  resolutions and pass the card's absolute and significance thresholds; tower positions are
  drawn uniformly inside the tower; with pileup towers sum the particles of all vertices and
  tracks carry a smeared dz (darkshower.simulate.pileup);
- particle flow: tracks are kept; each tower's energy in excess of the tracks pointing at it
  becomes a neutral candidate (photon in the ECAL, neutral hadron in the HCAL) if significant.
Missing pT is minus the vector sum of all reconstructed candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from darkshower.data.schema import CHARGED_HADRON, ELECTRON, MUON, NEUTRAL_HADRON, PHOTON

B_FIELD_T = 3.8
CALO_RADIUS_M = 1.29
MIN_PT_REACH_CALO = 0.3 * B_FIELD_T * CALO_RADIUS_M / 2.0  # ≈ 0.735 GeV
TRACKER_ETA_MAX = 2.5
CALO_ETA_MAX = 5.0

MASSES = {11: 0.000511, 13: 0.10566, 211: 0.13957}


@dataclass(frozen=True)
class Calorimeter:
    """Towers: η bin edges and the number of φ bins in each η bin."""

    eta_edges: np.ndarray
    n_phi: np.ndarray
    e_min: float
    significance_min: float

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.n_phi)[:-1]])

    @property
    def n_towers(self) -> int:
        return int(self.n_phi.sum())

    def tower_index(self, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(valid mask, η-bin index, tower index) for positions (η, φ)."""
        ieta = np.searchsorted(self.eta_edges, eta, side="right") - 1
        valid = (ieta >= 0) & (ieta < len(self.n_phi))
        ieta = np.clip(ieta, 0, len(self.n_phi) - 1)
        nphi = self.n_phi[ieta]
        iphi = np.floor((phi + np.pi) / (2 * np.pi) * nphi).astype(np.int64)
        iphi = np.clip(iphi, 0, nphi - 1)
        return valid, ieta, self.offsets[ieta] + iphi

    def tower_position(self, tower: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform random (η, φ) inside the given towers (as Delphes' SimpleCalorimeter does)."""
        offsets = self.offsets
        ieta = np.searchsorted(offsets, tower, side="right") - 1
        iphi = tower - offsets[ieta]
        nphi = self.n_phi[ieta]
        lo, hi = self.eta_edges[ieta], self.eta_edges[ieta + 1]
        eta = lo + (hi - lo) * rng.random(len(tower))
        phi = -np.pi + (iphi + rng.random(len(tower))) * (2 * np.pi / nphi)
        return eta, phi


def _symmetric(pos_edges: np.ndarray) -> np.ndarray:
    pos_edges = np.asarray(pos_edges, dtype=np.float64)
    return np.concatenate([-pos_edges[::-1], pos_edges[1:]]) if pos_edges[0] == 0 else np.concatenate(
        [-pos_edges[::-1], pos_edges]
    )


def _ecal() -> Calorimeter:
    barrel = 0.0174 * np.arange(0, 86)  # 0 .. 1.4964 (85 towers per side)
    endcap = np.linspace(barrel[-1], 3.0, 88)[1:]  # ≈ 0.0175 wide up to 3.0
    hf = np.linspace(3.0, 5.0, 12)[1:]  # ≈ 0.18 wide
    pos = np.concatenate([barrel, endcap, hf])
    edges = _symmetric(pos)
    centers = 0.5 * (edges[1:] + edges[:-1])
    n_phi = np.where(np.abs(centers) < 3.0, 360, 36)
    return Calorimeter(edges, n_phi.astype(np.int64), e_min=0.5, significance_min=2.0)


def _hcal() -> Calorimeter:
    barrel = 0.087 * np.arange(0, 21)  # 0 .. 1.74
    fwd = [1.83, 1.93, 2.043, 2.172, 2.322, 2.5, 2.65, 2.868, 2.95]
    hf = list(np.round(np.arange(3.125, 4.526, 0.175), 3)) + [5.0]
    pos = np.concatenate([barrel, fwd, hf])
    edges = _symmetric(pos)
    centers = 0.5 * (edges[1:] + edges[:-1])
    a = np.abs(centers)
    n_phi = np.where(a < 1.74, 72, np.where(a < 4.525, 36, 18))
    return Calorimeter(edges, n_phi.astype(np.int64), e_min=1.0, significance_min=1.0)


ECAL = _ecal()
HCAL = _hcal()


def ecal_sigma(e: np.ndarray, eta: np.ndarray) -> np.ndarray:
    a = np.abs(eta)
    core = np.sqrt((0.008 * e) ** 2 + 0.11**2 * e + 0.40**2)
    return np.where(
        a <= 1.5,
        (1 + 0.64 * eta**2) * core,
        np.where(a <= 2.5, (2.16 + 5.6 * (a - 2) ** 2) * core, np.sqrt((0.107 * e) ** 2 + 2.08**2 * e)),
    )


def hcal_sigma(e: np.ndarray, eta: np.ndarray) -> np.ndarray:
    a = np.abs(eta)
    return np.where(a <= 3.0, np.sqrt((0.050 * e) ** 2 + 1.50**2 * e), np.sqrt((0.130 * e) ** 2 + 2.70**2 * e))


def track_efficiency(absid: np.ndarray, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    a = np.abs(eta)
    central = a <= 1.5
    inner = (a > 1.5) & (a <= TRACKER_ETA_MAX)
    had = np.where(
        pt <= 0.1, 0.0, np.where(central, np.where(pt <= 1.0, 0.70, 0.95), np.where(inner, np.where(pt <= 1.0, 0.60, 0.85), 0.0))
    )
    ele = np.where(
        pt <= 0.1,
        0.0,
        np.where(
            central,
            np.where(pt <= 1.0, 0.73, np.where(pt <= 100, 0.95, 0.99)),
            np.where(inner, np.where(pt <= 1.0, 0.50, np.where(pt <= 100, 0.83, 0.90)), 0.0),
        ),
    )
    mu_base = np.where(pt <= 0.1, 0.0, np.where(central, np.where(pt <= 1.0, 0.75, 0.99), np.where(inner, np.where(pt <= 1.0, 0.70, 0.98), 0.0)))
    mu = np.where(pt > 1000, mu_base * np.exp(0.5 - pt * 5e-4), mu_base)
    return np.where(absid == 11, ele, np.where(absid == 13, mu, had))


def track_resolution(absid: np.ndarray, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Relative pT resolution σ(pT)/pT."""
    a = np.abs(eta)
    had = np.where(
        a <= 0.5,
        np.sqrt(0.06**2 + (1.3e-3 * pt) ** 2),
        np.where(a <= 1.5, np.sqrt(0.10**2 + (1.7e-3 * pt) ** 2), np.sqrt(0.25**2 + (3.1e-3 * pt) ** 2)),
    )
    ele = np.where(a <= 0.5, 0.03, np.where(a <= 1.5, 0.05, 0.15))
    mu = np.where(
        a <= 0.5,
        np.sqrt(0.01**2 + (1e-4 * pt) ** 2),
        np.where(a <= 1.5, np.sqrt(0.015**2 + (1.5e-4 * pt) ** 2), np.sqrt(0.025**2 + (3.5e-4 * pt) ** 2)),
    )
    return np.where(absid == 11, ele, np.where(absid == 13, mu, had))


def lognormal(mean: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal draws with the given mean and standard deviation (Delphes' LogNormal)."""
    mean = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    out = np.zeros_like(mean)
    ok = mean > 0
    s2 = np.log1p((sigma[ok] / mean[ok]) ** 2)
    mu = np.log(mean[ok]) - 0.5 * s2
    out[ok] = np.exp(mu + np.sqrt(s2) * rng.standard_normal(ok.sum()))
    return out


def _sum_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, weights=values, minlength=len(uniq))


def _lookup(uniq: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of ``keys`` in sorted ``uniq`` and whether present."""
    pos = np.searchsorted(uniq, keys)
    pos_c = np.clip(pos, 0, max(len(uniq) - 1, 0))
    found = (pos < len(uniq)) & (uniq[pos_c] == keys) if len(uniq) else np.zeros(len(keys), bool)
    return pos_c, found


def candidate_type(absid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Particle-level candidate type from the PDG id (see darkshower.data.schema.CANDIDATE_TYPES)."""
    t = np.where(charge != 0, CHARGED_HADRON, NEUTRAL_HADRON)
    t = np.where(absid == 11, ELECTRON, t)
    t = np.where(absid == 13, MUON, t)
    t = np.where(absid == 22, PHOTON, t)
    return t.astype(np.int8)


def particle_level(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``--detector none``: visible stable particles as they are, typed by PDG id."""
    absid = np.abs(p["pid"])
    out: dict[str, np.ndarray] = {k: p[k] for k in ("ev", "pt", "eta", "phi", "e", "pid", "charge", "d0", "r_prod", "dz", "from_pv") if k in p}
    out["type"] = candidate_type(absid, p["charge"])
    return out


def cms_detector(p: dict[str, np.ndarray], rng: np.random.Generator, track_r_max_mm: float = 600.0,
                 d0_resolution_mm: float = 0.02, dz_sigma: Callable | None = None) -> dict[str, np.ndarray]:
    """Simulate the CMS-like detector on flat visible particles of many events.

    ``p`` has flat arrays ev, pt, eta, phi, e, pid, charge, d0, r_prod (visible particles only).
    Returns flat reconstructed candidates with the same keys plus ``type``.
    With pileup, ``p`` also has ``dz`` (true vertex z minus the PV z, mm) and ``from_pv``: tracks
    keep them, dz smeared by ``dz_sigma(pT, eta)``; a neutral candidate is ``from_pv`` when the PV
    carries most of the tower energy not matched by tracks, and has dz = 0.
    """
    pu = "from_pv" in p
    ev, pt, eta, phi, e = p["ev"], p["pt"], p["eta"], p["phi"], p["e"]
    pid, charge, d0, r_prod = p["pid"], p["charge"], p["d0"], p["r_prod"]
    absid = np.abs(pid)
    charged = charge != 0
    n = len(pt)

    # ---- tracking -------------------------------------------------------------------------
    eff = track_efficiency(absid, pt, eta) * np.clip(1.0 - r_prod / track_r_max_mm, 0.0, 1.0)
    tracked = charged & (rng.random(n) < eff)
    ti = np.flatnonzero(tracked)
    t_abs = absid[ti]
    t_pt = lognormal(pt[ti], track_resolution(t_abs, pt[ti], eta[ti]) * pt[ti], rng)
    t_mass = np.where(t_abs == 11, MASSES[11], np.where(t_abs == 13, MASSES[13], MASSES[211]))
    t_e = np.sqrt((t_pt * np.cosh(eta[ti])) ** 2 + t_mass**2)
    t_type = np.where(t_abs == 11, ELECTRON, np.where(t_abs == 13, MUON, CHARGED_HADRON)).astype(np.int8)
    t_q = charge[ti]
    t_q32 = t_q.astype(np.int32)
    t_pid = np.where(t_abs == 11, -11 * t_q32, np.where(t_abs == 13, -13 * t_q32, 211 * t_q32)).astype(np.int32)
    t_d0 = d0[ti] + d0_resolution_mm * rng.standard_normal(len(ti))
    extra: dict[str, np.ndarray] = {}
    if pu:
        sig_dz = dz_sigma(pt[ti], eta[ti]) if dz_sigma is not None else np.zeros(len(ti))
        extra = {"dz": p["dz"][ti] + sig_dz * rng.standard_normal(len(ti)), "from_pv": p["from_pv"][ti]}

    # ---- calorimeter deposits ----------------------------------------------------------------
    reaches = (~charged | (pt >= MIN_PT_REACH_CALO)) & (np.abs(eta) < CALO_ETA_MAX) & (absid != 13)
    f_ecal = np.where((absid == 11) | (absid == 22), 1.0, np.where((absid == 310) | (absid == 3122), 0.3, 0.0))
    e_ecal = np.where(reaches, e * f_ecal, 0.0)
    e_hcal = np.where(reaches, e * (1.0 - f_ecal), 0.0)

    cands = [
        dict(ev=ev[ti], pt=t_pt, eta=eta[ti], phi=phi[ti], e=t_e, pid=t_pid, charge=t_q, type=t_type,
             d0=t_d0, r_prod=r_prod[ti], **extra)
    ]
    # tracks pointing at each calorimeter: electrons at the ECAL, charged hadrons at the HCAL
    for calo, e_dep, sigma_fn, trk_sel, ntype, npid in (
        (ECAL, e_ecal, ecal_sigma, t_type == ELECTRON, PHOTON, 22),
        (HCAL, e_hcal, hcal_sigma, t_type == CHARGED_HADRON, NEUTRAL_HADRON, 130),
    ):
        dep = e_dep > 0
        valid, _, tower = calo.tower_index(eta[dep], phi[dep])
        keys = ev[dep][valid].astype(np.int64) * calo.n_towers + tower[valid]
        uniq, e_true = _sum_by_key(keys, e_dep[dep][valid])
        tw = uniq % calo.n_towers
        tw_ev = uniq // calo.n_towers
        # nominal tower centre η for the resolution
        ieta = np.searchsorted(calo.offsets, tw, side="right") - 1
        eta_c = 0.5 * (calo.eta_edges[ieta] + calo.eta_edges[ieta + 1])
        sig = sigma_fn(e_true, eta_c)
        e_meas = lognormal(e_true, sig, rng)
        sig_meas = sigma_fn(e_meas, eta_c)
        keep = (e_meas >= calo.e_min) & (e_meas >= calo.significance_min * sig_meas)
        # tracks pointing into the kept towers
        tsel = np.flatnonzero(trk_sel)
        tv, _, ttower = calo.tower_index(eta[ti][tsel], phi[ti][tsel])
        tkeys = ev[ti][tsel].astype(np.int64) * calo.n_towers + ttower
        pos, found = _lookup(uniq, tkeys)
        found &= tv
        e_trk = np.bincount(pos[found], weights=t_e[tsel][found], minlength=len(uniq))
        s2_trk = np.bincount(
            pos[found], weights=(track_resolution(t_abs[tsel][found], t_pt[tsel][found], eta[ti][tsel][found])
                                 * t_e[tsel][found]) ** 2, minlength=len(uniq)
        )
        e_n = np.maximum(e_meas - e_trk, 0.0)
        neutral = keep & (e_n > calo.e_min) & (e_n / np.sqrt(s2_trk + sig_meas**2) > calo.significance_min)
        ni = np.flatnonzero(neutral)
        n_eta, n_phi = calo.tower_position(tw[ni], rng)
        n_e = e_n[ni]
        if pu:  # truth: does the PV carry most of the energy not matched by tracks?
            untracked = ~tracked[dep][valid]
            pos_d, _ = _lookup(uniq, keys)
            e_res = np.bincount(pos_d[untracked], weights=e_dep[dep][valid][untracked], minlength=len(uniq))
            pv_res = np.bincount(pos_d[untracked], weights=(e_dep[dep][valid] * p["from_pv"][dep][valid])[untracked],
                                 minlength=len(uniq))
            extra = {"dz": np.zeros(len(ni)), "from_pv": pv_res[ni] >= 0.5 * e_res[ni]}
        cands.append(
            dict(ev=tw_ev[ni], pt=n_e / np.cosh(n_eta), eta=n_eta, phi=n_phi, e=n_e,
                 pid=np.full(len(ni), npid, np.int32), charge=np.zeros(len(ni), np.int8),
                 type=np.full(len(ni), ntype, np.int8), d0=np.zeros(len(ni)), r_prod=np.zeros(len(ni)), **extra)
        )
    out = {k: np.concatenate([c[k] for c in cands]) for k in cands[0]}
    order = np.argsort(out["ev"], kind="stable")
    return {k: v[order] for k, v in out.items()}
