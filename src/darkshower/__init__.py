"""darkshower: model-agnostic searches for strongly coupled dark sectors at the LHC.

Library entry points (the CLI is a thin skin over these):

- :func:`darkshower.open_dataset` — open a dataset directory (lazy, chunked).
- :func:`darkshower.generate` — simulate events with Pythia 8 and a detector model.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open_dataset", "generate", "Dataset"]


def __getattr__(name: str):  # lazy imports keep `import darkshower` cheap
    if name in ("open_dataset", "Dataset"):
        from darkshower.data import dataset

        return getattr(dataset, name)
    if name == "generate":
        from darkshower.simulate.run import generate

        return generate
    raise AttributeError(f"module 'darkshower' has no attribute {name!r}")
