"""Emerging jets: pair-produced bifundamental mediators X_d -> d + dark quark, long-lived dark pions.

Settings follow the CMS "unflavored" model (EXO-22-015 production helper, see docs/generation.md):
SU(3) dark sector with 7 flavours, dark pions of mass ``m_dark`` and proper decay length
``ctau`` [mm] decaying to d dbar, dark rho mesons (4 m_dark) decaying to pion pairs.
Production vertices of all particles are stored, and the cms detector loses tracks produced
far from the beam line and records their impact parameter.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from darkshower.config import StrictModel

DESCRIPTION = "emerging jets (bifundamental pair production, long-lived dark pions)"

#: SM hadrons that ParticleDecays:limitTau0 (tau0 > 10 mm) keeps stable in the other samples;
#: EMJ must switch limitTau0 off for the dark pions, so these are made stable explicitly.
SM_LONG_LIVED = (310, 3122, 3112, 3222, 3312, 3322, 3334)


class Params(StrictModel):
    m_med: float = Field(1000.0, gt=0.0, description="bifundamental mediator mass [GeV]")
    m_dark: float = Field(10.0, gt=0.0, description="dark pion mass [GeV]")
    ctau: float = Field(25.0, gt=0.0, le=1e5, description="dark pion proper decay length [mm]")
    Lambda: float | None = Field(None, gt=0.0, description="dark confinement scale [GeV] (default 2 m_dark)")
    n_f: int = Field(7, ge=1, le=8, description="dark flavours")

    @model_validator(mode="after")
    def _physics(self):
        if 2 * 0.0048 >= self.m_dark:
            raise ValueError(f"m_dark = {self.m_dark} GeV is too light to decay to d dbar")
        if self.m_med <= 4 * self.m_dark:
            raise ValueError(f"m_med ({self.m_med}) must be well above the dark hadron masses")
        return self

    def lambda_value(self) -> float:
        return self.Lambda if self.Lambda is not None else 2.0 * self.m_dark


def settings(p: Params) -> list[str]:
    lam = p.lambda_value()
    m = p.m_med
    return [
        "HiddenValley:gg2DvDvbar = on",
        "HiddenValley:qqbar2DvDvbar = on",
        "HiddenValley:alphaOrder = 1",
        "HiddenValley:Ngauge = 3",
        f"HiddenValley:nFlav = {p.n_f}",
        "HiddenValley:FSR = on",
        "HiddenValley:fragment = on",
        "HiddenValley:spinFv = 0",
        "HiddenValley:setLambda = on",
        f"HiddenValley:Lambda = {lam:.6g}",
        f"HiddenValley:pTminFSR = {max(11.0, 1.1 * lam):.6g}",
        f"4900101:m0 = {2 * p.m_dark:g}",
        f"4900001:m0 = {m:g}",
        "4900001:mWidth = 10",
        *[f"{4900000 + i}:m0 = 50000" for i in range(2, 7)],
        *[f"{4900010 + i}:m0 = 50000" for i in range(1, 7)],
        "4900023:m0 = 50000",
        f"4900111:m0 = {p.m_dark:g}",
        f"4900211:m0 = {p.m_dark:g}",
        f"4900111:tau0 = {p.ctau:g}",
        f"4900211:tau0 = {p.ctau:g}",
        f"4900113:m0 = {4 * p.m_dark:g}",
        f"4900213:m0 = {4 * p.m_dark:g}",
        "4900111:oneChannel = 1 1.000 91 1 -1",
        "4900113:oneChannel = 1 0.999 91 4900111 4900111",
        "4900113:addChannel = 1 0.001 91 1 -1",
        "4900211:oneChannel = 1 1.000 91 1 -1",
        "4900213:oneChannel = 1 0.999 91 4900211 4900211",
        "4900213:addChannel = 1 0.001 91 1 -1",
        "ParticleDecays:limitTau0 = off",
        *[f"{pid}:mayDecay = off" for pid in SM_LONG_LIVED],
        "ParticleDecays:limitCylinder = on",
        "ParticleDecays:xyMax = 30000",
        "ParticleDecays:zMax = 30000",
    ]


def derived(p: Params) -> dict:
    return {"Lambda": p.lambda_value(), "pTminFSR": max(11.0, 1.1 * p.lambda_value())}
