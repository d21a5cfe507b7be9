"""Models: one module per method family, all against :class:`darkshower.models.base.Method`.

``get_method("ae-hlf")`` returns the class; the registry maps CLI names to ``module:Class`` and
imports lazily (torch and the model code are loaded only when a method is used). Every class is
checked (:func:`darkshower.models.base.check_method`) the first time it is loaded.

Other packages add methods without editing darkshower, either in code::

    from darkshower.models import register_method
    register_method("my-ae", MyAutoencoder)            # or "my_pkg.models:MyAutoencoder"

or through an entry point in their ``pyproject.toml`` (found when darkshower looks a method up)::

    [project.entry-points."darkshower.methods"]
    my-ae = "my_pkg.models:MyAutoencoder"
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
from typing import Any

from darkshower.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "darkshower.methods"

#: built-in method name -> "module:Class" (modules relative to darkshower.models)
METHODS: dict[str, str] = {
    "ae-hlf": "ae:HLFAutoencoder",
    "ae-image": "ae:ImageAutoencoder",
    "nae": "nae:NormalizedAutoencoder",
    "wnae": "nae:WassersteinNAE",
    "suep-ae": "suep:SUEPAutoencoder",
    "codae": "codae:DualEncoderAutoencoder",
    "clr": "contrastive:CLR",
    "aclr": "contrastive:ACLR",
    "rs3l": "contrastive:RS3L",
    "lund-gae": "lund_gae:LundGraphEBAE",
    "sup-transformer": "supervised:SupervisedTransformer",
    "sup-bdt": "supervised:SupervisedBDT",
    "distill": "distill:Student",
    "gmm": "density:GaussianMixtureDensity",
    "flow": "density:NormalizingFlow",
}

#: methods registered at run time (register_method) or by entry points: name -> class or "module:Class"
_EXTERNAL: dict[str, Any] = {}
_LOADED: dict[str, type] = {}


def register_method(name: str, target: Any, replace: bool = False) -> None:
    """Register a method class (or its ``"package.module:Class"`` path) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register_method: name must be a non-empty string, got {name!r}")
    if (name in METHODS or name in _EXTERNAL) and not replace:
        raise ConfigError(f"method {name!r} is already registered; choose another name (or replace=True)")
    if not isinstance(target, (str, type)):
        raise ConfigError(f"register_method({name!r}): give a Method subclass or 'module:Class', not {target!r}")
    if isinstance(target, type):
        from darkshower.models.base import check_method

        check_method(target, name)
    _EXTERNAL[name] = target
    _LOADED.pop(name, None)


def _entry_points() -> dict[str, str]:
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:
        log.warning("could not read entry points %r: %s", ENTRY_POINT_GROUP, exc)
        return {}
    out = {}
    for ep in eps:
        if ep.name in METHODS:
            log.warning("entry point %s = %s ignored: %r is a built-in method", ENTRY_POINT_GROUP, ep.value, ep.name)
            continue
        out[ep.name] = ep.value
    return out


def _targets() -> dict[str, Any]:
    targets: dict[str, Any] = {n: f"darkshower.models.{t}" for n, t in METHODS.items()}
    for n, v in _entry_points().items():
        targets.setdefault(n, v)
    targets.update(_EXTERNAL)
    return targets


def available_methods() -> list[str]:
    """Methods known to this installation (built-in modules present, registered, entry points)."""
    out = []
    for name, target in _targets().items():
        if isinstance(target, str):
            mod = target.split(":")[0]
            try:
                if importlib.util.find_spec(mod) is None:
                    continue
            except ModuleNotFoundError:
                continue
        out.append(name)
    return out


def get_method(name: str):
    """The Method class registered as ``name`` (loaded and checked once)."""
    if name in _LOADED:
        return _LOADED[name]
    targets = _targets()
    if name not in targets:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(available_methods())}")
    target = targets[name]
    if isinstance(target, str):
        mod, _, cls_name = target.partition(":")
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                raise ConfigError(f"method {name!r} is not available in this build (module {mod} not found)") from None
            raise
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ConfigError(f"method {name!r}: {mod} has no class {cls_name!r} (check the registration {target!r})")
    else:
        cls = target
    from darkshower.models.base import check_method

    check_method(cls, name)
    _LOADED[name] = cls
    return cls
