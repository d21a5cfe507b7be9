"""Models: one module per method family, all against :class:`darkshower.models.base.Method`.

``get_method("ae-hlf")`` returns the class; the registry maps CLI names to ``module:Class``
and imports lazily (torch and the model code are loaded only when a method is used).
"""

from __future__ import annotations

import importlib
import importlib.util

from darkshower.errors import ConfigError

#: method name -> "module:Class" (modules relative to darkshower.models)
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
}


def available_methods() -> list[str]:
    """Methods whose module is present in this build."""
    out = []
    for name, target in METHODS.items():
        mod = target.split(":")[0]
        if importlib.util.find_spec(f"darkshower.models.{mod}") is not None:
            out.append(name)
    return out


def get_method(name: str):
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(available_methods())}")
    mod, cls = METHODS[name].split(":")
    try:
        module = importlib.import_module(f"darkshower.models.{mod}")
    except ModuleNotFoundError as exc:
        if exc.name == f"darkshower.models.{mod}":
            raise ConfigError(f"method {name!r} is not available in this build") from None
        raise
    return getattr(module, cls)
