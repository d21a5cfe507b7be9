"""The content identity of a dataset: one SHA-256 over its chunks' checksums.

Score files record the fingerprint of every dataset they scored (``darkshower score``), so that
``evaluate``/``search`` can tell a dataset replaced at the same path (regenerated with another
seed, re-imported) from the one that was scored. The fingerprint depends only on the chunk list
of the manifest (file names, SHA-256 checksums, event counts), not on timestamps or the path:
a dataset moved or copied elsewhere keeps it.
"""

from __future__ import annotations

import hashlib
import json


def dataset_fingerprint(dataset) -> str:
    """``"sha256:<hex>"`` over the chunk list of a :class:`~darkshower.data.dataset.Dataset` (or its manifest)."""
    manifest = dataset if isinstance(dataset, dict) else dataset.manifest
    rows = [[str(c.get("file")), str(c.get("sha256")), int(c.get("n_events", 0))] for c in manifest.get("chunks", [])]
    return "sha256:" + hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
