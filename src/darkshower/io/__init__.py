"""Importers: external formats → darkshower datasets (docs/importers.md).

``import_dataset(fmt, inputs, out, **options)`` is the library entry point used by
``darkshower import``. Formats: pfnano, treemaker, delphes, h5-4vec, lhco, h5-constituents
(one module each; shared pieces in :mod:`darkshower.io.common`).
"""

from __future__ import annotations

from darkshower.io.importer import DEFAULT_CHUNK_SIZE, FORMAT_NAMES, get_format, import_dataset

__all__ = ["import_dataset", "get_format", "FORMAT_NAMES", "DEFAULT_CHUNK_SIZE"]
