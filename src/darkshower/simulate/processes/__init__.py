"""Registry of generated processes. Each module defines ``Params`` (pydantic) and ``settings()``."""

from __future__ import annotations

from types import ModuleType

from darkshower.simulate.processes import qcd, svj

PROCESSES: dict[str, ModuleType] = {
    "qcd": qcd,
    "svj": svj,
}
