"""Validated configuration of ``darkshower generate``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from darkshower.config import StrictModel, validate
from darkshower.errors import ConfigError


class JetConfig(StrictModel):
    algorithm: Literal["antikt"] = "antikt"
    radius: float = Field(0.8, gt=0.05, le=2.0, description="jet radius R")
    pt_min: float = Field(150.0, ge=0.0, description="minimum jet pT [GeV]")
    eta_max: float = Field(2.4, gt=0.0, le=5.0, description="maximum jet |eta|")
    min_jets: int = Field(2, ge=0, le=20, description="events need at least this many selected jets")
    store_r04: bool = Field(False, description="also store anti-kt R=0.4 jet kinematics (jets_r04)")
    r04_pt_min: float = Field(20.0, ge=0.0, description="minimum pT of the R=0.4 jets [GeV]")


class DetectorConfig(StrictModel):
    name: Literal["cms", "none"] = "cms"
    track_r_max_mm: float = Field(
        600.0, gt=0, description="tracks produced beyond this transverse radius are never reconstructed"
    )
    d0_resolution_mm: float = Field(0.02, ge=0, description="Gaussian smearing of the track impact parameter")


class GenerateConfig(StrictModel):
    process: str
    events: int = Field(..., gt=0, description="number of selected events to produce")
    seed: int = Field(1, ge=0, le=2**31 - 1)
    chunk_size: int = Field(500, gt=0, le=1_000_000)
    ecm: float = Field(13000.0, gt=0, description="centre-of-mass energy [GeV]")
    detector: DetectorConfig = DetectorConfig()
    jets: JetConfig = JetConfig()
    params: dict[str, Any] = Field(default_factory=dict, description="process parameters (see each process)")
    pythia: list[str] = Field(default_factory=list, description="extra Pythia settings 'Key = value'")
    resimulate: int = Field(
        0, ge=0, le=1000, description="K > 1: K shower/hadronization realizations of each hard process (RS3L)"
    )
    store_particles: bool = Field(
        False, description="also store every reconstructed candidate of the event (`particles`), e.g. for SUEP"
    )
    batch_size: int = Field(100, gt=0, le=10_000, description="events per Pythia nextBatch call")
    max_generated_factor: float = Field(
        200.0, gt=1, description="give up when a chunk generated this many times its target without filling it"
    )

    @model_validator(mode="after")
    def _check_process(self):
        from darkshower.simulate.processes import PROCESSES

        if self.process not in PROCESSES:
            raise ValueError(f"unknown process {self.process!r}; choose one of {sorted(PROCESSES)}")
        return self


def resolve_config(data: dict, where: str = "config") -> tuple[GenerateConfig, Any]:
    """Validate a generate config and its process parameters; return (config, params model)."""
    from darkshower.simulate.processes import PROCESSES

    process = data.get("process")
    if process is not None and process not in PROCESSES:
        raise ConfigError(f"{where}: unknown process {process!r}; choose one of {sorted(PROCESSES)}")
    cfg = validate(GenerateConfig, data, where)
    proc = PROCESSES[cfg.process]
    params = validate(proc.Params, cfg.params, f"{where}: {cfg.process} parameter")
    # store the fully resolved parameters (defaults filled in) in the config itself
    cfg = cfg.model_copy(update={"params": params.model_dump(mode="json")})
    return cfg, params
