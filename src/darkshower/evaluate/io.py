"""Files of an evaluation directory: strict JSON (NaN/inf → null), atomic writes, names."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from darkshower.data.dataset import atomic_write_text
from darkshower.errors import ConfigError, EvaluationError

METRICS = "metrics.json"
REPORT = "report.html"
DATA_DIR = "data"
EVENTS = "events.parquet"
SUPERVISED = "supervised.parquet"
FORMAT = "darkshower-evaluation"
SCHEMA_VERSION = "1.0"


def clean(obj: Any) -> Any:
    """Recursively convert numpy types to Python and non-finite floats to None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [clean(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(clean(obj), indent=1, allow_nan=False) + "\n")


def load_json(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise EvaluationError(f"{p}: not found") from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{p}: not valid JSON ({exc}); rerun `darkshower evaluate`") from None


def check_out_dir(out, option: str = "--out") -> Path:
    """Fail before any work when ``out`` cannot be an evaluation directory (a file, or below a file)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file, not a directory; give an evaluation directory such as "
                          f"{out.with_name(out.name + '_eval')}")
    parent = next((a for a in out.parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option} {out}: {parent} is a file, not a directory; choose another output directory")
    return out


def slug(text: str) -> str:
    """A file-name-safe version of a method or dataset name."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")
    return s or "x"
