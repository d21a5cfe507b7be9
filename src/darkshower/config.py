"""Shared configuration helpers: strict pydantic models, YAML loading, ``--set key=value`` overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from darkshower.errors import ConfigError


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def format_validation_error(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the docs for valid keys)"
        lines.append(f"{where}: '{loc}': {msg} (got {err.get('input')!r})")
    return "; ".join(lines)


def validate(model: type[BaseModel], data: dict, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def load_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {p}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_assignment(text: str, flag: str = "--set") -> tuple[str, Any]:
    """Parse ``key=value`` (value parsed as YAML, so numbers, booleans and lists work)."""
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} r_inv=0.3")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"{flag} {text!r}: empty key")
    try:
        value = yaml.safe_load(raw.strip()) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw.strip()
    return key, value


def set_nested(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
    node[parts[-1]] = value
