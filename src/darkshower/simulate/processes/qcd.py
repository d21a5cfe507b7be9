"""Hard QCD dijets (Pythia ``HardQCD:all``), optionally pT-hat biased with event weights."""

from __future__ import annotations

from pydantic import Field, model_validator

from darkshower.config import StrictModel

DESCRIPTION = "hard QCD 2->2 dijets"


class Params(StrictModel):
    pthat_min: float = Field(200.0, ge=0.0, description="PhaseSpace:pTHatMin [GeV]")
    pthat_max: float | None = Field(None, gt=0.0, description="PhaseSpace:pTHatMax [GeV] (none = no limit)")
    bias_pow: float | None = Field(
        None, gt=0.0, description="PhaseSpace:bias2Selection power; events then carry weights"
    )
    bias_ref: float | None = Field(None, gt=0.0, description="PhaseSpace:bias2SelectionRef [GeV]")

    @model_validator(mode="after")
    def _order(self):
        if self.pthat_max is not None and self.pthat_max <= self.pthat_min:
            raise ValueError(f"pthat_max ({self.pthat_max}) must be larger than pthat_min ({self.pthat_min})")
        return self


def settings(p: Params) -> list[str]:
    out = ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {p.pthat_min:g}"]
    if p.pthat_max is not None:
        out.append(f"PhaseSpace:pTHatMax = {p.pthat_max:g}")
    if p.bias_pow is not None:
        out += ["PhaseSpace:bias2Selection = on", f"PhaseSpace:bias2SelectionPow = {p.bias_pow:g}"]
        out.append(f"PhaseSpace:bias2SelectionRef = {p.bias_ref if p.bias_ref is not None else max(p.pthat_min, 10.0):g}")
    return out
