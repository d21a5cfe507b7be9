"""Semivisible jets: s-channel leptophobic Z' -> dark quarks via Pythia's Hidden Valley module.

Parameters follow the CMS SVJ production (cms-svj/SVJProduction svjHelper): m_dark is the dark
meson mass (pseudoscalar = vector), dark quark mass m_dark/2, Lambda from the running-coupling
choice ``alpha`` (peak/low/high) unless given, r_inv set through the dark mesons' branching
ratios to the invisible stand-ins 51 (pseudoscalars) and 53 (vectors). For Pythia >= 8.309 the
Lambda is only used with ``HiddenValley:setLambda = on`` and pTminFSR must be >= 1.1 Lambda;
both are handled here.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from darkshower.config import StrictModel

DESCRIPTION = "semivisible jets (Hidden Valley, s-channel Z')"

#: quark masses [GeV] used for kinematic thresholds and mass-insertion branching ratios
QUARK_MASSES = {1: 0.0048, 2: 0.0023, 3: 0.095, 4: 1.275, 5: 4.18}

DARK_PSEUDOSCALARS = (4900111, 4900211)
DARK_VECTORS = (4900113, 4900213)


class Params(StrictModel):
    m_med: float = Field(2000.0, gt=0.0, description="Z' mediator mass [GeV]")
    m_dark: float = Field(20.0, gt=0.0, description="dark meson mass [GeV] (dark quark: m_dark/2)")
    r_inv: float = Field(0.3, ge=0.0, le=1.0, description="invisible fraction of dark meson decays")
    alpha: Literal["peak", "low", "high"] | float = Field(
        "peak", description="dark coupling at 1 TeV: peak/low/high (CMS) or a number; ignored if Lambda given"
    )
    Lambda: float | None = Field(None, gt=0.0, description="dark confinement scale [GeV]; overrides alpha")
    m_dark_quark: float | None = Field(
        None, ge=0.4, description="dark quark mass [GeV] (default m_dark/2, at least 0.4: Pythia fails below); "
        "e.g. 0.5 with m_dark = Lambda = 5 for the DarkCLR 'Aachen' benchmark"
    )
    n_c: int = Field(2, ge=2, le=10, description="number of dark colours (HiddenValley:Ngauge)")
    n_f: int = Field(2, ge=1, le=8, description="number of dark flavours (HiddenValley:nFlav)")
    prob_vector: float = Field(0.75, ge=0.0, le=1.0, description="fraction of spin-1 dark mesons")
    decay: Literal["mass_insertion", "democratic", "simple"] = Field(
        "mass_insertion",
        description="visible decays: pseudoscalars ∝ m_q² (mass insertion) with democratic vectors, "
        "all democratic, or all to d dbar",
    )
    channel: Literal["s", "t"] = Field(
        "s", description="s: Z' -> dark quarks; t: Pythia-only pair production of bifundamental mediators "
        "(mass m_med) each decaying to an SM quark and a dark quark"
    )

    @model_validator(mode="after")
    def _physics(self):
        if isinstance(self.alpha, float) and self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.m_dark / 2 >= self.m_med / 2:
            raise ValueError(f"m_dark ({self.m_dark}) must be well below m_med ({self.m_med})")
        if not self.visible_quarks() and self.r_inv < 1.0:
            raise ValueError(
                f"m_dark = {self.m_dark} GeV is below every quark-pair threshold: no visible decay; use r_inv = 1"
            )
        return self

    def b0(self) -> float:
        return 11.0 / 6.0 * self.n_c - 2.0 / 6.0 * self.n_f

    def lambda_peak(self) -> float:
        return 3.2 * self.m_dark**0.8

    def alpha_value(self) -> float:
        peak = math.pi / (self.b0() * math.log(1000.0 / self.lambda_peak()))
        if isinstance(self.alpha, str):
            return {"peak": 1.0, "low": 0.5, "high": 1.5}[self.alpha] * peak
        return float(self.alpha)

    def lambda_value(self) -> float:
        if self.Lambda is not None:
            return float(self.Lambda)
        return 1000.0 * math.exp(-math.pi / (self.b0() * self.alpha_value()))

    def visible_quarks(self) -> list[int]:
        return [q for q, m in QUARK_MASSES.items() if 2 * m < self.m_dark]

    def quark_mass(self) -> float:
        if self.m_dark_quark is not None:
            return float(self.m_dark_quark)
        # Pythia crashes for very light dark quarks (Knapen's cards use >= 0.4 GeV)
        return max(self.m_dark / 2.0, 0.4)


def _visible_brs(p: Params, pseudoscalar: bool) -> list[tuple[int, float]]:
    quarks = p.visible_quarks()
    vis = 1.0 - p.r_inv
    if not quarks or vis <= 0:
        return []
    if p.decay == "simple":
        return [(1, vis)]
    if pseudoscalar and p.decay == "mass_insertion":
        w = {q: QUARK_MASSES[q] ** 2 for q in quarks}
        tot = sum(w.values())
        return [(q, vis * w[q] / tot) for q in quarks]
    return [(q, vis / len(quarks)) for q in quarks]


def _decay_block(p: Params) -> list[str]:
    out: list[str] = []
    for meson in DARK_PSEUDOSCALARS + DARK_VECTORS:
        pseudo = meson in DARK_PSEUDOSCALARS
        inv = 51 if pseudo else 53
        channels = []
        if p.r_inv > 0:
            channels.append(f"1 {p.r_inv:.6f} 0 {inv} -{inv}")
        channels += [f"1 {br:.6f} 91 {q} -{q}" for q, br in _visible_brs(p, pseudo)]
        for k, ch in enumerate(channels):
            out.append(f"{meson}:{'oneChannel' if k == 0 else 'addChannel'} = {ch}")
    return out


def _production(p: Params) -> list[str]:
    m = p.m_med
    if p.channel == "t":
        flavours = "DUSCBT"
        return [
            *[line for i in range(1, 7) for line in (f"{4900000 + i}:m0 = {m:g}", f"{4900000 + i}:mMin = {m - 1:g}",
                                                   f"{4900000 + i}:mMax = {m + 1:g}", f"{4900000 + i}:mWidth = 0.01")],
            *[f"{4900010 + i}:m0 = 50000" for i in range(1, 7)],
            "4900023:m0 = 50000",
            *[f"HiddenValley:gg2{f}v{f}vbar = on" for f in flavours],
            *[f"HiddenValley:qqbar2{f}v{f}vbar = on" for f in flavours],
        ]
    return [
        "HiddenValley:ffbar2Zv = on",
        f"4900023:m0 = {m:g}",
        f"4900023:mMin = {m - 1:g}",
        f"4900023:mMax = {m + 1:g}",
        "4900023:mWidth = 0.01",
        "4900023:oneChannel = 1 0.982 102 4900101 -4900101",
        # small Z' -> q qbar channels: needed for q qbar -> Z' production (zero cross-section otherwise)
        *[f"4900023:addChannel = 1 0.003 102 {q} -{q}" for q in range(1, 7)],
        # decouple bifundamentals and HV leptons
        *[f"{4900000 + i}:m0 = 50000" for i in range(1, 7)],
        *[f"{4900010 + i}:m0 = 50000" for i in range(1, 7)],
    ]


def settings(p: Params) -> list[str]:
    lam = p.lambda_value()
    out = [
        *_production(p),
        f"4900101:m0 = {p.quark_mass():g}",
        *[f"{m}:m0 = {p.m_dark:g}" for m in DARK_PSEUDOSCALARS + DARK_VECTORS],
        "51:m0 = 0.0",
        "51:isResonance = false",
        "53:m0 = 0.0",
        "53:isResonance = false",
        f"HiddenValley:Ngauge = {p.n_c}",
        "HiddenValley:spinFv = 0",
        "HiddenValley:FSR = on",
        "HiddenValley:fragment = on",
        "HiddenValley:alphaOrder = 1",
        "HiddenValley:setLambda = on",
        f"HiddenValley:Lambda = {lam:.6g}",
        f"HiddenValley:pTminFSR = {1.1 * lam:.6g}",
        f"HiddenValley:nFlav = {p.n_f}",
        f"HiddenValley:probVector = {p.prob_vector:g}",
        *_decay_block(p),
    ]
    return out


def derived(p: Params) -> dict:
    """Derived physics quantities stored in the manifest."""
    return {
        "Lambda": p.lambda_value(),
        "alpha_dark": p.alpha_value() if p.Lambda is None else None,
        "m_dark_quark": p.quark_mass(),
        "pTminFSR": 1.1 * p.lambda_value(),
        "visible_quarks": p.visible_quarks(),
    }
