"""Hadronic top-quark pairs: a standard non-dark anomaly and an alternative background."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from darkshower.config import StrictModel

DESCRIPTION = "top-quark pairs (hadronic W decays by default)"


class Params(StrictModel):
    decay: Literal["hadronic", "all"] = Field("hadronic", description="W decays: to quarks only, or all")
    pthat_min: float = Field(300.0, ge=0.0, description="PhaseSpace:pTHatMin [GeV] (boosted tops)")
    m_top: float = Field(172.5, gt=100.0, lt=250.0, description="top-quark mass [GeV]")


def settings(p: Params) -> list[str]:
    out = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", f"PhaseSpace:pTHatMin = {p.pthat_min:g}", f"6:m0 = {p.m_top:g}"]
    if p.decay == "hadronic":
        out += ["24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
    return out
