"""HDF5 with zero-padded (N, P, 4) arrays of (px, py, pz, E) per jet slot.

``--jets A,B`` names one dataset per jet slot (default ``jet1_PFCands,jet2_PFCands``, the
layout of the CMS B2G-24-015 reinterpretation kit). Jets are the E-scheme sums of their
constituents and keep the slot order of the file (they are NOT re-sorted by pT, so indices
such as ``H_jet_idx`` stay meaningful); each jet stores its ``slot`` (0, 1, ...). A slot with
no constituents gives no jet in that event (the other jets keep their ``slot``).

``--extra a,b,...`` carries per-event datasets (first dimension N) under their source names;
``--jet-kinematics NAME`` carries the stored per-event kinematics array the same way.
The inputs say nothing about charge or particle type: charge 0, pid 0, type -1 (unknown).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from darkshower.io.common import (
    UNKNOWN_TYPE,
    Reader,
    build_jets,
    check_finite,
    check_numeric,
    event_fields,
    is_sorted_within,
)
from darkshower.io.h5util import get_dataset, open_h5, read_slice


def split_names(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


class H54VecReader(Reader):
    format_name = "h5-4vec"
    options = {"jets": "jet1_PFCands,jet2_PFCands", "extra": "", "jet_kinematics": "", "keep_empty_events": False}

    def open(self) -> None:
        self.h = open_h5(self.path, self.format_name)
        self.jet_names = split_names(self.opts["jets"])
        if not self.jet_names:
            raise self.fail("--jets names no dataset")
        self.jet_ds = [get_dataset(self.h, name, self.path, self.format_name, "--jets") for name in self.jet_names]
        n = None
        for name, ds in zip(self.jet_names, self.jet_ds):
            if ds.ndim != 3 or ds.shape[2] != 4:
                raise self.fail(f"dataset '{name}' has shape {ds.shape}; format 'h5-4vec' needs (N, P, 4) = (px, py, pz, E)")
            check_numeric(self.path, name, ds.dtype, self.format_name, "numbers (px, py, pz, E)")
            if n is not None and ds.shape[0] != n:
                raise self.fail(f"jet datasets differ in length: {self.jet_names[0]} has {n} rows, {name} has {ds.shape[0]}")
            n = ds.shape[0]
        assert n is not None  # self.jet_names is not empty
        self.n_events = int(n)
        if self.n_events == 0:
            raise self.fail("the jet datasets hold no events")
        extra = split_names(self.opts["extra"]) + split_names(self.opts["jet_kinematics"])
        self.extra_ds = {}
        for name in extra:
            opt = "--jet-kinematics" if name in split_names(self.opts["jet_kinematics"]) else "--extra"
            ds = get_dataset(self.h, name, self.path, self.format_name, opt)
            if ds.ndim == 0 or ds.shape[0] != n:
                raise self.fail(f"dataset '{name}' (from {opt}) has shape {ds.shape}; need one row per event ({n})")
            check_numeric(self.path, name, ds.dtype, self.format_name, f"numbers (named by {opt})")
            self.extra_ds[name] = ds
        self.extra_event_fields = list(self.extra_ds)
        self.file_meta = {
            "scalars": {k: _scalar(v) for k, v in self.h.items() if getattr(v, "shape", None) == ()},
            "max_constituents": {name: int(ds.shape[1]) for name, ds in zip(self.jet_names, self.jet_ds)},
        }

    def close(self) -> None:
        h = getattr(self, "h", None)
        if h is not None:
            h.close()

    def read(self, start: int, stop: int) -> dict[str, Any]:
        n = stop - start
        slots = []
        for name, ds in zip(self.jet_names, self.jet_ds):
            x = read_slice(ds, start, stop, self.path)
            check_finite(self.path, name, x, start)
            slots.append(x)
        p_max = max(x.shape[1] for x in slots)
        if any(x.shape[1] != p_max for x in slots):  # pad to a common P
            slots = [np.pad(x, ((0, 0), (0, p_max - x.shape[1]), (0, 0))) for x in slots]
        v = np.stack(slots, axis=1)  # (n, S, P, 4), float32 as stored
        px, py, pz, e = v[..., 0], v[..., 1], v[..., 2], v[..., 3]
        with np.errstate(over="ignore", invalid="ignore"):
            pt = np.hypot(px, py)
        mask = pt > 0  # zero padding (anywhere in the row) is dropped
        self._check_overflow(v, pt, mask, start)
        ncon = mask.sum(axis=2)  # (n, S)
        has_jet = ncon > 0
        empty = ~has_jet.any(axis=1)
        if empty.any() and not self.opts["keep_empty_events"]:
            rows = np.flatnonzero(empty)
            raise self.fail(
                f"{len(rows)} event(s) have no constituents in any of {self.jet_names} (first: row {start + rows[0]}); "
                "pass --keep-empty-events to import them with no jets"
            )
        # jets: E-scheme sums over the (zero-padded) constituents, in float64
        from darkshower.simulate.jets import kinematics_from_p4

        f8 = np.float64
        jpt, jeta, jphi, jm = kinematics_from_p4(
            px.sum(2, dtype=f8), py.sum(2, dtype=f8), pz.sum(2, dtype=f8), e.sum(2, dtype=f8)
        )
        slot = np.broadcast_to(np.arange(len(slots), dtype=np.int8), has_jet.shape)
        jf = {
            "pt": jpt[has_jet],
            "eta": jeta[has_jet],
            "phi": jphi[has_jet],
            "mass": jm[has_jet],
            "slot": slot[has_jet],
        }
        # flat constituents in (event, slot) order, sorted by decreasing pT inside each jet:
        # one argsort over the padded rows, then a single gather of the live entries
        P = pt.shape[2]
        if is_sorted_within(pt.reshape(-1), np.full(pt.shape[0] * pt.shape[1], P)) and np.all(
            mask[..., :-1] >= mask[..., 1:]
        ):
            flat_idx = np.flatnonzero(mask.reshape(-1))  # already sorted, padding at the end
        else:
            order = np.argsort(np.where(mask, -pt, np.inf), axis=2, kind="stable")
            rowbase = (np.arange(pt.shape[0] * pt.shape[1], dtype=np.int64) * P).reshape(pt.shape[:2])
            live = np.arange(P) < ncon[..., None]
            flat_idx = (order + rowbase[..., None])[live]
        cpt = pt.reshape(-1)[flat_idx]
        v4 = v.reshape(-1, 4)[flat_idx]  # one row gather instead of four strided ones
        cpx, cpy, cpz, ce = v4[:, 0], v4[:, 1], v4[:, 2], v4[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            ceta = np.arcsinh(cpz / cpt)
        m = len(cpt)
        cons = {
            "pt": cpt,
            "eta": ceta,
            "phi": np.arctan2(cpy, cpx),
            "e": ce,
            "charge": np.zeros(m, np.int8),
            "pid": np.zeros(m, np.int32),
            "type": np.full(m, UNKNOWN_TYPE, np.int8),
        }
        n_per_jet = ncon[has_jet]
        jets = build_jets(has_jet.sum(axis=1), jf, n_per_jet, cons, sort_jets=False, sort_constituents=False)
        extra = {}
        for name, ds in self.extra_ds.items():
            val = read_slice(ds, start, stop, self.path)
            check_finite(self.path, name, val, start)
            if val.dtype.kind == "f":
                val = val.astype(np.float32)
            extra[name] = val
        return event_fields(n, jets, extra=extra)

    def _check_overflow(self, v: np.ndarray, pt: np.ndarray, mask: np.ndarray, start: int) -> None:
        """Finite inputs whose pT, or whose jet sums, overflow float32 (values near 3.4e38)."""
        with np.errstate(over="ignore", invalid="ignore"):
            bad_pt = (mask & ~np.isfinite(pt)).any(axis=2)  # (n, S): constituent pT overflows
            sums = np.abs(v.sum(axis=2, dtype=np.float64))  # (n, S, 4): jet four-momentum
        big = bad_pt | (sums > np.finfo(np.float32).max / 2).any(axis=2)  # jet pT/mass would overflow
        if not big.any():
            return
        ev, slot = np.argwhere(big)[0]
        raise self.fail(
            f"dataset '{self.jet_names[slot]}' holds values too large for float32 momenta (up to "
            f"{np.abs(v[ev, slot]).max():.3g}) in event row {start + int(ev)}, giving infinite pT; "
            "fix or drop those events (or pass --skip-bad-files to skip this file)"
        )

    @classmethod
    def jet_definition(cls, options):
        return {
            "source": f"one jet per dataset slot {split_names(options['jets'])} (as clustered by the producer)",
            "kinematics": "E-scheme sum of the stored constituents",
            "order": "slot order of the file (jets.slot), NOT sorted by pT",
        }

    @classmethod
    def notes(cls, options):
        return {
            "met": "not in this format: met_pt = met_phi = 0",
            "constituent_ids": "unknown: charge 0, pid 0, type -1",
            "jet_order": "jets keep the file's slot order (jets.slot); not sorted by pT",
        }


def _scalar(ds):
    try:
        v = ds[()]
        return v.item() if hasattr(v, "item") else (v.decode() if isinstance(v, bytes) else v)
    except Exception:  # pragma: no cover
        return None
