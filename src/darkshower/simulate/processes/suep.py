"""SUEP: soft unclustered energy patterns (arXiv:1612.00850; Knapen's SUEP generator algorithm).

A scalar mediator of mass ``m_med`` is produced by gluon fusion in a full Pythia event (its pT
comes from Pythia's initial-state radiation; the underlying event is kept) and left undecayed.
In its rest frame it becomes many dark mesons of mass ``m_dark`` whose momenta follow the
relativistic Maxwell-Boltzmann distribution f(p) ∝ p² exp(-(E - m)/T): mesons are drawn until
their energies reach the mediator mass, the mean momentum is subtracted and all momenta are
rescaled by one factor so that the total energy equals the mediator mass exactly (and the total
momentum is zero); events with fewer than 3 mesons are redrawn. The mesons are boosted to the
lab and decayed by a second Pythia instance (dark photons -> e e / mu mu / pi pi, or u ubar with
hadronization), and their decay products replace the mediator in the event.
"""

from __future__ import annotations

from typing import Literal

import awkward as ak
import numpy as np
from pydantic import Field, model_validator

from darkshower.config import StrictModel

DESCRIPTION = "SUEP (scalar mediator -> thermal dark mesons)"
MESON, DARK_PHOTON = 999999, 999998

#: dark-photon decay tables: (A' mass, [(BR, daughter id)])
DECAYS = {
    "darkPho": (0.5, [(0.40, 11), (0.40, 13), (0.20, 211)]),
    "darkPhoHad": (0.7, [(0.15, 11), (0.15, 13), (0.70, 211)]),
}


class Params(StrictModel):
    m_med: float = Field(400.0, gt=0.0, description="scalar mediator mass M [GeV]")
    m_dark: float = Field(2.0, gt=0.0, description="dark meson mass m [GeV]")
    temperature: float = Field(2.0, gt=0.0, description="dark sector temperature T [GeV]")
    decay: Literal["darkPho", "darkPhoHad", "generic"] = Field(
        "darkPho", description="meson decays: dark photons (m=0.5 or 0.7 GeV) to leptons/pions, or u ubar"
    )

    @model_validator(mode="after")
    def _physics(self):
        if self.m_med < 3 * self.m_dark:
            raise ValueError(f"m_med ({self.m_med}) must exceed 3 m_dark ({3 * self.m_dark})")
        if self.decay in DECAYS and self.m_dark <= 2 * DECAYS[self.decay][0]:
            raise ValueError(f"m_dark ({self.m_dark}) must exceed twice the dark-photon mass for decay={self.decay}")
        return self


def settings(p: Params) -> list[str]:
    """Settings of the production instance: gg -> scalar, left undecayed."""
    return [
        "HiggsSM:gg2H = on",
        f"25:m0 = {p.m_med:g}",
        f"25:mMin = {max(p.m_med - 1.0, 1.0):g}",
        f"25:mMax = {p.m_med + 1.0:g}",
        "25:mayDecay = off",
    ]


def decay_settings(p: Params) -> list[str]:
    out = [
        "ProcessLevel:all = off",
        "Check:event = off",
        f"{MESON}:all = GeneralResonance void 0 0 0 {p.m_dark:g} 0.001 0 0 0",
    ]
    if p.decay == "generic":
        out.append(f"{MESON}:addChannel = 1 1.0 91 2 -2")
    else:
        m_ap, table = DECAYS[p.decay]
        out += [f"{DARK_PHOTON}:all = GeneralResonance void 1 0 0 {m_ap:g} 0.001 0 0 0",
                f"{MESON}:addChannel = 1 1.0 101 {DARK_PHOTON} {DARK_PHOTON}"]
        out += [f"{DARK_PHOTON}:addChannel = 1 {br:g} 101 {d} -{d}" for br, d in table]
    return out


def sample_boltzmann_momenta(n: int, m: float, T: float, rng: np.random.Generator) -> np.ndarray:
    """|p| from f(p) ∝ p² exp(-(sqrt(p²+m²) - m)/T), by rejection from a Gamma(3, T) proposal."""
    out = np.empty(0)
    while len(out) < n:
        k = max(2 * (n - len(out)), 16)
        p = rng.gamma(3.0, T, size=k)
        e = np.sqrt(p * p + m * m)
        accept = rng.random(k) < np.exp((p - e) / T)  # f/g ≤ 1 since E - m ≥ p - m
        out = np.concatenate([out, p[accept]])
    return out[:n]


