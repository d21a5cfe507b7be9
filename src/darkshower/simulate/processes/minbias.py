"""Minimum-bias interactions for pileup overlay: Pythia ``SoftQCD:nonDiffractive`` (or inelastic).

``darkshower generate minbias --events N --out DIR`` stores every visible stable particle of each
interaction at particle level (``particles``: pt, eta, phi, e, pid, charge, type, d0, r_prod),
with no jet selection: the dataset is a pileup library for ``--pileup MU --pileup-library DIR``
(see docs/pileup.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from darkshower.config import StrictModel

DESCRIPTION = "minimum-bias interactions (pileup library)"

#: config values this process needs; other values given for them are errors (config.resolve_config)
FORCED_CONFIG = {"detector.name": "none", "jets.min_jets": 0, "store_particles": True}


class Params(StrictModel):
    soft_qcd: Literal["nonDiffractive", "inelastic"] = Field(
        "nonDiffractive", description="SoftQCD:nonDiffractive (default) or SoftQCD:inelastic (adds diffraction)"
    )


def settings(p: Params) -> list[str]:
    return [f"SoftQCD:{p.soft_qcd} = on"]
