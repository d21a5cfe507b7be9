"""Training framework shared by every method: ``train``, ``score``, ``load_run``.

See docs/training.md for the run directory and the config keys. Imports are lazy so that
``darkshower score --jobs N`` can fork its workers before torch is loaded.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "RunError", "TrainingError", "load_run", "score", "train", "resolve_config"]

# the function ``score`` shadows its (torch-free) module of the same name, so bind it eagerly
from darkshower.train.score import score

_WHERE = {"TrainConfig": "darkshower.models.runconfig", "RunError": "darkshower.errors",
          "TrainingError": "darkshower.errors", "load_run": "darkshower.models.runs",
          "train": "darkshower.train.trainer", "resolve_config": "darkshower.train.trainer"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'darkshower.train' has no attribute {name!r}")


from darkshower._callable import make_callable  # noqa: E402

make_callable(__name__, "train")  # darkshower.train(...) == darkshower.train.train(...)
