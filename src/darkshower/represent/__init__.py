"""Representations of jets and events for learning and analysis.

- :func:`point_clouds` (+ :class:`Standardizer`) — leading-N constituent features, padded + mask.
- :func:`jet_images`, :func:`event_images` — eta-phi grids (event images stored sparse).
- :func:`lund_graphs` — C/A declustering trees as graphs (primary / secondary / full).
- :func:`jet_observables`, :func:`event_observables`, :func:`observables_table` — substructure
  and event-level observables as DataFrames.
- :func:`parse_representation` / :func:`build` — a JSON-able config with a ``kind``
  discriminator and one entry point; :class:`RepresentationStream` / :func:`make_loader` —
  streaming PyTorch input with shuffling and an npz cache.

See docs/representations.md.
"""

from __future__ import annotations

from darkshower.represent.build import build, fit_standardizer
from darkshower.represent.common import JetBatch, jet_batch
from darkshower.represent.config import (
    ConstituentsConfig,
    EventImageConfig,
    ImageConfig,
    LundConfig,
    ObservablesConfig,
    parse_representation,
)
from darkshower.represent.constituents import PointClouds, Standardizer, point_clouds
from darkshower.represent.images import SparseEventImages, event_images, jet_images
from darkshower.represent.lund import LundGraphs, lund_graphs
from darkshower.represent.observables import event_observables, jet_observables, observables_table

__all__ = [
    "build", "fit_standardizer", "JetBatch", "jet_batch", "ConstituentsConfig", "EventImageConfig",
    "ImageConfig", "LundConfig", "ObservablesConfig", "parse_representation", "PointClouds", "Standardizer",
    "point_clouds", "SparseEventImages", "event_images", "jet_images", "LundGraphs", "lund_graphs",
    "event_observables", "jet_observables", "observables_table", "RepresentationStream", "make_loader",
]


def __getattr__(name):  # torch is imported only when the loader is used
    if name in ("RepresentationStream", "make_loader"):
        from darkshower.represent import loader

        return getattr(loader, name)
    raise AttributeError(name)
