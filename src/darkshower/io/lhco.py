"""LHC Olympics 2020 pandas HDF5 (key ``df``): per event up to 700 particles × (pT, η, φ),
zero-padded, last column the truth label (0 background, 1 signal).

Particles are taken massless (E = pT cosh η) and clustered with the shared
:func:`darkshower.simulate.jets.cluster_jets` (anti-kt, ``--radius`` 1.0 as in the LHCO
papers, ``--jet-pt-min``, ``--eta-max``). ``truth_label`` (int8) is stored per event
(-1 when the table has no label column, i.e. its width is a multiple of 3).
The table is streamed with h5py slices (pandas "fixed" format) or ``pandas.read_hdf``
with start/stop (pandas "table" format); it is never loaded whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from darkshower.io.common import UNKNOWN_TYPE, Reader, check_finite, event_fields, list_some
from darkshower.io.h5util import check_magic
from darkshower.io.particles import cluster_particles, reclustered_jet_definition


class LHCOReader(Reader):
    format_name = "lhco"
    options = {"key": "df", "radius": 1.0, "jet_pt_min": 150.0, "eta_max": 2.5, "keep_empty_events": False}

    def open(self) -> None:
        # PyTables (not h5py): LHCO tables are blosc-compressed, a filter only PyTables ships
        import tables

        check_magic(self.path, self.format_name)
        try:
            self.h = tables.open_file(str(self.path), "r")
        except Exception as exc:
            raise self.fail(f"unreadable HDF5 file, probably truncated or corrupt ({type(exc).__name__}: {exc})") from None
        key = "/" + str(self.opts["key"]).strip("/")
        try:
            g = self.h.get_node(key)
        except tables.NoSuchNodeError:
            have = [f"{n._v_pathname}{[int(x) for x in n.shape]}" for n in self.h.walk_nodes("/", classname="Leaf")]
            raise self.fail(
                f"no pandas table '{key[1:]}' (format 'lhco' expects the LHCO pandas HDF5 layout); "
                f"the file has: {list_some(have)}"
            ) from None
        ptype = getattr(g._v_attrs, "pandas_type", b"")
        ptype = ptype.decode() if isinstance(ptype, bytes) else str(ptype)
        self.table_mode = False
        if ptype == "frame":
            blocks = sorted(k for k in g._v_children if k.startswith("block") and k.endswith("_values"))
            if not blocks:
                raise self.fail(f"pandas table '{key[1:]}' is empty (no columns): no events to import")
            if blocks != ["block0_values"]:
                raise self.fail(f"pandas table '{key[1:]}' has value blocks {blocks}; LHCO tables hold one float block")
            self.values = g._v_children["block0_values"]
            attrs = self.values._v_attrs
            if "shape" in attrs._v_attrnames and int(np.prod(attrs.shape)) == 0:
                # pandas stores an empty DataFrame as a (1, 1) placeholder of uninitialized memory
                shape = tuple(int(x) for x in reversed(attrs.shape))  # pandas blocks are (columns, rows)
                raise self.fail(
                    f"pandas table '{key[1:]}' is empty (shape {shape}): no events to import; "
                    "check how the file was written"
                )
            if self.values.dtype.kind not in "biuf":
                raise self.fail(f"'{key[1:]}/block0_values' holds {self.values.dtype} values; LHCO tables hold numbers")
            if len(self.values.shape) != 2:
                raise self.fail(f"'{key[1:]}/block0_values' has shape {self.values.shape}, expected (N, 3*P+1)")
            self.n_events, self.n_cols = (int(x) for x in self.values.shape)
        elif ptype == "frame_table":
            import pandas as pd

            self.table_mode = True
            self.n_events = int(g.table.nrows)
            head = pd.read_hdf(self.path, key, start=0, stop=1)
            self.n_cols = len(head.columns)
            bad = [str(c) for c, t in head.dtypes.items() if t.kind not in "biuf"]
            if bad:
                raise self.fail(f"pandas table '{key[1:]}' has non-numeric columns ({', '.join(bad[:5])}); "
                                "LHCO tables hold numbers")
        else:
            raise self.fail(
                f"'{key[1:]}' is not a pandas DataFrame (pandas_type {ptype!r}); format 'lhco' expects the LHCO "
                "pandas HDF5 layout (pandas.DataFrame.to_hdf, key 'df')"
            )
        if self.n_cols % 3 == 1:
            self.has_label = True
        elif self.n_cols % 3 == 0:
            self.has_label = False
        else:
            raise self.fail(f"table '{key[1:]}' has {self.n_cols} columns; LHCO tables have 3*P (+1 label) columns")
        if self.n_events == 0:
            raise self.fail(f"table '{key[1:]}' has no events")
        self.n_particles = self.n_cols // 3
        self.extra_event_fields = ["truth_label"]
        self.file_meta = {"max_particles": self.n_particles, "label_column": self.has_label}

    def close(self) -> None:
        h = getattr(self, "h", None)
        if h is not None:
            h.close()
            self.h = None

    def _rows(self, start: int, stop: int) -> np.ndarray:
        try:
            if self.table_mode:
                import pandas as pd

                return pd.read_hdf(self.path, self.opts["key"], start=start, stop=stop).to_numpy(np.float64)
            return np.asarray(self.values[start:stop], dtype=np.float64)
        except Exception as exc:
            raise self.fail(
                f"cannot read rows {start}-{stop} ({type(exc).__name__}: {exc}); the file is probably truncated or corrupt"
            ) from None

    def read(self, start: int, stop: int) -> dict[str, Any]:
        x = self._rows(start, stop)
        n = len(x)
        check_finite(self.path, f"{self.opts['key']} values", x, start)
        if self.has_label:
            label = x[:, -1]
            bad = ~np.isin(label, (0.0, 1.0))
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise self.fail(f"truth label (last column) is {label[r]} in row {start + r}; expected 0 or 1")
            label = label.astype(np.int8)
            x = x[:, :-1]
        else:
            label = np.full(n, -1, np.int8)
        p = x.reshape(n, self.n_particles, 3)
        pt, eta, phi = p[..., 0], p[..., 1], p[..., 2]
        mask = pt > 0
        per_event = mask.sum(axis=1)
        if (per_event == 0).any() and not self.opts["keep_empty_events"]:
            rows = np.flatnonzero(per_event == 0)
            raise self.fail(
                f"{len(rows)} event(s) have no particles (first: row {start + rows[0]}); "
                "pass --keep-empty-events to import them with no jets"
            )
        fpt, feta, fphi = pt[mask], eta[mask], phi[mask]
        m = len(fpt)
        flat = {
            "pt": fpt,
            "eta": feta,
            "phi": fphi,
            "e": fpt * np.cosh(feta),
            "charge": np.zeros(m, np.int8),
            "pid": np.zeros(m, np.int32),
            "type": np.full(m, UNKNOWN_TYPE, np.int8),
        }
        jets = cluster_particles(flat, per_event, self.opts)
        return event_fields(n, jets, extra={"truth_label": label})

    @classmethod
    def jet_definition(cls, options):
        return reclustered_jet_definition(
            options, "clustered from the event's particles (massless) with cluster_jets (FastJet)"
        )

    @classmethod
    def notes(cls, options):
        return {
            "met": "not in this format: met_pt = met_phi = 0",
            "constituent_ids": "unknown: charge 0, pid 0, type -1; particles massless",
            "truth_label": "last table column: 0 background (QCD), 1 signal",
        }
