"""Representation choice + parameters as one JSON-serialisable pydantic model.

``parse_representation({"kind": "image", "n_pixels": 32})`` -> ImageConfig; an unknown key or a
bad value raises one ConfigError naming it. ``config.model_dump()`` round-trips.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from darkshower.errors import ConfigError


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    max_jets: int | None = Field(2, ge=1, description="leading jets per event (None: all)")
    use_weights: bool = Field(True, description="scale constituents by their 'weight' field (PUPPI) when present")


class ConstituentsConfig(_Base):
    kind: Literal["constituents"] = "constituents"
    n_constituents: int = Field(100, ge=1, le=10000)
    centre: bool = False
    rotate: bool = False
    flip: bool = False
    displacement: bool | None = None
    standardize: bool = True
    standardizer: dict | None = Field(None, description="fitted statistics (Standardizer.to_dict())")


class ImageConfig(_Base):
    kind: Literal["image"] = "image"
    n_pixels: int = Field(40, ge=1, le=1024)
    half_width: float = Field(0.8, gt=0)
    channels: str | list[list[int]] | dict[str, list[int]] = "all"
    normalize: bool = True
    centre: Literal["axis", "centroid"] = "axis"


class EventImageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    kind: Literal["event_image"] = "event_image"
    n_eta: int = Field(50, ge=1, le=4096)
    n_phi: int = Field(64, ge=1, le=4096)
    eta_max: float = Field(2.5, gt=0)
    channels: str | list[list[int]] | dict[str, list[int]] = "detector"
    collection: str = "auto"  # "particles" when the dataset has them, else "jets"
    use_weights: bool = True


class LundConfig(_Base):
    kind: Literal["lund"] = "lund"
    max_level: int = Field(-1, ge=-1, description="0 primary, 1 +secondary, ..., -1 full tree")
    undirected: bool = False


class ObservablesConfig(_Base):
    kind: Literal["observables"] = "observables"
    zcut: float = Field(0.1, ge=0, lt=0.5)
    sd_beta: float = Field(0.0, ge=0)
    r0: float = Field(0.8, gt=0)
    tau_beta: float = Field(1.0, gt=0)
    ecf_groomed: bool = True
    columns: list[str] | None = None
    include_event: bool = True


RepresentationConfig = Annotated[
    ConstituentsConfig | ImageConfig | EventImageConfig | LundConfig | ObservablesConfig,
    Field(discriminator="kind"),
]
_ADAPTER = TypeAdapter(RepresentationConfig)
KINDS = ("constituents", "image", "event_image", "lund", "observables")


def parse_representation(data) -> BaseModel:
    """Validate a dict (or JSON text, or an existing config) into the right config model."""
    if isinstance(data, BaseModel):
        return data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"representation config is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"representation config must be a mapping, got {type(data).__name__}")
    if "kind" not in data:
        raise ConfigError(f"representation config: missing 'kind' (one of {', '.join(KINDS)})")
    if data["kind"] not in KINDS:
        raise ConfigError(f"representation config: kind {data['kind']!r} is unknown; choose one of {', '.join(KINDS)}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = [str(x) for x in err["loc"]]
            if loc and loc[0] == data["kind"]:
                loc = loc[1:]
            where = ".".join(loc) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown key for kind '{data['kind']}' (check the spelling; see docs/representations.md)"
            msgs.append(f"'{where}': {msg}")
        raise ConfigError("representation config: " + "; ".join(msgs)) from None


def config_json(cfg: BaseModel) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
