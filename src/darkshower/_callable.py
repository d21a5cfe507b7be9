"""Callable stage packages: ``darkshower.train(...)`` calls ``darkshower.train.train(...)``.

The verbs ``train`` and ``evaluate`` share their names with the stage packages that hold them, and
Python's import system binds ``darkshower.train`` to the package whenever a sub-module of it is
imported; making the package itself callable lets the name be both."""

from __future__ import annotations

import sys
import types


def make_callable(module_name: str, verb: str) -> None:
    """Let the module ``module_name`` be called like its attribute ``verb`` (loaded on first call)."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, verb)(*args, **kwargs)

    _CallablePackage.__name__ = f"CallablePackage[{module_name}.{verb}]"
    sys.modules[module_name].__class__ = _CallablePackage
