"""Representation choice + parameters as one JSON-serialisable pydantic model.

``parse_representation({"kind": "image", "n_pixels": 32})`` -> ImageConfig; an unknown key or a
bad value raises one ConfigError naming it. ``config.model_dump()`` round-trips.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

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


#: jet observables (one value per jet; represent/observables.py JET_COLUMNS, kept here to avoid the numba import)
OBS_JET_COLUMNS = (
    "pt", "eta", "phi", "mass", "msoftdrop", "pt_softdrop", "tau1", "tau2", "tau3", "tau21", "tau32", "c2", "d2",
    "n2", "girth", "ptd", "axis_major", "axis_minor", "n_constituents", "n_charged", "n_softdrop", "lund_n_primary",
    "lund_n_primary_lnkt_gt0", "lund_max_lnkt",
)
#: per-event columns of represent/observables.py event_observables (EVENT_COLUMNS)
OBS_EVENT_COLUMNS = (
    "met_pt", "met_phi", "mt", "mjj", "dphi_min", "ht", "n_jets", "n_event_constituents", "n_event_particles",
    "sphericity", "aplanarity",
)
#: event-level representation: per-event columns it adds besides OBS_EVENT_COLUMNS (``dphi_j{i}`` per slot too)
EVENT_LEVEL_EXTRA = ("rt",)
#: event-level representation: the default event columns (the MET topology; ``dphi_j{i}`` added per jet slot)
EVENT_LEVEL_DEFAULT = ("met_pt", "mt", "rt", "mjj", "dphi_min")
_SLOT = re.compile(r"^j(\d+)_(.+)$")
_DPHI_SLOT = re.compile(r"dphi_j(\d+)")


def met_column(name: str) -> bool:
    """Whether an event-level column needs the missing transverse momentum (met_pt, met_phi)."""
    return name in ("met_pt", "met_phi", "mt", "rt", "dphi_min") or _DPHI_SLOT.fullmatch(name) is not None


def slot_column(name: str) -> tuple[int, str] | None:
    """(slot, jet column) of an event-level per-jet column ``j{slot}_{column}``, else None."""
    m = _SLOT.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


#: per-event columns of the two leading jets together: without a second jet ``mjj`` is the first jet's mass (an
#: exact copy of ``j0_mass``), so it carries nothing of its own there
PAIR_COLUMNS = ("mjj",)


def jet_slot(name: str, pairs: bool = False) -> int | None:
    """The jet slot whose absence zeroes an event-level column: ``j{i}_<observable>`` and ``dphi_j{i}`` -> i;
    with ``pairs`` also the columns of the two leading jets together (:data:`PAIR_COLUMNS`, e.g. ``mjj``) -> 1;
    None for the ``j{i}_present`` flags and other per-event columns."""
    sc = slot_column(name)
    if sc:
        return sc[0] if sc[1] != "present" else None
    if pairs and name in PAIR_COLUMNS:
        return 1
    m = _DPHI_SLOT.fullmatch(name)
    return int(m.group(1)) if m else None


class ObservablesConfig(_Base):
    kind: Literal["observables"] = "observables"
    zcut: float = Field(0.1, ge=0, lt=0.5)
    sd_beta: float = Field(0.0, ge=0)
    r0: float = Field(0.8, gt=0)
    tau_beta: float = Field(1.0, gt=0)
    ecf_groomed: bool = True
    columns: list[str] | None = None
    include_event: bool = True
    level: Literal["jet", "event"] = Field(
        "jet", description="jet: one row per jet (the max_jets leading jets); event: one row per event with the "
                           "max_jets leading jets' observables side by side (j0_mass, j1_mass, ...; missing jets "
                           "padded with 0 and flagged by j{i}_present) and the event_columns")
    event_columns: list[str] | None = Field(
        None, description="level event: per-event columns (None: the MET topology met_pt, mt, rt = met_pt/mt, mjj, "
                          "dphi_min and dphi_j{i} per jet slot); resolved into `columns`")
    left_out: list[str] = Field(
        default_factory=list, description="columns the training data could not give (the MET columns at event "
                                          "level on data without MET, n_charged on untyped constituents); filled "
                                          "when a run is resolved")

    @model_validator(mode="before")
    @classmethod
    def _resolve_event_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("level") == "event":
            return resolve_event_columns(data)
        return data


def event_level_event_columns(n_slots: int) -> list[str]:
    """Every per-event column an event-level representation with ``n_slots`` jet slots can hold."""
    return [*OBS_EVENT_COLUMNS, *EVENT_LEVEL_EXTRA, *(f"dphi_j{i}" for i in range(n_slots))]


def resolve_event_columns(data: dict) -> dict:
    """The explicit ``columns`` of an event-level observables config (a dict, before validation).

    ``columns`` entries: a jet observable (``mass``) expands to every slot (``j0_mass``, ``j1_mass``, ...)
    and adds the slots' ``j{i}_present`` flags (from slot 1 on: slot 0 is missing only in events without
    jets); ``j{i}_<observable>`` and ``j{i}_present`` are kept; per-event names are kept. ``columns`` None:
    every jet observable. Then the ``event_columns`` (default EVENT_LEVEL_DEFAULT + ``dphi_j{i}``) not
    already listed and not in ``left_out`` are appended. The result is idempotent, so a resolved config
    (config.yaml of a run) parses to itself."""
    data = dict(data)
    n = data.get("max_jets", 2)
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > 16:
        raise ValueError(f"level event needs max_jets = the number of jet slots (an integer 1..16, e.g. 2), got {n!r}")
    left = set(data.get("left_out") or [])
    ev_all = event_level_event_columns(n)
    cols = data.get("columns")
    out: list[str] = []
    flags: list[str] = []
    bad: list[str] = []
    for c in (list(OBS_JET_COLUMNS) if cols is None else list(cols)):
        sc = slot_column(c)
        if c in OBS_JET_COLUMNS:
            out.extend(f"j{i}_{c}" for i in range(n))
            flags.extend(f"j{i}_present" for i in range(1, n))
        elif sc is not None and sc[0] < n and (sc[1] in OBS_JET_COLUMNS or sc[1] == "present"):
            out.append(c)
        elif c in ev_all:
            out.append(c)
        else:
            bad.append(c)
    evc = data.get("event_columns")
    evc = [*EVENT_LEVEL_DEFAULT, *(f"dphi_j{i}" for i in range(n))] if evc is None else list(evc)
    bad += [c for c in evc if c not in ev_all]
    if bad:
        raise ValueError(f"level event: unknown columns {bad}; use jet observables ({', '.join(OBS_JET_COLUMNS)}), "
                         f"optionally as j{{slot}}_<name> with slot < max_jets={n}, j{{slot}}_present, or per-event "
                         f"columns ({', '.join(ev_all)})")
    for c in flags + evc:
        if c not in left:
            out.append(c)
    data["columns"] = list(dict.fromkeys(out))
    data["event_columns"] = [c for c in evc if c not in left]
    return data


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