def suep_mesons(M: float, m: float, T: float, rng: np.random.Generator) -> np.ndarray:
    """(k, 4) meson 4-momenta (px, py, pz, E) in the mediator rest frame with ΣE = M, Σp = 0."""
    while True:
        n_guess = int(2 * M / (m + 1.5 * T)) + 8
        p = sample_boltzmann_momenta(n_guess, m, T, rng)
        e = np.sqrt(p * p + m * m)
        k = int(np.searchsorted(np.cumsum(e), M)) + 1
        if k > n_guess:
            continue  # rare: not enough energy drawn, redraw
        if k < 3 or k * m >= M:
            continue
        cos_t = rng.uniform(-1, 1, k)
        phi = rng.uniform(-np.pi, np.pi, k)
        sin_t = np.sqrt(1 - cos_t**2)
        vec = p[:k, None] * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
        vec -= vec.mean(axis=0)
        p2 = (vec * vec).sum(axis=1)
        # rescale |p| by one factor so that Σ sqrt(λ² p² + m²) = M (monotonic in λ: bisection)
        lo, hi = 0.0, 1.0
        while np.sqrt(hi * hi * p2 + m * m).sum() < M:
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.sqrt(mid * mid * p2 + m * m).sum() < M:
                lo = mid
            else:
                hi = mid
        vec *= 0.5 * (lo + hi)
        e = np.sqrt((vec * vec).sum(axis=1) + m * m)
        return np.column_stack([vec, e])


def boost(p4: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Boost 4-vectors (k, 4) from the rest frame of ``parent`` (px, py, pz, E) to the lab."""
    b = parent[:3] / parent[3]
    b2 = float(b @ b)
    if b2 <= 0:
        return p4.copy()
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = p4[:, :3] @ b
    gamma2 = (gamma - 1.0) / b2
    out = np.empty_like(p4)
    out[:, :3] = p4[:, :3] + (gamma2 * bp + gamma * p4[:, 3])[:, None] * b
    out[:, 3] = gamma * (p4[:, 3] + bp)
    return out


class Source:
    """Production Pythia (nextBatch) + a decay Pythia for the thermal mesons, merged per batch."""

    def __init__(self, cfg, params: Params, seed: int, production_settings: list[str]):
        from darkshower.simulate.pythia import ChargeTable, make_pythia

        self.params = params
        self.pythia = make_pythia(production_settings, seed)
        decay_seed = (seed * 7919) % 900_000_000 + 1
        self.decayer = make_pythia(decay_settings(params), decay_seed)
        self.charges = ChargeTable(self.decayer)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))

    def sigma(self) -> tuple[float, float]:
        info = self.pythia.infoPython()
        return float(info.sigmaGen()), float(info.sigmaErr())

    def _decay(self, mesons: np.ndarray) -> list[tuple]:
        ev = self.decayer.event
        for _ in range(10):
            ev.reset()
            m = self.params.m_dark
            for px, py, pz, e in mesons.tolist():
                ev.append(MESON, 91, 0, 0, px, py, pz, e, m)
            if self.decayer.next():
                # one pass over the decay record (~100 entries; no batched accessor exists for a filled event)
                return [(q.id(), q.status(), q.px(), q.py(), q.pz(), q.e()) for q in ev.particles()]
        raise RuntimeError("Pythia failed to decay the SUEP mesons 10 times in a row")

    def next_batch(self, n: int) -> ak.Array:
        batch = self.pythia.nextBatch(n)
        prt = batch.prt
        counts = ak.to_numpy(ak.num(prt, axis=1))
        ev_idx = np.repeat(np.arange(len(prt)), counts)
        pid = ak.to_numpy(ak.flatten(prt.id))
        status = ak.to_numpy(ak.flatten(prt.status)).copy()
        mom = ak.flatten(prt.p)
        px, py, pz, e = (ak.to_numpy(mom[c]) for c in ("px", "py", "pz", "e"))
        med = (pid == 25) & (status > 0)
        med_idx = np.flatnonzero(med)
        if len(med_idx) != len(prt):
            raise RuntimeError("SUEP: expected exactly one undecayed mediator per event")
        status[med_idx] = -62  # the mediator decays into the dark sector
        extra = []
        for k, i in enumerate(med_idx.tolist()):
            parent = np.array([px[i], py[i], pz[i], e[i]])
            mass = float(np.sqrt(max(parent[3] ** 2 - (parent[:3] ** 2).sum(), 0.0)))
            mesons = boost(suep_mesons(mass, self.params.m_dark, self.params.temperature, self.rng), parent)
            rec = self._decay(mesons)
            extra.append(np.array([(k, *r) for r in rec], dtype=float).reshape(-1, 7))
        add = np.concatenate(extra)
        all_ev = np.concatenate([ev_idx, add[:, 0].astype(np.int64)])
        order = np.argsort(all_ev, kind="stable")
        cols = {
            "id": np.concatenate([pid, add[:, 1].astype(np.int32)])[order],
            "status": np.concatenate([status, add[:, 2].astype(np.int32)])[order],
        }
        p4 = {c: np.concatenate([v, add[:, j]])[order] for c, v, j in
              (("px", px, 3), ("py", py, 4), ("pz", pz, 5), ("e", e, 6))}
        n_per = np.bincount(all_ev, minlength=len(prt))
        zeros = np.zeros(len(order))
        flat = ak.zip({**cols, "p": ak.zip(p4), "vProd": ak.zip({"px": zeros, "py": zeros})}, depth_limit=1)
        return ak.Array({"prt": ak.unflatten(flat, n_per), "info": batch.info})
