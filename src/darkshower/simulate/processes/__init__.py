"""Registry of generated processes. Each module defines ``Params`` (pydantic) and ``settings()``."""

from __future__ import annotations

from types import ModuleType

from darkshower.simulate.processes import emj, minbias, qcd, suep, svj, ttbar

PROCESSES: dict[str, ModuleType] = {
    "qcd": qcd,
    "svj": svj,
    "ttbar": ttbar,
    "emj": emj,
    "suep": suep,
    "minbias": minbias,
}
