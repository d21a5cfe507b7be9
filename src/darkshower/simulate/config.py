"""Validated configuration of ``darkshower generate``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from darkshower.config import StrictModel, validate
from darkshower.errors import ConfigError


class JetConfig(StrictModel):
    algorithm: Literal["antikt"] = "antikt"
    radius: float = Field(0.8, gt=0.05, le=2.0, description="jet radius R")
    pt_min: float = Field(150.0, ge=0.0, description="minimum jet pT [GeV]")
    eta_max: float = Field(2.4, gt=0.0, le=5.0, description="maximum jet |eta|")
    pt_max: float | None = Field(
        None, gt=0.0, description="maximum jet pT [GeV]: an analysis window (e.g. 150-350 GeV, the DarkCLR "
        "benchmark); jets above it are not stored and min_jets counts the jets inside"
    )
    min_jets: int = Field(2, ge=0, le=20, description="events need at least this many selected jets")
    store_r04: bool = Field(False, description="also store anti-kt R=0.4 jet kinematics (jets_r04)")
    r04_pt_min: float = Field(20.0, ge=0.0, description="minimum pT of the R=0.4 jets [GeV]")

    @model_validator(mode="after")
    def _window(self) -> JetConfig:
        if self.pt_max is not None and self.pt_max <= self.pt_min:
            raise ValueError(f"jets.pt_max ({self.pt_max:g}) must be above jets.pt_min ({self.pt_min:g}): "
                             "no jet would be kept")
        return self


class DetectorConfig(StrictModel):
    name: Literal["cms", "none"] = "cms"
    track_r_max_mm: float = Field(
        600.0, gt=0, description="tracks produced beyond this transverse radius are never reconstructed"
    )
    d0_resolution_mm: float = Field(0.02, ge=0, description="Gaussian smearing of the track impact parameter")


class PuppiConfig(StrictModel):
    """PUPPI-like weights (arXiv:1407.6013); see docs/pileup.md."""

    r0: float = Field(0.4, gt=0.0, le=1.5, description="cone radius R0 of the local shape alpha")
    r_min: float = Field(0.02, ge=0.0, lt=0.4, description="neighbours closer than this are ignored (collinear splits)")
    weight_min: float = Field(0.01, ge=0.0, lt=1.0, description="weights below this are set to 0")
    neutral_pt_min: float = Field(0.2, ge=0.0, description="neutrals need weighted pT >= A + B * N_vertices [GeV]: A")
    neutral_pt_slope: float = Field(0.015, ge=0.0, description="... B [GeV per vertex]")
    min_charged_pu: int = Field(2, ge=1, description="fewer charged pileup tracks in an event: neutrals keep weight 1")


class PileupConfig(StrictModel):
    """Pileup overlay and its mitigation (docs/pileup.md). Inactive (mu = 0, mitigation none) by default."""

    mu: float = Field(0.0, ge=0.0, le=1000.0, description="mean number of overlaid minimum-bias interactions (Poisson)")
    library: str | None = Field(None, description="minimum-bias library dataset (darkshower generate minbias)")
    beam_spot_z_mm: float = Field(35.0, gt=0.0, le=1000.0, description="Gaussian width of the vertex z distribution [mm]")
    mitigation: str = Field(
        "none", description="none, chs, puppi or distillnet:RUN (a DistillNet student run; detector step)"
    )
    dz_resolution_mm: float = Field(0.03, ge=0.0, description="constant term a of the track dz resolution [mm]")
    dz_ms_mm_gev: float = Field(
        0.10, ge=0.0, description="multiple-scattering term b [mm GeV]: sigma_dz = sqrt(a^2 + (b sqrt(cosh eta) / pT)^2)"
    )
    association_nsigma: float = Field(3.0, gt=0.0, description="tracks with |dz| < n sigma_dz are associated with the PV")
    puppi: PuppiConfig = PuppiConfig()

    @property
    def active(self) -> bool:
        return self.mu > 0 or self.mitigation != "none"

    @field_validator("mitigation")
    @classmethod
    def _mitigation(cls, v: str) -> str:
        if v in ("none", "chs", "puppi"):
            return v
        if v.startswith("distillnet:") and v.split(":", 1)[1].strip():
            return "distillnet:" + str(Path(v.split(":", 1)[1].strip()).expanduser().resolve())
        raise ValueError(
            f"mitigation {v!r}: choose none, chs, puppi or distillnet:RUN (RUN: the --out of "
            "`darkshower distill PU_GNN_RUN --student per-particle`)"
        )

    @model_validator(mode="after")
    def _library(self):
        if self.mu > 0 and not self.library:
            raise ValueError(
                f"mu = {self.mu:g} needs a minimum-bias library: make one with "
                "`darkshower generate minbias --events N --out DIR` and pass --pileup-library DIR"
            )
        return self


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
    pileup: PileupConfig = PileupConfig()

    @model_validator(mode="after")
    def _check_process(self):
        from darkshower.simulate.processes import PROCESSES

        if self.process not in PROCESSES:
            raise ValueError(f"unknown process {self.process!r}; choose one of {sorted(PROCESSES)}")
        if self.pileup.active and hasattr(PROCESSES[self.process], "FORCED_CONFIG"):
            raise ValueError(f"process {self.process!r} makes a pileup library: it takes no pileup or mitigation")
        return self

    def identity(self) -> dict:
        """The config as recorded in the manifest (and compared on resume). An inactive ``pileup``
        section is left out, so that mu = 0 reproduces datasets made before pileup existed (and so is an unset
        ``jets.pt_max``)."""
        out = self.model_dump(mode="json")
        if not self.pileup.active:
            del out["pileup"]
        if self.jets.pt_max is None:  # as before the window existed
            del out["jets"]["pt_max"]
        return out


def resolve_config(data: dict, where: str = "config") -> tuple[GenerateConfig, Any]:
    """Validate a generate config and its process parameters; return (config, params model)."""
    from darkshower.simulate.processes import PROCESSES

    process = data.get("process")
    if process is not None and process not in PROCESSES:
        raise ConfigError(f"{where}: unknown process {process!r}; choose one of {sorted(PROCESSES)}")
    forced = getattr(PROCESSES[process], "FORCED_CONFIG", {}) if process is not None else {}
    if forced:
        data = copy.deepcopy(data)
    for dotted, value in forced.items():  # e.g. minbias: particle level, no jet selection
        node = data
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: '{'.'.join(head)}' must be a section")
        if last in node and node[last] != value:
            raise ConfigError(
                f"{where}: process {process!r} requires {dotted} = {value!r} (got {node[last]!r}); drop that option"
            )
        node[last] = value
    cfg = validate(GenerateConfig, data, where)
    proc = PROCESSES[cfg.process]
    params = validate(proc.Params, cfg.params, f"{where}: {cfg.process} parameter")
    # store the fully resolved parameters (defaults filled in) in the config itself
    cfg = cfg.model_copy(update={"params": params.model_dump(mode="json")})
    return cfg, params
